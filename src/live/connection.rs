//! One supervisor socket: reads client messages, writes queued frames, pings, and closes with
//! the code that tells the client what to do next. Frames reach the socket through a queue
//! bounded in bytes; a socket that cannot keep up is closed with 4008 instead of slowing
//! anyone else or growing without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::protocol::{self, ClientMessage, Topic, close};
use super::sockets::SocketPlace;
use super::{presence, subscription};
use crate::app::AppState;
use crate::auth::Principal;

/// A frame the client does not take within this time means the socket is stuck.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// After our close frame, how long we wait for the client's.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// The close frame waits behind unread data; a client that reads again within this time learns
/// why it was closed, one that does not is simply dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What a socket's subscriptions share with it.
pub(super) struct Socket {
    pub app: Arc<AppState>,
    pub who: Principal,
    /// Unique per socket: the watcher id in presence.
    pub id: String,
    pub outbox: Outbox,
    /// Topic → the running subscription's stop token and generation.
    pub subs: Mutex<HashMap<String, (u64, CancellationToken)>>,
}

impl Socket {
    /// Forgets a subscription that ended by itself, unless a newer one replaced it already.
    pub fn forget(&self, topic: &str, generation: u64) {
        if let Ok(mut subs) = self.subs.lock()
            && subs.get(topic).is_some_and(|(g, _)| *g == generation)
        {
            subs.remove(topic);
        }
    }
}

/// The socket's outbound queue, bounded in bytes.
pub(super) struct Outbox {
    tx: mpsc::UnboundedSender<Message>,
    queued: AtomicUsize,
    limit: usize,
    /// Cancelled when the queue overflows; the socket then closes with 4008.
    pub overflow: CancellationToken,
}

impl Outbox {
    /// Queues a frame; `false` once the socket is over its limit or gone (stop sending).
    pub fn push(&self, frame: Utf8Bytes) -> bool {
        let n = frame.len();
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        // One frame alone may exceed the limit (a big snapshot); a backlog may not.
        if before > 0 && before + n > self.limit {
            self.overflow.cancel();
            return false;
        }
        self.tx.send(Message::Text(frame)).is_ok()
    }

    /// A WebSocket ping, behind whatever is queued.
    fn ping(&self) {
        let _ = self.tx.send(Message::Ping(Default::default()));
    }

    fn sent(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::AcqRel);
    }
}

pub(super) async fn run(app: Arc<AppState>, who: Principal, ws: WebSocket, _place: SocketPlace) {
    let cfg = app.settings.live.ws.clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let socket = Arc::new(Socket {
        app: app.clone(),
        who,
        id: uuid::Uuid::new_v4().simple().to_string(),
        outbox: Outbox { tx, queued: AtomicUsize::new(0), limit: cfg.queue_bytes, overflow: CancellationToken::new() },
        subs: Mutex::new(HashMap::new()),
    });
    app.metrics.ws_connections.inc();
    let (sink, mut stream) = ws.split();
    // The writer is its own task so a socket stuck in a write can still be told to close.
    let stop_writing = CancellationToken::new();
    let closing: Arc<Mutex<Option<CloseReason>>> = Arc::default();
    let mut writer = tokio::spawn(write(sink, rx, socket.clone(), stop_writing.clone(), closing.clone()));
    // Call topics this socket watches (presence), with the call's org.
    let mut watching: HashMap<String, String> = HashMap::new();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + cfg.ping_interval, cfg.ping_interval);
    let mut heard = Instant::now();
    let mut generation = 0u64;

    let reason: Option<CloseReason> = loop {
        tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => break Some((close::SHUTTING_DOWN, "server shutting down")),
            _ = socket.outbox.overflow.cancelled() => break Some((close::TOO_SLOW, "too slow: the outbound queue is full")),
            _ = &mut writer => break None,
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    heard = Instant::now();
                    generation += 1;
                    // Boxed: the socket task lives for hours, and an inline future would keep the
                    // space of the largest message handler for all that time.
                    if let Err(reason) = Box::pin(handle(&socket, &mut watching, &text, generation)).await {
                        break Some(reason);
                    }
                }
                Some(Ok(Message::Binary(_))) => break Some((close::BAD_MESSAGE, "binary frames are not part of the protocol")),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => heard = Instant::now(),
                Some(Ok(Message::Close(_))) | None => break None,
                // Over the size limit or not WebSocket at all; if the socket still writes, say why.
                Some(Err(_)) => break Some((close::BAD_MESSAGE, "invalid or oversized frame")),
            },
            _ = ping.tick() => {
                if heard.elapsed() >= cfg.idle_timeout {
                    break Some((close::IDLE, "nothing heard within the idle timeout"));
                }
                Box::pin(presence::refresh(&socket, &watching)).await;
                socket.outbox.ping();
            }
        }
    };

    // Subscriptions stop first so nothing more is queued; watchers leave.
    let subs: Vec<CancellationToken> = socket.subs.lock().map(|mut s| s.drain().map(|(_, (_, t))| t).collect()).unwrap_or_default();
    for stop in subs {
        stop.cancel();
    }
    if let Ok(mut c) = closing.lock()
        && c.is_none()
    {
        *c = reason;
    }
    stop_writing.cancel();
    for (topic, org) in &watching {
        Box::pin(presence::leave(&socket, topic, org)).await;
    }
    if !writer.is_finished() {
        let _ = writer.await;
    }
    if reason.is_some() {
        // The closing handshake: give the client a moment to answer our close frame, so it reads
        // the code before the connection goes (dropping at once can reset what it has not read).
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(m)) = stream.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }
    app.metrics.ws_connections.dec();
}

/// Sends queued frames until told to stop, then the close frame (if there is a reason to give).
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    socket: Arc<Socket>,
    stop: CancellationToken,
    closing: Arc<Mutex<Option<CloseReason>>>,
) {
    loop {
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            msg = rx.recv() => match msg { Some(m) => m, None => break },
        };
        // Dropping a half-done send is fine here: the socket is being closed either way.
        let sent = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = tokio::time::timeout(WRITE_TIMEOUT, send_batch(&mut sink, first, &mut rx)) => r,
        };
        match sent {
            Ok(Ok(n)) => socket.outbox.sent(n),
            Ok(Err(_)) => return,
            Err(_) => {
                if let Ok(mut c) = closing.lock() {
                    *c = Some((close::TOO_SLOW, "too slow: a frame was not taken in time"));
                }
                break;
            }
        }
    }
    let reason = closing.lock().ok().and_then(|c| *c);
    if let Some((code, reason)) = reason {
        if code == close::TOO_SLOW {
            socket.app.metrics.ws_slow_closed.inc();
        }
        // Queued behind what the client has not read yet; it gets a while to get there.
        let frame = Message::Close(Some(CloseFrame { code, reason: reason.into() }));
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
    }
}

/// Frames written together at most: under load one write carries many frames (far fewer
/// syscalls), while a single frame still goes out at once.
const MAX_BATCH: usize = 64;

/// Writes `first` and whatever else is already queued, then flushes once. Returns the bytes
/// of text frames sent, to release from the queue's budget.
async fn send_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    first: Message,
    rx: &mut mpsc::UnboundedReceiver<Message>,
) -> Result<usize, axum::Error> {
    let text_len = |m: &Message| if let Message::Text(t) = m { t.len() } else { 0 };
    let mut bytes = text_len(&first);
    sink.feed(first).await?;
    for _ in 1..MAX_BATCH {
        let Ok(next) = rx.try_recv() else { break };
        bytes += text_len(&next);
        sink.feed(next).await?;
    }
    sink.flush().await?;
    Ok(bytes)
}

type CloseReason = (u16, &'static str);

/// One client message. `Err` closes the socket with that code.
async fn handle(socket: &Arc<Socket>, watching: &mut HashMap<String, String>, text: &str, generation: u64) -> Result<(), CloseReason> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|_| (close::BAD_MESSAGE, "not a message of the protocol"))?;
    match msg {
        ClientMessage::Ping => {
            socket.outbox.push(protocol::pong());
        }
        ClientMessage::Subscribe { topic, since } => {
            let parsed = Topic::parse(&topic).ok_or((close::BAD_MESSAGE, "unknown topic"))?;
            subscribe(socket, watching, topic, parsed, since.map(Into::into), generation).await?;
        }
        ClientMessage::Unsubscribe { topic } => {
            let stop = socket.subs.lock().ok().and_then(|mut s| s.remove(&topic));
            if let Some((_, stop)) = stop {
                stop.cancel();
            }
            if let Some(org) = watching.remove(&topic) {
                presence::leave(socket, &topic, &org).await;
            }
            socket.outbox.push(protocol::unsubscribed(&topic));
        }
        ClientMessage::Control { call_id, action, id } => {
            super::control::spawn(socket.clone(), call_id, action, id);
        }
    }
    Ok(())
}

async fn subscribe(
    socket: &Arc<Socket>,
    watching: &mut HashMap<String, String>,
    name: String,
    topic: Topic,
    since: Option<crate::hub::Position>,
    generation: u64,
) -> Result<(), CloseReason> {
    let app = &socket.app;
    let max = app.settings.live.ws.max_subscriptions;
    let already = socket.subs.lock().map(|s| s.contains_key(&name)).unwrap_or(false);
    let count = socket.subs.lock().map(|s| s.len()).unwrap_or(0);
    if !already && count >= max {
        return Err((close::BAD_MESSAGE, "too many subscriptions on one socket"));
    }
    // A single call or chat: its org, which must be the token's. An unknown one and another
    // org's get the same answer, so ids cannot be probed.
    let owner = match &topic {
        Topic::Calls | Topic::Chats => None,
        Topic::Call(id) => Some(app.store.get_call(id).await.map(|c| c.map(|c| c.org_id))),
        Topic::Chat(id) => Some(app.store.get_chat_session(id).await.map(|s| s.map(|s| s.org_id))),
    };
    let org = match owner {
        None => None,
        Some(Ok(Some(org))) if socket.who.scope.allows(&org) => Some(org),
        Some(Ok(_)) => return Err((close::FORBIDDEN, "no such call or chat for this token")),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot check a subscription");
            socket.outbox.push(protocol::error("unavailable", "The store is unavailable; retry shortly.", Some(&name)));
            return Ok(());
        }
    };
    // Presence is for calls: who is watching a live conversation.
    let org = org.filter(|_| matches!(topic, Topic::Call(_)));
    if let Some(org) = org
        && !watching.contains_key(&name)
    {
        watching.insert(name.clone(), org.clone());
        presence::join(socket, &name, &org).await;
    }
    let stop = CancellationToken::new();
    let previous = socket.subs.lock().ok().and_then(|mut s| s.insert(name.clone(), (generation, stop.clone())));
    // Subscribing again restarts the subscription (a client's answer to `resync`).
    if let Some((_, old)) = previous {
        old.cancel();
    }
    let task = subscription::run(socket.clone(), topic, name, since, stop, generation);
    app.tasks.spawn(task);
    Ok(())
}
