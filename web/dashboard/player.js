// The recording of an ended call, synced with its transcript. The file needs the bearer token
// (GET /api/calls/{id}/recording?kind=…), which an <audio src> cannot send, so it is fetched
// and played from a blob: URL (the dashboard's CSP allows `media-src blob:`).
//
// Timing: a segment's `spoken_at` is when VAPI sent its final — the end of the utterance — so a
// line is taken to run from the previous line's end (the call's start for the first) to its
// own `spoken_at`, measured from the call's `started_at` (when the recording starts). Clicking a
// line seeks to its start and plays; while playing, the line under the playhead is highlighted.

import { api, describe } from './api.js';
import { h, fill, notice } from './dom.js';
import { toMs } from './format.js';

const AUDIO_KINDS = ['mono', 'stereo', 'assistant', 'customer'];

/**
 * Mounts the player into `el`. Returns `{ destroy }`. `recordings` are the call detail's
 * (`kind`, `state`, `reason`, `content_type`, `size_bytes`).
 */
export function mountPlayer(el, { call, recordings = [], transcript }) {
  const ready = recordings.filter((r) => r.state === 'ready' && AUDIO_KINDS.includes(r.kind))
    .sort((a, b) => AUDIO_KINDS.indexOf(a.kind) - AUDIO_KINDS.indexOf(b.kind));
  let url = null;
  let destroyed = false;

  if (!recordings.length) {
    fill(el, h('p.muted', 'No recording was reported for this call.'));
    return { destroy() {} };
  }
  if (!ready.length) {
    fill(el, h('p.muted', 'The recording is not available yet.'), h('ul.recording-states', recordings.map((r) =>
      h('li', `${r.kind}: ${r.state}${r.reason ? ` — ${r.reason}` : ''}`))));
    return { destroy() {} };
  }

  const audio = h('audio.player', { controls: true, preload: 'auto', attrs: { 'aria-label': 'Call recording' } });
  const status = h('p.player-status.muted', { attrs: { role: 'status' } }, 'Loading the recording…');
  const download = h('a.quiet-link', { hidden: true }, 'Download');
  const picker = ready.length > 1
    ? h('select', { attrs: { 'aria-label': 'Recording track' }, onchange: (e) => load(e.target.value) },
      ready.map((r) => h('option', { value: r.kind }, r.kind)))
    : null;
  fill(el, h('div.player-row', audio, picker, download), status);

  const start = toMs(call.started_at) ?? toMs(call.created_at);
  /** A line's start in the recording, in seconds (see the timing note above). */
  const offset = (seg) => {
    if (start === null) return null;
    const segs = transcript.segments();
    const i = segs.findIndex((s) => String(s.id) === String(seg.id));
    if (i < 0) return null;
    const from = i === 0 ? start : toMs(segs[i - 1].spoken_at);
    return from === null ? null : Math.max(0, (from - start) / 1000);
  };
  transcript.makeSeekable(offset, (t) => {
    if (t === null || !audio.src) return;
    audio.currentTime = t;
    audio.play().catch(() => { /* the user can press play */ });
  });
  audio.addEventListener('timeupdate', () => {
    const t = audio.currentTime;
    let current = null;
    for (const seg of transcript.segments()) {
      const o = offset(seg);
      if (o === null || o > t) break;
      current = seg.id;
    }
    transcript.highlight(current);
  });

  async function load(kind) {
    status.hidden = false;
    status.textContent = 'Loading the recording…';
    try {
      const res = await api(`/api/calls/${encodeURIComponent(call.id)}/recording?kind=${encodeURIComponent(kind)}`, { raw: true });
      const blob = await res.blob();
      if (destroyed) return;
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(blob);
      audio.src = url;
      download.href = url;
      download.download = `call-${call.id}-${kind}.${extension(blob.type)}`;
      download.hidden = false;
      status.hidden = true;
    } catch (e) {
      if (destroyed) return;
      fill(status, notice(`The recording could not be loaded: ${describe(e)}`, 'error'));
    }
  }
  load(ready[0].kind);

  return {
    destroy() {
      destroyed = true;
      audio.pause();
      if (url) URL.revokeObjectURL(url);
    },
  };
}

function extension(type) {
  if (/wav/.test(type)) return 'wav';
  if (/mpeg|mp3/.test(type)) return 'mp3';
  if (/ogg/.test(type)) return 'ogg';
  if (/mp4|m4a|aac/.test(type)) return 'm4a';
  return 'bin';
}
