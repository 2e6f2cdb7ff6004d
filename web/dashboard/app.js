// The dashboard's entry point: sign-in, the one live socket, the shared stores (live calls and
// chats stay subscribed for the whole session so the nav counts and the board are always
// current), and the hash router that mounts one view at a time. A view is
// `mount(container, route, ctx) → unmount()`.

import { api, ApiError, describe, onUnauthorized } from './api.js';
import { session, loadToken, store, forget, isAdmin } from './session.js';
import { LiveSocket } from './socket.js';
import { parseRoute } from './router.js';
import { h, fill } from './dom.js';
import { CallsStore, mountBoard } from './board.js';
import { mountCall } from './call.js';
import { mountHistory } from './history.js';
import { ChatsStore, mountChats, mountChat } from './chats.js';
import { mountJobs, mountWebhooks } from './admin.js';
import { startTicker } from './ticker.js';

const $ = (id) => document.getElementById(id);

const ctx = { socket: null, calls: null, chats: null };
let unmount = null;

const VIEWS = {
  board: mountBoard,
  call: mountCall,
  history: mountHistory,
  chats: mountChats,
  chat: mountChat,
  jobs: (el, route, c) => (isAdmin() ? mountJobs(el, route, c) : forbidden(el)),
  webhooks: (el, route, c) => (isAdmin() ? mountWebhooks(el, route, c) : forbidden(el)),
  notfound: (el) => { fill(el, h('h1', 'Not found'), h('p', h('a', { href: '#/' }, 'Back to the live board'))); },
};

function forbidden(el) {
  fill(el, h('h1', 'Admins only'), h('p', 'This view needs an admin token.'));
}

/** Checks a token against the API and learns its role. Throws ApiError(401) for a bad one. */
async function whoIs(token) {
  await api('/api/calls?limit=1', { token });
  try {
    // Any admin may list webhook endpoints (its orgs' ones); the job queue needs an admin of
    // every org, and its view says so to the others.
    await api('/api/admin/webhooks', { token });
    return 'admin';
  } catch (e) {
    if (e instanceof ApiError && e.status === 403) return 'supervisor';
    // 404 would mean a hub without the admin API: nothing admin to show either.
    if (e instanceof ApiError && e.status !== 0) return 'supervisor';
    throw e;
  }
}

async function signIn(token, { fromForm = false } = {}) {
  const msg = $('signin-message');
  try {
    session.role = await whoIs(token);
  } catch (e) {
    forget();
    showSignIn(e instanceof ApiError && e.status === 401
      ? 'That token was refused: it is unknown or has been revoked.'
      : `Cannot sign in: ${describe(e)}`);
    return;
  }
  store(token);
  if (fromForm) msg.hidden = true;
  start();
}

function showSignIn(message) {
  stop();
  $('signin').hidden = false;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('role').hidden = true;
  $('conn').hidden = true;
  fill($('view'));
  const msg = $('signin-message');
  msg.hidden = !message;
  msg.textContent = message || '';
  $('signin-token').value = '';
  $('signin-token').focus();
}

function start() {
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  for (const a of document.querySelectorAll('[data-admin]')) a.hidden = !isAdmin();
  const role = $('role');
  role.hidden = false;
  role.textContent = isAdmin() ? 'admin' : 'supervisor';
  $('conn').hidden = false;

  ctx.socket = new LiveSocket({
    token: session.token,
    onState: showConnection,
    onUnauthorized: () => signOut('Your session ended: the token is no longer valid.'),
    // A refused upgrade only shows as a failed connection; a 401 here signs out (onUnauthorized).
    probeToken: () => api('/api/calls?limit=1').catch(() => {}),
  });
  ctx.calls = new CallsStore(ctx.socket);
  ctx.chats = new ChatsStore(ctx.socket);
  ctx.calls.subscribe(() => { $('live-count').textContent = ctx.calls.live.size ? String(ctx.calls.live.size) : ''; });
  ctx.chats.subscribe(() => { const n = ctx.chats.activeCount(); $('chat-count').textContent = n ? String(n) : ''; });
  route();
}

function stop() {
  if (unmount) { try { unmount(); } catch { /* a view failing to clean up must not block sign-out */ } }
  unmount = null;
  ctx.calls?.close();
  ctx.chats?.close();
  ctx.socket?.close();
  ctx.socket = ctx.calls = ctx.chats = null;
}

function signOut(message) {
  forget();
  showSignIn(message);
}

function route() {
  if (!ctx.socket) return;
  const r = parseRoute();
  for (const a of document.querySelectorAll('#nav a')) {
    const current = a.dataset.route === r.name || (r.name === 'call' && a.dataset.route === 'board') || (r.name === 'chat' && a.dataset.route === 'chats');
    if (current) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  if (unmount) { try { unmount(); } catch (e) { console.error(e); } }
  const view = $('view');
  fill(view);
  unmount = (VIEWS[r.name] || VIEWS.notfound)(view, r, ctx) || null;
}

const STATE_TEXT = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', offline: 'Offline', closed: 'Disconnected' };
let countdown = null;

function showConnection({ state, retryAt, detail }) {
  const el = $('conn');
  el.dataset.state = state;
  const text = el.querySelector('.conn-text');
  clearInterval(countdown);
  const render = () => {
    let t = STATE_TEXT[state] || state;
    if (retryAt && (state === 'reconnecting' || state === 'offline')) {
      const s = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      t = `${state === 'offline' ? 'Offline' : 'Reconnecting'} in ${s} s`;
    }
    text.textContent = t;
  };
  render();
  el.title = detail ? `Live updates: ${STATE_TEXT[state]} (${detail})` : `Live updates: ${STATE_TEXT[state]}`;
  if (retryAt) countdown = setInterval(render, 500);
}

// ---- wiring --------------------------------------------------------------------------------

onUnauthorized(() => { if (session.token) signOut('Your session ended: the token is no longer valid.'); });

$('signin-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const token = $('signin-token').value.trim();
  if (!token) { showSignIn('Paste a token first.'); return; }
  signIn(token, { fromForm: true });
});
$('signout').addEventListener('click', () => signOut('Signed out.'));
// A retry button in the indicator would be one more control; clicking the indicator does it.
$('conn').addEventListener('click', () => ctx.socket?.reconnectNow());
window.addEventListener('hashchange', () => {
  // A pasted `#token=` link while signed in switches to that token.
  if (/(?:^#|&)token=/.test(location.hash)) { const t = loadToken(); stop(); signIn(t); return; }
  route();
  $('main').focus({ preventScroll: true });
});

startTicker();
const initial = loadToken();
if (initial) signIn(initial); else showSignIn();
