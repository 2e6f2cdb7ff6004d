// `switchboard demo` as a newcomer runs it: within ten seconds of the command the dashboard it
// printed shows live calls, and the widget on the demo's customer site (another origin) streams
// an answer. The screenshots taken here are the README's.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, launchBrowser, screenshot } from './harness.mjs';
import { openPage, widgetReady, sendMessage, readLastAssistant, waitForStatus } from './widget-helpers.mjs';

let demo;
let browser;
let startedAt;

before(async () => {
  startedAt = Date.now();
  [demo, browser] = await Promise.all([startDemo(), launchBrowser()]);
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

test('the dashboard the demo prints shows live calls within ten seconds of the command', async () => {
  const { context, page } = await openPage(browser, demo.dashboardUrl, { viewport: { width: 1280, height: 800 } });
  await page.waitForSelector('.call-card', { timeout: Math.max(1000, 10000 - (Date.now() - startedAt)) });
  assert.ok(Date.now() - startedAt <= 10000, `a live call was on the board ${Date.now() - startedAt} ms after the start`);
  assert.doesNotMatch(page.url(), /token=/, 'the token left the address bar');
  // Let a few lines of conversation arrive for the picture.
  await page.waitForFunction(() => [...document.querySelectorAll('.call-card')].some((c) => c.querySelector('.card-utterance .who')), null, { timeout: 15000 }).catch(() => {});
  await screenshot(page, 'demo-dashboard');
  const cards = await page.locator('.call-card').count();
  assert.ok(cards >= 1, `${cards} live calls`);
  await context.close();
});

test('the widget on the demo site streams the clinic\'s answer', async () => {
  const { context, page } = await openPage(browser, demo.demoUrl, { viewport: { width: 1280, height: 800 } });
  await widgetReady(page);
  await page.locator('switchboard-widget .launcher').click();
  await sendMessage(page, 'When are you open on Saturday?');
  await page.waitForFunction(() => {
    const root = document.querySelector('switchboard-widget').shadowRoot;
    const all = root.querySelectorAll('.msg.assistant:not(.welcome)');
    return all.length > 0 && all[all.length - 1].textContent.length > 10;
  }, null, { timeout: 10000 });
  await screenshot(page, 'demo-widget-streaming');
  await waitForStatus(page, 'complete', 20000);
  const answer = await readLastAssistant(page);
  assert.match(answer.text, /Saturdays from 9 am to 1 pm/);
  assert.deepEqual(page.warnings.filter((w) => !/favicon/.test(w)), [], 'no CSP violation or script error on the customer site');
  await screenshot(page, 'demo-widget');
  await context.close();
});
