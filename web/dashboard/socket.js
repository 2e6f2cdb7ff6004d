// The one supervisor WebSocket (README §Supervisor WebSocket). Views follow topics through it;
// it keeps each topic's position (`epoch`/`seq`) so that after any drop it resubscribes with
// `since` and the server either replays exactly what was missed (`recovered: true`) or sends a
// fresh snapshot (`recovered: false`). Events at or before the known position are dropped, so
// a view never sees one twice. The token travels as a subprotocol (`["switchboard", token]`),
// never in the URL, where proxies would log it.

const PING_EVERY_MS = 15000;
/** Nothing heard for this long (not even our pong) means the connection is dead. */
const SILENCE_MS = 35000;
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
/** A connection that lived this long resets the backoff. */
const STABLE_MS = 5000;
const CONTROL_TIMEOUT_MS = 15000;
/** An upgrade that neither opens nor fails (a proxy holding it) is given up after this. */
const CONNECT_TIMEOUT_MS = 10000;

/** Close codes (protocol.rs): 4001 and 4003 are terminal, the rest invite a reconnect. */
const CLOSE_UNAUTHORIZED = 4001;
const CLOSE_FORBIDDEN = 4003;

export class LiveSocket {
  /**
   * `onState({ state, detail })` reports the connection for the indicator: `connecting`,
   * `live`, `reconnecting` (with `retryAt`), `offline`, `closed`. `onUnauthorized()` is called
   * on close 4001 (the token is unknown or revoked): the caller signs out.
   */
  constructor({ token, onState = () => {}, onUnauthorized = () => {}, probeToken = null }) {
    this.token = token;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized;
    this.probeToken = probeToken;
    /** topic → { handler, epoch, seq, pending } */
    this.topics = new Map();
    this.controls = new Map();
    this.nextControlId = 1;
    this.ws = null;
    this.attempt = 0;
    this.stopped = false;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastHeard = 0;
    this.openedAt = 0;
    this.failuresBeforeOpen = 0;
    this.online = () => { if (this.retryTimer) this.reconnectNow(); };
    window.addEventListener('online', this.online);
    this.connect();
  }

  get isOpen() { return this.ws?.readyState === WebSocket.OPEN; }

  /**
   * Follows a topic: `handler(msg)` gets `{kind:'snapshot', snapshot}` (start over from this
   * state), `{kind:'event', event, seq}`, `{kind:'recovered'}` (missed events follow),
   * `{kind:'error', code, message}` and `{kind:'forbidden'}` (the topic is not ours to see).
   * Following a topic again restarts it with a fresh snapshot. Returns a function that stops.
   */
  follow(topic, handler) {
    const entry = { handler, epoch: null, seq: 0, pending: false };
    this.topics.set(topic, entry);
    if (this.isOpen) this.subscribe(topic, entry);
    return () => {
      if (this.topics.get(topic) !== entry) return;
      this.topics.delete(topic);
      if (this.isOpen) this.send({ type: 'unsubscribe', topic });
    };
  }

  /** Sends a live control action; resolves with the `control_result`. */
  control(callId, action) {
    if (!this.isOpen) return Promise.reject(new Error('Not connected to the hub.'));
    const id = this.nextControlId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.controls.delete(id);
        reject(new Error('No answer from the hub in time; the action may still have been sent — check the audit list.'));
      }, CONTROL_TIMEOUT_MS);
      this.controls.set(id, { resolve, reject, timer });
      this.send({ type: 'control', call_id: callId, action, id });
    });
  }

  close() {
    this.stopped = true;
    window.removeEventListener('online', this.online);
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.failControls('Signed out.');
    if (this.ws) try { this.ws.close(1000, 'bye'); } catch { /* already closing */ }
    this.onState({ state: 'closed' });
  }

  reconnectNow() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.attempt = 0;
    this.connect();
  }

  // ---- connection --------------------------------------------------------------------------

  connect() {
    if (this.stopped) return;
    this.retryTimer = null;
    this.onState({ state: this.attempt === 0 ? 'connecting' : 'reconnecting' });
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    let ws;
    try {
      ws = new WebSocket(url, ['switchboard', this.token]);
    } catch (e) {
      this.scheduleRetry(`cannot open: ${e.message}`);
      return;
    }
    this.ws = ws;
    const connectTimer = setTimeout(() => {
      if (this.ws !== ws || ws.readyState !== WebSocket.CONNECTING) return;
      this.ws = null;
      try { ws.close(); } catch { /* never opened */ }
      this.closed(1006, 'timed out connecting', 0);
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      if (this.ws !== ws) return;
      this.openedAt = Date.now();
      this.lastHeard = Date.now();
      this.failuresBeforeOpen = 0;
      this.onState({ state: 'live' });
      for (const [topic, entry] of this.topics) this.subscribe(topic, entry);
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.heartbeat(ws), PING_EVERY_MS);
    };
    ws.onmessage = (e) => {
      if (this.ws !== ws) return;
      this.lastHeard = Date.now();
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      this.receive(msg);
    };
    ws.onclose = (e) => {
      clearTimeout(connectTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      clearInterval(this.pingTimer);
      this.failControls('The connection dropped before the hub answered; the action may still have been sent — check the audit list.');
      this.closed(e.code, e.reason, this.openedAt ? Date.now() - this.openedAt : 0);
    };
    ws.onerror = () => { /* onclose follows with the code */ };
  }

  heartbeat(ws) {
    if (this.ws !== ws) return;
    if (Date.now() - this.lastHeard > SILENCE_MS) {
      // A half-open connection (a NAT that forgot us) never reports closing by itself.
      try { ws.close(4000, 'silent'); } catch { /* closing */ }
      this.ws = null;
      clearInterval(this.pingTimer);
      this.failControls('The connection went silent before the hub answered; check the audit list.');
      this.closed(1006, 'silent', Date.now() - this.openedAt);
      return;
    }
    this.send({ type: 'ping' });
  }

  closed(code, reason, livedMs) {
    this.openedAt = 0;
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      this.stopped = true;
      this.onState({ state: 'closed' });
      this.onUnauthorized();
      return;
    }
    if (code === CLOSE_FORBIDDEN) {
      // A topic we may not see (another org's call), or too many sockets for this token. The
      // topics still waiting for `subscribed` are the culprits: drop them, or we would loop.
      const culprits = [...this.topics].filter(([t, e]) => e.pending && t.includes(':'));
      for (const [topic, entry] of culprits) {
        this.topics.delete(topic);
        entry.handler({ kind: 'forbidden' });
      }
      if (!culprits.length) this.attempt = Math.max(this.attempt, 5);
    }
    if (livedMs >= STABLE_MS) this.attempt = 0;
    if (!livedMs) this.failuresBeforeOpen += 1;
    // A refused upgrade (a revoked token checked before the upgrade) only shows as 1006:
    // ask the API whether the token still works.
    if (this.failuresBeforeOpen >= 2 && this.probeToken) this.probeToken();
    this.scheduleRetry(reason || `closed (${code})`);
  }

  scheduleRetry(why) {
    if (this.stopped) return;
    // Exponential backoff with jitter, so a hub restart is not met by every dashboard at once.
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    const delay = Math.round(cap / 2 + Math.random() * cap / 2);
    this.attempt += 1;
    const offline = navigator.onLine === false;
    this.onState({ state: offline ? 'offline' : 'reconnecting', retryAt: Date.now() + delay, detail: why });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  send(msg) {
    try { this.ws?.send(JSON.stringify(msg)); } catch { /* the close handler reconnects */ }
  }

  subscribe(topic, entry) {
    entry.pending = true;
    const msg = { type: 'subscribe', topic };
    if (entry.epoch) msg.since = { epoch: entry.epoch, seq: entry.seq };
    this.send(msg);
  }

  failControls(message) {
    for (const [id, c] of this.controls) {
      clearTimeout(c.timer);
      c.reject(new Error(message));
      this.controls.delete(id);
    }
  }

  // ---- frames ------------------------------------------------------------------------------

  receive(msg) {
    const entry = msg.topic ? this.topics.get(msg.topic) : null;
    switch (msg.type) {
      case 'subscribed': {
        if (!entry) return;
        entry.pending = false;
        entry.epoch = msg.epoch;
        entry.seq = msg.seq;
        if (msg.recovered) entry.handler({ kind: 'recovered' });
        else entry.handler({ kind: 'snapshot', snapshot: msg.snapshot || {} });
        return;
      }
      case 'event': {
        if (!entry || entry.pending) return;
        // Already seen (a replay overlapping what we had): skip. Seq may jump forward (events
        // of orgs this token cannot see); the server checks the stream for real gaps.
        if (entry.epoch === msg.epoch && msg.seq <= entry.seq) return;
        entry.epoch = msg.epoch;
        entry.seq = msg.seq;
        entry.handler({ kind: 'event', event: msg.event, seq: msg.seq });
        return;
      }
      case 'resync': {
        // The server could not fill a gap and ended this subscription: start again from our
        // position; it replays or sends a fresh snapshot.
        if (entry) this.subscribe(msg.topic, entry);
        return;
      }
      case 'error': {
        if (!entry) return;
        entry.pending = false;
        entry.handler({ kind: 'error', code: msg.error?.code, message: msg.error?.message });
        if (msg.error?.code === 'unavailable') {
          setTimeout(() => { if (this.topics.get(msg.topic) === entry && this.isOpen) this.subscribe(msg.topic, entry); }, 2000 + Math.random() * 2000);
        }
        return;
      }
      case 'control_result': {
        const c = this.controls.get(msg.id);
        if (!c) return;
        clearTimeout(c.timer);
        this.controls.delete(msg.id);
        c.resolve(msg);
        return;
      }
      default:
        // pong, unsubscribed: nothing to do.
    }
  }
}
