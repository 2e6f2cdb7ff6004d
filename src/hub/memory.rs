//! The in-process broker: the embedded default. Its epoch is new at every start, since its
//! history does not survive a restart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::broadcast;

use super::{Broker, BrokerError, Event, History, Position, Published};

#[derive(Debug, Clone, Copy)]
pub struct BrokerLimits {
    /// Events kept per topic for recovery.
    pub history_size: usize,
    /// Events older than this are dropped from history.
    pub history_age: Duration,
    /// Live events a subscriber may be behind before it is told it lagged.
    pub subscriber_queue: usize,
}

impl Default for BrokerLimits {
    fn default() -> Self {
        Self { history_size: 1000, history_age: Duration::from_secs(600), subscriber_queue: 1024 }
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
}

impl MemoryBroker {
    pub fn new(limits: BrokerLimits) -> Self {
        Self { epoch: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(), limits, topics: DashMap::new() }
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
        self.topics.retain(|_, t| {
            let idle = t.inner.lock().map(|i| i.last_publish.elapsed() > max_age).unwrap_or(true);
            !(idle && t.live.receiver_count() == 0)
        });
        before - self.topics.len()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }
}

fn trim(inner: &mut TopicInner, limits: &BrokerLimits, now: Instant) {
    while inner.history.len() > limits.history_size {
        inner.history.pop_front();
    }
    while inner.history.front().is_some_and(|(t, _)| now.duration_since(*t) > limits.history_age) {
        inner.history.pop_front();
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), BrokerError> {
        Ok(())
    }

    async fn publish(&self, topic: &str, event: Event) -> Result<Arc<Published>, BrokerError> {
        let t = self.topic(topic);
        let mut inner = t.inner.lock().map_err(|_| BrokerError("topic lock poisoned".into()))?;
        inner.seq += 1;
        let published = Arc::new(Published { topic: topic.to_string(), epoch: self.epoch.clone(), seq: inner.seq, event });
        let now = Instant::now();
        inner.history.push_back((now, published.clone()));
        inner.last_publish = now;
        trim(&mut inner, &self.limits, now);
        // No receivers is not an error: nobody is watching this topic right now.
        let _ = t.live.send(published.clone());
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
        trim(&mut inner, &self.limits, Instant::now());
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
    async fn sweep_removes_idle_topics_without_subscribers_only() {
        let b = MemoryBroker::new(BrokerLimits { history_age: Duration::from_millis(0), ..BrokerLimits::default() });
        b.publish("idle", ev(1)).await.unwrap();
        let _rx = b.subscribe("watched");
        tokio::time::sleep(Duration::from_millis(5)).await;
        b.sweep();
        assert_eq!(b.topic_count(), 1);
    }
}
