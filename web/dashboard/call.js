// One call, live or ended (#/calls/<id>). Fed by GET /api/calls/{id} (the stored call, its
// control audit) and the `call:<id>` topic: a snapshot (the call, each speaker's partial line,
// the watchers), then `call.status`, `call.ended`, `transcript.partial`, `transcript.final`,
// `speech`, `function.invoked`, `function.completed`, `presence`, `control.sent`,
// `recording.ready`. Following the topic also makes this supervisor a watcher others see.
// Once the call has ended, its report (cost, reason, summary, analysis) and the recording
// player appear; the transcript becomes the player's index.

import { api, ApiError, describe } from './api.js';
import { h, fill, notice, pretty, emptyState } from './dom.js';
import { maskNumber, money, ms, clock, dateTime, isEnded, speaker } from './format.js';
import { statusPill, durationEl, watchersEl, facts } from './ui.js';
import { Transcript } from './transcript.js';
import { controlPanel } from './controls.js';
import { mountPlayer } from './player.js';

export function mountCall(el, route, { socket }) {
  const id = route.id;
  let call = null;
  let stopFollowing = null;
  let player = null;
  let playerKey = '';
  let refreshTimer = null;
  let gone = false;

  const transcript = new Transcript();
  const functions = new Map();
  const audits = new Map();
  const speaking = new Map();

  const title = h('h1', 'Call');
  const headStatus = h('div.call-status');
  const banner = h('div.banner');
  const factsBox = h('div');
  // The report is refilled as it changes; the player box stays put so playback is not disturbed.
  const reportBox = h('div.report');
  const playerBox = h('div.player-box');
  const endedBox = h('section.panel.ended', { hidden: true, attrs: { 'aria-label': 'Call report' } }, reportBox, h('h3', 'Recording'), playerBox);
  const speakingBox = h('div.speaking', { attrs: { 'aria-live': 'polite' } });
  const fnList = h('ol.timeline', { attrs: { 'aria-label': 'Function calls' } });
  const fnEmpty = h('p.muted', 'No function calls yet.');
  const auditList = h('ol.audit', { attrs: { 'aria-label': 'Control history' } });
  const watchersBox = h('div.watchers-box');
  const controls = controlPanel(id, socket);

  fill(el,
    h('div.view-head', h('a.quiet-link', { href: '#/' }, '← Live calls'), h('a.quiet-link', { href: '#/history' }, 'History')),
    h('div.call-head', title, headStatus),
    banner,
    endedBox,
    h('div.call-grid',
      h('section.panel.transcript-panel', { attrs: { 'aria-labelledby': 'transcript-title' } },
        h('div.panel-head', h('h2', { id: 'transcript-title' }, 'Transcript'), speakingBox),
        transcript.el),
      h('aside.call-side',
        h('section.panel', { attrs: { 'aria-labelledby': 'watchers-title' } }, h('h2', { id: 'watchers-title' }, 'Watching'), watchersBox),
        controls.el,
        h('section.panel', { attrs: { 'aria-labelledby': 'fn-title' } }, h('h2', { id: 'fn-title' }, 'Function calls'), fnEmpty, fnList),
        h('section.panel', { attrs: { 'aria-labelledby': 'audit-title' } }, h('h2', { id: 'audit-title' }, 'Control history'), auditList),
        h('section.panel', { attrs: { 'aria-labelledby': 'facts-title' } }, h('h2', { id: 'facts-title' }, 'Details'), factsBox))));
  controls.setEnabled(false, 'Loading…');
  fill(auditList, h('li.muted', 'No control actions yet.'));

  // ---- rendering ---------------------------------------------------------------------------

  function renderCall() {
    if (!call) return;
    title.textContent = `Call ${maskNumber(call.customer_number)}`;
    fill(headStatus, statusPill(call.status), durationEl(call));
    fill(factsBox, facts([
      ['Customer', call.customer_number || '—'],
      ['Hub number', call.phone_number],
      ['Assistant', call.assistant_name ? `${call.assistant_name} (${call.assistant_id || 'no id'})` : call.assistant_id],
      ['Type', call.type],
      ['Created', dateTime(call.created_at)],
      ['Started', call.started_at ? dateTime(call.started_at) : null],
      ['Ended', call.ended_at ? dateTime(call.ended_at) : null],
      ['Call id', call.id],
    ]));
    const ended = isEnded(call);
    if (ended) controls.setEnabled(false, 'The call has ended.');
    else if (call.monitor && !call.monitor.control_url) controls.setEnabled(false, 'VAPI gave no control URL for this call (its monitorPlan does not enable control).');
    else controls.setEnabled(true);
    if (ended) {
      transcript.clearPartials();
      speaking.clear();
      renderSpeaking();
    }
    renderEnded();
  }

  function renderEnded() {
    if (!call || !isEnded(call)) { endedBox.hidden = true; return; }
    endedBox.hidden = false;
    const analysis = call.analysis && typeof call.analysis === 'object' ? call.analysis : null;
    const summary = call.summary || analysis?.summary;
    const extra = analysis ? Object.fromEntries(Object.entries(analysis).filter(([k]) => k !== 'summary')) : null;
    fill(reportBox,
      h('h2', 'Call report'),
      facts([
        ['Ended reason', call.ended_reason || '—'],
        ['Duration', durationEl(call)],
        ['Cost', money(call.cost)],
      ]),
      summary ? h('div.summary', h('h3', 'Summary'), h('p', summary)) : h('p.muted', 'No summary was reported.'),
      extra && Object.keys(extra).length ? h('details.analysis', h('summary', 'Analysis'), analysisEl(extra)) : null,
      call.cost_breakdown ? h('details.breakdown', h('summary', 'Cost breakdown'), h('pre', pretty(call.cost_breakdown))) : null);
    // Remount the player only when the recordings changed (a download finished).
    const key = JSON.stringify((call.recordings || []).map((r) => [r.kind, r.state]));
    if (key !== playerKey) {
      playerKey = key;
      player?.destroy();
      player = mountPlayer(playerBox, { call, recordings: call.recordings || [], transcript });
    }
  }

  function renderSpeaking() {
    fill(speakingBox, [...speaking].filter(([, on]) => on).map(([role]) =>
      h('span.speaking-chip', { class: `role-${role === 'assistant' ? 'assistant' : 'user'}` }, h('span.dot', { attrs: { 'aria-hidden': 'true' } }), `${speaker(role)} speaking`)));
  }

  function upsertFunction(f) {
    const key = f.tool_call_id || `${f.name}-${f.started_at}`;
    const prev = functions.get(key);
    const merged = { ...prev?.data, ...f };
    const li = prev?.el || h('li.fn');
    functions.set(key, { data: merged, el: li });
    const state = merged.error ? 'error' : merged.result !== undefined && merged.result !== null ? 'ok' : (merged.status || 'running');
    li.className = `fn fn-${state === 'ok' || state === 'error' ? state : 'running'}`;
    li.dataset.toolCallId = merged.tool_call_id || '';
    fill(li,
      h('div.fn-head', h('strong.fn-name', merged.name || 'function'), ' ',
        h('span.pill', { class: state === 'error' ? 'tone-bad' : state === 'ok' ? 'tone-live' : 'tone-waiting' }, state === 'ok' ? 'result' : state),
        merged.latency_ms !== undefined && merged.latency_ms !== null ? h('span.fn-latency', ms(merged.latency_ms)) : null,
        merged.started_at ? h('time.at', { title: dateTime(merged.started_at) }, clock(merged.started_at)) : null,
        merged.replayed ? h('span.muted', ' (redelivery)') : null),
      h('div.fn-part', h('span.fn-label', 'Arguments'), h('pre.fn-args', pretty(merged.arguments ?? {}))),
      merged.error ? h('div.fn-part', h('span.fn-label', 'Error'), h('pre.fn-error', String(merged.error)))
        : merged.result !== undefined && merged.result !== null ? h('div.fn-part', h('span.fn-label', 'Result'), h('pre.fn-result', pretty(merged.result)))
          : h('p.muted', 'Waiting for the result…'));
    if (!prev) fnList.append(li);
    fnEmpty.hidden = functions.size > 0;
  }

  function upsertAudit(a) {
    const key = String(a.audit_id ?? a.id);
    const type = a.type || a.action?.type || 'action';
    const at = a.requested_at || a.at;
    const prev = audits.get(key);
    const li = prev || h('li');
    li.className = `audit-${a.outcome || 'pending'}`;
    fill(li, h('time.at', { title: dateTime(at) }, clock(at)), ' ', h('strong', type), ' by ', a.actor || 'someone', ' — ',
      a.outcome || 'pending', a.upstream_status ? ` (VAPI ${a.upstream_status})` : '', a.error ? `: ${a.error}` : '');
    if (!prev) {
      if (!audits.size) auditList.replaceChildren();
      audits.set(key, li);
      auditList.prepend(li);
    }
  }

  // ---- data --------------------------------------------------------------------------------

  function applyDetail(detail) {
    call = { ...call, ...detail };
    for (const seg of detail.transcript || []) transcript.addFinal(seg);
    for (const f of detail.function_invocations || []) upsertFunction(f);
    for (const a of detail.control_actions || []) upsertAudit(a);
    renderCall();
  }

  async function load() {
    try {
      const detail = await api(`/api/calls/${encodeURIComponent(id)}`);
      if (gone) return;
      applyDetail(detail);
      return true;
    } catch (e) {
      if (gone) return false;
      if (e instanceof ApiError && e.status === 404) {
        fill(el, h('div.view-head', h('a.quiet-link', { href: '#/' }, '← Live calls')),
          emptyState('Call not found.', 'There is no such call, or it belongs to an organisation your token cannot see.'));
      } else {
        fill(banner, notice(`The call could not be loaded: ${describe(e)}`, 'error'));
      }
      return false;
    }
  }

  /** A report or a recording changed what only the stored call shows; debounced. */
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => { if (!gone) load(); }, 250);
  }

  function onMessage(m) {
    if (m.kind === 'forbidden') {
      fill(banner, notice('Live updates for this call are not allowed for your token.', 'error'));
      return;
    }
    if (m.kind === 'error') {
      fill(banner, notice(`Live updates paused: ${m.message || m.code}. Retrying…`, 'error'));
      return;
    }
    if (m.kind === 'recovered') { fill(banner); return; }
    if (m.kind === 'snapshot') {
      fill(banner);
      const snap = m.snapshot;
      if (snap.call) {
        call = { ...call, ...snap.call };
        transcript.reset(snap.call.transcript || [], isEnded(snap.call) ? [] : snap.partial || []);
        for (const f of snap.call.function_invocations || []) upsertFunction(f);
      }
      fill(watchersBox, watchersEl(snap.watchers));
      renderCall();
      return;
    }
    const { kind, data } = m.event;
    switch (kind) {
      case 'call.status':
        call = { ...call, ...data.call };
        renderCall();
        if (isEnded(data.call)) refreshSoon();
        break;
      case 'call.ended':
        call = { ...call, ...data.call };
        renderCall();
        refreshSoon();
        break;
      case 'transcript.partial':
        if (!isEnded(call)) transcript.setPartial(data.role, data.text);
        break;
      case 'transcript.final':
        transcript.addFinal({ id: data.segment_id, role: data.role, text: data.text, spoken_at: data.spoken_at });
        break;
      case 'speech':
        if (data.role) speaking.set(data.role, data.status === 'started');
        renderSpeaking();
        break;
      case 'function.invoked':
        upsertFunction({ tool_call_id: data.tool_call_id, name: data.name, arguments: data.arguments, started_at: m.event.at, status: 'running' });
        break;
      case 'function.completed':
        upsertFunction({ tool_call_id: data.tool_call_id, name: data.name, latency_ms: data.latency_ms, replayed: data.replayed,
          ...(data.ok ? { result: data.result, status: 'ok' } : { error: data.error ?? 'failed', status: 'error' }) });
        break;
      case 'presence':
        fill(watchersBox, watchersEl(data.watchers));
        break;
      case 'control.sent':
        upsertAudit(data);
        break;
      case 'recording.ready':
        refreshSoon();
        break;
      default:
    }
  }

  load().then((ok) => {
    if (ok && !gone) stopFollowing = socket.follow(`call:${id}`, onMessage);
  });

  return () => {
    gone = true;
    clearTimeout(refreshTimer);
    stopFollowing?.();
    player?.destroy();
  };
}

/** Analysis fields: plain values as a list, objects as JSON. */
function analysisEl(obj) {
  return h('dl.facts', Object.entries(obj).map(([k, v]) => [
    h('dt', k.replace(/([a-z])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase())),
    h('dd', v !== null && typeof v === 'object' ? h('pre', pretty(v)) : String(v)),
  ]));
}

