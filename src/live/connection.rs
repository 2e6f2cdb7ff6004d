//! One supervisor socket: reads client messages, pings, and closes with the code that tells
//! the client what to do next. Its writer (`pump`) sends live events and the other frames; a
//! socket that cannot keep up is closed with 4008 instead of slowing anyone else or growing
//! without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::feed::Feed;
use super::protocol::{self, ClientMessage, Topic, close};
use super::pump::{self, Out, Pump};
use super::sockets::SocketPlace;
use super::{presence, subscription};
use crate::app::AppState;
use crate::auth::Principal;

/// After our close frame, how long we wait for the client's.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// What a socket's subscriptions share with it.
pub(super) struct Socket {
    pub app: Arc<AppState>,
    pub who: Principal,
    /// Unique per socket: the watcher id in presence.
    pub id: String,
    pub outbox: Outbox,
    /// Topic → the current subscription's generation, and the token that stops its start (the
    /// snapshot or recovery) if that is still running.
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

/// The way to the socket's writer for everything but live events (which it takes from its
/// feeds itself), bounded in bytes like the writer's own backlog.
pub(super) struct Outbox {
    tx: mpsc::UnboundedSender<Out>,
    queued: AtomicUsize,
    limit: usize,
    /// Cancelled when the socket is over its limit; the socket then closes with 4008.
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
        self.tx.send(Out::Frame(Message::Text(frame))).is_ok()
    }

    /// A WebSocket ping, behind whatever is queued.
    fn ping(&self) {
        let _ = self.tx.send(Out::Frame(Message::Ping(Default::default())));
    }

    /// Hands a started subscription to the writer, behind its `subscribed` frame.
    pub fn follow(&self, feed: Feed) {
        let _ = self.tx.send(Out::Follow(Box::new(feed)));
    }

    /// Tells the writer that a subscription ended or was replaced.
    fn unfollow(&self) {
        let _ = self.tx.send(Out::Unfollow);
    }

    /// The writer took `n` bytes of frames off the queue (into its own backlog).
    pub fn taken(&self, n: usize) {
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
    // The writer is its own task so that reading (and a subscription check waiting on the
    // store) never holds up the socket's events.
    let (stop_writing, stop_rx) = oneshot::channel();
    let closing: Arc<Mutex<Option<CloseReason>>> = Arc::default();
    let pump = Pump::new(sink, rx, socket.clone(), cfg.queue_bytes);
    let mut writer = tokio::spawn(pump::run(pump, stop_rx, closing.clone()));
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
    let _ = stop_writing.send(());
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

pub(super) type CloseReason = (u16, &'static str);

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
                socket.outbox.unfollow();
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
    // Subscribing again restarts the subscription (a client's answer to `resync`): the old one
    // stops before the new one's `subscribed`.
    if let Some((_, old)) = previous {
        old.cancel();
        socket.outbox.unfollow();
    }
    let task = subscription::run(socket.clone(), topic, name, since, stop, generation);
    app.tasks.spawn(task);
    Ok(())
}
