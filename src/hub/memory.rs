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
    let before = inner.history.len();
    while inner.history.len() > limits.history_size {
        inner.history.pop_front();
    }
    while inner.history.front().is_some_and(|(t, _)| now.duration_since(*t) > limits.history_age) {
        inner.history.pop_front();
    }
    before - inner.history.len()
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
        Ok(self
            .presence
            .get(topic)
            .map(|ws| ws.iter().filter(|(_, expires)| *expires > now).map(|(w, _)| w.clone()).collect())
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(n: u64) -> Event {
        Event { kind: "test".into(), at: String::new(), org_id: "o".into(), data: json!({ "n": n }) }
    }

    #[tokio::test]
    async fn sequence_numbers_grow_by_one_per_topic() {
        let b = MemoryBroker::new(BrokerLimits::default());
        let a1 = b.publish("a", ev(1)).await.unwrap();
        let a2 = b.publish("a", ev(2)).await.unwrap();
        let b1 = b.publish("b", ev(3)).await.unwrap();
        assert_eq!((a1.seq, a2.seq, b1.seq), (1, 2, 1));
    }

    #[tokio::test]
    async fn history_since_a_position_returns_exactly_what_followed() {
        let b = MemoryBroker::new(BrokerLimits::default());
        for n in 1..=5 {
            b.publish("t", ev(n)).await.unwrap();
        }
        let pos = Position { epoch: b.epoch.clone(), seq: 2 };
        let History::Recovered(missed) = b.since("t", &pos).await.unwrap() else { panic!("expected recovery") };
        assert_eq!(missed.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    }

    #[tokio::test]
    async fn a_trimmed_or_foreign_position_is_reported_lost() {
        let b = MemoryBroker::new(BrokerLimits { history_size: 3, ..BrokerLimits::default() });
        for n in 1..=10 {
            b.publish("t", ev(n)).await.unwrap();
        }
        let trimmed = Position { epoch: b.epoch.clone(), seq: 2 };
        assert!(matches!(b.since("t", &trimmed).await.unwrap(), History::Lost));
        let foreign = Position { epoch: "other".into(), seq: 9 };
        assert!(matches!(b.since("t", &foreign).await.unwrap(), History::Lost));
    }

    #[tokio::test]
    async fn live_subscribers_receive_in_sequence_order() {
        let b = MemoryBroker::new(BrokerLimits::default());
        let mut rx = b.subscribe("t");
        for n in 1..=3 {
            b.publish("t", ev(n)).await.unwrap();
        }
        for want in 1..=3 {
            assert_eq!(rx.recv().await.unwrap().seq, want);
        }
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
    async fn recent_returns_the_newest_events_oldest_first() {
        let b = MemoryBroker::new(BrokerLimits::default());
        for n in 1..=5 {
            b.publish("t", ev(n)).await.unwrap();
        }
        let seqs: Vec<u64> = b.recent("t", 2).await.unwrap().iter().map(|p| p.seq).collect();
        assert_eq!(seqs, vec![4, 5]);
        assert!(b.recent("unknown", 2).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn watchers_appear_refresh_leave_and_expire() {
        let b = MemoryBroker::new(BrokerLimits::default());
        let w = |id: &str| Watcher { id: id.into(), name: id.into(), role: "supervisor".into(), since: 0 };
        b.presence_set("call:1", &w("a"), Duration::from_secs(60)).await.unwrap();
        b.presence_set("call:1", &w("b"), Duration::from_millis(1)).await.unwrap();
        b.presence_set("call:1", &w("a"), Duration::from_secs(60)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(b.presence("call:1").await.unwrap(), vec![w("a")], "a refresh does not duplicate; an expired watcher is gone");
        b.presence_remove("call:1", "a").await.unwrap();
        assert!(b.presence("call:1").await.unwrap().is_empty());
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
