// Building DOM without HTML strings. Everything the server sends is untrusted text (transcripts
// are what callers said, chat messages what visitors typed), so nothing here ever assigns
// innerHTML: children are nodes or strings, and strings become text nodes.

/**
 * `h('li.call.live', { dataset: { id }, onclick }, 'text', child)`: a tag with optional
 * classes after dots, then properties (`on*` become listeners, `class`, `dataset`, `attrs`),
 * then children (strings, nodes, arrays; null and false are skipped).
 */
export function h(spec, props, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.classList.add(...classes);
  if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
    children.unshift(props);
    props = null;
  }
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.classList.add(...String(value).split(/\s+/).filter(Boolean));
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'attrs') for (const [a, v] of Object.entries(value)) { if (v !== null && v !== undefined && v !== false) el.setAttribute(a, v === true ? '' : String(v)); }
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A short, polite status line for screen readers and eyes alike. */
export function notice(text, kind = 'info') {
  return h('p.notice', { class: kind, attrs: { role: kind === 'error' ? 'alert' : 'status' } }, text);
}

export function emptyState(title, detail) {
  return h('div.empty', h('p.empty-title', title), detail ? h('p.empty-detail', detail) : null);
}

/** A `<select>` of `[value, label]` (or plain values) with `selected` chosen. */
export function select(name, options, selected = '', props = {}) {
  const el = h('select', { name, ...props }, options.map((o) => {
    const [value, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value }, label);
  }));
  el.value = selected;
  return el;
}

/** A labelled form field: `field('Status', select)`. */
export function field(label, control, hint) {
  return h('label.field', h('span.field-label', label), control, hint ? h('span.field-hint', hint) : null);
}

/** Pretty JSON for a `<pre>`; strings as they are. */
export function pretty(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch { return value; }
  }
  return JSON.stringify(value, null, 2);
}
