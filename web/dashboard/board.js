// The live board: every call the token may see that is not over, fed by the `calls` topic
// (snapshot of live calls with their last utterance and watchers, then `call.status`,
// `call.ended`, `transcript.final`, `presence`, `recording.ready`). Ended calls leave the board
// for a short "recently ended" list. The store lives for the whole session so the nav count
// and the board are current whichever view is open.

import { api, withQuery } from './api.js';
import { h, fill, emptyState, notice } from './dom.js';
import { maskNumber, shortId, speaker, isEnded, toMs } from './format.js';
import { callHref } from './router.js';
import { statusPill, durationEl, watchersEl, agoEl } from './ui.js';

const RECENT_MAX = 10;

export class CallsStore {
  constructor(socket) {
    this.live = new Map();
    /** Newest first. */
    this.ended = [];
    this.loaded = false;
    this.error = null;
    this.listeners = new Set();
    this.stop = socket.follow('calls', (m) => this.onMessage(m));
    this.loadRecent();
  }

  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  emit() { for (const fn of this.listeners) fn(this); }
  close() { this.stop(); this.listeners.clear(); }

  /** Seeds "recently ended" from history, so a fresh page is not empty there. */
  async loadRecent() {
    try {
      const { calls } = await api(withQuery('/api/calls', { status: 'ended', limit: RECENT_MAX }));
      for (const c of calls.reverse()) this.addEnded(c, false);
      this.emit();
    } catch { /* the board works without it */ }
  }

  onMessage(m) {
    if (m.kind === 'snapshot') {
      // After a reconnect that could not be replayed, calls that ended meanwhile are simply
      // absent from the snapshot: history knows how they ended.
      if (this.loaded) this.loadRecent();
      this.live.clear();
      for (const c of m.snapshot.calls || []) {
        if (isEnded(c)) this.addEnded(c, false); else this.live.set(c.id, c);
      }
      this.loaded = true;
      this.error = null;
    } else if (m.kind === 'event') {
      this.apply(m.event);
    } else if (m.kind === 'error') {
      this.error = m.message || 'Live calls are unavailable right now.';
    } else {
      return;
    }
    this.emit();
  }

  apply({ kind, data }) {
    switch (kind) {
      case 'call.status':
      case 'call.ended': {
        const call = data?.call;
        if (!call) return;
        const prev = this.live.get(call.id) || this.ended.find((c) => c.id === call.id);
        const merged = { ...prev, ...call, last_utterance: prev?.last_utterance ?? null, watchers: prev?.watchers ?? [] };
        if (kind === 'call.ended' || isEnded(call)) {
          this.live.delete(call.id);
          this.addEnded(merged, true);
        } else {
          this.live.set(call.id, merged);
        }
        return;
      }
      case 'transcript.final': {
        const c = this.find(data.call_id);
        if (c) c.last_utterance = { id: data.segment_id, role: data.role, text: data.text, spoken_at: data.spoken_at };
        return;
      }
      case 'presence': {
        const c = this.find(data.call_id);
        if (c) c.watchers = data.watchers || [];
        return;
      }
      case 'recording.ready': {
        const c = this.find(data.call_id);
        if (c) c.recording_ready = true;
        return;
      }
      default:
    }
  }

  find(id) { return this.live.get(id) || this.ended.find((c) => c.id === id); }

  addEnded(call, front) {
    const i = this.ended.findIndex((c) => c.id === call.id);
    if (i >= 0) this.ended[i] = { ...this.ended[i], ...call };
    else if (front) this.ended.unshift(call);
    else this.ended.push(call);
    this.ended.sort((a, b) => (toMs(b.ended_at) ?? toMs(b.created_at) ?? 0) - (toMs(a.ended_at) ?? toMs(a.created_at) ?? 0));
    this.ended.length = Math.min(this.ended.length, RECENT_MAX);
  }

  /** Live calls, newest first. */
  liveCalls() {
    return [...this.live.values()].sort((a, b) => (toMs(b.created_at) ?? 0) - (toMs(a.created_at) ?? 0));
  }
}

export function mountBoard(el, _route, { calls }) {
  const liveList = h('ul.board', { attrs: { 'aria-label': 'Live calls' } });
  const liveStatus = h('div.board-status');
  const endedList = h('ul.recent', { attrs: { 'aria-label': 'Recently ended calls' } });
  const count = h('span.heading-count');
  fill(el,
    h('div.view-head', h('h1', 'Live calls ', count), h('a.quiet-link', { href: '#/history' }, 'Search history →')),
    liveStatus,
    liveList,
    h('h2', 'Recently ended'),
    endedList);

  const cards = new Map();
  const render = () => {
    const live = calls.liveCalls();
    count.textContent = calls.loaded ? `(${live.length})` : '';
    if (calls.error) fill(liveStatus, notice(calls.error, 'error'));
    else if (!calls.loaded) fill(liveStatus, notice('Loading live calls…'));
    else if (!live.length) fill(liveStatus, emptyState('No live calls right now.', 'A call appears here the moment its first webhook reaches the hub.'));
    else fill(liveStatus);

    // Keyed: a card keeps its element (and keyboard focus) while its content changes.
    const seen = new Set();
    live.forEach((call, i) => {
      seen.add(call.id);
      let li = cards.get(call.id);
      if (!li) {
        li = h('li.call-card', { dataset: { callId: call.id } }, h('a.card-link', { href: callHref(call.id) }));
        cards.set(call.id, li);
      }
      fill(li.firstChild, ...cardContent(call));
      if (liveList.children[i] !== li) liveList.insertBefore(li, liveList.children[i] || null);
    });
    for (const [id, li] of cards) if (!seen.has(id)) { li.remove(); cards.delete(id); }

    fill(endedList, calls.ended.length
      ? calls.ended.map((c) => h('li.recent-row', { dataset: { callId: c.id } }, h('a', { href: callHref(c.id) },
        h('span.recent-number', maskNumber(c.customer_number)),
        h('span.recent-reason', c.ended_reason || 'ended'),
        durationEl(c),
        c.ended_at ? agoEl(c.ended_at) : null)))
      : h('li.muted', 'No call has ended recently.'));
  };
  const off = calls.subscribe(render);
  render();
  return () => off();
}

function cardContent(call) {
  const u = call.last_utterance;
  return [
    h('div.card-top', statusPill(call.status), durationEl(call)),
    h('div.card-number', maskNumber(call.customer_number)),
    h('div.card-assistant', { title: call.assistant_id || '' },
      call.assistant_name || (call.assistant_id ? `Assistant ${shortId(call.assistant_id)}` : 'No assistant id')),
    h('p.card-utterance', u ? [h('span.who', `${speaker(u.role)}: `), u.text] : h('span.muted', 'Nothing said yet')),
    h('div.card-foot', watchersEl(call.watchers)),
  ];
}
