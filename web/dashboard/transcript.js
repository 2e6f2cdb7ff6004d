// A call's transcript as it is spoken. Finals (stored segments, each with an `id`) go into an
// ordered log; a snapshot and the first live events may overlap, so a final already shown is
// recognised by its id and skipped. Each speaker's line in progress (`transcript.partial`) is
// one element below the log, replaced in place as the words come, and removed when that
// speaker's final arrives. With a recording loaded, lines become seek targets (player.js).

import { h } from './dom.js';
import { clock, speaker, toMs, duration } from './format.js';

export class Transcript {
  constructor() {
    /** id → { seg, el } */
    this.finals = new Map();
    /** role → element */
    this.partials = new Map();
    this.log = h('ol.transcript', { attrs: { role: 'log', 'aria-label': 'Transcript', 'aria-live': 'polite' } });
    this.partialList = h('ol.transcript.partials', { attrs: { 'aria-label': 'Being spoken' } });
    this.empty = h('p.muted.transcript-empty', 'Nothing has been said yet.');
    this.el = h('div.transcript-box', this.empty, this.log, this.partialList);
    this.seekOffset = null;
    this.onSeek = null;
    this.current = null;
  }

  /** Starts over from a snapshot: stored segments and each speaker's line in progress. */
  reset(segments = [], partials = []) {
    this.finals.clear();
    this.current = null;
    this.log.replaceChildren();
    for (const p of this.partials.values()) p.remove();
    this.partials.clear();
    for (const s of segments) this.addFinal(s);
    for (const p of partials) this.setPartial(p.role, p.text);
    this.updateEmpty();
  }

  /** Adds a final segment in spoken order; false when it was already there. */
  addFinal(seg) {
    const id = seg.id ?? seg.segment_id;
    this.clearPartial(seg.role);
    if (id === undefined || id === null || this.finals.has(String(id))) return false;
    const s = { id, role: seg.role, text: seg.text, spoken_at: seg.spoken_at };
    const el = this.lineEl(s);
    // Usually the newest: walk back from the end to the first line spoken before it.
    const items = [...this.finals.values()];
    let before = null;
    for (let i = items.length - 1; i >= 0; i--) {
      if (compare(items[i].seg, s) <= 0) break;
      before = items[i].el;
    }
    this.log.insertBefore(el, before);
    this.finals.set(String(id), { seg: s, el });
    if (before) this.reorderMap();
    this.updateEmpty();
    this.refreshOffsets();
    return true;
  }

  setPartial(role, text) {
    if (!text) { this.clearPartial(role); return; }
    let el = this.partials.get(role);
    if (!el) {
      el = h('li.line.partial', { dataset: { role } }, h('span.who', speaker(role)), h('p.text'));
      el.classList.add(`role-${roleClass(role)}`);
      this.partials.set(role, el);
      this.partialList.append(el);
    }
    el.querySelector('.text').textContent = text;
    this.updateEmpty();
  }

  clearPartial(role) {
    const el = this.partials.get(role);
    if (el) { el.remove(); this.partials.delete(role); }
  }

  clearPartials() {
    for (const role of [...this.partials.keys()]) this.clearPartial(role);
  }

  /** Finals in spoken order. */
  segments() { return [...this.finals.values()].map((f) => f.seg); }

  /**
   * Makes lines seek targets: `offset(seg)` gives a line's start in the recording (seconds),
   * `onSeek(seconds)` moves the player there.
   */
  makeSeekable(offset, onSeek) {
    this.seekOffset = offset;
    this.onSeek = onSeek;
    this.log.classList.add('seekable');
    this.refreshOffsets();
  }

  /** Marks the line being heard (null for none) and keeps it in view. */
  highlight(id) {
    const key = id === null || id === undefined ? null : String(id);
    if (key === this.current) return;
    if (this.current !== null) this.finals.get(this.current)?.el.classList.remove('current');
    this.current = key;
    const f = key === null ? null : this.finals.get(key);
    if (f) {
      f.el.classList.add('current');
      f.el.scrollIntoView?.({ block: 'nearest' });
    }
  }

  // ---- internals ---------------------------------------------------------------------------

  lineEl(s) {
    const el = h('li.line', { dataset: { segmentId: String(s.id), role: s.role } },
      h('span.who', speaker(s.role)),
      h('time.at', { dateTime: s.spoken_at || '', title: s.spoken_at || '' }, clock(s.spoken_at)),
      h('p.text', s.text));
    el.classList.add(`role-${roleClass(s.role)}`);
    el.addEventListener('click', (e) => {
      if (!this.onSeek || e.target.closest('button')) return;
      const t = this.offsetOf(s);
      if (t !== null) this.onSeek(t);
    });
    return el;
  }

  offsetOf(seg) {
    return this.seekOffset ? this.seekOffset(seg) : null;
  }

  /** Adds or updates each line's "play from here" button once lines can seek. */
  refreshOffsets() {
    if (!this.seekOffset) return;
    for (const { seg, el } of this.finals.values()) {
      const t = this.offsetOf(seg);
      let btn = el.querySelector('button.seek');
      if (t === null) { btn?.remove(); continue; }
      if (!btn) {
        btn = h('button.seek.quiet', { type: 'button', onclick: () => this.onSeek?.(this.offsetOf(seg)) });
        el.prepend(btn);
      }
      btn.textContent = duration(t);
      btn.setAttribute('aria-label', `Play from ${duration(t)}: ${speaker(seg.role)}`);
    }
  }

  reorderMap() {
    const entries = [...this.finals.entries()].sort((a, b) => compare(a[1].seg, b[1].seg));
    this.finals = new Map(entries);
  }

  updateEmpty() {
    this.empty.hidden = this.finals.size > 0 || this.partials.size > 0;
  }
}

/** Spoken order: time, then id (ids grow in the order the hub stored them). */
function compare(a, b) {
  const ta = toMs(a.spoken_at) ?? 0;
  const tb = toMs(b.spoken_at) ?? 0;
  if (ta !== tb) return ta - tb;
  const ia = Number(a.id);
  const ib = Number(b.id);
  if (Number.isFinite(ia) && Number.isFinite(ib)) return ia - ib;
  return String(a.id).localeCompare(String(b.id));
}

function roleClass(role) {
  return role === 'assistant' || role === 'bot' ? 'assistant' : role === 'user' || role === 'customer' ? 'user' : 'other';
}
