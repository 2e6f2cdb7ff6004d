//! One subscription of one socket: start from a snapshot or from the client's position, then
//! follow the topic in sequence order. A gap (lag, a broken broker feed, a new epoch) is first
//! repaired from history; only when history cannot cover it is the client told to resync.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use super::connection::Socket;
use super::protocol::{self, Topic};
use super::snapshot;
use crate::hub::{History, Position, Published};

pub(super) async fn run(
    socket: Arc<Socket>,
    topic: Topic,
    name: String,
    since: Option<Position>,
    stop: CancellationToken,
    generation: u64,
) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = follow(&socket, &topic, &name, since) => {}
    }
    socket.forget(&name, generation);
}

async fn follow(socket: &Socket, topic: &Topic, name: &str, since: Option<Position>) {
    let broker = &socket.app.broker;
    // Subscribe before reading the position, so nothing published in between is missed;
    // what arrives twice is recognised by its sequence number.
    let mut rx = broker.subscribe(name);
    // Boxed: the snapshot's futures are large and needed once; the loop below lives on.
    let Some(mut at) = Box::pin(start(socket, topic, name, since)).await else { return };
    loop {
        let gap = match rx.recv().await {
            Ok(p) if p.epoch == at.epoch && p.seq <= at.seq => continue,
            Ok(p) if p.epoch == at.epoch && p.seq == at.seq + 1 => {
                if !deliver(socket, &p) {
                    return;
                }
                at.seq = p.seq;
                continue;
            }
            Ok(_) => "gap",
            Err(RecvError::Lagged(_)) => "lagged",
            Err(RecvError::Closed) => {
                rx = broker.subscribe(name);
                "feed_restarted"
            }
        };
        socket.app.metrics.ws_gaps.inc();
        match Box::pin(broker.since(name, &at)).await {
            Ok(History::Recovered(missed)) => {
                let from = at.seq;
                for p in missed.iter().filter(|p| p.seq > from) {
                    if !deliver(socket, p) {
                        return;
                    }
                    at.seq = p.seq;
                }
            }
            Ok(History::Lost) | Err(_) => {
                socket.app.metrics.ws_resyncs.inc();
                socket.outbox.push(protocol::resync(name, gap));
                return;
            }
        }
    }
}

/// Sends `subscribed` (with missed events, or with a snapshot) and returns the position that
/// the live events continue from.
async fn start(socket: &Socket, topic: &Topic, name: &str, since: Option<Position>) -> Option<Position> {
    let broker = &socket.app.broker;
    if let Some(from) = since
        && let Ok(History::Recovered(missed)) = broker.since(name, &from).await
    {
        socket.outbox.push(protocol::subscribed(name, &from, true, None));
        let mut at = from;
        for p in &missed {
            if !deliver(socket, p) {
                return None;
            }
            at.seq = p.seq;
        }
        return Some(at);
    }
    let at = match broker.position(name).await {
        Ok(at) => at,
        Err(e) => {
            tracing::warn!(error = %e, topic = name, "cannot read a topic's position");
            socket.outbox.push(protocol::error("unavailable", "Live events are unavailable; retry shortly.", Some(name)));
            return None;
        }
    };
    match snapshot::build(socket, topic, name).await {
        Ok(snap) => {
            socket.outbox.push(protocol::subscribed(name, &at, false, Some(&snap)));
            Some(at)
        }
        Err(e) => {
            tracing::warn!(error = %e, topic = name, "cannot build a snapshot");
            socket.outbox.push(protocol::error("unavailable", "The store is unavailable; retry shortly.", Some(name)));
            None
        }
    }
}

/// Queues one event if this socket may see it; `false` when the socket cannot take more.
fn deliver(socket: &Socket, p: &Published) -> bool {
    if !socket.who.scope.allows(&p.event.org_id) {
        return true;
    }
    socket.outbox.push(protocol::event(p))
}
