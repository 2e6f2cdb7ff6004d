//! The in-process broker: the embedded default. Its epoch is new at every start, since its
//! history does not survive a restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::broadcast;

use super::{Broker, BrokerError, Event, History, Position, Published, Watcher};

#[derive(Debug, Clone, Copy)]
pub struct BrokerLimits {
    /// Events kept per topic for recovery.
    pub history_size: usize,
    /// Events older than this are dropped from history.
    pub history_age: Duration,
    /// Live events a subscriber may be behind before it is told it lagged.
    pub subscriber_queue: usize,
    /// Events kept across all topics. Per-topic limits alone let memory grow with traffic
    /// (every ended call's topic lingers for `history_age`); past this, the history of topics
    /// nobody watches is dropped, least recently used first.
    pub max_total_events: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self { history_size: 1000, history_age: Duration::from_secs(600), subscriber_queue: 1024, max_total_events: 100_000 }
    }
}

struct Topic {
    /// Sequence, history and send happen under one lock so live order equals sequence order.
    inner: Mutex<TopicInner>,
    live: broadcast::Sender<Arc<Published>>,
}

struct TopicInner {
    seq: u64,
    history: VecDeque<(Instant, Arc<Published>)>,
    last_publish: Instant,
}

pub struct MemoryBroker {
    epoch: String,
    limits: BrokerLimits,
    topics: DashMap<String, Arc<Topic>>,
    /// Events held in all histories (approximate under concurrency; only steers eviction).
    held: AtomicUsize,
    /// One eviction at a time; publishers never wait for it.
    evicting: AtomicBool,
    /// topic → watcher id → (watcher, expiry).
    presence: DashMap<String, Vec<(Watcher, Instant)>>,
}

impl MemoryBroker {
    pub fn new(limits: BrokerLimits) -> Self {
        Self {
            epoch: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            limits,
            topics: DashMap::new(),
            held: AtomicUsize::new(0),
            evicting: AtomicBool::new(false),
            presence: DashMap::new(),
        }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        // Clone the Arc out so no map guard is held past this line.
        if let Some(t) = self.topics.get(name) {
            return t.clone();
        }
        self.topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    inner: Mutex::new(TopicInner { seq: 0, history: VecDeque::new(), last_publish: Instant::now() }),
                    live: broadcast::channel(self.limits.subscriber_queue).0,
                })
            })
            .clone()
    }

    /// Drops topics that have no subscribers and nothing left in history. Called periodically.
    pub fn sweep(&self) -> usize {
        let before = self.topics.len();
        let max_age = self.limits.history_age;
        let held = &self.held;
        self.topics.retain(|_, t| {
            let Ok(inner) = t.inner.lock() else { return false };
            let remove = inner.last_publish.elapsed() > max_age && t.live.receiver_count() == 0;
            if remove {
                release(held, inner.history.len());
            }
            !remove
        });
        let now = Instant::now();
        self.presence.retain(|_, watchers| {
            watchers.retain(|(_, expires)| *expires > now);
            !watchers.is_empty()
        });
        before - self.topics.len()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    fn release(&self, n: usize) {
        release(&self.held, n);
    }

    pub fn held_events(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Drops the history of unwatched topics, least recently published first, until the total
    /// is back under 90 % of the cap (so eviction runs rarely, not on every publish). Sequence
    /// numbers stay: a subscriber resuming from an evicted position is told to reload.
    fn evict(&self) {
        if self.evicting.swap(true, Ordering::AcqRel) {
            return;
        }
        let target = self.limits.max_total_events / 10 * 9;
        let mut idle: Vec<(Instant, Arc<Topic>)> = self
            .topics
            .iter()
            .filter(|t| t.live.receiver_count() == 0)
            .filter_map(|t| t.inner.lock().ok().map(|i| (i.last_publish, t.value().clone())))
            .collect();
        idle.sort_by_key(|(at, _)| *at);
        for (_, t) in idle {
            if self.held.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Ok(mut inner) = t.inner.lock() {
                let n = inner.history.len();
                inner.history.clear();
                self.release(n);
            }
        }
        self.evicting.store(false, Ordering::Release);
    }
}

/// The count is steering only: it never wraps below zero.
fn release(held: &AtomicUsize, n: usize) {
    if n > 0 {
        let _ = held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |h| Some(h.saturating_sub(n)));
    }
}

/// Applies the per-topic limits; returns how many events were dropped.
fn trim(inner: &mut TopicInner, limits: &BrokerLimits, now: Instant) -> usize {
    trim_history(&mut inner.history, limits, now)
}

/// The per-topic limits on a history of (time kept, event); how many events went. Shared with
/// the Redis broker's local numbering during an outage.
pub(super) fn trim_history(history: &mut VecDeque<(Instant, Arc<Published>)>, limits: &BrokerLimits, now: Instant) -> usize {
    let before = history.len();
    while history.len() > limits.history_size {
        history.pop_front();
    }
    while history.front().is_some_and(|(t, _)| now.duration_since(*t) > limits.history_age) {
        history.pop_front();
    }
    before - history.len()
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn maintain(&self) {
        self.sweep();
    }

    async fn publish(&self, topic: &str, event: Event) -> Result<Arc<Published>, BrokerError> {
        let t = self.topic(topic);
        let mut inner = t.inner.lock().map_err(|_| BrokerError("topic lock poisoned".into()))?;
        inner.seq += 1;
        let published = Arc::new(Published::new(topic, self.epoch.clone(), inner.seq, event));
        let now = Instant::now();
        inner.history.push_back((now, published.clone()));
        inner.last_publish = now;
        let dropped = trim(&mut inner, &self.limits, now);
        // No receivers is not an error: nobody is watching this topic right now.
        let _ = t.live.send(published.clone());
        drop(inner);
        let held = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        self.release(dropped);
        if held.saturating_sub(dropped) > self.limits.max_total_events {
            self.evict();
        }
        Ok(published)
    }

    fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Published>> {
        self.topic(topic).live.subscribe()
    }

    async fn position(&self, topic: &str) -> Result<Position, BrokerError> {
        let t = self.topic(topic);
        let inner = t.inner.lock().map_err(|_| BrokerError("topic lock poisoned".into()))?;
        Ok(Position { epoch: self.epoch.clone(), seq: inner.seq })
    }

    async fn since(&self, topic: &str, from: &Position) -> Result<History, BrokerError> {
        if from.epoch != self.epoch {
            return Ok(History::Lost);
        }
        let t = self.topic(topic);
        let mut inner = t.inner.lock().map_err(|_| BrokerError("topic lock poisoned".into()))?;
        let dropped = trim(&mut inner, &self.limits, Instant::now());
        self.release(dropped);
        if from.seq > inner.seq {
            return Ok(History::Lost);
        }
        if from.seq == inner.seq {
            return Ok(History::Recovered(Vec::new()));
        }
        // Recoverable only if the first missed event is still in history.
        match inner.history.front() {
            Some((_, first)) if first.seq <= from.seq + 1 => {
                Ok(History::Recovered(inner.history.iter().filter(|(_, p)| p.seq > from.seq).map(|(_, p)| p.clone()).collect()))
            }
            _ => Ok(History::Lost),
        }
    }

    async fn recent(&self, topic: &str, limit: usize) -> Result<Vec<Arc<Published>>, BrokerError> {
        let Some(t) = self.topics.get(topic).map(|t| t.clone()) else { return Ok(Vec::new()) };
        let mut inner = t.inner.lock().map_err(|_| BrokerError("topic lock poisoned".into()))?;
        let dropped = trim(&mut inner, &self.limits, Instant::now());
        self.release(dropped);
        let skip = inner.history.len().saturating_sub(limit);
        Ok(inner.history.iter().skip(skip).map(|(_, p)| p.clone()).collect())
    }

    async fn presence_set(&self, topic: &str, watcher: &Watcher, ttl: Duration) -> Result<(), BrokerError> {
        let expires = Instant::now() + ttl;
        let mut watchers = self.presence.entry(topic.to_string()).or_default();
        match watchers.iter_mut().find(|(w, _)| w.id == watcher.id) {
            Some(entry) => entry.1 = expires,
            None => watchers.push((watcher.clone(), expires)),
        }
        Ok(())
    }

    async fn presence_remove(&self, topic: &str, watcher_id: &str) -> Result<(), BrokerError> {
        self.presence.remove_if_mut(topic, |_, watchers| {
            watchers.retain(|(w, _)| w.id != watcher_id);
            watchers.is_empty()
        });
        Ok(())
    }

    async fn presence(&self, topic: &str) -> Result<Vec<Watcher>, BrokerError> {
        let now = Instant::now();
        let mut watchers: Vec<Watcher> = self
            .presence
            .get(topic)
            .map(|ws| ws.iter().filter(|(_, expires)| *expires > now).map(|(w, _)| w.clone()).collect())
            .unwrap_or_default();
        watchers.sort_by(|a, b| (a.since, &a.id).cmp(&(b.since, &b.id)));
        Ok(watchers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::DynBroker;
    use crate::hub::conformance::{Make, ev};

    fn memory() -> Option<Make> {
        Some(Box::new(|limits| Box::pin(async move { Arc::new(MemoryBroker::new(limits)) as DynBroker })))
    }

    mod conformance {
        use super::memory;

        crate::hub::conformance::broker_conformance!(memory());
    }

    #[tokio::test]
    async fn total_history_stays_under_the_cap_by_dropping_unwatched_topics_first() {
        let b = MemoryBroker::new(BrokerLimits { max_total_events: 100, ..BrokerLimits::default() });
        let _rx = b.subscribe("call:watched");
        for n in 0..30 {
            b.publish("call:watched", ev(n)).await.unwrap();
        }
        for call in 0..50 {
            for n in 0..10 {
                b.publish(&format!("call:{call}"), ev(n)).await.unwrap();
            }
        }
        assert!(b.held_events() <= 100, "held {}", b.held_events());
        let pos = Position { epoch: b.epoch.clone(), seq: 0 };
        let History::Recovered(kept) = b.since("call:watched", &pos).await.unwrap() else { panic!("a watched topic keeps its history") };
        assert_eq!(kept.len(), 30);
        assert!(matches!(b.since("call:0", &pos).await.unwrap(), History::Lost), "the oldest unwatched history went first");
    }

    #[tokio::test]
    async fn sweep_removes_idle_topics_without_subscribers_only() {
        let b = MemoryBroker::new(BrokerLimits { history_age: Duration::from_millis(0), ..BrokerLimits::default() });
        b.publish("idle", ev(1)).await.unwrap();
        let _rx = b.subscribe("watched");
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.sweep();
        assert_eq!(b.topic_count(), 1);
    }
}
