// The embeddable chat widget in real headless Chromium, embedded by a customer's site on another
// origin (under a strict CSP), against the real hub and the mock model. Nothing in the page is
// mocked: every request reaches a real server. The Markdown test drives hostile text through the
// model itself (an HTTP function's result, which the mock model repeats in its answer), and also
// runs the widget's renderer on hostile strings in the page; the SSE parser test feeds the
// widget's own parser crafted byte chunks in the page.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';

import { launchBrowser, screenshot, readTree, startProxy, startHub } from './harness.mjs';
import {
  startWorld, openPage, widgetReady, sendMessage, readLastAssistant, waitForStatus, waitForWords,
  focused, mockAnswer, lastAssistant, waitForWarning, SITE_KEY,
} from './widget-helpers.mjs';

let world;
let browser;

before(async () => {
  [world, browser] = await Promise.all([startWorld(), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  await world?.stop();
});

/** Opens the customer's page (fresh storage), waits for the widget and opens it. */
async function customerPage(query = '', contextOptions) {
  const { context, page } = await openPage(browser, `${world.site.url}/${query}`, contextOptions);
  await widgetReady(page);
  return { context, page };
}

async function openWidget(page) {
  await page.locator('switchboard-widget .launcher').click();
  await page.locator('switchboard-widget [role=dialog]').waitFor({ state: 'visible' });
}

test('the widget streams an answer token by token under the page\'s strict CSP', async () => {
  const { context, page } = await customerPage();
  await page.evaluate(() => { window.__messages = []; window.Switchboard.on('message', (m) => window.__messages.push(m)); });
  await openWidget(page);
  await sendMessage(page, 'When are you open? [mock:delay_ms=70]');

  // Record every state the answer's bubble goes through while it streams.
  await page.evaluate(() => {
    const log = document.querySelector('switchboard-widget').shadowRoot.querySelector('[role=log]');
    window.__states = [];
    new MutationObserver(() => {
      const m = [...log.querySelectorAll('.msg.assistant')].pop();
      const text = m.querySelector('.bubble').textContent;
      if (m.dataset.status === 'streaming' && text && text !== window.__states[window.__states.length - 1]) window.__states.push(text);
    }).observe(log, { childList: true, subtree: true, characterData: true });
  });
  await waitForWords(page, 3);
  await screenshot(page, 'widget-streaming');
  const done = await waitForStatus(page, 'complete');
  const states = await page.evaluate(() => window.__states);
  assert.ok(states.length >= 3, `at least three growing states, saw ${states.length}`);
  for (let i = 1; i < states.length; i++) assert.ok(states[i].startsWith(states[i - 1].trim()), 'each state extends the previous');
  assert.equal(done.text.trim(), mockAnswer(24));
  await screenshot(page, 'widget-answer');

  const messages = await page.evaluate(() => window.__messages);
  assert.deepEqual(messages.map((m) => [m.role, m.status]), [['user', 'complete'], ['assistant', 'complete']]);
  assert.equal(messages[1].content, mockAnswer(24));
  assert.deepEqual(await page.evaluate(() => window.__violations), [], 'no CSP violation');
  await context.close();
});

test('stop keeps the partial answer, and it is still there, marked stopped, after a reload', async () => {
  const { context, page } = await customerPage();
  await openWidget(page);
  await sendMessage(page, 'Tell me everything [mock:delay_ms=150] [mock:chunks=60]');
  await waitForWords(page, 3);
  const stop = page.locator('switchboard-widget .stop');
  await stop.click();
  const stopped = await waitForStatus(page, 'stopped');
  assert.ok(stopped.text.trim().length > 0, 'the partial answer stays');
  assert.ok(stopped.text.trim().split(/\s+/).length < 60, 'it is only part of the answer');
  assert.match(stopped.meta, /Stopped/);
  assert.ok(await page.locator('switchboard-widget .send').isVisible(), 'send is back');

  await page.reload();
  await widgetReady(page);
  const after = await readLastAssistant(page);
  assert.equal(after.status, 'stopped');
  assert.equal(after.text.trim(), stopped.text.trim());
  await context.close();
});

test('a reload mid-answer resumes it and finishes it with no duplicated text', async () => {
  const { context, page } = await customerPage();
  await openWidget(page);
  await sendMessage(page, 'A longer answer please [mock:delay_ms=90] [mock:chunks=30]');
  await waitForWords(page, 6);
  const resumes = [];
  page.on('request', (r) => { if (r.url().endsWith('/stream')) resumes.push(r.headers()['last-event-id'] || null); });
  await page.reload();
  await widgetReady(page);
  assert.ok(await page.locator('switchboard-widget [role=dialog]').isVisible(), 'the window reopens as it was');
  const done = await waitForStatus(page, 'complete');
  assert.equal(done.text.trim(), mockAnswer(30));
  assert.equal(resumes.length, 1, 'one resume request');
  assert.match(resumes[0] || '', /:\d+$/, 'it resumed after the last event it had (Last-Event-ID)');
  const users = await page.locator('switchboard-widget .msg.user').count();
  assert.equal(users, 1, 'the question shows once');
  await context.close();
});

test('a dropped connection reconnects by itself and the answer completes exactly once', async () => {
  const proxy = await startProxy(world.hub.url);
  try {
    const { context, page } = await customerPage(`?hub=${encodeURIComponent(proxy.url)}`);
    const resumes = [];
    page.on('request', (r) => { if (r.url().endsWith('/stream')) resumes.push(r.headers()['last-event-id']); });
    await openWidget(page);
    await sendMessage(page, 'Through a flaky network [mock:delay_ms=80] [mock:chunks=30]');
    await waitForWords(page, 5);
    proxy.cut();
    const done = await waitForStatus(page, 'complete');
    assert.equal(done.text.trim(), mockAnswer(30));
    assert.ok(resumes.length >= 1, 'it resumed');
    assert.match(resumes[0], /:\d+$/, 'with Last-Event-ID');
    await context.close();
  } finally {
    await proxy.stop();
  }
});

test('an upstream failure is shown clearly and Retry sends the message again', async () => {
  const { context, page } = await customerPage();
  await openWidget(page);
  // The hub's model client repeats a 500 three times itself (and chat.retries is 0 here): four
  // failures fail the answer, and Retry's request is the fifth.
  await sendMessage(page, 'Is Dr. Okafor in today? [mock:fail_first=4 retry-test]');
  const failed = await waitForStatus(page, 'failed');
  assert.match(failed.meta, /Not finished/);
  await screenshot(page, 'widget-error');
  await lastAssistant(page).getByRole('button', { name: 'Retry' }).click();
  const done = await waitForStatus(page, 'complete');
  assert.equal(done.text.trim(), mockAnswer(24));
  await context.close();
});

test('the launcher, dialog, log, focus trap and Esc are accessible', async () => {
  const { context, page } = await customerPage();
  const launcher = page.locator('switchboard-widget .launcher');
  assert.equal(await launcher.evaluate((el) => el.tagName), 'BUTTON');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false');
  const controls = await launcher.getAttribute('aria-controls');
  const dialog = page.locator(`switchboard-widget #${controls}`);
  assert.equal(await dialog.getAttribute('role'), 'dialog');
  assert.ok(await dialog.getAttribute('aria-label'));
  assert.equal(await dialog.isVisible(), false);

  await launcher.focus();
  await page.keyboard.press('Enter');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'true');
  assert.ok(await dialog.isVisible());
  assert.equal(await focused(page), 'textarea#sb-input.', 'focus moves into the window');
  const input = page.locator('switchboard-widget textarea');
  assert.equal(await input.evaluate((el) => el.labels[0]?.textContent), 'Message', 'the input has a label');
  assert.equal(await page.locator('switchboard-widget [role=log]').count(), 1);

  // Tab and Shift+Tab never leave the window.
  const seen = new Set();
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Tab');
    const f = await focused(page);
    assert.ok(!f.startsWith('outside'), `Tab ${i} stays in the widget (${f})`);
    assert.ok(await page.evaluate(() => {
      const r = document.querySelector('switchboard-widget').shadowRoot;
      return r.getElementById('sb-window').contains(r.activeElement);
    }), `Tab ${i} stays in the window`);
    seen.add(f);
  }
  assert.ok(seen.size >= 3, 'Tab visits the window\'s controls');
  for (let i = 0; i < 8; i++) {
    await page.keyboard.press('Shift+Tab');
    assert.ok(!(await focused(page)).startsWith('outside'), 'Shift+Tab stays in the widget');
  }

  // A finished answer is announced once by the live region; the streaming bubble is in none.
  await input.focus();
  await sendMessage(page, 'Hello [mock:delay_ms=40]');
  await waitForWords(page, 1);
  const liveAncestors = await lastAssistant(page).evaluate((el) => {
    const out = [];
    for (let n = el; n && n.nodeType === 1; n = n.parentNode) {
      const live = n.getAttribute('aria-live');
      if (live && live !== 'off') out.push(n.className);
    }
    return out;
  });
  assert.deepEqual(liveAncestors, [], 'no live region around the streaming answer');
  await waitForStatus(page, 'complete');
  const live = page.locator('switchboard-widget [aria-live=polite]');
  await page.waitForFunction(() => /mock model/.test(document.querySelector('switchboard-widget').shadowRoot.querySelector('[aria-live=polite]').textContent));
  assert.match(await live.textContent(), /^Assistant: This is the mock model/);

  await page.keyboard.press('Escape');
  assert.equal(await launcher.getAttribute('aria-expanded'), 'false');
  assert.equal(await dialog.isVisible(), false);
  assert.equal(await focused(page), 'button.launcher', 'focus returns to the launcher');
  await context.close();
});

test('Markdown from the model is rendered with safe nodes only', async () => {
  const { context, page } = await customerPage();
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));
  await openWidget(page);
  // The mock model calls houseTip, whose result (hostile Markdown) it repeats in its answer.
  await sendMessage(page, 'Any tip? [mock:tool=houseTip {}]');
  await waitForStatus(page, 'complete');
  const bubble = lastAssistant(page).locator('.bubble');
  const shape = await bubble.evaluate((b) => ({
    strong: [...b.querySelectorAll('strong')].map((e) => e.textContent),
    em: [...b.querySelectorAll('em')].map((e) => e.textContent),
    code: [...b.querySelectorAll('p code')].map((e) => e.textContent),
    pre: [...b.querySelectorAll('pre code')].map((e) => e.textContent),
    items: [...b.querySelectorAll('ul li')].map((e) => e.textContent),
    links: [...b.querySelectorAll('a')].map((a) => ({ href: a.getAttribute('href'), rel: a.rel, target: a.target, text: a.textContent })),
    dangerous: b.querySelectorAll('img,script,iframe,object,[onerror],[onclick],b').length,
    text: b.textContent,
  }));
  await screenshot(page, 'widget-markdown');
  assert.deepEqual(shape.strong, ['twice a day']);
  assert.deepEqual(shape.em, ['floss']);
  assert.deepEqual(shape.code, ['tip-42']);
  assert.deepEqual(shape.pre, ['<b>not bold</b>']);
  assert.deepEqual(shape.items, ['first step', 'second step']);
  assert.equal(shape.dangerous, 0, 'no element from the model\'s markup');
  assert.match(shape.text, /<img src=x onerror="window.__pwned=1">/, 'markup shows as text');
  for (const l of shape.links) {
    assert.match(l.href, /^https:\/\//, `only safe links (${l.href})`);
    assert.equal(l.rel, 'noopener noreferrer nofollow');
    assert.equal(l.target, '_blank');
  }
  assert.deepEqual(shape.links.map((l) => l.text), ['our guide', 'tracker'], 'an image is a link, a javascript: link is text');
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.ok(!requested.some((u) => u.includes('attacker.example') || u.endsWith('/x')), 'no request to the image URLs');

  // The renderer itself, on strings a model could send.
  const direct = await page.evaluate(() => {
    const r = window.Switchboard.internals.renderMarkdown;
    const div = document.createElement('div');
    div.append(r('<svg onload=alert(1)> [a](javascript:alert(1)) [b](data:text/html,x) [c](/relative) [d](mailto:a@b.example) **[e](http://ok.example)** 1. one\n2. two\n\n3) x'));
    return { html: div.innerHTML, links: [...div.querySelectorAll('a')].map((a) => a.getAttribute('href')), ol: div.querySelectorAll('ol li').length };
  });
  assert.deepEqual(direct.links, ['mailto:a@b.example', 'http://ok.example/']);
  assert.ok(!/<svg/i.test(direct.html) && direct.html.includes('&lt;svg onload=alert(1)&gt;'), direct.html);
  await context.close();
});

test('the SSE parser handles split UTF-8, CRLF and CR, several events per chunk and comments', async () => {
  const { context, page } = await customerPage();
  const result = await page.evaluate(() => {
    const { createSseParser } = window.Switchboard.internals;
    const run = (chunks) => {
      const events = [];
      const p = createSseParser((e) => events.push(e));
      chunks.forEach((c) => p.push(c));
      p.end();
      return events;
    };
    const enc = new TextEncoder();
    const stream = ': keep-alive\r\nid: r1:1\r\nevent: delta\r\ndata: {"content":"héllo 👋 日本"}\r\n\r\n'
      + 'id: r1:2\revent: delta\rdata: line one\rdata: line two\r\r'
      + 'id: r1:3\nevent: done\ndata: {"finish_reason":"stop"}\n\n'
      + 'id: r1:4\nevent: delta\ndata: {"content":"cut"}\n'; // unfinished at the end: dropped
    const bytes = enc.encode(stream);
    const whole = run([bytes]);
    // Every byte its own chunk: UTF-8 sequences, CRLF pairs and events all split.
    const bytewise = run([...bytes].map((b) => new Uint8Array([b])));
    // Split right between CR and LF, and several events in one chunk.
    const cr = stream.indexOf('\r\n\r\n');
    const crlfSplit = run([enc.encode(stream.slice(0, cr + 1)), enc.encode(stream.slice(cr + 1))]);
    return { whole, bytewise, crlfSplit };
  });
  const expected = [
    { id: 'r1:1', event: 'delta', data: '{"content":"héllo 👋 日本"}' },
    { id: 'r1:2', event: 'delta', data: 'line one\nline two' },
    { id: 'r1:3', event: 'done', data: '{"finish_reason":"stop"}' },
  ];
  assert.deepEqual(result.whole, expected);
  assert.deepEqual(result.bytewise, expected);
  assert.deepEqual(result.crlfSplit, expected);
  await context.close();
});

test('the widget does not appear on an origin its key does not allow, nor with an unknown key', async () => {
  const { context, page } = await openPage(browser, `${world.other.url}/`);
  await waitForWarning(page, /not shown/);
  assert.equal(await page.locator('switchboard-widget').count(), 0, 'nothing rendered');
  assert.equal(await page.evaluate(() => window.__sbReady), undefined, 'never ready');

  await page.goto(`${world.site.url}/?site-key=nope`);
  await waitForWarning(page, /unknown_site_key/);
  assert.equal(await page.locator('switchboard-widget').count(), 0);
  await context.close();
});

test('the JS API opens, closes and toggles the window and reports its events', async () => {
  const { context, page } = await customerPage();
  const log = await page.evaluate(async () => {
    const events = [];
    const sb = window.Switchboard;
    const onOpen = () => events.push('open');
    await new Promise((r) => sb.on('ready', () => { events.push('ready'); r(); })); // late: called at once
    sb.on('open', onOpen).on('close', () => events.push('close'));
    sb.open();
    const openNow = document.querySelector('switchboard-widget').shadowRoot.querySelector('[role=dialog]').hidden === false;
    sb.close();
    sb.toggle();
    sb.off('open', onOpen);
    sb.toggle();
    sb.toggle();
    return { events, openNow, expanded: document.querySelector('switchboard-widget').shadowRoot.querySelector('.launcher').getAttribute('aria-expanded') };
  });
  assert.deepEqual(log.events, ['ready', 'open', 'close', 'open', 'close']);
  assert.equal(log.openNow, true);
  assert.equal(log.expanded, 'true');
  await context.close();
});

test('data attributes and CSS custom properties theme the widget', async () => {
  const q = new URLSearchParams({ position: 'left', theme: 'dark', title: 'Ask Riverside', welcome: 'Hello there! How can we help?', starters: 'Book a cleaning|Opening hours' });
  const { context, page } = await customerPage(`?${q}`);
  const launcher = page.locator('switchboard-widget .launcher');
  // --sb-accent comes from the customer's stylesheet on :root, through the shadow boundary.
  assert.equal(await launcher.evaluate((el) => getComputedStyle(el).backgroundColor), 'rgb(200, 40, 90)');
  const box = await launcher.boundingBox();
  assert.ok(box.x < 100, 'on the left');
  await openWidget(page);
  assert.equal(await page.locator('switchboard-widget header h2').textContent(), 'Ask Riverside');
  assert.equal(await page.locator('switchboard-widget [role=dialog]').getAttribute('aria-label'), 'Ask Riverside');
  assert.ok(await page.locator('switchboard-widget .sb.dark').count(), 'dark theme');
  assert.equal(await page.locator('switchboard-widget .welcome .bubble').textContent(), 'Hello there! How can we help?');
  const starters = page.locator('switchboard-widget .starters button');
  assert.deepEqual(await starters.allTextContents(), ['Book a cleaning', 'Opening hours']);
  await screenshot(page, 'widget-themed');
  await starters.first().click();
  await waitForStatus(page, 'complete');
  assert.equal(await page.locator('switchboard-widget .msg.user .bubble').textContent(), 'Book a cleaning');
  assert.equal(await page.locator('switchboard-widget .starters').isVisible(), false, 'starters leave once chatting');
  await context.close();
});

test('on a phone the window is a full-screen sheet with a 16 px input', async () => {
  // Reduced motion: the window's opening slide would otherwise be measured mid-way.
  const { context, page } = await customerPage('', { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, reducedMotion: 'reduce' });
  await page.evaluate(() => window.Switchboard.open());
  const dialog = page.locator('switchboard-widget [role=dialog]');
  await dialog.waitFor({ state: 'visible' });
  const box = await dialog.boundingBox();
  assert.deepEqual([box.x, box.y, box.width, box.height].map(Math.round), [0, 0, 390, 844]);
  const fontSize = await page.locator('switchboard-widget textarea').evaluate((el) => parseFloat(getComputedStyle(el).fontSize));
  assert.ok(fontSize >= 16, `input font ${fontSize}px`);
  await screenshot(page, 'widget-mobile');
  await page.locator('switchboard-widget header button[aria-label="Close chat"]').click();
  assert.equal(await dialog.isVisible(), false);
  await context.close();
});

test('going offline shows a banner and disables sending until the connection is back', async () => {
  const { context, page } = await customerPage();
  await openWidget(page);
  const banner = page.locator('switchboard-widget .banner');
  assert.equal(await banner.isVisible(), false);
  await context.setOffline(true);
  await banner.waitFor({ state: 'visible' });
  assert.match(await banner.textContent(), /offline/i);
  assert.equal(await page.locator('switchboard-widget .send').isDisabled(), true);
  await context.setOffline(false);
  await banner.waitFor({ state: 'hidden' });
  assert.equal(await page.locator('switchboard-widget .send').isDisabled(), false);
  await context.close();
});

test('a message over the hub\'s limit is capped by the input and refused by the hub with a clear notice', async () => {
  const { context, page } = await customerPage();
  await openWidget(page);
  const input = page.locator('switchboard-widget textarea');
  assert.equal(await input.getAttribute('maxlength'), '4000', 'the hub\'s limit, learned from the widget configuration');
  // Typing stops at the limit; a value set by script (or a hub with a lower limit than the
  // page knew) still reaches the hub, whose 422 must leave the text in place to shorten.
  const long = 'Please read this. '.repeat(240); // 4,320 characters; the hub takes 4,000
  await input.evaluate((el, v) => { el.value = v; el.dispatchEvent(new Event('input', { bubbles: true })); }, long);
  await input.press('Enter');
  const notice = page.locator('switchboard-widget .notice');
  await notice.waitFor();
  assert.match(await notice.textContent(), /too long/);
  assert.equal(await input.inputValue(), long.trim(), 'the text is kept to shorten');
  assert.equal(await page.locator('switchboard-widget .msg.user').count(), 0, 'nothing shows as sent');
  await context.close();
});

test('the demo page embeds the widget under the hub\'s CSP', async () => {
  const { context, page } = await openPage(browser, `${world.hub.url}/demo/`);
  await widgetReady(page);
  assert.match(await page.title(), /Riverside Dental/);
  await openWidget(page);
  assert.equal(await page.locator('switchboard-widget header h2').textContent(), 'Riverside Dental');
  assert.ok(await page.locator('switchboard-widget .starters button').count() >= 2, 'starter prompts');
  await page.locator('switchboard-widget .starters button').first().click();
  await waitForStatus(page, 'complete');
  await screenshot(page, 'widget-demo-page');
  assert.deepEqual(await page.evaluate(() => window.__violations), [], 'no CSP violation');
  assert.deepEqual(page.warnings, [], 'no console warning or failed load');
  await context.close();
});

/**
 * On a hub of its own with `chatToml` added to its [chat] table, a visitor's first message is
 * answered and its second refused; `check(page, notice)` looks at what the visitor is told.
 */
async function secondMessageRefused(chatToml, check) {
  const hub = await startHub({
    toml: `[chat]\nopenai_base_url = "${world.mock.baseUrl}"\n${chatToml}\n\n[[widgets]]\nsite_key = "${SITE_KEY}"\nallowed_origins = ["${world.site.origin}"]\n`,
  });
  try {
    const { context, page } = await customerPage(`?hub=${encodeURIComponent(hub.url)}`);
    await openWidget(page);
    await sendMessage(page, 'First [mock:chunks=1]');
    await waitForStatus(page, 'complete');
    await sendMessage(page, 'Second');
    const notice = page.locator('switchboard-widget .notice');
    await notice.waitFor();
    assert.equal(await page.locator('switchboard-widget .msg.user').last().getAttribute('data-status'), 'unsent');
    await check(page, await notice.textContent());
    await context.close();
  } finally {
    await hub.stop();
  }
}

test('a rate-limited visitor is told how long to wait', async () => {
  // A session bucket of one message.
  await secondMessageRefused('rate_session_per_minute = 1\nrate_session_burst = 1', async (page, notice) => {
    assert.match(notice, /try again in \d+ s/);
    assert.equal(await page.locator('switchboard-widget .send').isDisabled(), true);
  });
});

test("a visitor whose chat spent today's tokens is told to come back tomorrow, with no countdown", async () => {
  // Sessions may use one token a day: the first answer spends it.
  await secondMessageRefused('session_daily_tokens = 1', async (page, notice) => {
    assert.match(notice, /today's limit.*tomorrow/);
    assert.doesNotMatch(notice, /try again in/);
    assert.equal(await page.locator('switchboard-widget .send').isDisabled(), false, 'no lock-out until midnight');
  });
});

test('the widget script stays under 30 KB gzipped', () => {
  const size = gzipSync(readTree('web/widget/widget.js'), { level: 9 }).length;
  assert.ok(size <= 30 * 1024, `widget.js is ${size} bytes gzipped`);
});
