// Human-readable times, durations, numbers and money. Times come from the API as RFC 3339
// strings (or milliseconds for presence); everything is shown in the viewer's locale and zone,
// with the exact time in a tooltip where it is a relative one.

const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' });
const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function toMs(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'number') return t;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/** "12 s ago", "3 min ago", "yesterday". */
export function ago(t, now = Date.now()) {
  const ms = toMs(t);
  if (ms === null) return '—';
  const s = Math.round((ms - now) / 1000);
  const abs = Math.abs(s);
  if (abs < 45) return abs < 5 ? 'just now' : rtf.format(s, 'second');
  if (abs < 45 * 60) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 22 * 3600) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

export function clock(t) {
  const ms = toMs(t);
  return ms === null ? '—' : timeFmt.format(ms);
}

export function dateTime(t) {
  const ms = toMs(t);
  return ms === null ? '—' : dateTimeFmt.format(ms);
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.floor(seconds);
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** The running or final length of a call, in seconds. */
export function callSeconds(call, now = Date.now()) {
  if (call.duration_seconds !== null && call.duration_seconds !== undefined) return call.duration_seconds;
  const start = toMs(call.started_at) ?? toMs(call.created_at);
  if (start === null) return null;
  const end = toMs(call.ended_at) ?? now;
  return Math.max(0, (end - start) / 1000);
}

/**
 * A phone number as a wallboard may show it: the country code and the last four digits
 * (`+1 ••• ••• 0142`). Anything that is not an E.164 number keeps its first and last characters.
 */
export function maskNumber(n) {
  if (!n) return 'unknown number';
  const s = String(n).trim();
  const digits = s.replace(/[^\d]/g, '');
  if (/^\+?\d[\d\s().-]{6,}$/.test(s) && digits.length >= 8) {
    const last = digits.slice(-4);
    if (digits.length === 11 && digits.startsWith('1')) return `+1 ••• ••• ${last}`;
    return `+${digits.slice(0, 2)} ••• ${last}`;
  }
  if (s.length <= 6) return '•'.repeat(s.length);
  return `${s.slice(0, 4)}•••${s.slice(-3)}`;
}

export function money(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  return `$${n < 1 ? n.toFixed(4) : n.toFixed(2)}`;
}

export function ms(v) {
  if (v === null || v === undefined || !Number.isFinite(Number(v))) return '—';
  const n = Number(v);
  return n >= 1000 ? `${(n / 1000).toFixed(2)} s` : `${Math.round(n)} ms`;
}

/** Ids are long; show a recognisable head. */
export function shortId(id, n = 8) {
  if (!id) return '—';
  const s = String(id);
  return s.length > n + 1 ? `${s.slice(0, n)}…` : s;
}

export function speaker(role) {
  if (role === 'assistant' || role === 'bot' || role === 'AI') return 'AI';
  if (role === 'user' || role === 'customer') return 'Caller';
  return role ? String(role) : '—';
}

/** Call statuses grouped for colour: live, waiting, ended. */
export function statusTone(status) {
  switch (status) {
    case 'in-progress': return 'live';
    case 'ringing': case 'queued': case 'forwarding': case 'scheduled': return 'waiting';
    case 'ended': return 'ended';
    default: return 'other';
  }
}

export function isEnded(call) {
  return call && (call.status === 'ended' || !!call.ended_at);
}
