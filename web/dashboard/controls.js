// Live control of a call: say, whisper, mute/unmute the assistant, transfer, end. Each action
// is confirmed in a modal <dialog> (dialog.js), then sent over the socket (`control` →
// `control_result`) or, when the socket is down, with POST /api/calls/{id}/control. The
// outcome, with VAPI's status on failure, is listed under the buttons; every attempt is also
// audited by the hub (`control.sent`), which the call view shows as its control history.

import { api, ApiError } from './api.js';
import { h, fill, field } from './dom.js';
import { clock } from './format.js';
import { openDialog } from './dialog.js';

const E164 = /^\+[1-9]\d{6,14}$/;
const SIP = /^sips?:[^\s@]+@?[^\s]*$/i;

/** name, label, the dialog's fields, and how to build the action from them. */
const ACTIONS = [
  {
    type: 'say', label: 'Say…', title: 'Say something to the caller',
    explain: 'The assistant speaks this text to the caller now.',
    fields: () => [
      textArea('content', 'Text to speak'),
      check('endCallAfterSpoken', 'End the call after it is spoken'),
      check('interruptionsEnabled', 'Let the caller interrupt'),
    ],
    build: (f) => ({ type: 'say', content: f.content.value.trim(), ...(f.endCallAfterSpoken.checked ? { endCallAfterSpoken: true } : {}), ...(f.interruptionsEnabled.checked ? { interruptionsEnabled: true } : {}) }),
    validate: (f) => contentError(f.content.value),
  },
  {
    type: 'whisper', label: 'Whisper…', title: 'Whisper to the assistant',
    explain: 'Adds a system message only the assistant sees; the caller hears nothing, and the assistant does not answer it at once.',
    fields: () => [textArea('content', 'Instruction for the assistant')],
    build: (f) => ({ type: 'whisper', content: f.content.value.trim() }),
    validate: (f) => contentError(f.content.value),
  },
  {
    type: 'mute-assistant', label: 'Mute assistant', title: 'Mute the assistant',
    explain: 'The assistant stops speaking to the caller until it is unmuted.',
    fields: () => [], build: () => ({ type: 'mute-assistant' }), validate: () => null,
  },
  {
    type: 'unmute-assistant', label: 'Unmute assistant', title: 'Unmute the assistant',
    explain: 'The assistant speaks to the caller again.',
    fields: () => [], build: () => ({ type: 'unmute-assistant' }), validate: () => null,
  },
  {
    type: 'transfer', label: 'Transfer…', title: 'Transfer the call',
    explain: 'The caller is transferred to a phone number (E.164, e.g. +14155550177) or a SIP address.',
    fields: () => {
      const kind = h('select', { name: 'kind' }, h('option', { value: 'number' }, 'Phone number'), h('option', { value: 'sip' }, 'SIP URI'));
      const dest = h('input', { name: 'destination', type: 'text', required: true, autocomplete: 'off', placeholder: '+14155550177' });
      kind.addEventListener('change', () => { dest.placeholder = kind.value === 'sip' ? 'sip:desk@example.com' : '+14155550177'; });
      return [field('Destination type', kind), field('Destination', dest), textArea('content', 'Message before transferring (optional)', false)];
    },
    build: (f) => ({
      type: 'transfer',
      destination: f.kind.value === 'sip' ? { type: 'sip', sipUri: f.destination.value.trim() } : { type: 'number', number: f.destination.value.replace(/[\s()-]/g, '') },
      ...(f.content.value.trim() ? { content: f.content.value.trim() } : {}),
    }),
    validate: (f) => {
      const v = f.destination.value.trim();
      if (f.kind.value === 'sip') return SIP.test(v) ? null : 'A SIP address starts with sip: (e.g. sip:desk@example.com).';
      if (!E164.test(v.replace(/[\s()-]/g, ''))) return 'A phone number must be in E.164 form, e.g. +14155550177.';
      return f.content.value.trim().length > 2000 ? 'The message is longer than 2000 characters.' : null;
    },
  },
  {
    type: 'end-call', label: 'End call', title: 'End the call', danger: true,
    explain: 'The call is hung up for everyone. This cannot be undone.',
    fields: () => [], build: () => ({ type: 'end-call' }), validate: () => null,
  },
];

function textArea(name, label, required = true) {
  return field(label, h('textarea', { name, rows: 3, maxLength: 2000, required }));
}
function check(name, label) {
  return h('label.check', h('input', { type: 'checkbox', name }), ' ', label);
}
function contentError(v) {
  const t = v.trim();
  if (!t) return 'Write something first.';
  if (t.length > 2000) return 'At most 2000 characters.';
  return null;
}

/**
 * The control panel for one call. `send(action)` is provided by the caller (socket or HTTP);
 * `setEnabled(bool, why)` turns the buttons on and off (ended calls, no control URL).
 */
export function controlPanel(callId, socket) {
  const buttons = ACTIONS.map((a) => h('button', { type: 'button', class: a.danger ? 'danger' : '', onclick: (e) => open(a, e.currentTarget) }, a.label));
  const why = h('p.muted.controls-why');
  const results = h('ol.control-results', { attrs: { 'aria-live': 'polite', 'aria-label': 'Control outcomes' } });
  const el = h('section.panel.controls', { attrs: { 'aria-labelledby': `controls-${callId}` } },
    h('h2', { id: `controls-${callId}` }, 'Control'), h('div.button-row', buttons), why, results);

  async function open(action, opener) {
    const elements = await openDialog({
      title: action.title, explain: action.explain, fields: action.fields(), opener,
      confirmLabel: action.danger ? 'End the call' : 'Send', danger: action.danger, validate: action.validate,
    });
    if (!elements) return;
    const body = action.build(elements);
    const row = h('li.pending', h('span.at', clock(Date.now())), ' ', h('strong', action.title), ' — sending…');
    results.prepend(row);
    const outcome = await send(body);
    row.className = outcome.ok ? 'ok' : 'failed';
    fill(row, h('span.at', clock(Date.now())), ' ', h('strong', action.title), ' — ', outcome.text);
  }

  /** `{ ok, text }` for the results list, whichever way the action went. */
  async function send(action) {
    try {
      if (socket.isOpen) {
        const r = await socket.control(callId, action);
        if (r.ok) return sent(r.result);
        return failed(r.status, r.error);
      }
      const r = await api(`/api/calls/${encodeURIComponent(callId)}/control`, { method: 'POST', body: { action } });
      return sent(r);
    } catch (e) {
      if (e instanceof ApiError) return failed(e.status, e.body?.error || { code: e.code, message: e.message });
      return { ok: false, text: e.message };
    }
  }

  return {
    el,
    setEnabled(on, reason) {
      for (const b of buttons) b.disabled = !on;
      why.textContent = on ? '' : reason || '';
      why.hidden = on;
    },
  };
}

function sent(r) {
  return { ok: true, text: `sent${r?.upstream_status ? ` (VAPI answered ${r.upstream_status})` : ''}` };
}

function failed(status, error = {}) {
  const up = error.upstream_status ? `, VAPI answered ${error.upstream_status}` : '';
  return { ok: false, text: `failed: ${error.message || 'unknown error'} (${status || '?'} ${error.code || ''}${up})` };
}
