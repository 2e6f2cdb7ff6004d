// Who is signed in. The token arrives in the URL fragment (`#token=sb_…`, as `switchboard demo`
// prints it: fragments are not sent to servers or written to access logs) or through the
// sign-in form. It is kept in sessionStorage — per tab, gone when the tab closes — and removed
// from the address bar at once so it does not end up in history, bookmarks or screenshots.

const KEY = 'switchboard.token';

export const session = {
  token: null,
  /** Learned after sign-in: 'admin' or 'supervisor'. */
  role: null,
};

/** Takes a token from the fragment if there is one (and strips it), else from storage. */
export function loadToken() {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    const token = decodeURIComponent(m[1]);
    history.replaceState(null, '', `${location.pathname}${location.search}#/`);
    store(token);
    return token;
  }
  try { return sessionStorage.getItem(KEY); } catch { return null; }
}

export function store(token) {
  session.token = token;
  try { sessionStorage.setItem(KEY, token); } catch { /* private mode: kept in memory only */ }
}

export function forget() {
  session.token = null;
  session.role = null;
  try { sessionStorage.removeItem(KEY); } catch { /* nothing stored */ }
}

export const isAdmin = () => session.role === 'admin';
