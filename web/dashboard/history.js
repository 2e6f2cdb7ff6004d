// Call history (#/history?q=…&status=…&assistant_id=…&since=…&until=…): GET /api/calls with
// those filters, newest first, 50 a page with "Load more" following `next_cursor`. The filters
// live in the hash so a search can be reloaded, shared and navigated back to. `q` searches
// transcripts and summaries on the server.

import { api, withQuery, describe } from './api.js';
import { h, fill, field, select, notice, emptyState } from './dom.js';
import { maskNumber, money, dateTime, ago, shortId } from './format.js';
import { callHref, navigate } from './router.js';
import { statusPill, durationEl } from './ui.js';

const PAGE = 50;
const STATUSES = ['', 'queued', 'ringing', 'in-progress', 'forwarding', 'ended'];

export function mountHistory(el, route) {
  const q = route.query;
  const input = (name, props = {}) => h('input', { name, value: q[name] || '', ...props });
  const form = h('form.filters', { attrs: { role: 'search', 'aria-label': 'Filter calls' } },
    field('Search transcripts', input('q', { type: 'search', placeholder: 'a word the caller said…' })),
    field('Status', select('status', STATUSES.map((s) => [s, s || 'any']), q.status || '')),
    field('Assistant id', input('assistant_id', { type: 'text', autocomplete: 'off' })),
    field('From', input('since', { type: 'datetime-local' })),
    field('Until', input('until', { type: 'datetime-local' })),
    h('div.filter-buttons', h('button.primary', { type: 'submit' }, 'Search'), h('button.quiet', { type: 'button', onclick: () => navigate('/history') }, 'Clear')));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(form));
    navigate('/history', f);
  });

  const status = h('div.list-status', { attrs: { role: 'status' } });
  const body = h('tbody');
  const table = h('table.calls-table', { hidden: true },
    h('caption.visually-hidden', 'Calls, newest first'),
    h('thead', h('tr', ['When', 'Customer', 'Status', 'Duration', 'Ended reason', 'Cost', 'Summary'].map((t) => h('th', { scope: 'col' }, t)))),
    body);
  const more = h('button', { type: 'button', hidden: true, onclick: () => page() }, 'Load more');
  fill(el, h('div.view-head', h('h1', 'History')), form, status, h('div.table-wrap', table), more);

  let cursor = null;
  let loading = false;
  let gone = false;
  let shown = 0;

  async function page() {
    if (loading) return;
    loading = true;
    more.disabled = true;
    if (!shown) fill(status, notice('Searching…'));
    try {
      const params = {
        q: q.q, status: q.status, assistant_id: q.assistant_id,
        since: toIso(q.since), until: toIso(q.until), limit: PAGE, cursor,
      };
      const res = await api(withQuery('/api/calls', params));
      if (gone) return;
      for (const c of res.calls || []) body.append(row(c));
      shown += (res.calls || []).length;
      cursor = res.next_cursor || null;
      more.hidden = !cursor;
      table.hidden = !shown;
      fill(status, shown ? h('p.muted', `${shown} call${shown === 1 ? '' : 's'}${cursor ? ' so far' : ''}${q.q ? ` mentioning “${q.q}”` : ''}`)
        : emptyState(q.q ? `No call mentions “${q.q}”.` : 'No calls match these filters.', 'Try fewer filters or a wider time range.'));
    } catch (e) {
      if (!gone) fill(status, notice(`The calls could not be loaded: ${describe(e)}`, 'error'));
    } finally {
      loading = false;
      more.disabled = false;
    }
  }
  page();
  return () => { gone = true; };
}

function row(c) {
  return h('tr', { dataset: { callId: c.id } },
    h('td', h('a', { href: callHref(c.id), title: dateTime(c.created_at) }, ago(c.created_at)), h('div.muted.small', shortId(c.id))),
    h('td', maskNumber(c.customer_number)),
    h('td', statusPill(c.status)),
    h('td', durationEl(c)),
    h('td', c.ended_reason || '—'),
    h('td', money(c.cost)),
    h('td.summary-cell', c.summary || ''));
}

/** `datetime-local` values are local times without a zone; the API wants RFC 3339. */
function toIso(v) {
  if (!v) return undefined;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}
