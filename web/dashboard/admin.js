// Admin views (shown to admin tokens only; the API refuses supervisors with 403 anyway).
//
// Jobs (#/admin/jobs?status=…&kind=…): GET /api/admin/jobs, newest first with "Load more";
// retry a dead job (or a queued one waiting after a failure) with POST …/{id}/retry; "Run now"
// of a kind with POST /api/admin/jobs/run/{kind} and an optional JSON payload.
//
// Webhooks (#/admin/webhooks): outgoing webhook endpoints — list, create (the signing secret
// is shown once), enable a disabled one, delete, and each one's recent deliveries. A hub
// without the feature answers 404 and the view says so quietly. The shapes are read
// leniently (`{webhooks:[…]}` or a bare list; a created endpoint bare or under `webhook`).

import { api, ApiError, withQuery, describe } from './api.js';
import { h, fill, field, select, notice, emptyState, pretty } from './dom.js';
import { ago, dateTime, shortId, ms } from './format.js';
import { navigate } from './router.js';
import { openDialog } from './dialog.js';

const JOB_STATUSES = ['', 'queued', 'running', 'done', 'dead', 'cancelled'];
const KNOWN_KINDS = ['recording.download', 'noop', 'sleep'];
/** The events a hub sends to webhooks (the hub refuses unknown names with 422 unknown_event). */
const WEBHOOK_EVENTS = ['call.started', 'call.ended', 'transcript.final', 'function.completed', 'recording.ready', 'chat.message'];

export function mountJobs(el, route) {
  const q = route.query;
  const filters = h('form.filters', { attrs: { 'aria-label': 'Filter jobs' } },
    field('Status', select('status', JOB_STATUSES.map((s) => [s, s || 'any']), q.status || '')),
    field('Kind', h('input', { name: 'kind', value: q.kind || '', attrs: { list: 'job-kinds' }, autocomplete: 'off' })),
    h('div.filter-buttons', h('button.primary', { type: 'submit' }, 'Filter'), h('button.quiet', { type: 'button', onclick: () => reloadAll() }, 'Refresh')));
  filters.addEventListener('submit', (e) => { e.preventDefault(); navigate('/admin/jobs', Object.fromEntries(new FormData(filters))); });

  const kinds = h('datalist', { id: 'job-kinds' }, KNOWN_KINDS.map((k) => h('option', { value: k })));
  const runKind = h('input', { name: 'kind', required: true, attrs: { list: 'job-kinds' }, autocomplete: 'off', placeholder: 'noop' });
  const runPayload = h('textarea', { name: 'payload', rows: 2, placeholder: '{"ms": 1000}  (optional JSON)' });
  const runResult = h('p.muted', { attrs: { role: 'status' } });
  const runForm = h('form.run-now', { attrs: { 'aria-label': 'Run a job now' } },
    field('Kind', runKind), field('Payload', runPayload), h('div.filter-buttons', h('button', { type: 'submit' }, 'Run now')), runResult);
  runForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const kind = runKind.value.trim();
    if (!kind) { runResult.textContent = 'Name a kind first.'; return; }
    let body;
    if (runPayload.value.trim()) {
      try { body = JSON.parse(runPayload.value); } catch { runResult.textContent = 'The payload is not valid JSON.'; return; }
    }
    runResult.textContent = 'Enqueuing…';
    try {
      const job = await api(`/api/admin/jobs/run/${encodeURIComponent(kind)}`, { method: 'POST', body });
      runResult.textContent = `Enqueued ${kind} as job ${shortId(job?.id)} (${job?.status || 'queued'}).`;
      if (job) showRows([jobRow(job)], true);
    } catch (err) {
      runResult.textContent = err instanceof ApiError && err.status === 404 ? `No job kind named “${kind}” is registered.` : `Could not run: ${describe(err)}`;
    }
  });

  const status = h('div', { attrs: { role: 'status' } });
  const body_ = h('tbody');
  const table = h('table.jobs-table', { hidden: true },
    h('caption.visually-hidden', 'Jobs, newest first'),
    h('thead', h('tr', ['Job', 'Kind', 'Status', 'Attempts', 'Runs', 'Last error', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
    body_);
  const more = h('button', { type: 'button', hidden: true, onclick: () => page() }, 'Load more');
  fill(el, h('div.view-head', h('h1', 'Jobs'), h('a.quiet-link', { href: '#/admin/webhooks' }, 'Webhooks →')),
    kinds, h('section.panel', h('h2', 'Run now'), runForm), filters, status, h('div.table-wrap', table), more);

  let cursor = null;
  let shown = 0;
  let gone = false;

  /** Adds rows (a job just enqueued goes first) and swaps the empty state for the table. */
  function showRows(rows, first) {
    if (first) body_.prepend(...rows); else body_.append(...rows);
    shown += rows.length;
    table.hidden = !shown;
    if (shown && status.querySelector('.empty')) fill(status);
  }

  function jobRow(job) {
    const retryable = job.status === 'dead' || (job.status === 'queued' && job.last_error);
    const tr = h('tr', { dataset: { jobId: job.id } },
      h('td', { title: job.id }, shortId(job.id)),
      h('td', job.kind),
      h('td', h('span.pill', { class: job.status === 'dead' ? 'tone-bad' : job.status === 'done' ? 'tone-ended' : job.status === 'running' ? 'tone-live' : 'tone-waiting' }, job.status)),
      h('td', `${job.attempts ?? 0} / ${job.max_attempts ?? '—'}`),
      h('td', { title: dateTime(job.run_at) }, job.finished_at ? `finished ${ago(job.finished_at)}` : ago(job.run_at)),
      h('td.error-cell', job.last_error || ''),
      h('td', { title: dateTime(job.created_at) }, ago(job.created_at)),
      h('td', retryable ? h('button', { type: 'button', onclick: (e) => retry(job, tr, e.currentTarget) }, 'Retry') : null,
        h('details.payload', h('summary', 'Payload'), h('pre', pretty(job.payload)))));
    return tr;
  }

  async function retry(job, tr, button) {
    button.disabled = true;
    try {
      const fresh = await api(`/api/admin/jobs/${encodeURIComponent(job.id)}/retry`, { method: 'POST' });
      const row = jobRow(fresh || { ...job, status: 'queued' });
      tr.replaceWith(row);
      fill(status, notice(`Job ${shortId(job.id)} will run again now.`));
    } catch (e) {
      button.disabled = false;
      fill(status, notice(e instanceof ApiError && e.status === 409 ? `Job ${shortId(job.id)} cannot be retried in its state.` : `Retry failed: ${describe(e)}`, 'error'));
    }
  }

  async function page() {
    more.disabled = true;
    try {
      const res = await api(withQuery('/api/admin/jobs', { status: q.status, kind: q.kind, limit: 50, cursor }));
      if (gone) return;
      showRows((res?.jobs || []).map(jobRow), false);
      cursor = res?.next_cursor || null;
      more.hidden = !cursor;
      if (!shown) fill(status, emptyState('No jobs match.', 'Recording downloads and scheduled work show up here.'));
    } catch (e) {
      if (!gone) fill(status, notice(`The jobs could not be loaded: ${describe(e)}`, 'error'));
    } finally {
      more.disabled = false;
    }
  }

  function reloadAll() {
    cursor = null;
    shown = 0;
    body_.replaceChildren();
    fill(status);
    page();
  }
  page();
  return () => { gone = true; };
}

export function mountWebhooks(el) {
  const status = h('div', { attrs: { role: 'status' } });
  const list = h('ul.webhooks');
  const url = h('input', { name: 'url', type: 'url', required: true, placeholder: 'https://example.com/hooks/switchboard', autocomplete: 'off' });
  // "All events" ("*") by default; unticking it lets an admin pick some.
  const all = h('input', { type: 'checkbox', name: 'all', checked: true });
  const picks = WEBHOOK_EVENTS.map((e) => h('input', { type: 'checkbox', name: 'event', value: e, disabled: true }));
  all.addEventListener('change', () => { for (const p of picks) p.disabled = all.checked; });
  const events = h('fieldset.events', h('legend.field-label', 'Events'),
    h('label.check', all, ' All events (*)'),
    picks.map((p) => h('label.check', p, ' ', p.value)));
  const description = h('input', { name: 'description', type: 'text', autocomplete: 'off' });
  const secret = h('input', { name: 'secret', type: 'text', autocomplete: 'off', placeholder: 'leave empty to have one generated' });
  const created = h('div', { attrs: { 'aria-live': 'polite' } });
  const form = h('form.create-webhook', { attrs: { 'aria-label': 'Add a webhook' } },
    field('URL', url), events,
    field('Description', description), field('Secret', secret),
    h('div.filter-buttons', h('button.primary', { type: 'submit' }, 'Add webhook')));
  const createPanel = h('section.panel', h('h2', 'Add a webhook'), form, created);
  fill(el, h('div.view-head', h('h1', 'Outgoing webhooks'), h('a.quiet-link', { href: '#/admin/jobs' }, '← Jobs')), status, list, createPanel);
  let gone = false;

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = {
      url: url.value.trim(),
      events: all.checked ? ['*'] : picks.filter((p) => p.checked).map((p) => p.value),
      ...(description.value.trim() ? { description: description.value.trim() } : {}),
      ...(secret.value.trim() ? { secret: secret.value.trim() } : {}),
    };
    if (!body.url) { fill(created, notice('A URL is required.', 'error')); return; }
    if (!body.events.length) { fill(created, notice('Pick at least one event, or all.', 'error')); return; }
    try {
      const res = await api('/api/admin/webhooks', { method: 'POST', body });
      const hook = res?.webhook || res || {};
      const shownSecret = res?.secret ?? hook.secret;
      form.reset();
      for (const p of picks) p.disabled = true;
      fill(created, notice(`Webhook ${shortId(hook.id)} added.`),
        shownSecret ? h('div.secret-once', h('p', h('strong', 'Signing secret — shown once, store it now:')), h('code.secret', shownSecret)) : null);
      load();
    } catch (err) {
      fill(created, notice(`Could not add the webhook: ${describe(err)}`, 'error'));
    }
  });

  function hookEl(w) {
    const deliveries = h('div.deliveries');
    const enabled = w.enabled !== false;
    return h('li.webhook', { dataset: { webhookId: w.id } },
      h('div.webhook-head', h('strong.webhook-url', w.url), ' ',
        h('span.pill', { class: enabled ? 'tone-live' : 'tone-bad' }, enabled ? 'enabled' : 'disabled')),
      w.description ? h('p', w.description) : null,
      h('p.muted', `Events: ${(Array.isArray(w.events) ? w.events : [w.events]).filter(Boolean).join(', ') || '*'}`,
        ` · orgs: ${(Array.isArray(w.orgs) ? w.orgs : [w.orgs]).filter(Boolean).join(', ') || '*'}`,
        w.consecutive_failures ? ` · ${w.consecutive_failures} failures in a row` : '',
        w.created_at ? ` · added ${ago(w.created_at)}` : ''),
      !enabled ? h('p.notice.error', `Disabled${w.disabled_at ? ` ${ago(w.disabled_at)}` : ''}${w.disabled_reason ? `: ${w.disabled_reason}` : ''}`) : null,
      h('div.button-row',
        h('button', { type: 'button', onclick: () => showDeliveries(w, deliveries) }, 'Deliveries'),
        !enabled ? h('button', { type: 'button', onclick: () => act(`/api/admin/webhooks/${encodeURIComponent(w.id)}/enable`, 'POST', 'Enabled.') }, 'Enable') : null,
        h('button.rotate', { type: 'button', onclick: (e) => rotate(w, e.currentTarget) }, 'Rotate secret'),
        h('button.danger', { type: 'button', onclick: (e) => remove(w, e.currentTarget) }, 'Delete')),
      w.previous_secret_expires_at ? h('p.muted', `The previous secret also signs until ${dateTime(w.previous_secret_expires_at)}.`) : null,
      deliveries);
  }

  // The old secret keeps signing for a day (the hub's default), so the receiver can switch.
  async function rotate(w, opener) {
    const ok = await openDialog({ title: 'Rotate the signing secret?', explain: `${w.url} gets a new secret. Deliveries carry a signature with the old one too for 24 hours, while you update the receiver.`, confirmLabel: 'Rotate', opener });
    if (!ok) return;
    try {
      const res = await api(`/api/admin/webhooks/${encodeURIComponent(w.id)}/rotate`, { method: 'POST' });
      fill(status, notice('Secret rotated.'),
        h('div.secret-once', h('p', h('strong', 'New signing secret — shown once, store it now:')), h('code.secret', res?.secret || '')));
      load();
    } catch (e) {
      fill(status, notice(`Could not rotate the secret: ${describe(e)}`, 'error'));
    }
  }

  async function remove(w, opener) {
    const ok = await openDialog({ title: 'Delete this webhook?', explain: `${w.url} stops receiving events. This cannot be undone.`, confirmLabel: 'Delete', danger: true, opener });
    if (ok) act(`/api/admin/webhooks/${encodeURIComponent(w.id)}`, 'DELETE', 'Deleted.');
  }

  async function act(path, method, done) {
    try {
      await api(path, { method });
      fill(status, notice(done));
      load();
    } catch (e) {
      fill(status, notice(describe(e), 'error'));
    }
  }

  async function showDeliveries(w, box, cursor = null) {
    if (!cursor) fill(box, h('p.muted', 'Loading deliveries…'));
    try {
      const res = await api(withQuery(`/api/admin/webhooks/${encodeURIComponent(w.id)}/deliveries`, { cursor }));
      const rows = res?.deliveries || (Array.isArray(res) ? res : []);
      if (!cursor) fill(box);
      if (!rows.length && !cursor) { fill(box, h('p.muted', 'No deliveries yet.')); return; }
      let table = box.querySelector('tbody');
      if (!table) {
        table = h('tbody');
        box.append(h('table.deliveries-table', h('thead', h('tr', ['When', 'Event', 'Attempt', 'Status', 'Time', 'Error'].map((t) => h('th', { scope: 'col' }, t)))), table));
      }
      for (const d of rows) {
        const good = d.status_code >= 200 && d.status_code < 300;
        table.append(h('tr', { class: good ? '' : 'bad' },
          h('td', { title: dateTime(d.at) }, ago(d.at)), h('td', d.event_type || '—'), h('td', String(d.attempt ?? '—')),
          h('td', d.status_code ? String(d.status_code) : '—'), h('td', ms(d.duration_ms)), h('td', d.error || '')));
      }
      box.querySelector('button.more')?.remove();
      if (res?.next_cursor) box.append(h('button.more', { type: 'button', onclick: () => showDeliveries(w, box, res.next_cursor) }, 'Older deliveries'));
    } catch (e) {
      fill(box, notice(`Deliveries could not be loaded: ${describe(e)}`, 'error'));
    }
  }

  async function load() {
    try {
      const res = await api('/api/admin/webhooks');
      if (gone) return;
      const hooks = res?.webhooks || res?.data || (Array.isArray(res) ? res : []);
      createPanel.hidden = false;
      fill(list, hooks.map(hookEl));
      if (!hooks.length) fill(status, emptyState('No outgoing webhooks yet.', 'Add one below to have the hub post call and chat events to your systems.'));
      else if (!status.querySelector('.notice')) fill(status);
    } catch (e) {
      if (gone) return;
      if (e instanceof ApiError && (e.status === 404 || e.status === 405)) {
        createPanel.hidden = true;
        fill(status, emptyState('Outgoing webhooks are not available on this hub.', 'This hub version does not have them yet.'));
      } else fill(status, notice(`The webhooks could not be loaded: ${describe(e)}`, 'error'));
    }
  }
  load();
  return () => { gone = true; };
}
