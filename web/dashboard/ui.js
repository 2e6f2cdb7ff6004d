// Small pieces several views share: status pills, running durations, relative times, the
// watchers of a call.

import { h } from './dom.js';
import { toMs, duration, callSeconds, ago, dateTime, statusTone, isEnded } from './format.js';

export function statusPill(status) {
  return h('span.pill', { class: `tone-${statusTone(status)}` }, status || 'unknown');
}

/** A call's duration: ticking while it runs (see ticker.js), fixed once it ended. */
export function durationEl(call) {
  const start = toMs(call.started_at) ?? toMs(call.created_at);
  const el = h('span.duration', { attrs: { 'aria-label': 'duration' } }, duration(callSeconds(call)));
  if (start !== null && !isEnded(call)) el.dataset.tickStart = String(start);
  return el;
}

/** "3 min ago", kept current, with the exact time as a tooltip. */
export function agoEl(t) {
  const ms = toMs(t);
  const el = h('time', { dateTime: ms === null ? '' : new Date(ms).toISOString(), title: dateTime(ms) }, ago(ms));
  if (ms !== null) el.dataset.tickAgo = String(ms);
  return el;
}

/** Who is watching: initials in a row, names for assistive tech and as tooltips. */
export function watchersEl(watchers = []) {
  if (!watchers?.length) return h('span.watchers.none', 'nobody watching');
  const names = watchers.map((w) => w.name || 'someone');
  return h('span.watchers', { attrs: { 'aria-label': `Watching: ${names.join(', ')}` }, title: `Watching: ${names.join(', ')}` },
    watchers.slice(0, 4).map((w) => h('span.avatar', { class: w.role === 'admin' ? 'admin' : '', attrs: { 'aria-hidden': 'true' } }, initials(w.name))),
    watchers.length > 4 ? h('span.more', `+${watchers.length - 4}`) : null,
    h('span.watchers-names', names.join(', ')));
}

function initials(name) {
  const words = String(name || '?').replace(/[^\p{L}\p{N}\s]/gu, ' ').trim().split(/\s+/).filter(Boolean);
  if (!words.length) return '?';
  return (words.length === 1 ? words[0].slice(0, 2) : words[0][0] + words[words.length - 1][0]).toUpperCase();
}

/** A definition list from `[label, value]` pairs, skipping empty values. */
export function facts(pairs) {
  return h('dl.facts', pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', k), h('dd', v)]));
}
