// The hub's HTTP API with the supervisor's bearer token. Errors come back as
// `{"error":{"code","message"}}`; they are thrown as ApiError so views can show the message and
// branch on the status (401 signs out, 403 means "not an admin", 404 "not here").

import { session } from './session.js';

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
    this.body = body;
  }
}

/** Listeners told when any request answers 401 (the token was revoked). */
const unauthorizedListeners = new Set();
export function onUnauthorized(fn) { unauthorizedListeners.add(fn); }

/** Adds query parameters, leaving out empty ones. */
export function withQuery(path, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * One request. `body` is sent as JSON; `raw: true` returns the Response (for blobs); otherwise
 * the parsed JSON (or null for an empty body). `token` overrides the session's (sign-in check).
 */
export async function api(path, { method = 'GET', body, raw = false, token, signal } = {}) {
  const headers = { authorization: `Bearer ${token ?? session.token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'The hub could not be reached.');
  }
  if (res.status === 401 && token === undefined) for (const fn of unauthorizedListeners) fn();
  if (!res.ok) {
    let parsed = null;
    try { parsed = await res.json(); } catch { /* not JSON */ }
    const err = parsed?.error || {};
    throw new ApiError(res.status, err.code || `http_${res.status}`, err.message || `${res.status} ${res.statusText}`, parsed);
  }
  if (raw) return res;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

/** A user-facing line for any failure. */
export function describe(e) {
  if (e instanceof ApiError) {
    if (e.status === 0) return e.message;
    return `${e.message} (${e.status}${e.code && !e.code.startsWith('http_') ? ` ${e.code}` : ''})`;
  }
  return e?.message || String(e);
}
