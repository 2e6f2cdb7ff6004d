//! Live fan-out: domain events published on topics (`calls`, `call:<id>`) through a `Broker`.
//! Each topic numbers its events and keeps a bounded history, so a subscriber that missed some
//! can catch up or learn (by the epoch) that it must reload instead.

mod memory;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast;

pub use memory::{BrokerLimits, MemoryBroker};

/// Something that happened, as supervisors see it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: String,
    /// RFC 3339 time of the event.
    pub at: String,
    /// Scoping only: a subscriber never receives an event of an org it may not see.
    #[serde(skip)]
    pub org_id: String,
    pub data: Value,
}

/// An event placed on a topic.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    pub topic: String,
    pub epoch: String,
    pub seq: u64,
    pub event: Event,
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

#[async_trait]
pub trait Broker: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn ping(&self) -> Result<(), BrokerError>;
    /// Numbers and stores the event, then hands it to live subscribers without waiting on them.
    async fn publish(&self, topic: &str, event: Event) -> Result<Arc<Published>, BrokerError>;
    /// Live events from now on. A receiver that falls behind gets `Lagged` and must resync.
    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Published>>;
    /// The topic's current position (epoch and last sequence number).
    async fn position(&self, topic: &str) -> Result<Position, BrokerError>;
    async fn since(&self, topic: &str, from: &Position) -> Result<History, BrokerError>;
}

pub type DynBroker = Arc<dyn Broker>;

/// Topic names, in one place.
pub mod topics {
    pub const CALLS: &str = "calls";

    pub fn call(id: &str) -> String {
        format!("call:{id}")
    }
}
