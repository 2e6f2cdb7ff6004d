// Live chats. The list (#/chats) is fed by the `chats` topic: a snapshot of sessions heard from
// in the last two hours with their last message, then `chat.message` (a visitor wrote),
// `chat.started` and `chat.done` / `chat.stopped` / `chat.error` (an answer began or ended).
// One chat (#/chats/<id>) follows `chat:<id>`: the session with its messages and the answer
// being generated, then every event of it — the answer grows from `chat.delta` — and a stop
// button (POST /api/chat/sessions/{id}/stop with the supervisor's token).

import { api, ApiError, describe } from './api.js';
import { h, fill, notice, emptyState, pretty } from './dom.js';
import { clock, dateTime, shortId, toMs } from './format.js';

const messagesText = (n) => `${n || 0} message${n === 1 ? '' : 's'}`;
import { chatHref } from './router.js';
import { agoEl } from './ui.js';

export class ChatsStore {
  constructor(socket) {
    this.sessions = new Map();
    this.loaded = false;
    this.error = null;
    this.listeners = new Set();
    this.stop = socket.follow('chats', (m) => this.onMessage(m));
  }

  subscribe(fn) { this.listeners.add(fn); return () => this.listeners.delete(fn); }
  close() { this.stop(); this.listeners.clear(); }
  activeCount() { let n = 0; for (const s of this.sessions.values()) if (s.active_run_id) n++; return n; }
  list() { return [...this.sessions.values()].sort((a, b) => (toMs(b.updated_at) ?? 0) - (toMs(a.updated_at) ?? 0)); }

  onMessage(m) {
    if (m.kind === 'snapshot') {
      this.sessions.clear();
      for (const s of m.snapshot.chats || []) this.sessions.set(s.session_id, s);
      this.loaded = true;
      this.error = null;
    } else if (m.kind === 'event') {
      this.apply(m.event);
    } else if (m.kind === 'error') {
      this.error = m.message || 'Live chats are unavailable right now.';
    } else {
      return;
    }
    for (const fn of this.listeners) fn(this);
  }

  apply({ kind, at, data }) {
    const id = data?.session_id;
    if (!id) return;
    const s = this.sessions.get(id) || { session_id: id, created_at: at, message_count: 0, active_run_id: null, last_message: null };
    this.sessions.set(id, s);
    s.updated_at = at;
    if (kind === 'chat.message') {
      s.last_message = { role: data.message?.role, content: data.message?.content, status: 'complete' };
      s.message_count = (s.message_count || 0) + 1;
    } else if (kind === 'chat.started') {
      s.active_run_id = data.run_id;
    } else if (kind === 'chat.done' || kind === 'chat.stopped' || kind === 'chat.error') {
      s.active_run_id = null;
      s.last_answer = data.status || kind.slice(5);
    }
  }
}

export function mountChats(el, _route, { chats }) {
  const list = h('ul.chat-list', { attrs: { 'aria-label': 'Chats' } });
  const status = h('div');
  fill(el, h('div.view-head', h('h1', 'Chats')), status, list);
  const render = () => {
    const sessions = chats.list();
    if (chats.error) fill(status, notice(chats.error, 'error'));
    else if (!chats.loaded) fill(status, notice('Loading chats…'));
    else if (!sessions.length) fill(status, emptyState('No chats in the last two hours.', 'A chat appears here when a visitor writes through the widget.'));
    else fill(status);
    fill(list, sessions.map((s) => h('li.chat-row', { dataset: { sessionId: s.session_id } }, h('a', { href: chatHref(s.session_id) },
      h('span.chat-id', `Chat ${shortId(s.session_id)}`),
      s.active_run_id ? h('span.pill.tone-live', 'answering') : null,
      h('span.chat-last', s.last_message ? `${s.last_message.role === 'user' ? 'Visitor' : 'Assistant'}: ${s.last_message.content || ''}` : 'No messages'),
      h('span.muted', messagesText(s.message_count)),
      s.updated_at ? agoEl(s.updated_at) : null))));
  };
  const off = chats.subscribe(render);
  render();
  return () => off();
}

export function mountChat(el, route, { socket }) {
  const id = route.id;
  const messages = new Map();
  const list = h('ol.chat-messages', { attrs: { role: 'log', 'aria-label': 'Messages', 'aria-live': 'polite' } });
  const streamBox = h('div.stream');
  const banner = h('div.banner');
  const stopBtn = h('button.danger', { type: 'button', hidden: true, onclick: () => stopRun() }, 'Stop the answer');
  const stopResult = h('p.muted', { attrs: { role: 'status' } });
  const meta = h('p.muted');
  fill(el,
    h('div.view-head', h('a.quiet-link', { href: '#/chats' }, '← Chats')),
    h('div.call-head', h('h1', `Chat ${shortId(id)}`), stopBtn),
    meta, banner, stopResult,
    h('section.panel', list, streamBox));

  let stream = null; // { run_id, n, text, tools, el }
  let stopFollowing = null;
  let gone = false;
  let reloadTimer = null;

  function addMessage(m) {
    const key = String(m.id ?? `${m.seq}`);
    if (messages.has(key)) return;
    const li = messageEl(m);
    messages.set(key, li);
    // Messages are numbered per session; keep that order whatever arrives first.
    const after = [...list.children].find((c) => Number(c.dataset.seq) > Number(m.seq));
    list.insertBefore(li, after || null);
  }

  function setMessages(all) {
    messages.clear();
    list.replaceChildren();
    for (const m of all || []) addMessage(m);
    if (!all?.length) list.append(h('li.muted.empty-line', 'No messages yet.'));
  }

  function renderStream() {
    stopBtn.hidden = !stream;
    if (!stream) { fill(streamBox); return; }
    if (!stream.el) {
      stream.text = h('p.text');
      stream.toolsEl = h('ul.stream-tools');
      stream.el = h('div.msg.role-assistant.streaming', { attrs: { 'aria-busy': 'true' } },
        h('span.who', 'Assistant (answering…)'), stream.toolsEl, stream.text);
      fill(streamBox, stream.el);
    }
    stream.text.textContent = stream.content;
    fill(stream.toolsEl, [...stream.tools.values()].map((t) => h('li', h('strong', t.name), ` ${t.status}`, t.error ? ` — ${t.error}` : '')));
  }

  function startStream(runId, content = '', n = 0) {
    stream = { run_id: runId, n, content, tools: new Map(), el: null };
    renderStream();
  }

  async function reload() {
    try {
      const s = await api(`/api/chat/sessions/${encodeURIComponent(id)}`);
      if (gone) return null;
      meta.textContent = `Started ${dateTime(s.created_at)} · ${messagesText(s.message_count)}${s.org_id ? ` · org ${s.org_id}` : ''}`;
      setMessages(s.messages);
      return s;
    } catch (e) {
      if (gone) return null;
      if (e instanceof ApiError && e.status === 404) {
        fill(el, h('div.view-head', h('a.quiet-link', { href: '#/chats' }, '← Chats')),
          emptyState('Chat not found.', 'There is no such chat, or it belongs to an organisation your token cannot see.'));
      } else fill(banner, notice(`The chat could not be loaded: ${describe(e)}`, 'error'));
      return null;
    }
  }

  function onMessage(m) {
    if (m.kind === 'forbidden') { fill(banner, notice('Live updates for this chat are not allowed for your token.', 'error')); return; }
    if (m.kind === 'error') { fill(banner, notice(`Live updates paused: ${m.message || m.code}. Retrying…`, 'error')); return; }
    if (m.kind === 'recovered') { fill(banner); return; }
    if (m.kind === 'snapshot') {
      fill(banner);
      const chat = m.snapshot.chat;
      if (chat) setMessages(chat.messages);
      const p = m.snapshot.partial;
      // The partial is the answer so far; `n` (when the hub sends it) says which deltas it
      // already holds, so none is appended twice.
      if (p?.run_id) startStream(p.run_id, p.content || '', Number.isFinite(p.n) ? p.n : 0);
      else { stream = null; renderStream(); }
      return;
    }
    const { kind, data } = m.event;
    switch (kind) {
      case 'chat.message':
        if (data.message) { list.querySelector('.empty-line')?.remove(); addMessage(data.message); }
        break;
      case 'chat.started':
        if (!stream || stream.run_id !== data.run_id) startStream(data.run_id);
        break;
      case 'chat.delta':
        if (!stream || stream.run_id !== data.run_id) startStream(data.run_id);
        if (data.n !== undefined && data.n <= stream.n) break;
        stream.n = data.n ?? stream.n + 1;
        stream.content += data.content || '';
        renderStream();
        break;
      case 'chat.tool':
        if (!stream || stream.run_id !== data.run_id) startStream(data.run_id);
        stream.tools.set(data.tool_call_id || data.name, data);
        renderStream();
        break;
      case 'chat.stop_requested':
        stopResult.textContent = `Stop requested${data.by ? ` by ${data.by}` : ''}…`;
        break;
      case 'chat.done':
      case 'chat.stopped':
      case 'chat.error':
        stream = null;
        renderStream();
        if (kind === 'chat.error') fill(banner, notice(`The answer failed: ${data.error?.message || data.error?.code || 'error'}`, 'error'));
        if (kind === 'chat.stopped') stopResult.textContent = 'The answer was stopped.';
        // The stored messages are the truth (the answer, tool calls and results as saved).
        clearTimeout(reloadTimer);
        reloadTimer = setTimeout(reload, 150);
        break;
      default:
    }
  }

  async function stopRun() {
    stopBtn.disabled = true;
    stopResult.textContent = 'Stopping…';
    try {
      const r = await api(`/api/chat/sessions/${encodeURIComponent(id)}/stop`, { method: 'POST' });
      stopResult.textContent = r?.status === 'running' ? 'Stop requested; the answer is still winding down.' : `Answer ${r?.status || 'stopped'}.`;
    } catch (e) {
      stopResult.textContent = e instanceof ApiError && e.code === 'no_active_run' ? 'Nothing to stop: the answer had already ended.' : `Could not stop: ${describe(e)}`;
    } finally {
      stopBtn.disabled = false;
    }
  }

  reload().then((s) => { if (s && !gone) stopFollowing = socket.follow(`chat:${id}`, onMessage); });
  return () => { gone = true; clearTimeout(reloadTimer); stopFollowing?.(); };
}

function messageEl(m) {
  const role = m.role || 'other';
  const who = role === 'user' ? 'Visitor' : role === 'assistant' ? 'Assistant' : role === 'tool' ? `Tool result${m.name ? ` · ${m.name}` : ''}` : role;
  const li = h('li.msg', { dataset: { seq: String(m.seq ?? ''), messageId: m.id || '' } },
    h('span.who', who),
    m.created_at ? h('time.at', { title: dateTime(m.created_at) }, clock(m.created_at)) : null,
    m.status && m.status !== 'complete' ? h('span.pill.tone-bad', m.status) : null,
    m.content ? h('p.text', m.content) : null,
    Array.isArray(m.tool_calls) && m.tool_calls.length
      ? h('ul.tool-calls', m.tool_calls.map((t) => h('li', 'Calls ', h('strong', t.function?.name || t.name || 'a function'), h('pre', pretty(t.function?.arguments ?? t.arguments)))))
      : null);
  li.classList.add(`role-${role === 'user' || role === 'assistant' || role === 'tool' ? role : 'other'}`);
  return li;
}
