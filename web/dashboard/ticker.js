// One timer for every clock on the page: elements marked `data-tick-start` (a running call's
// duration) or `data-tick-ago` (a relative time) are refreshed each second, so views do not
// each run their own interval or re-render to make a number move.

import { duration, ago, callSeconds } from './format.js';

export function startTicker() {
  setInterval(tick, 1000);
}

export function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll('[data-tick-start]')) {
    const end = el.dataset.tickEnd ? Number(el.dataset.tickEnd) : null;
    el.textContent = duration(callSeconds({ started_at: Number(el.dataset.tickStart), ended_at: end }, now));
  }
  for (const el of document.querySelectorAll('[data-tick-ago]')) {
    el.textContent = ago(Number(el.dataset.tickAgo), now);
  }
}
