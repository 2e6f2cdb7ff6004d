//! Live fan-out: domain events published on topics (`calls`, `call:<id>`) through a `Broker`.
//! Each topic numbers its events and keeps a bounded history, so a subscriber that missed some
//! can catch up or learn (by the epoch) that it must reload instead.

#[cfg(test)]
mod conformance;
mod memory;
mod redis;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

pub use self::redis::RedisBroker;
pub use memory::{BrokerLimits, MemoryBroker};

/// Something that happened, as supervisors see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    pub kind: String,
    /// RFC 3339 time of the event.
    pub at: String,
    /// Scoping only: a subscriber never receives an event of an org it may not see. Not sent
    /// to clients; a broker that moves events between processes carries it separately.
    #[serde(skip)]
    pub org_id: String,
    pub data: Value,
}

/// An event placed on a topic.
#[derive(Debug, Serialize)]
pub struct Published {
    pub topic: String,
    pub epoch: String,
    pub seq: u64,
    pub event: Event,
    /// The encoded supervisor frame, made once per event however many sockets send it.
    #[serde(skip)]
    pub(crate) frame: OnceLock<Utf8Bytes>,
}

impl Published {
    pub fn new(topic: impl Into<String>, epoch: impl Into<String>, seq: u64, event: Event) -> Self {
        Self { topic: topic.into(), epoch: epoch.into(), seq, event, frame: OnceLock::new() }
    }

    pub fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), seq: self.seq }
    }
}

/// What a subscriber asked to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}

#[derive(Debug)]
pub enum History {
    /// Every event after the position, in order.
    Recovered(Vec<Arc<Published>>),
    /// The position is unknown (other epoch, or trimmed away): reload a snapshot.
    Lost,
}

#[derive(Debug)]
pub struct BrokerError(pub String);

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "broker error: {}", self.0)
    }
}

impl std::error::Error for BrokerError {}

/// A supervisor watching a topic, as others see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watcher {
    /// One per socket, so the same person in two tabs shows twice and leaves twice.
    pub id: String,
    pub name: String,
    pub role: String,
    /// Milliseconds since the epoch.
    pub since: i64,
}

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn ping(&self) -> Result<(), BrokerError>;
    /// Numbers and stores the event, then hands it to live subscribers without waiting on them.
    async fn publish(&self, topic: &str, event: Event) -> Result<Arc<Published>, BrokerError>;
    /// Live events from now on, in sequence order. A receiver that falls behind gets `Lagged`;
    /// one whose feed broke (a Redis reconnect) gets `Closed`. Either way the subscriber must
    /// catch up with `since` and subscribe again, or tell its client to resync.
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Published>>;
    /// The topic's current position (epoch and last sequence number).
    async fn position(&self, topic: &str) -> Result<Position, BrokerError>;
    async fn since(&self, topic: &str, from: &Position) -> Result<History, BrokerError>;
    /// Up to `limit` of the newest events still in history, oldest first.
    async fn recent(&self, topic: &str, limit: usize) -> Result<Vec<Arc<Published>>, BrokerError>;
    /// Adds or refreshes a watcher; one not refreshed within `ttl` disappears by itself (so a
    /// crashed instance's watchers go away).
    async fn presence_set(&self, topic: &str, watcher: &Watcher, ttl: Duration) -> Result<(), BrokerError>;
    async fn presence_remove(&self, topic: &str, watcher_id: &str) -> Result<(), BrokerError>;
    /// The live watchers of a topic, oldest first.
    async fn presence(&self, topic: &str) -> Result<Vec<Watcher>, BrokerError>;
    /// Periodic upkeep (dropping idle topics and expired watchers); called about once a minute.
    async fn maintain(&self) {}
    /// The shared feed's state, for `/metrics`. An in-process broker has nothing to lose.
    fn health(&self) -> BrokerHealth {
        BrokerHealth { feed_up: true, ..BrokerHealth::default() }
    }
}

/// What operators watch during a bus outage (see the Redis broker's `outage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerHealth {
    /// The live feed from the shared bus is connected.
    pub feed_up: bool,
    /// Events numbered in this instance's own epoch while the feed was down, since start.
    pub local_events: u64,
    /// Topics numbered locally now.
    pub local_topics: usize,
    /// Topics that missed events and still wait for their new epoch.
    pub topics_to_reset: usize,
}

/// Opens the broker the settings name: `memory`, or `redis://…` / `rediss://…` with its keys
/// and channel under `prefix`. A Redis that cannot be reached is an error, not a retry loop:
/// start-up should fail loudly.
pub async fn connect(url: &str, prefix: &str, limits: BrokerLimits) -> Result<DynBroker, BrokerError> {
    if url == "memory" {
        return Ok(Arc::new(MemoryBroker::new(limits)));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(Arc::new(RedisBroker::connect(url, prefix, limits).await?));
    }
    Err(BrokerError(format!("unsupported broker URL {url:?}")))
}

pub type DynBroker = Arc<dyn Broker>;

/// Topic names, in one place.
pub mod topics {
    pub const CALLS: &str = "calls";
    pub const CHATS: &str = "chats";

    pub fn call(id: &str) -> String {
        format!("call:{id}")
    }

    pub fn chat(session_id: &str) -> String {
        format!("chat:{session_id}")
    }
}
