// The supervisor dashboard in real headless Chromium against the real hub. Calls are driven
// by posting VAPI webhooks by hand (dashboard-vapi.mjs), recordings come from a loopback
// "recording host", control actions reach a loopback fake of VAPI's control URL, and a TCP
// proxy in front of the hub cuts the page's connections for the network-blip test. Nothing
// in the page is mocked. Waits are bounded waits for a condition, never sleeps.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHub, startMockLlm, startSite, startProxy, toneWav, launchBrowser, screenshot } from './harness.mjs';
import { FakeCall } from './dashboard-vapi.mjs';

const WAIT = 15000;
let hub; let site; let llm; let browser; let supervisor; let admin;
const controlBodies = [];
const hookBodies = [];

before(async () => {
  site = await startSite({
    '/rec/tone.wav': { body: toneWav(8), type: 'audio/wav' },
    '/control': (req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { controlBodies.push(JSON.parse(body || 'null')); res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); });
    },
    '/hook': (req, res) => {
      let body = '';
      req.on('data', (c) => { body += c; });
      req.on('end', () => { hookBodies.push({ headers: req.headers, body: JSON.parse(body || 'null') }); res.writeHead(200); res.end('ok'); });
    },
    '/control-broken': (req, res) => { req.resume(); req.on('end', () => { res.writeHead(500); res.end('no'); }); },
  });
  llm = await startMockLlm(['--chunks', '12', '--chunk-delay-ms', '20']);
  hub = await startHub({
    env: { SWITCHBOARD_OPENAI_BASE_URL: llm.baseUrl, OPENAI_API_KEY: 'sk-mock' },
    toml: [
      '[recordings]', 'allow_http = true', 'allowed_hosts = ["127.0.0.1"]', 'allow_loopback = true',
      '[control]', 'allow_http = true', 'allowed_hosts = ["127.0.0.1"]', 'allow_loopback = true',
      '[jobs]', 'demo_kinds = true',
      '[webhooks]', 'allow_http = true', 'allow_loopback = true',
    ].join('\n'),
  });
  [supervisor, admin] = await Promise.all([hub.token('supervisor'), hub.token('admin')]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await hub?.stop();
  await site?.stop();
  await llm?.stop();
});

/** A fresh page (its own sessionStorage) signed in through the URL fragment. */
async function signedIn(token = supervisor, base = hub.url, path = '#/') {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  watchErrors(page);
  await page.goto(`${base}/dashboard/#token=${encodeURIComponent(token)}`);
  await page.waitForSelector('#conn[data-state="live"]', { timeout: WAIT });
  if (path !== '#/') await page.evaluate((p) => { location.hash = p; }, path);
  return page;
}

/** Script errors in the page fail the test that owns it (checked when it is closed). */
function watchErrors(page) {
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource|WebSocket connection/.test(m.text())) page.errors.push(m.text()); });
}

async function done(page) {
  const errors = page.errors || [];
  await page.context().close();
  assert.deepEqual(errors, [], 'no script errors in the page');
}

const until = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: WAIT, polling: 50 });
const finals = (page) => page.$$eval('.transcript[role="log"] li.line', (els) => els.map((e) => e.querySelector('.text').textContent));

test('a supervisor signs in with the token from the URL fragment, which leaves the address bar', async () => {
  const page = await signedIn();
  assert.equal(await page.evaluate(() => location.hash), '#/');
  assert.ok(!(await page.evaluate(() => location.href)).includes('sb_'), 'the token is not left in the URL');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('switchboard.token')), supervisor);
  await page.waitForSelector('#nav:not([hidden])');
  // A reload keeps the session (sessionStorage); signing out ends it.
  await page.reload();
  await page.waitForSelector('#conn[data-state="live"]', { timeout: WAIT });
  await page.click('#signout');
  await page.waitForSelector('#signin:not([hidden])');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('switchboard.token')), null);
  await done(page);
});

test('a bad token is refused, from the fragment and from the sign-in form', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  watchErrors(page);
  await page.goto(`${hub.url}/dashboard/#token=sb_not_a_real_token`);
  await page.waitForSelector('#signin:not([hidden])');
  await until(page, () => /refused/.test(document.querySelector('#signin-message').textContent));
  assert.ok(await page.isHidden('#nav'));
  await page.fill('#signin-token', 'sb_still_wrong');
  await page.press('#signin-token', 'Enter');
  await until(page, () => /refused/.test(document.querySelector('#signin-message').textContent) && document.querySelector('#signin-token').value === '');
  // The right token through the form works.
  await page.fill('#signin-token', supervisor);
  await page.click('#signin-form button[type="submit"]');
  await page.waitForSelector('#conn[data-state="live"]', { timeout: WAIT });
  await done(page);
});

test('a supervisor does not see admin views, an admin does', async () => {
  const page = await signedIn(supervisor);
  assert.ok(await page.isHidden('#nav a[data-route="jobs"]'));
  assert.ok(await page.isHidden('#nav a[data-route="webhooks"]'));
  assert.equal(await page.textContent('#role'), 'supervisor');
  await page.evaluate(() => { location.hash = '#/admin/jobs'; });
  await page.waitForSelector('#view h1:text("Admins only")');
  await done(page);

  const adminPage = await signedIn(admin, hub.url, '#/admin/jobs');
  assert.equal(await adminPage.textContent('#role'), 'admin');
  assert.ok(await adminPage.isVisible('#nav a[data-route="jobs"]'));
  await adminPage.fill('.run-now input[name="kind"]', 'noop');
  await adminPage.click('.run-now button[type="submit"]');
  await until(adminPage, () => /Enqueued noop/.test(document.querySelector('.run-now [role="status"]').textContent));
  await adminPage.waitForSelector('.jobs-table tbody tr', { timeout: WAIT });
  // The webhooks view answers either way: a list, or a quiet "not available".
  await adminPage.evaluate(() => { location.hash = '#/admin/webhooks'; });
  await until(adminPage, () => /not available on this hub|No outgoing webhooks|webhook/i.test(document.querySelector('#view').textContent)
    && !/could not be loaded/.test(document.querySelector('#view').textContent));
  await done(adminPage);
});

test('a call appears on the board when its first webhook arrives and leaves it when it ends', async () => {
  const page = await signedIn();
  const call = new FakeCall(hub.url, { customer: '+14155550142' });
  await call.status('ringing', 0);
  const card = `.call-card[data-call-id="${call.id}"]`;
  await page.waitForSelector(card, { timeout: WAIT });
  assert.match(await page.textContent(`${card} .card-number`), /^\+1 ••• ••• 0142$/);
  assert.ok(!(await page.textContent(card)).includes('5550142'), 'the full number is not on the board');
  await call.status('in-progress', 500);
  await call.final('assistant', 'Thanks for calling Riverside Dental, this is Ava.', 1500);
  await until(page, (sel) => /in-progress/.test(document.querySelector(sel)?.textContent) && /Riverside Dental/.test(document.querySelector(sel)?.textContent), card);
  // The duration ticks.
  const d1 = await page.textContent(`${card} .duration`);
  await until(page, ([sel, d]) => document.querySelector(`${sel} .duration`).textContent !== d, [card, d1]);
  await screenshot(page, 'dashboard-board-live-call');

  await call.status('ended', 3000, { endedReason: 'customer-ended-call' });
  await until(page, (sel) => !document.querySelector(sel), card);
  await page.waitForSelector(`.recent-row[data-call-id="${call.id}"]`, { timeout: WAIT });
  await done(page);
});

test('a call transcript grows line by line: the partial is replaced in place, then the final appended', async () => {
  const call = new FakeCall(hub.url);
  await call.status('in-progress', 0);
  await call.final('assistant', 'Thanks for calling Riverside Dental.', 1000);
  const page = await signedIn(supervisor, hub.url, `#/calls/${call.id}`);
  await until(page, () => document.querySelectorAll('.transcript[role="log"] li.line').length === 1);

  const partial = '.transcript.partials li[data-role="user"]';
  await call.partial('user', "Hi, I'd", 1500);
  await page.waitForSelector(partial, { timeout: WAIT });
  await page.$eval(partial, (el) => { el.dataset.marker = 'first'; });
  await call.partial('user', "Hi, I'd like to move", 1700);
  await until(page, (sel) => document.querySelector(sel)?.querySelector('.text').textContent === "Hi, I'd like to move", partial);
  assert.equal(await page.$$eval(partial, (els) => els.length), 1, 'one line in progress per speaker');
  assert.equal(await page.$eval(partial, (el) => el.dataset.marker), 'first', 'the partial line is updated in place');
  await call.speech('user', 'started', 1750);
  await page.waitForSelector('.speaking-chip.role-user', { timeout: WAIT });
  await screenshot(page, 'dashboard-call-mid-transcript');

  await call.final('user', "Hi, I'd like to move my cleaning appointment.", 2000);
  await until(page, (sel) => !document.querySelector(sel) && document.querySelectorAll('.transcript[role="log"] li.line').length === 2, partial);
  await call.final('assistant', 'Of course. Let me check Tuesday.', 3000);
  await until(page, () => document.querySelectorAll('.transcript[role="log"] li.line').length === 3);
  assert.deepEqual(await finals(page), ['Thanks for calling Riverside Dental.', "Hi, I'd like to move my cleaning appointment.", 'Of course. Let me check Tuesday.']);
  // Presence: this page is watching the call.
  await until(page, () => document.querySelectorAll('.watchers-box .avatar').length === 1);
  await done(page);
});

test('a tool call shows in the function timeline with its arguments and result', async () => {
  const call = new FakeCall(hub.url);
  await call.status('in-progress', 0);
  const page = await signedIn(supervisor, hub.url, `#/calls/${call.id}`);
  await page.waitForSelector('.call-head h1:text("Call +1")', { timeout: WAIT });
  const reply = await call.tool('bookAppointment', { date: '2030-01-07', time: '15:00', service: 'cleaning' }, 1000, 'call_book_1');
  assert.match(JSON.stringify(reply), /Booked cleaning/);
  const item = '.timeline li[data-tool-call-id="call_book_1"]';
  await until(page, (sel) => /Booked cleaning/.test(document.querySelector(sel)?.querySelector('.fn-result')?.textContent || ''), item);
  assert.equal(await page.textContent(`${item} .fn-name`), 'bookAppointment');
  assert.match(await page.textContent(`${item} .fn-args`), /"date": "2030-01-07"/);
  assert.match(await page.textContent(`${item} .fn-latency`), /ms|s$/);
  await done(page);
});

test('the call ends, its recording plays and clicking a transcript line seeks', async () => {
  const call = new FakeCall(hub.url);
  await call.status('in-progress', 0);
  const lines = [['assistant', 'Riverside Dental, Ava speaking.'], ['user', 'I need to move my cleaning.'], ['assistant', 'Tuesday at three works.'], ['user', 'Perfect, thank you.']];
  for (const [i, [role, text]] of lines.entries()) await call.final(role, text, 1500 * (i + 1));
  const page = await signedIn(supervisor, hub.url, `#/calls/${call.id}`);
  await until(page, () => document.querySelectorAll('.transcript[role="log"] li.line').length === 4);

  await call.status('ended', 6500, { endedReason: 'customer-ended-call' });
  await call.report({ at: 7000, recordingUrl: `${site.url}/rec/tone.wav` });
  await page.waitForSelector('.ended:not([hidden])', { timeout: WAIT });
  await until(page, () => /customer-ended-call/.test(document.querySelector('.ended').textContent) && /\$0\.0482/.test(document.querySelector('.ended').textContent));
  assert.ok(await page.isDisabled('.controls button:text("Whisper…")'), 'an ended call cannot be controlled');
  // The download job fetches the file; recording.ready mounts the player, which loads a blob.
  await until(page, () => document.querySelector('audio.player')?.src.startsWith('blob:') && document.querySelector('audio.player').readyState >= 1);
  await page.$eval('audio.player', (a) => a.play());
  await until(page, () => document.querySelector('audio.player').currentTime > 0);
  await page.waitForSelector('.transcript li.line.current', { timeout: WAIT });

  // Line 3 was spoken between 3.0 s (line 2's end) and 4.5 s from the call's start.
  await page.click('.transcript[role="log"] li.line:nth-child(3) .text');
  await until(page, () => {
    const a = document.querySelector('audio.player');
    return a.currentTime >= 3 && a.currentTime < 4.5 && !a.paused;
  });
  await until(page, () => document.querySelector('.transcript li.line.current .text')?.textContent === 'Tuesday at three works.');
  await screenshot(page, 'dashboard-ended-call-player');
  await done(page);
});

test('a network blip resumes the live transcript with no duplicate and no missing line', async () => {
  const proxy = await startProxy(hub.url);
  try {
    const call = new FakeCall(hub.url);
    await call.status('in-progress', 0);
    const page = await signedIn(supervisor, proxy.url, `#/calls/${call.id}`);
    // What the page says on its sockets, to see how it resumes.
    const frames = [];
    page.on('websocket', (ws) => {
      ws.on('framesent', (f) => frames.push({ dir: 'out', msg: JSON.parse(f.payload) }));
      ws.on('framereceived', (f) => frames.push({ dir: 'in', msg: JSON.parse(f.payload) }));
    });
    const expected = [];
    for (let i = 1; i <= 3; i++) { expected.push(`Line number ${i}.`); await call.final(i % 2 ? 'user' : 'assistant', `Line number ${i}.`, 1000 * i); }
    await until(page, (n) => document.querySelectorAll('.transcript[role="log"] li.line').length === n, 3);
    // The lines above may have come from the page's REST load alone. A partial only ever
    // arrives over the socket, so seeing it means the page holds a position on the topic
    // (without one, its resubscribe could not carry `since`).
    await call.partial('user', 'Line number', 3500);
    await until(page, () => /Line number/.test(document.querySelector('.transcript.partials')?.textContent || ''));
    await page.evaluate(() => {
      window.connStates = [];
      new MutationObserver(() => window.connStates.push(document.querySelector('#conn').dataset.state))
        .observe(document.querySelector('#conn'), { attributes: true, attributeFilter: ['data-state'] });
    });

    // Frames from before the cut may include the page's first subscribe (its socket can open
    // after the listener was attached on a slow machine): only what follows the cut counts.
    const cutAt = frames.length;
    proxy.cut();
    // The webhooks keep coming (straight to the hub) while the page's socket is down.
    for (let i = 4; i <= 8; i++) { expected.push(`Line number ${i}.`); await call.final(i % 2 ? 'user' : 'assistant', `Line number ${i}.`, 1000 * i); }
    await until(page, () => window.connStates.includes('reconnecting') && document.querySelector('#conn').dataset.state === 'live');
    for (let i = 9; i <= 10; i++) { expected.push(`Line number ${i}.`); await call.final(i % 2 ? 'user' : 'assistant', `Line number ${i}.`, 1000 * i); }
    await until(page, (n) => document.querySelectorAll('.transcript[role="log"] li.line').length >= n, expected.length);
    assert.deepEqual(await finals(page), expected);
    const topic = `call:${call.id}`;
    const after = frames.slice(cutAt);
    const resub = after.find((f) => f.dir === 'out' && f.msg.type === 'subscribe' && f.msg.topic === topic);
    assert.ok(resub?.msg.since?.epoch, 'the page resubscribed from its position');
    assert.ok(after.some((f) => f.dir === 'in' && f.msg.type === 'subscribed' && f.msg.topic === topic && f.msg.recovered === true), 'the missed events were replayed');
    // The board (the `calls` topic) also came back: the call's last utterance is the newest.
    await page.evaluate(() => { location.hash = '#/'; });
    await until(page, (id) => /Line number 10\./.test(document.querySelector(`.call-card[data-call-id="${id}"] .card-utterance`)?.textContent || ''), call.id);
    await done(page);
  } finally {
    await proxy.stop();
  }
});

test('history search finds a call by a word from its transcript', async () => {
  const wanted = new FakeCall(hub.url);
  await wanted.status('in-progress', 0);
  await wanted.final('user', 'Do you take marmalade as payment?', 1000);
  const other = new FakeCall(hub.url);
  await other.status('in-progress', 0);
  await other.final('user', 'I would like a cleaning.', 1000);
  const page = await signedIn(supervisor, hub.url, '#/history');
  await page.waitForSelector('.calls-table tbody tr', { timeout: WAIT });
  await page.fill('input[name="q"]', 'marmalade');
  await page.press('input[name="q"]', 'Enter');
  await until(page, () => location.hash.includes('q=marmalade') && document.querySelectorAll('.calls-table tbody tr').length === 1);
  assert.equal(await page.getAttribute('.calls-table tbody tr', 'data-call-id'), wanted.id);
  await page.click('.calls-table tbody tr a');
  await until(page, (id) => location.hash === `#/calls/${id}`, wanted.id);
  await until(page, () => /marmalade/.test(document.querySelector('.transcript')?.textContent || ''));
  await done(page);
});

test('a whisper is confirmed in a dialog, sent over the socket, and its outcome shown', async () => {
  const call = new FakeCall(hub.url, { controlUrl: `${site.url}/control` });
  await call.status('in-progress', 0);
  const page = await signedIn(supervisor, hub.url, `#/calls/${call.id}`);
  await page.waitForSelector('.controls button:text("Whisper…"):not([disabled])', { timeout: WAIT });
  // Escape cancels without sending.
  await page.click('.controls button:text("Whisper…")');
  await page.waitForSelector('dialog[open] textarea:focus');
  await page.keyboard.press('Escape');
  await until(page, () => !document.querySelector('dialog') && document.activeElement?.textContent === 'Whisper…');
  // An empty whisper is not sent.
  await page.click('.controls button:text("Whisper…")');
  await page.click('dialog[open] button[type="submit"]');
  await page.waitForSelector('dialog[open] [role="alert"]:not([hidden])');
  await page.fill('dialog[open] textarea', 'Offer a callback tomorrow.');
  await page.click('dialog[open] button[type="submit"]');
  await until(page, () => /Whisper to the assistant — sent \(VAPI answered 200\)/.test(document.querySelector('.control-results').textContent));
  assert.deepEqual(controlBodies.at(-1), { type: 'add-message', message: { role: 'system', content: 'Offer a callback tomorrow.' }, triggerResponseEnabled: false });
  // The audit (control.sent) lists it for everyone watching.
  await until(page, () => /whisper by .* — sent \(VAPI 200\)/.test(document.querySelector('.audit').textContent));

  // A refusal from VAPI is shown with its status.
  const broken = new FakeCall(hub.url, { controlUrl: `${site.url}/control-broken` });
  await broken.status('in-progress', 0);
  await page.evaluate((id) => { location.hash = `#/calls/${id}`; }, broken.id);
  await page.waitForSelector('.controls button:text("Mute assistant"):not([disabled])', { timeout: WAIT });
  await page.click('.controls button:text("Mute assistant")');
  await page.click('dialog[open] button[type="submit"]');
  await until(page, () => /failed: .*VAPI answered 500/.test(document.querySelector('.control-results').textContent));
  await done(page);
});

test('a supervisor watches a chat answer stream live and stops it', async () => {
  const page = await signedIn(supervisor, hub.url, '#/chats');
  await page.waitForSelector('#view h1:text("Chats")');
  const { session_id: id } = await (await fetch(`${hub.url}/api/chat/sessions`, { method: 'POST' })).json();
  // A slow answer (40 chunks, 150 ms apart), read in the background as the widget would.
  const answer = fetch(`${hub.url}/api/chat/sessions/${id}/messages`, {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ content: 'Tell me about cleanings [mock:chunks=40] [mock:delay_ms=150]' }),
  }).then((r) => r.text());
  const row = `.chat-row[data-session-id="${id}"]`;
  await until(page, (sel) => /answering/.test(document.querySelector(sel)?.textContent || ''), row);
  assert.match(await page.textContent(row), /Tell me about cleanings/);

  await page.click(`${row} a`);
  await page.waitForSelector('.msg.streaming', { timeout: WAIT });
  const first = await page.textContent('.msg.streaming .text');
  await until(page, (t) => (document.querySelector('.msg.streaming .text')?.textContent || '').length > t.length, first);
  assert.match(await page.textContent('.chat-messages'), /Tell me about cleanings/);
  await screenshot(page, 'dashboard-chat-streaming');
  const streamed = await page.textContent('.msg.streaming .text');

  await page.click('button:text("Stop the answer")');
  await until(page, () => !document.querySelector('.msg.streaming') && /stopped/i.test(document.querySelector('#view').textContent));
  // The stored (stopped) answer replaces the stream.
  await until(page, () => document.querySelector('.chat-messages .msg.role-assistant')?.textContent.includes('stopped'));
  assert.match(await answer, /"finish_reason":"stopped"/);
  // What streamed live (snapshot partial, then deltas) is the start of what was stored: no
  // piece of the answer was shown twice.
  const stored = await page.textContent('.chat-messages .msg.role-assistant .text');
  assert.ok(stored.startsWith(streamed.trim()), `${JSON.stringify(streamed)} starts ${JSON.stringify(stored)}`);
  await done(page);
});

test('an admin adds an outgoing webhook, sees its secret once, and its deliveries', async () => {
  const page = await signedIn(admin, hub.url, '#/admin/webhooks');
  await page.waitForSelector('form.create-webhook', { timeout: WAIT });
  await page.fill('form.create-webhook input[name="url"]', `${site.url}/hook`);
  await page.fill('form.create-webhook input[name="description"]', 'CRM sync');
  await page.click('form.create-webhook button[type="submit"]');
  await page.waitForSelector('.secret-once code.secret', { timeout: WAIT });
  const secret = await page.textContent('.secret-once code.secret');
  assert.match(secret, /^whsec_/, 'the generated signing secret is shown once');
  await page.waitForSelector('li.webhook', { timeout: WAIT });
  assert.match(await page.textContent('li.webhook'), /CRM sync/);

  // A call starts: the hub delivers call.started to the endpoint, signed.
  const call = new FakeCall(hub.url);
  await call.status('in-progress');
  const deadline = Date.now() + WAIT;
  while (!hookBodies.some((h) => h.body?.type === 'call.started' && h.body?.data?.call?.id === call.id) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const delivered = hookBodies.find((h) => h.body?.type === 'call.started' && h.body?.data?.call?.id === call.id);
  assert.ok(delivered, 'call.started was delivered');
  assert.match(delivered.headers['webhook-signature'], /^v1,/);

  await page.click('li.webhook button:has-text("Deliveries")');
  await page.waitForSelector('.deliveries-table tbody tr', { timeout: WAIT });
  assert.match(await page.textContent('.deliveries-table tbody'), /call\.started[\s\S]*200/);
  await screenshot(page, 'dashboard-webhooks');

  // Rotating the secret (confirmed in a dialog) shows the new one once; the old one still signs.
  await page.click('li.webhook button.rotate');
  await page.click('dialog[open] button[type="submit"]');
  await until(page, () => /New signing secret/.test(document.querySelector('.secret-once')?.textContent || ''));
  const rotated = (await page.$$eval('.secret-once code.secret', (els) => els.map((e) => e.textContent))).find((t) => t !== secret);
  assert.match(rotated || '', /^whsec_/, 'a new secret, different from the first');
  await until(page, () => /previous secret also signs until/.test(document.querySelector('li.webhook')?.textContent || ''));
  await done(page);
});
