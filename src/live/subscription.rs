//! The start of one subscription of one socket: from a snapshot or from the client's position.
//! Once `subscribed` (and whatever was missed) is queued, the subscription's feed goes to the
//! socket's writer, which follows the topic in sequence order from then on (see `pump`).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::connection::Socket;
use super::feed::Feed;
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
    // Cancelled: the subscription was replaced or dropped, and the map says so already.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = begin(&socket, &topic, name, since, generation) => {}
    }
}

async fn begin(socket: &Socket, topic: &Topic, name: String, since: Option<Position>, generation: u64) {
    // Subscribe before reading the position, so nothing published in between is missed;
    // what arrives twice is recognised by its sequence number.
    let rx = socket.app.broker.subscribe(&name);
    // Boxed: the snapshot's futures are large and needed once.
    match Box::pin(start(socket, topic, &name, since)).await {
        Some(at) => socket.outbox.follow(Feed::new(name, generation, at, rx)),
        None => socket.forget(&name, generation),
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
