/*! switchboard chat widget. Embed with
 *   <script src="https://HUB/widget.js" data-site-key="KEY" async></script>
 * Plain script, no dependencies, no build step. Options, theming and the JS API: web/widget/README.md.
 */
(function () {
  'use strict';

  if (window.Switchboard && window.Switchboard.version) return; // loaded twice: keep the first

  // ---------------------------------------------------------------------------------------------
  // Server-Sent Events: an incremental parser (the WHATWG algorithm) fed raw byte chunks, because
  // EventSource cannot POST a body nor send Last-Event-ID on the first request.

  /**
   * Returns `{ push(bytesOrString), end() }`; calls `onEvent({ id, event, data })` for each
   * dispatched event. Handles UTF-8 split across chunks, CRLF / CR / LF line ends (a CR at the end
   * of a chunk may be half of a CRLF: it waits for the next chunk), several events per chunk,
   * events split across chunks, comments and multi-line `data:`. An event left unfinished when the
   * stream ends is dropped, as the spec says: a cut connection never applies half an event.
   */
  function createSseParser(onEvent) {
    const decoder = new TextDecoder('utf-8');
    let buf = '';
    let started = false;
    let data = [];
    let event = '';
    let id = null; // the spec's "last event ID buffer": persists across events

    function field(line) {
      if (line === '') {
        if (data.length) onEvent({ id, event: event || 'message', data: data.join('\n') });
        data = [];
        event = '';
        return;
      }
      if (line[0] === ':') return; // a comment: `: keep-alive`
      const colon = line.indexOf(':');
      const name = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (name === 'data') data.push(value);
      else if (name === 'event') event = value;
      else if (name === 'id' && value.indexOf('\0') < 0) id = value;
      // `retry:` is ignored: reconnection has its own backoff here.
    }

    function feed(text, final) {
      buf += text;
      if (!started && buf) {
        started = true;
        if (buf[0] === '\uFEFF') buf = buf.slice(1);
      }
      let start = 0;
      for (let i = 0; i < buf.length; i++) {
        const c = buf[i];
        if (c !== '\n' && c !== '\r') continue;
        if (c === '\r' && i + 1 === buf.length && !final) break; // maybe the CR of a CRLF
        field(buf.slice(start, i));
        if (c === '\r' && buf[i + 1] === '\n') i++;
        start = i + 1;
      }
      buf = buf.slice(start);
    }

    return {
      push(chunk) { feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }), false); },
      end() { feed(decoder.decode(), true); },
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Safe Markdown: the model's text is untrusted. Everything is built from DOM nodes and
  // textContent, so no markup from the model can reach the page; links are limited to
  // http/https/mailto and images are never loaded (an image URL can carry chat data away).

  const LINK_PROTOCOLS = ['http:', 'https:', 'mailto:'];

  /** The absolute URL if it is a link we may follow, else null (relative, javascript:, data:...). */
  function safeUrl(raw) {
    try {
      const u = new URL(raw.trim());
      return LINK_PROTOCOLS.indexOf(u.protocol) >= 0 ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  function link(href, children) {
    const a = document.createElement('a');
    a.href = href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer nofollow';
    a.append(...children);
    return a;
  }

  function wrap(tag, children) {
    const el = document.createElement(tag);
    el.append(...children);
    return el;
  }

  /**
   * Finds a closing delimiter for emphasis: not right after the opener, not after a space, and
   * for `_` not inside a word (so `snake_case` and `a.__b` stay text, as in CommonMark).
   */
  function closing(s, delim, from) {
    for (let j = s.indexOf(delim, from); j >= 0; j = s.indexOf(delim, j + 1)) {
      if (j > from && !/\s/.test(s[j - 1]) && !(delim[0] === '_' && /\w/.test(s[j + delim.length] || ''))) return j;
    }
    return -1;
  }

  const BARE_URL = /^(?:https?:\/\/|mailto:)[^\s<>"]*[^\s<>"'.,:;!?)\]]/;

  /** Inline Markdown to an array of nodes. `noLinks` inside link text (no nested anchors). */
  function inline(s, noLinks) {
    const out = [];
    let text = '';
    const flush = () => { if (text) out.push(document.createTextNode(text)); text = ''; };
    const push = (node) => { flush(); out.push(node); };
    let i = 0;
    while (i < s.length) {
      const c = s[i];
      const rest = s.slice(i);
      let m;
      if (c === '\\' && /[\\`*_{}[\]()#+\-.!~>|]/.test(s[i + 1] || '')) {
        text += s[i + 1];
        i += 2;
      } else if (c === '\n') {
        push(document.createElement('br'));
        i++;
      } else if (c === '`' && (m = /^(`+)([^]*?[^`])\1(?!`)/.exec(rest))) {
        const code = document.createElement('code');
        code.textContent = m[2].replace(/^ (.*) $/, '$1');
        push(code);
        i += m[0].length;
      } else if ((c === '[' || (c === '!' && s[i + 1] === '[')) && (m = /^!?\[([^\]]*)\]\(\s*<?([^\s)>]*)>?(?:\s+"[^"]*")?\s*\)/.exec(rest))) {
        // An image is shown as a link to it, never loaded.
        const href = noLinks ? null : safeUrl(m[2]);
        const label = inline(m[1] || m[2], true);
        if (href) push(link(href, label.length ? label : [m[2]]));
        else { flush(); out.push(...label); }
        i += m[0].length;
      } else if ((c === '*' || c === '_' || c === '~') && s[i + 1] === c && s[i + 2] && !/\s/.test(s[i + 2]) && !(c === '_' && /\w/.test(s[i - 1] || ''))) {
        const end = closing(s, c + c, i + 2);
        if (end < 0) { text += c + c; i += 2; continue; }
        push(wrap(c === '~' ? 'del' : 'strong', inline(s.slice(i + 2, end), noLinks)));
        i = end + 2;
      } else if ((c === '*' || c === '_') && s[i + 1] && !/\s/.test(s[i + 1]) && !(c === '_' && /\w/.test(s[i - 1] || ''))) {
        const end = closing(s, c, i + 1);
        if (end < 0) { text += c; i++; continue; }
        push(wrap('em', inline(s.slice(i + 1, end), noLinks)));
        i = end + 1;
      } else if (!noLinks && (c === 'h' || c === 'm') && !/\w/.test(s[i - 1] || '') && (m = BARE_URL.exec(rest))) {
        const href = safeUrl(m[0]);
        if (href) push(link(href, [m[0]]));
        else text += m[0];
        i += m[0].length;
      } else {
        text += c;
        i++;
      }
    }
    flush();
    return out;
  }

  const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([\w+#.-]*)/;
  const LIST_ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(\s+|$)(.*)$/;
  const HEADING = /^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$/;
  const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;
  const QUOTE = /^ {0,3}> ?(.*)$/;

  /** Markdown text to a DocumentFragment of safe nodes. */
  function renderMarkdown(src) {
    const frag = document.createDocumentFragment();
    frag.append(...blocks(String(src).replace(/\r\n?/g, '\n').split('\n')));
    return frag;
  }

  /** Block structure of `lines`: fences, headings, rules, quotes, lists, paragraphs. */
  function blocks(lines) {
    const out = [];
    let para = [];
    const flushPara = () => {
      if (para.length) out.push(wrap('p', inline(para.join('\n').trim())));
      para = [];
    };
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      let m;
      if ((m = FENCE.exec(line))) {
        flushPara();
        const body = [];
        // An unclosed fence (an answer still streaming) runs to the end.
        for (i++; i < lines.length && !new RegExp('^ {0,3}' + m[1][0] + '{' + m[1].length + ',}\\s*$').test(lines[i]); i++) body.push(lines[i]);
        const pre = document.createElement('pre');
        const code = document.createElement('code');
        code.textContent = body.join('\n');
        if (m[2]) code.dataset.lang = m[2];
        pre.append(code);
        out.push(pre);
      } else if (!line.trim()) {
        flushPara();
      } else if ((m = HEADING.exec(line))) {
        flushPara();
        // A heading inside a chat bubble reads as a bold line; real <h*> would clutter the host
        // page's heading outline for screen-reader users.
        const p = wrap('p', [wrap('strong', inline(m[2]))]);
        p.className = 'h';
        out.push(p);
      } else if (RULE.test(line)) {
        flushPara();
        out.push(document.createElement('hr'));
      } else if (QUOTE.test(line)) {
        flushPara();
        const quoted = [];
        for (; i < lines.length && (m = QUOTE.exec(lines[i])); i++) quoted.push(m[1]);
        i--;
        out.push(wrap('blockquote', blocks(quoted)));
      } else if ((m = LIST_ITEM.exec(line)) && (m[4] || para.length === 0)) {
        flushPara();
        i = list(lines, i, out) - 1;
      } else {
        para.push(line);
      }
    }
    flushPara();
    return out;
  }

  /** A list starting at line `i` (items of one kind); returns the index after it. */
  function list(lines, i, out) {
    const first = LIST_ITEM.exec(lines[i]);
    const ordered = /\d/.test(first[2]);
    const el = document.createElement(ordered ? 'ol' : 'ul');
    if (ordered && parseInt(first[2], 10) !== 1) el.start = parseInt(first[2], 10);
    while (i < lines.length) {
      const m = LIST_ITEM.exec(lines[i]);
      if (!m || /\d/.test(m[2]) !== ordered) break;
      const indent = m[1].length + m[2].length + Math.max(1, Math.min(m[3].length, 4));
      const item = [m[4]];
      // Continuation lines: indented under the item (nested lists too), or blank inside it.
      for (i++; i < lines.length; i++) {
        const l = lines[i];
        const lead = l.length - l.trimStart().length;
        if (l.trim() && lead >= Math.min(indent, 2)) item.push(l.slice(Math.min(lead, indent)));
        else if (!l.trim() && lines[i + 1] && lines[i + 1].length - lines[i + 1].trimStart().length >= 2) item.push('');
        else break;
      }
      const content = blocks(item);
      const li = document.createElement('li');
      // A one-paragraph item is written inline, without a <p> margin.
      if (content.length && content[0].tagName === 'P' && !content[0].className) li.append(...content.shift().childNodes);
      li.append(...content);
      el.append(li);
      if (i < lines.length && !lines[i].trim()) break;
    }
    out.push(el);
    return i;
  }

  // ---------------------------------------------------------------------------------------------
  // Configuration from the script tag.

  const script = document.currentScript || Array.prototype.slice.call(document.querySelectorAll('script[data-site-key]')).pop();
  if (!script) return;
  const ds = script.dataset;
  const cfg = {
    siteKey: ds.siteKey || '',
    hub: (ds.hub || new URL(script.src, location.href).origin).replace(/\/+$/, ''),
    position: ds.position === 'left' ? 'left' : 'right',
    title: ds.title || '',
    welcome: ds.welcome || '',
    starters: (ds.starters || '').split('|').map((s) => s.trim()).filter(Boolean).slice(0, 6),
    theme: ['light', 'dark', 'auto'].indexOf(ds.theme) >= 0 ? ds.theme : 'light',
    open: ds.open !== undefined && ds.open !== 'false',
    placeholder: ds.placeholder || 'Type your message\u2026',
  };

  // ---------------------------------------------------------------------------------------------
  // Persistence: the session id is the conversation (a capability: whoever holds it may use it),
  // kept per hub and site key. While an answer streams, the text so far and the id of the last
  // event applied to it are saved together, so a reload shows it and resumes exactly after it.

  const STORE_KEY = 'switchboard:v1:' + cfg.hub + ':' + cfg.siteKey;

  function load() {
    try { return JSON.parse(localStorage.getItem(STORE_KEY)) || {}; } catch (_) { return {}; }
  }

  let saved = load();
  let saveTimer = 0;

  function save(now) {
    clearTimeout(saveTimer);
    saveTimer = 0;
    const write = () => { try { localStorage.setItem(STORE_KEY, JSON.stringify(saved)); } catch (_) { /* private mode, quota */ } };
    if (now) write();
    else saveTimer = setTimeout(write, 150);
  }

  // ---------------------------------------------------------------------------------------------
  // The hub's HTTP API.

  function request(method, path, opts) {
    opts = opts || {};
    const headers = Object.assign({}, opts.headers);
    const init = { method, headers, mode: 'cors', credentials: 'omit', cache: 'no-store' };
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }
    return fetch(cfg.hub + path, init);
  }

  /** `{ status, code, message, retryAfter }` of a refused response (the hub's JSON error shape). */
  async function failure(resp) {
    let body = null;
    try { body = await resp.json(); } catch (_) { /* not JSON */ }
    const e = (body && body.error) || {};
    const wait = parseInt(resp.headers.get('retry-after') || '', 10);
    return { status: resp.status, code: e.code || 'http_' + resp.status, message: e.message || '', retryAfter: wait > 0 ? wait : 0 };
  }

  const sessionPath = (suffix) => '/api/chat/sessions/' + encodeURIComponent(saved.session) + (suffix || '');

  // ---------------------------------------------------------------------------------------------
  // Styles, adopted by the shadow root: no inline <style> or style attribute, so the widget runs
  // under a strict CSP (`style-src 'self'`) on customers' pages. Every colour, size and font comes
  // from a `--sb-*` custom property (they pierce the shadow boundary) with a default.

  const CSS = `
:host{all:initial}
.sb{--a:var(--sb-accent,#0e7c66);--at:var(--sb-accent-text,#fff);--bg:var(--sb-bg,#fff);--fg:var(--sb-text,#1b2430);--mu:var(--sb-muted,#5b6877);--sf:var(--sb-surface,#f0f3f6);--bd:var(--sb-border,#dbe1e8);--r:var(--sb-radius,16px);--ff:var(--sb-font,system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif);--ox:var(--sb-offset-x,20px);--oy:var(--sb-offset-y,20px);--ls:var(--sb-launcher-size,56px);--fc:var(--sb-focus,var(--a));font:15px/1.45 var(--ff);color:var(--fg);-webkit-font-smoothing:antialiased}
.sb.dark{--bg:var(--sb-bg,#16191f);--fg:var(--sb-text,#e6e9ee);--mu:var(--sb-muted,#9aa6b2);--sf:var(--sb-surface,#242931);--bd:var(--sb-border,#343b45)}
*{box-sizing:border-box}
button{font:inherit;color:inherit;cursor:pointer;border:0;background:none;padding:0;margin:0}
button:disabled{cursor:default;opacity:.5}
:focus-visible{outline:2px solid var(--fc);outline-offset:2px}
svg{width:20px;height:20px;fill:none;stroke:currentColor;stroke-width:2;stroke-linecap:round;stroke-linejoin:round;flex:none}
.sr{position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;clip:rect(0 0 0 0);clip-path:inset(50%);white-space:nowrap;border:0}
.launcher{position:fixed;z-index:var(--sb-z-index,2147483000);bottom:var(--oy);right:var(--ox);width:var(--ls);height:var(--ls);border-radius:50%;background:var(--a);color:var(--at);display:grid;place-items:center;box-shadow:0 6px 24px rgba(0,0,0,.22);transition:transform .15s ease}
.launcher:hover{transform:scale(1.06)}
.launcher svg{width:26px;height:26px}
.launcher .x{display:none}
.open .launcher .x{display:block}
.open .launcher .c{display:none}
.badge{position:absolute;top:2px;right:2px;width:14px;height:14px;border-radius:50%;background:#e5484d;border:2px solid var(--bg)}
.badge[hidden]{display:none}
.left .launcher,.left .win{right:auto;left:var(--ox)}
.win{position:fixed;z-index:var(--sb-z-index,2147483000);right:var(--ox);bottom:calc(var(--oy) + var(--ls) + 14px);width:var(--sb-width,380px);max-width:calc(100vw - 2 * var(--ox));height:var(--sb-height,620px);max-height:calc(100vh - var(--oy) - var(--ls) - 40px);max-height:calc(100dvh - var(--oy) - var(--ls) - 40px);display:flex;flex-direction:column;overflow:hidden;background:var(--bg);color:var(--fg);border:1px solid var(--bd);border-radius:var(--r);box-shadow:0 12px 48px rgba(0,0,0,.24);animation:sb-in .18s ease-out}
.win[hidden]{display:none}
@keyframes sb-in{from{opacity:0;transform:translateY(12px)}}
@media (prefers-reduced-motion:reduce){.win{animation:none}.launcher{transition:none}.dots i{animation:none}}
header{display:flex;align-items:center;gap:8px;padding:14px 12px 14px 18px;background:var(--a);color:var(--at)}
header h2{flex:1;margin:0;font-size:16px;font-weight:600;line-height:1.3;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
header button{width:34px;height:34px;border-radius:50%;display:grid;place-items:center}
header button:hover{background:rgba(255,255,255,.16)}
header :focus-visible{outline-color:var(--at)}
.banner{padding:8px 16px;font-size:13px;background:#fff3d6;color:#6b4500;border-bottom:1px solid #f0dca6}
.banner[hidden]{display:none}
.log{flex:1;overflow-y:auto;overscroll-behavior:contain;padding:16px;display:flex;flex-direction:column;gap:10px}
.msg{max-width:86%;display:flex;flex-direction:column;align-items:flex-start;align-self:flex-start;gap:3px}
.msg.user{align-self:flex-end;align-items:flex-end}
.bubble{padding:9px 13px;border-radius:var(--r);overflow-wrap:anywhere}
.bubble:empty{display:none}
.user .bubble{background:var(--a);color:var(--at);border-bottom-right-radius:5px;white-space:pre-wrap}
.assistant .bubble{background:var(--sf);border-bottom-left-radius:5px}
.meta{font-size:12px;color:var(--mu);padding:0 4px}
.meta:empty{display:none}
.meta button{text-decoration:underline;color:var(--a);font-size:12px}
.dark .meta button{color:inherit}
.bubble p{margin:0 0 .6em}
.bubble>:last-child,.bubble li>:last-child{margin-bottom:0}
.bubble ul,.bubble ol{margin:0 0 .6em;padding-left:1.4em}
.bubble li{margin:.15em 0}
.bubble a{color:inherit;text-decoration:underline}
.bubble code{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:rgba(127,127,127,.16);padding:.1em .35em;border-radius:4px}
.bubble pre{margin:0 0 .6em;padding:10px 12px;background:rgba(127,127,127,.14);border-radius:8px;overflow-x:auto}
.bubble pre code{background:none;padding:0;white-space:pre}
.bubble blockquote{margin:0 0 .6em;padding-left:10px;border-left:3px solid var(--bd);color:var(--mu)}
.bubble hr{border:0;border-top:1px solid var(--bd);margin:.6em 0}
.tool{font-size:12px;color:var(--mu);font-style:italic}
.tool[hidden]{display:none}
.dots{display:inline-flex;gap:4px;padding:4px 0}
.dots i{width:7px;height:7px;border-radius:50%;background:var(--mu);animation:sb-dot 1.2s infinite ease-in-out}
.dots i:nth-child(2){animation-delay:.15s}.dots i:nth-child(3){animation-delay:.3s}
@keyframes sb-dot{0%,80%,100%{opacity:.25}40%{opacity:1}}
.notice{align-self:stretch;font-size:13px;padding:9px 12px;border-radius:10px;background:#fdecec;color:#8a1f1f;display:flex;gap:10px;align-items:center;justify-content:space-between}
.dark .notice{background:#3a1f22;color:#ffc9c9}
.notice button{font-weight:600;text-decoration:underline;white-space:nowrap}
.starters{display:flex;flex-wrap:wrap;gap:8px;justify-content:flex-end}
.starters[hidden]{display:none}
.starters button{padding:7px 12px;border:1px solid var(--a);color:var(--a);border-radius:999px;font-size:14px;text-align:left}
.dark .starters button{color:var(--fg)}
.starters button:hover{background:var(--sf)}
form{display:flex;align-items:flex-end;gap:8px;padding:10px 10px 10px 16px;border-top:1px solid var(--bd);padding-bottom:max(10px,env(safe-area-inset-bottom))}
textarea{flex:1;resize:none;border:0;outline:0;background:transparent;color:inherit;font:16px/1.4 var(--ff);max-height:120px;padding:8px 0;margin:0}
textarea::placeholder{color:var(--mu)}
textarea:focus-visible{outline:0}
form:focus-within{box-shadow:inset 0 2px 0 var(--fc)}
.send,.stop{width:38px;height:38px;border-radius:50%;background:var(--a);color:var(--at);display:grid;place-items:center}
.send[hidden],.stop[hidden]{display:none}
.stop svg{fill:currentColor;stroke:none;width:14px;height:14px}
footer{text-align:center;font-size:11px;color:var(--mu);padding:0 0 8px}
@media (max-width:480px){
.win{inset:0;width:100%;max-width:none;height:100%;max-height:none;border-radius:0;border:0}
.open .launcher{display:none}
}`;

  function adoptStyles(root) {
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } catch (_) {
      // Older browsers: a <style> in the shadow root (needs the page's CSP to allow it).
      const style = document.createElement('style');
      style.textContent = CSS;
      root.append(style);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // DOM helpers.

  /** `h('button', { class: 'x', 'aria-label': 'Close', onclick: f }, child...)`: attributes, never `style`. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const k in attrs || {}) {
      const v = attrs[k];
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : v);
    }
    el.append(...children.filter((c) => c !== null && c !== undefined));
    return el;
  }

  const ICONS = {
    chat: 'M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z',
    close: 'M6 6l12 12M18 6L6 18',
    send: 'M5 12h13M13 6l6 6-6 6',
    stop: 'M6 6h12v12H6z',
    reset: 'M12 20h9M16.5 3.5a2.1 2.1 0 0 1 3 3L7 19l-4 1 1-4z',
  };

  function icon(name, cls) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    if (cls) svg.setAttribute('class', cls);
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('d', ICONS[name]);
    svg.append(path);
    return svg;
  }

  // ---------------------------------------------------------------------------------------------
  // State and events.

  const listeners = {};
  const state = {
    ready: false,
    open: false,
    online: navigator.onLine !== false,
    run: null, // the answer being streamed: see newRun()
    sending: false,
    maxChars: 0,
    blockedUntil: 0, // a 429's wait
  };
  let ui = null;

  function emit(name, detail) {
    (listeners[name] || []).slice().forEach((fn) => {
      try { fn(detail); } catch (e) { console.error('[switchboard] a "' + name + '" listener failed', e); }
    });
  }

  const mobile = () => window.matchMedia('(max-width: 480px)').matches;

  // ---------------------------------------------------------------------------------------------
  // The UI.

  function mount(config) {
    const host = document.createElement('switchboard-widget');
    const root = host.attachShadow({ mode: 'open' });
    adoptStyles(root);
    const title = cfg.title || config.name || 'Chat';
    const u = { host, root };

    u.sr = h('div', { class: 'sr', 'aria-live': 'polite', 'aria-atomic': 'true' });
    u.badge = h('span', { class: 'badge', hidden: true });
    u.launcher = h('button', {
      class: 'launcher', type: 'button', 'aria-expanded': 'false', 'aria-controls': 'sb-window', 'aria-label': 'Chat with us', title,
      onclick: () => setOpen(!state.open, true),
    }, icon('chat', 'c'), icon('close', 'x'), u.badge);

    u.reset = h('button', { type: 'button', 'aria-label': 'Start a new conversation', title: 'New conversation', onclick: resetConversation }, icon('reset'));
    u.close = h('button', { type: 'button', 'aria-label': 'Close chat', onclick: () => setOpen(false, true) }, icon('close'));
    u.banner = h('div', { class: 'banner', role: 'status', hidden: state.online, text: "You're offline. Messages will send once you're back online." });
    // role=log would announce every streamed token (its implicit aria-live is polite): it is
    // switched off here, and finished answers are announced once through `u.sr` instead.
    u.log = h('div', { class: 'log', role: 'log', 'aria-live': 'off', 'aria-label': 'Conversation', tabindex: '0' });
    u.starters = h('div', { class: 'starters', hidden: true });
    cfg.starters.forEach((s) => u.starters.append(h('button', { type: 'button', text: s, onclick: () => send(s) })));

    u.input = h('textarea', { id: 'sb-input', rows: '1', placeholder: cfg.placeholder, autocomplete: 'off', enterkeyhint: 'send', maxlength: config.max_message_chars || null });
    u.send = h('button', { class: 'send', type: 'submit', 'aria-label': 'Send message' }, icon('send'));
    u.stop = h('button', { class: 'stop', type: 'button', 'aria-label': 'Stop the answer', hidden: true, onclick: stop }, icon('stop'));
    u.form = h('form', { onsubmit: (e) => { e.preventDefault(); send(u.input.value); } },
      h('label', { class: 'sr', for: 'sb-input', text: 'Message' }), u.input, u.send, u.stop);
    u.input.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(u.input.value); }
    });
    u.input.addEventListener('input', autoGrow);

    u.win = h('div', { class: 'win', id: 'sb-window', role: 'dialog', 'aria-modal': 'true', 'aria-label': title, tabindex: '-1', hidden: true },
      h('header', null, h('h2', { text: title }), u.reset, u.close),
      u.banner, u.log, u.form,
      h('footer', { text: 'Powered by switchboard' }));
    u.win.addEventListener('keydown', trapKeys);

    u.wrap = h('div', { class: 'sb ' + cfg.position }, u.launcher, u.win, u.sr);
    root.append(u.wrap);
    ui = u;
    applyTheme();
    (document.body || document.documentElement).append(host);
    renderWelcome();
  }

  function applyTheme() {
    const mq = window.matchMedia('(prefers-color-scheme: dark)');
    const set = () => ui.wrap.classList.toggle('dark', cfg.theme === 'dark' || (cfg.theme === 'auto' && mq.matches));
    set();
    if (cfg.theme === 'auto' && mq.addEventListener) mq.addEventListener('change', set);
  }

  function autoGrow() {
    const t = ui.input;
    t.style.height = 'auto'; // CSSOM, not a style attribute: allowed under a strict CSP
    t.style.height = Math.min(t.scrollHeight, 120) + 'px';
  }

  function renderWelcome() {
    if (cfg.welcome) {
      const v = addMessage('assistant', cfg.welcome, 'complete');
      v.el.classList.add('welcome');
    }
    ui.log.append(ui.starters);
    updateStarters();
  }

  /** Starter prompts show only on an empty conversation. */
  function updateStarters() {
    ui.starters.hidden = !cfg.starters.length || ui.log.querySelector('.msg:not(.welcome)') !== null;
  }

  function setOpen(open, byUser) {
    if (!ui || open === state.open) return;
    state.open = open;
    ui.win.hidden = !open;
    ui.wrap.classList.toggle('open', open);
    ui.launcher.setAttribute('aria-expanded', String(open));
    saved.open = open;
    save(true);
    if (open) {
      ui.badge.hidden = true;
      scrollDown(true);
      // Opened by the visitor or the page: focus moves in (on phones to the dialog itself, so no
      // keyboard pops up). Reopened on load: the page keeps its focus.
      if (byUser) (mobile() ? ui.win : ui.input).focus();
    } else if (byUser || ui.root.activeElement) {
      ui.launcher.focus();
    }
    emit(open ? 'open' : 'close', {});
  }

  function focusables() {
    return Array.prototype.filter.call(
      ui.win.querySelectorAll('button:not([disabled]),textarea:not([disabled]),a[href],[tabindex="0"]'),
      (el) => el.getClientRects().length > 0,
    );
  }

  /** Esc closes; Tab and Shift+Tab cycle inside the open window. */
  function trapKeys(e) {
    if (e.key === 'Escape') {
      e.stopPropagation();
      setOpen(false, true);
      return;
    }
    if (e.key !== 'Tab') return;
    const els = focusables();
    if (!els.length) return;
    const first = els[0];
    const last = els[els.length - 1];
    const active = ui.root.activeElement;
    if (e.shiftKey && (active === first || active === ui.win)) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && active === last) { e.preventDefault(); first.focus(); }
  }

  function nearBottom() {
    const l = ui.log;
    return l.scrollHeight - l.scrollTop - l.clientHeight < 80;
  }

  function scrollDown(force) {
    if (force || nearBottom()) ui.log.scrollTop = ui.log.scrollHeight;
  }

  /** Announces text once to screen readers (the log itself is silent). */
  function announce(text) {
    ui.sr.textContent = '';
    setTimeout(() => { ui.sr.textContent = text; }, 50);
  }

  // ---------------------------------------------------------------------------------------------
  // Messages. A view is `{ role, text, status, el, bubble, meta, tool }`; status is one of
  // complete, streaming, stopped, failed (assistant) or sending, sent, unsent (user).

  function addMessage(role, text, status) {
    const v = { role, text, status };
    v.bubble = h('div', { class: 'bubble' });
    v.tool = h('div', { class: 'tool', hidden: true });
    v.meta = h('div', { class: 'meta' });
    v.el = h('div', { class: 'msg ' + role }, v.bubble, v.tool, v.meta);
    const stick = nearBottom();
    ui.log.insertBefore(v.el, ui.starters.parentNode === ui.log ? ui.starters : null);
    paint(v);
    updateStarters();
    scrollDown(stick);
    return v;
  }

  const STATUS_TEXT = { stopped: 'Stopped', failed: 'Not finished', sending: 'Sending\u2026', unsent: 'Not sent' };

  /** Redraws a message from its view: text (Markdown for the assistant), status, busy state. */
  function paint(v) {
    const stick = nearBottom();
    v.el.dataset.status = v.status;
    if (v.role === 'user') v.bubble.textContent = v.text;
    else if (!v.text && v.status === 'streaming') v.bubble.replaceChildren(h('span', { class: 'dots', 'aria-label': 'The assistant is typing' }, h('i'), h('i'), h('i')));
    else v.bubble.replaceChildren(renderMarkdown(v.text || (v.status === 'stopped' ? '\u2026' : '')));
    v.bubble.setAttribute('aria-busy', String(v.status === 'streaming'));
    v.meta.replaceChildren(STATUS_TEXT[v.status] || '');
    if (v.note) v.meta.append((v.meta.textContent ? ' \u00b7 ' : '') + v.note);
    if (v.action) v.meta.append(' ', h('button', { type: 'button', text: v.action.label, onclick: v.action.run }));
    scrollDown(stick);
  }

  let paintQueued = new Set();

  /** Coalesces repaints of a streaming message to one per frame. */
  function paintSoon(v) {
    if (!paintQueued.size) requestAnimationFrame(() => { const q = paintQueued; paintQueued = new Set(); q.forEach(paint); });
    paintQueued.add(v);
  }

  /** One finished message: event for the host page, announcement, unread badge. */
  function completed(v) {
    paintQueued.delete(v);
    paint(v);
    emit('message', { role: v.role, content: v.text, status: v.status });
    if (v.role !== 'assistant') return;
    if (v.text) announce('Assistant: ' + v.bubble.textContent);
    if (!state.open) ui.badge.hidden = false;
  }

  let notice = null;

  /** One error notice at a time, under the conversation, with an optional action button. */
  function showNotice(text, action) {
    clearNotice();
    notice = h('div', { class: 'notice', role: 'alert' }, h('span', { text }));
    if (action) notice.append(h('button', { type: 'button', text: action.label, onclick: action.run }));
    ui.log.append(notice);
    scrollDown(true);
    return notice;
  }

  function clearNotice() {
    if (notice) notice.remove();
    notice = null;
    clearInterval(countdown);
  }

  let countdown = 0;

  /** A 429: says how long to wait, counts down, and re-enables sending when the wait is over. */
  function rateLimited(seconds, retry) {
    state.blockedUntil = Date.now() + seconds * 1000;
    const n = showNotice('', null);
    const label = n.firstChild;
    const tick = () => {
      const left = Math.ceil((state.blockedUntil - Date.now()) / 1000);
      if (left > 0) { label.textContent = "You're sending messages too quickly. You can try again in " + left + ' s.'; return; }
      clearInterval(countdown);
      label.textContent = 'You can send again now.';
      n.append(h('button', { type: 'button', text: 'Retry', onclick: retry }));
      updateComposer();
    };
    tick();
    countdown = setInterval(tick, 1000);
    updateComposer();
  }

  function updateComposer() {
    const streaming = !!state.run;
    ui.send.hidden = streaming;
    ui.stop.hidden = !streaming;
    ui.stop.disabled = streaming && !!state.run.stopping;
    ui.send.disabled = !state.online || Date.now() < state.blockedUntil;
    ui.reset.disabled = streaming;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending and following answers.

  const FRIENDLY = {
    upstream_rate_limited: 'The assistant is very busy right now. Please try again in a moment.',
    upstream_timeout: 'The assistant took too long to answer.',
    run_timeout: 'The answer took too long and was cut short.',
    run_lost: 'The answer was interrupted.',
    shutting_down: 'The chat service is restarting.',
    session_full: 'This conversation is full. Start a new one to keep chatting.',
    message_too_long: 'That message is too long. Please shorten it and send again.',
    payload_too_large: 'That message is too long. Please shorten it and send again.',
    budget_exhausted: "This chat has reached today's limit. Please come back tomorrow.",
    spend_limit_reached: "The assistant has reached today's limit. Please come back tomorrow.",
  };
  const friendly = (code) => FRIENDLY[code] || "Sorry, the assistant couldn't answer just now.";

  /** Creates the conversation on the first message (not on every page view). */
  async function ensureSession() {
    if (saved.session) return true;
    const resp = await request('POST', '/api/chat/sessions', { body: { site_key: cfg.siteKey } });
    if (resp.status !== 201) throw await failure(resp);
    saved = { session: (await resp.json()).session_id, open: state.open };
    save(true);
    return true;
  }

  /**
   * Sends `text`, as a new user message or again for a view that was not sent (`retryOf`).
   * Refusals before any answer leave the text where the visitor can send it again.
   */
  async function send(text, retryOf) {
    text = String(text || '').trim();
    if (!text || state.run || state.sending || !ui) return;
    if (!state.online) { showNotice("You're offline. Your message will be ready to send when you're back online."); return; }
    if (Date.now() < state.blockedUntil) return;
    clearNotice();
    const v = retryOf || addMessage('user', text, 'sending');
    v.status = 'sending';
    v.action = null;
    paint(v);
    if (!retryOf) { ui.input.value = ''; autoGrow(); }
    let resp;
    state.sending = true; // until the hub answers: a second Enter must not send twice
    try {
      await ensureSession();
      resp = await request('POST', sessionPath('/messages'), { body: { content: text } });
    } catch (e) {
      return unsent(v, e && e.status ? e : { code: 'network' });
    } finally {
      state.sending = false;
    }
    if (resp.status === 404 && !retryOf) {
      // The conversation no longer exists on the hub (expired, or another database): start over.
      saved = { open: state.open };
      return send(text, v);
    }
    if (!resp.ok) return unsent(v, await failure(resp));
    v.status = 'complete';
    paint(v);
    emit('message', { role: 'user', content: text, status: 'complete' });
    follow(newRun({ retryText: text }), resp);
  }

  /** A message the hub did not take: say why and offer what fits. */
  function unsent(v, err) {
    const retry = () => send(v.text, v);
    if (err.code === 'run_active') {
      // An answer is already being written (another tab?): follow it, keep the text to send later.
      v.el.remove();
      ui.input.value = v.text;
      updateStarters();
      return resume(newRun({}));
    }
    if (err.status === 413 || err.code === 'message_too_long' || err.code === 'session_full') {
      v.el.remove();
      ui.input.value = v.text;
      autoGrow();
      updateStarters();
      return showNotice(friendly(err.code), err.code === 'session_full' ? { label: 'New conversation', run: resetConversation } : null);
    }
    v.status = 'unsent';
    v.action = { label: 'Retry', run: retry };
    paint(v);
    // A spent daily budget renews at midnight UTC: a countdown of hours helps nobody.
    if (err.code === 'budget_exhausted' || err.code === 'spend_limit_reached') return showNotice(friendly(err.code));
    if (err.status === 429) return rateLimited(err.retryAfter || 5, retry);
    if (err.code === 'network') return showNotice(state.online ? "Couldn't reach the chat service." : "You're offline.", { label: 'Retry', run: retry });
    showNotice(friendly(err.code), { label: 'Retry', run: retry });
  }

  /**
   * A run is one answer being followed: `{ view, id, seq, lastId, attempts, stopping, ended }`.
   * `id`/`seq` come from the events' `<run_id>:<n>` ids; `lastId` is sent as Last-Event-ID.
   */
  function newRun(opts) {
    const run = { view: addMessage('assistant', opts.text || '', 'streaming'), id: opts.id || null, seq: opts.seq || 0, lastId: opts.lastId || null, attempts: 0, retryText: opts.retryText || null };
    state.run = run;
    updateComposer();
    return run;
  }

  /** Silence longer than this (the hub sends a keep-alive every 15 s) means a dead connection. */
  const SILENCE_MS = 45000;

  /** Reads one SSE response of the run to its end; a cut or silent stream resumes. */
  async function follow(run, resp) {
    const parser = createSseParser((ev) => onEvent(run, ev));
    let reader = null;
    let watchdog = 0;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => reader && reader.cancel().catch(() => {}), SILENCE_MS);
    };
    try {
      reader = resp.body.getReader();
      for (arm(); ; arm()) {
        const r = await reader.read();
        if (r.done) break;
        parser.push(r.value);
        if (run.ended) { reader.cancel().catch(() => {}); break; }
      }
      parser.end();
    } catch (_) {
      // The connection dropped: resumed below.
    }
    clearTimeout(watchdog);
    if (!run.ended) reconnect(run);
  }

  function onEvent(run, ev) {
    if (run.ended) return;
    if (ev.id) {
      const cut = ev.id.lastIndexOf(':');
      const id = ev.id.slice(0, cut);
      const n = parseInt(ev.id.slice(cut + 1), 10);
      if (id !== run.id) {
        // Another run than the one the saved text belongs to: it replays from its start.
        if (run.id && run.view.text) run.view.text = '';
        run.id = id;
        run.seq = 0;
      } else if (n <= run.seq) {
        return; // already applied: never show a piece twice
      }
      run.seq = n;
      run.lastId = ev.id;
    }
    run.attempts = 0;
    let data = {};
    try { data = JSON.parse(ev.data); } catch (_) { return; }
    const v = run.view;
    if (ev.event === 'delta' && typeof data.content === 'string') {
      v.text += data.content;
      paintSoon(v);
    } else if (ev.event === 'tool') {
      v.tool.hidden = data.status !== 'started';
      v.tool.textContent = 'Looking that up\u2026';
    } else if (ev.event === 'done') {
      return finish(run, data.finish_reason === 'stopped' ? 'stopped' : 'complete');
    } else if (ev.event === 'error') {
      return onStreamError(run, (data.error && data.error.code) || 'error');
    }
    remember(run);
  }

  /** Saves the text so far with the id of the last event in it (see Persistence). */
  function remember(run) {
    saved.run = run.id;
    saved.last = run.lastId;
    saved.text = run.view.text;
    save(false);
  }

  function onStreamError(run, code) {
    if (code === 'shutting_down') return reconnect(run); // this instance is going; another takes over
    if (code === 'resume_unavailable') return settleFromServer(run, 0);
    finish(run, 'failed', code);
  }

  function finish(run, status, code) {
    if (run.ended) return;
    run.ended = true;
    const v = run.view;
    v.status = status;
    v.tool.hidden = true;
    if (status === 'failed') {
      v.note = friendly(code);
      if (run.retryText) v.action = { label: 'Retry', run: () => { v.action = null; paint(v); send(run.retryText); } };
    }
    if (state.run === run) state.run = null;
    delete saved.run;
    delete saved.last;
    delete saved.text;
    save(true);
    updateComposer();
    completed(v);
  }

  /** Backoff with jitter: 0.5 s doubling to 15 s. After 8 failed tries it waits for the visitor. */
  function reconnect(run) {
    if (run.ended) return;
    run.attempts++;
    if (run.attempts > 8) {
      run.view.note = 'Connection lost.';
      run.view.action = { label: 'Reconnect', run: () => { run.attempts = 0; run.view.note = null; run.view.action = null; paint(run.view); resume(run); } };
      return paint(run.view);
    }
    run.view.note = 'Reconnecting\u2026';
    paint(run.view);
    const delay = Math.min(15000, 500 * Math.pow(2, run.attempts - 1)) * (0.75 + Math.random() / 2);
    clearTimeout(run.timer);
    run.timer = setTimeout(() => {
      run.timer = 0;
      if (state.online) resume(run);
      else run.waitingOnline = true;
    }, delay);
  }

  /** `GET .../stream` with Last-Event-ID: exactly the events after the last one applied. */
  async function resume(run) {
    if (run.ended) return;
    run.waitingOnline = false;
    let resp;
    try {
      resp = await request('GET', sessionPath('/stream'), { headers: run.lastId ? { 'last-event-id': run.lastId } : {} });
    } catch (_) {
      return reconnect(run);
    }
    if (resp.status === 204) return settleFromServer(run, 0); // it ended while we were away
    if (resp.status === 429) { run.attempts = Math.max(run.attempts, 3); return reconnect(run); }
    if (!resp.ok) {
      const err = await failure(resp);
      return err.status >= 500 ? reconnect(run) : finish(run, 'failed', err.code);
    }
    run.view.note = null;
    paint(run.view);
    follow(run, resp);
  }

  /**
   * Takes the stored outcome of the run from the session (after a 204, or when history ran out).
   * While the run still goes on, polls with backoff until it is stored.
   */
  async function settleFromServer(run, tries) {
    let s = null;
    try {
      const resp = await request('GET', sessionPath());
      if (resp.ok) s = await resp.json();
    } catch (_) { /* retried below */ }
    if (s && !s.active_run_id) {
      const stored = s.messages.filter((m) => shown(m) && m.role === 'assistant' && (!run.id || m.run_id === run.id)).pop();
      if (stored) {
        run.view.text = stored.content || '';
        return finish(run, viewStatus(stored.status), 'error');
      }
      return finish(run, run.view.text ? 'complete' : 'failed', 'error');
    }
    if (s && s.active_run_id && s.active_run_id !== run.id && run.id) {
      run.id = null; // a newer run: follow it from its start
      run.lastId = null;
      run.view.text = '';
      return resume(run);
    }
    run.view.note = 'Still writing\u2026';
    paint(run.view);
    run.timer = setTimeout(() => { run.timer = 0; settleFromServer(run, tries + 1); }, Math.min(8000, 1000 * Math.pow(1.5, tries)));
  }

  async function stop() {
    const run = state.run;
    if (!run || run.stopping) return;
    run.stopping = true;
    run.view.note = 'Stopping\u2026';
    paint(run.view);
    updateComposer();
    try {
      const resp = await request('POST', sessionPath('/stop'));
      if (!resp.ok && resp.status !== 409) throw await failure(resp);
      // The stream ends with `done` (stopped); if it is not connected, ask the session.
      if (run.timer || run.waitingOnline) { clearTimeout(run.timer); settleFromServer(run, 0); }
    } catch (_) {
      run.stopping = false;
      run.view.note = "Couldn't stop the answer.";
      paint(run.view);
      updateComposer();
    }
  }

  function resetConversation() {
    if (state.run) return;
    saved = { open: state.open };
    save(true);
    clearNotice();
    ui.log.replaceChildren();
    renderWelcome();
    ui.input.focus();
  }

  /**
   * Stored messages the visitor sees: theirs and the assistant's answers. Tool requests (an
   * assistant message with `tool_calls` and no text) and tool results are the hub's business.
   */
  function shown(m) {
    if (m.role === 'user') return true;
    return m.role === 'assistant' && !(m.tool_calls && !m.content) && (!!m.content || m.status !== 'complete');
  }

  const viewStatus = (stored) => (stored === 'complete' || stored === 'stopped' ? stored : 'failed');

  // ---------------------------------------------------------------------------------------------
  // Start-up.

  /** Shows the stored conversation and, if an answer is running, follows it from where it was. */
  async function restore() {
    let s;
    try {
      const resp = await request('GET', sessionPath());
      if (resp.status === 404 || resp.status === 403) { saved = { open: saved.open }; save(true); return; }
      if (!resp.ok) return;
      s = await resp.json();
    } catch (_) {
      return;
    }
    for (const m of (s.messages || []).filter(shown)) {
      addMessage(m.role, m.content || '', m.role === 'user' ? 'complete' : viewStatus(m.status));
    }
    if (s.active_run_id) {
      const same = saved.run === s.active_run_id && saved.last;
      const run = newRun(same ? { id: saved.run, lastId: saved.last, seq: parseInt(saved.last.slice(saved.last.lastIndexOf(':') + 1), 10), text: saved.text || '' } : {});
      resume(run);
    } else if (saved.run) {
      delete saved.run; delete saved.last; delete saved.text;
      save(true);
    }
    scrollDown(true);
  }

  function watchConnectivity() {
    const set = (online) => {
      state.online = online;
      ui.banner.hidden = online;
      updateComposer();
      const run = state.run;
      if (online && run && !run.ended && (run.waitingOnline || run.timer)) {
        // Back online: resume at once instead of waiting out the backoff.
        clearTimeout(run.timer);
        run.attempts = 0;
        resume(run);
      }
    };
    window.addEventListener('online', () => set(true));
    window.addEventListener('offline', () => set(false));
    window.addEventListener('pagehide', () => { if (saveTimer) save(true); });
  }

  /** Asks the hub whether this page may use the site key; resolves to its config or null. */
  async function allowed() {
    for (;;) {
      try {
        const resp = await fetch(cfg.hub + '/api/chat/widgets/' + encodeURIComponent(cfg.siteKey), { credentials: 'omit', cache: 'no-store' });
        if (resp.ok) return resp.json();
        const err = await failure(resp);
        console.warn('[switchboard] chat widget not shown: the hub refused site key "' + cfg.siteKey + '" on this page (' + err.code + ').');
        return null;
      } catch (_) {
        if (navigator.onLine === false) {
          await new Promise((r) => window.addEventListener('online', r, { once: true }));
          continue;
        }
        // A refused origin gets no CORS headers, which the browser reports as a network error.
        console.warn('[switchboard] chat widget not shown: ' + cfg.hub + ' did not allow site key "' + cfg.siteKey + '" on ' + location.origin + '.');
        return null;
      }
    }
  }

  async function boot() {
    if (!cfg.siteKey) { console.warn('[switchboard] chat widget not shown: the script tag has no data-site-key.'); return; }
    const config = await allowed();
    if (!config) return;
    if (!document.body) await new Promise((r) => document.addEventListener('DOMContentLoaded', r, { once: true }));
    mount(config);
    watchConnectivity();
    updateComposer();
    if (saved.session) await restore();
    if (saved.open || (cfg.open && !mobile())) setOpen(true);
    state.ready = true;
    emit('ready', {});
    window.dispatchEvent(new CustomEvent('switchboard:ready'));
  }

  // ---------------------------------------------------------------------------------------------
  // The page's API: window.Switchboard.

  const api = {
    version: '1',
    open() { setOpen(true, true); return api; },
    close() { setOpen(false, true); return api; },
    toggle() { setOpen(!state.open, true); return api; },
    /** Starts a new conversation (the stored one is forgotten on this device). */
    reset() { if (ui) resetConversation(); return api; },
    /** `'message'` `{role, content, status}`, `'open'`, `'close'`, `'ready'` (at once if already). */
    on(name, fn) {
      (listeners[name] = listeners[name] || []).push(fn);
      if (name === 'ready' && state.ready) setTimeout(() => fn({}), 0);
      return api;
    },
    off(name, fn) {
      listeners[name] = (listeners[name] || []).filter((f) => f !== fn);
      return api;
    },
    /** The parser and renderer, for tests and the curious; not a stable API. */
    internals: { createSseParser, renderMarkdown },
  };
  window.Switchboard = api;

  boot().catch((e) => console.error('[switchboard] chat widget failed to start', e));
})();
