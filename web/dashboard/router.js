// Hash routes, so every view has a link that survives a reload and the hub serves one page:
//   #/                  live board          #/calls/<id>     one call (live or ended)
//   #/history?q=…       call history        #/chats          live chats   #/chats/<id>  one chat
//   #/admin/jobs        jobs (admins)       #/admin/webhooks outgoing webhooks (admins)

/** `{ name, id?, query }` for the current hash. */
export function parseRoute(hash = location.hash) {
  const raw = hash.replace(/^#/, '') || '/';
  const [path, qs = ''] = raw.split('?');
  const query = Object.fromEntries(new URLSearchParams(qs));
  const parts = path.split('/').filter(Boolean).map((p) => { try { return decodeURIComponent(p); } catch { return p; } });
  const [first, second] = parts;
  if (!first || first === 'calls' && !second) return { name: 'board', query };
  if (first === 'calls') return { name: 'call', id: second, query };
  if (first === 'history') return { name: 'history', query };
  if (first === 'chats') return second ? { name: 'chat', id: second, query } : { name: 'chats', query };
  if (first === 'admin') return { name: second === 'webhooks' ? 'webhooks' : 'jobs', query };
  return { name: 'notfound', query };
}

export function href(path, query) {
  const qs = query ? new URLSearchParams(Object.entries(query).filter(([, v]) => v !== undefined && v !== null && v !== '')).toString() : '';
  return `#${path}${qs ? `?${qs}` : ''}`;
}

export const callHref = (id) => `#/calls/${encodeURIComponent(id)}`;
export const chatHref = (id) => `#/chats/${encodeURIComponent(id)}`;

export function navigate(path, query) {
  location.hash = href(path, query).slice(1);
}
