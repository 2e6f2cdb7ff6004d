//! Who is watching each call: a socket subscribed to `call:<id>` is a watcher until it
//! unsubscribes or closes. Changes are published on the call's topic and on `calls` (a board
//! shows the watchers of every live call), always with the whole list, so a client never has
//! to merge joins and leaves. Entries are refreshed with each ping and expire by themselves
//! when an instance dies without saying goodbye.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use super::connection::Socket;
use crate::hub::{Event, Watcher, topics};

/// Long enough to survive one missed refresh, short enough that a crashed instance's
/// watchers are gone within about a minute.
fn ttl(ping_interval: Duration) -> Duration {
    ping_interval * 2 + Duration::from_secs(10)
}

fn me(socket: &Socket) -> Watcher {
    Watcher {
        id: socket.id.clone(),
        name: socket.who.name.clone(),
        role: socket.who.role.as_str().to_string(),
        since: crate::clock::now_ms(),
    }
}

pub(super) async fn join(socket: &Socket, topic: &str, org: &str) {
    let broker = &socket.app.broker;
    if let Err(e) = broker.presence_set(topic, &me(socket), ttl(socket.app.settings.live.ws.ping_interval)).await {
        tracing::warn!(error = %e, topic, "cannot record a watcher");
        return;
    }
    announce(socket, topic, org).await;
}

pub(super) async fn leave(socket: &Socket, topic: &str, org: &str) {
    if let Err(e) = socket.app.broker.presence_remove(topic, &socket.id).await {
        tracing::warn!(error = %e, topic, "cannot remove a watcher");
        return;
    }
    announce(socket, topic, org).await;
}

/// Keeps this socket's entries alive; `since` stays what it was (the set only refreshes).
pub(super) async fn refresh(socket: &Socket, watching: &HashMap<String, String>) {
    let ttl = ttl(socket.app.settings.live.ws.ping_interval);
    for topic in watching.keys() {
        if let Err(e) = socket.app.broker.presence_set(topic, &me(socket), ttl).await {
            tracing::debug!(error = %e, topic, "cannot refresh a watcher");
        }
    }
}

async fn announce(socket: &Socket, topic: &str, org: &str) {
    let broker = &socket.app.broker;
    let Some(call_id) = topic.strip_prefix("call:") else { return };
    let watchers = broker.presence(topic).await.unwrap_or_default();
    let event = Event {
        kind: "presence".into(),
        at: crate::clock::iso(crate::clock::now_ms()),
        org_id: org.to_string(),
        data: json!({ "call_id": call_id, "watchers": watchers }),
    };
    for t in [topic.to_string(), topics::CALLS.to_string()] {
        if let Err(e) = broker.publish(&t, event.clone()).await {
            tracing::warn!(error = %e, topic = t, "cannot publish presence");
        }
    }
}
