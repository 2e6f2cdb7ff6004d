//! Local-only delivery while the live feed is down (reliability.md FO-10: a bus outage degrades
//! to local delivery plus gap detection).
//!
//! Without it, an instance that loses Redis has nothing to give its own subscribers until Redis
//! is back: a supervisor watching a call on the instance that takes the call's webhooks sees
//! nothing for the whole outage, and a chat answer streaming to a browser stops mid-sentence,
//! though the hub still stores every line and every token.
//!
//! So while the feed is down, an event Redis did not take is numbered here instead, in an epoch
//! of this instance's own (`local-…`, never a Redis one), kept in a bounded history and handed
//! to the topic's local subscribers. A subscriber at a Redis position sees the epoch change,
//! which is a gap: it cannot be repaired from history, so its client resyncs and continues in
//! the local epoch from a snapshot of the store. Once the feed is back, every local numbering
//! is dropped with the local senders; a position in a local epoch is unknown to Redis and to
//! every other instance, so each such subscriber reloads once more, into Redis' numbering.
//! Local positions are never mistaken for Redis ones, so nothing is skipped silently.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::feed::Senders;
use crate::hub::memory::trim_history;
use crate::hub::{BrokerLimits, Event, History, Position, Published};

/// Marks an epoch as this instance's own numbering during an outage.
const LOCAL_EPOCH_PREFIX: &str = "local-";
/// Topics numbered locally at most (each a call, a chat or one of the lists; a position read
/// adds one too, before the subscription is checked). Past it the least recently published
/// tenth is dropped whole: their subscribers find a new epoch and reload.
const MAX_TOPICS: usize = 100_000;

pub(super) struct Outage {
    limits: BrokerLimits,
    state: Mutex<State>,
    /// Whether the live feed is connected; while it is, nothing is numbered here. Read without
    /// the lock on every publish, written only under it, so a check made under the lock holds
    /// until the lock is released.
    up: AtomicBool,
    /// Events numbered here since start, for `/metrics`.
    numbered: AtomicU64,
}

struct State {
    topics: HashMap<String, LocalTopic>,
    /// Events held in all local histories, bounded by `max_total_events` as in memory.
    held: usize,
    /// The outage was logged already.
    announced: bool,
}

struct LocalTopic {
    epoch: String,
    seq: u64,
    history: VecDeque<(Instant, Arc<Published>)>,
    last_publish: Instant,
}

impl LocalTopic {
    fn new() -> Self {
        let epoch = format!("{LOCAL_EPOCH_PREFIX}{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Self { epoch, seq: 0, history: VecDeque::new(), last_publish: Instant::now() }
    }

    fn position(&self) -> Position {
        Position { epoch: self.epoch.clone(), seq: self.seq }
    }
}

impl Outage {
    pub fn new(limits: BrokerLimits) -> Self {
        let state = State { topics: HashMap::new(), held: 0, announced: false };
        Self { limits, state: Mutex::new(state), up: AtomicBool::new(true), numbered: AtomicU64::new(0) }
    }

    /// Events numbered here since start, and topics numbered here now.
    pub fn counts(&self) -> (u64, usize) {
        let topics = self.state().topics.len();
        (self.numbered.load(Ordering::Relaxed), topics)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn feed_is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn feed_lost(&self) {
        let _s = self.state();
        self.up.store(false, Ordering::Release);
    }

    /// The feed is back: local numbering ends. Under the lock, so no event is numbered locally
    /// after this (a publish checks the feed under the same lock). The caller then drops the
    /// local senders, which ends every subscription that may hold a local position.
    pub fn feed_back(&self) {
        let mut s = self.state();
        let (topics, events) = (s.topics.len(), s.held);
        self.up.store(true, Ordering::Release);
        s.topics.clear();
        s.held = 0;
        if s.announced {
            tracing::info!(topics, events, "redis is back: events are numbered in Redis again");
        }
        s.announced = false;
    }

    /// Numbers `event` locally, keeps it and hands it to the topic's local subscribers; `None`
    /// while the feed is up (the publish failed for another reason, and the caller says so).
    pub fn publish(&self, senders: &Senders, topic: &str, event: Event) -> Option<Arc<Published>> {
        let mut s = self.state();
        if self.feed_is_up() {
            return None;
        }
        if !s.announced {
            s.announced = true;
            tracing::warn!("redis is unreachable: events reach this instance's subscribers only, in a local numbering, until it is back");
        }
        Some(self.number(&mut s, senders, topic, event))
    }

    /// Redis numbered an event of `topic` while the feed is down: no subscriber here sees it
    /// live. If the topic is numbered here, its subscribers follow the local numbering, so the
    /// event joins it too (a hole there would be skipped as easily as a gap is seen).
    pub fn also_here(&self, senders: &Senders, topic: &str, event: &Event) {
        if self.feed_is_up() {
            return;
        }
        let mut s = self.state();
        if !self.feed_is_up() && s.topics.contains_key(topic) {
            self.number(&mut s, senders, topic, event.clone());
        }
    }

    /// Numbers, keeps and sends one event in the topic's local numbering.
    fn number(&self, s: &mut State, senders: &Senders, topic: &str, event: Event) -> Arc<Published> {
        let now = Instant::now();
        let t = entry(s, topic);
        t.seq += 1;
        self.numbered.fetch_add(1, Ordering::Relaxed);
        let published = Arc::new(Published::new(topic, t.epoch.clone(), t.seq, event));
        t.history.push_back((now, published.clone()));
        t.last_publish = now;
        let dropped = trim_history(&mut t.history, &self.limits, now);
        // Sent under the lock, so live order is numbering order.
        if let Some(tx) = senders.get(topic) {
            let _ = tx.send(published.clone());
        }
        s.held = (s.held + 1).saturating_sub(dropped);
        if s.held > self.limits.max_total_events {
            evict(s, self.limits.max_total_events - self.limits.max_total_events / 10);
        }
        published
    }

    /// The topic's local position (a new local epoch if it has none yet); `None` while the feed
    /// is up.
    pub fn position(&self, topic: &str) -> Option<Position> {
        let mut s = self.state();
        if self.feed_is_up() {
            return None;
        }
        Some(entry(&mut s, topic).position())
    }

    /// The position of a topic this instance numbers now, without asking Redis: once a topic has
    /// local events, its subscribers must follow them, even where Redis answers again before the
    /// feed is back (a position read from Redis would see the next local event as a gap).
    pub fn numbering(&self, topic: &str) -> Option<Position> {
        if self.feed_is_up() {
            return None;
        }
        let s = self.state();
        if self.feed_is_up() {
            return None;
        }
        s.topics.get(topic).map(LocalTopic::position)
    }

    /// Answers `since` where this instance numbers the topic: for a position in a local epoch,
    /// from local history while that is still the topic's numbering, `Lost` otherwise (no one
    /// else knows it); for a Redis position of a topic numbered locally now, `Lost` (what Redis
    /// holds lacks the local events). `None` otherwise: Redis must answer.
    pub fn since(&self, topic: &str, from: &Position) -> Option<History> {
        if !from.epoch.starts_with(LOCAL_EPOCH_PREFIX) {
            return self.numbering(topic).map(|_| History::Lost);
        }
        let s = self.state();
        let Some(t) = s.topics.get(topic).filter(|t| t.epoch == from.epoch && from.seq <= t.seq) else { return Some(History::Lost) };
        let first = from.seq + 1;
        let mut missed = t.history.iter().skip_while(|(_, p)| p.seq < first).peekable();
        // Recoverable only if the first missed event is still kept, by size and by age (later
        // ones are newer).
        let whole = match missed.peek() {
            Some((at, p)) => p.seq == first && at.elapsed() <= self.limits.history_age,
            None => from.seq == t.seq,
        };
        Some(if whole { History::Recovered(missed.map(|(_, p)| p.clone()).collect()) } else { History::Lost })
    }

    /// `recent` for a topic numbered here now: Redis' history lacks its local events.
    pub fn recent_here(&self, topic: &str, limit: usize) -> Option<Vec<Arc<Published>>> {
        self.numbering(topic)?;
        self.recent(topic, limit)
    }

    /// Up to `limit` of the topic's newest local events, oldest first; `None` while the feed
    /// is up.
    pub fn recent(&self, topic: &str, limit: usize) -> Option<Vec<Arc<Published>>> {
        let s = self.state();
        if self.feed_is_up() {
            return None;
        }
        let Some(t) = s.topics.get(topic) else { return Some(Vec::new()) };
        let skip = t.history.len().saturating_sub(limit);
        Some(t.history.iter().skip(skip).filter(|(at, _)| at.elapsed() <= self.limits.history_age).map(|(_, p)| p.clone()).collect())
    }
}

/// The topic's local numbering, begun if it has none; past `MAX_TOPICS`, the least recently
/// published tenth is forgotten first.
fn entry<'s>(s: &'s mut State, topic: &str) -> &'s mut LocalTopic {
    if s.topics.len() >= MAX_TOPICS && !s.topics.contains_key(topic) {
        for name in least_recent_first(s).into_iter().take(MAX_TOPICS / 10) {
            if let Some(t) = s.topics.remove(&name) {
                s.held = s.held.saturating_sub(t.history.len());
            }
        }
    }
    s.topics.entry(topic.to_string()).or_insert_with(LocalTopic::new)
}

/// The local topics, least recently published first.
fn least_recent_first(s: &State) -> Vec<String> {
    let mut by_age: Vec<(Instant, &String)> = s.topics.iter().map(|(name, t)| (t.last_publish, name)).collect();
    by_age.sort();
    by_age.into_iter().map(|(_, name)| name.clone()).collect()
}

/// Drops whole local histories, least recently published first, until `target` events remain.
/// Numbering stays, so a subscriber behind an evicted history is told to reload.
fn evict(s: &mut State, target: usize) {
    for name in least_recent_first(s) {
        if s.held <= target {
            break;
        }
        if let Some(t) = s.topics.get_mut(&name) {
            s.held = s.held.saturating_sub(t.history.len());
            t.history.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tokio::sync::broadcast;

    use super::*;
    use crate::hub::conformance::ev;

    fn down(limits: BrokerLimits) -> Outage {
        let o = Outage::new(limits);
        o.feed_lost();
        o
    }

    #[test]
    fn nothing_is_numbered_locally_while_the_feed_is_up() {
        let (o, senders) = (Outage::new(BrokerLimits::default()), Senders::default());
        assert!(o.publish(&senders, "t", ev(1)).is_none());
        assert!(o.position("t").is_none());
        assert!(o.recent("t", 10).is_none());
        assert!(o.since("t", &Position { epoch: "abc".into(), seq: 0 }).is_none(), "a Redis position is Redis' to answer");
    }

    #[test]
    fn while_the_feed_is_down_events_are_numbered_in_a_local_epoch_and_reach_local_subscribers() {
        let (o, senders) = (down(BrokerLimits::default()), Senders::default());
        let (tx, mut rx) = broadcast::channel(8);
        senders.insert("t".into(), tx);
        let at = o.position("t").unwrap();
        assert!(at.epoch.starts_with("local-") && at.seq == 0, "{at:?}");
        let first = o.publish(&senders, "t", ev(1)).unwrap();
        let second = o.publish(&senders, "t", ev(2)).unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!((&first.epoch, &second.epoch), (&at.epoch, &at.epoch));
        assert_eq!(rx.try_recv().unwrap().seq, 1);
        assert_eq!(rx.try_recv().unwrap().seq, 2);
        let Some(History::Recovered(missed)) = o.since("t", &first.position()) else { panic!("local history serves its own epoch") };
        assert_eq!(missed.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2]);
        assert_eq!(o.recent("t", 1).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_local_position_is_lost_once_the_feed_is_back_and_unknown_to_other_topics_or_instances() {
        let (o, senders) = (down(BrokerLimits::default()), Senders::default());
        let p = o.publish(&senders, "t", ev(1)).unwrap();
        assert!(matches!(o.since("u", &p.position()), Some(History::Lost)), "another topic's local epoch");
        let made_up = Position { epoch: "local-000000000000".into(), seq: 1 };
        assert!(matches!(o.since("t", &made_up), Some(History::Lost)), "another instance's local epoch");
        let ahead = Position { epoch: p.epoch.clone(), seq: 9 };
        assert!(matches!(o.since("t", &ahead), Some(History::Lost)), "a position beyond the numbering");
        o.feed_back();
        assert!(matches!(o.since("t", &p.position()), Some(History::Lost)));
        assert!(o.publish(&senders, "t", ev(2)).is_none());
    }

    #[test]
    fn a_topic_numbered_locally_answers_its_position_here_and_a_redis_position_is_lost() {
        let (o, senders) = (down(BrokerLimits::default()), Senders::default());
        assert!(o.numbering("t").is_none(), "nothing numbered here yet: Redis answers");
        let p = o.publish(&senders, "t", ev(1)).unwrap();
        assert_eq!(o.numbering("t"), Some(p.position()));
        let redis_position = Position { epoch: "abc".into(), seq: 5 };
        assert!(matches!(o.since("t", &redis_position), Some(History::Lost)), "Redis lacks the local events");
        assert!(o.since("u", &redis_position).is_none(), "other topics are Redis' to answer");
    }

    #[test]
    fn an_event_redis_numbers_while_the_feed_is_down_joins_the_local_numbering_of_its_topic() {
        let (o, senders) = (down(BrokerLimits::default()), Senders::default());
        let (tx, mut rx) = broadcast::channel(8);
        senders.insert("t".into(), tx);
        o.also_here(&senders, "t", &ev(0));
        assert!(o.numbering("t").is_none(), "a topic not numbered here stays Redis'");
        let before = o.publish(&senders, "t", ev(1)).unwrap();
        // Redis took event 2, which no subscriber here would see live.
        o.also_here(&senders, "t", &ev(2));
        let after = o.publish(&senders, "t", ev(3)).unwrap();
        let got: Vec<(u64, serde_json::Value)> = std::iter::from_fn(|| rx.try_recv().ok()).map(|p| (p.seq, p.event.data.clone())).collect();
        assert_eq!(got, vec![(1, json!({"n": 1})), (2, json!({"n": 2})), (3, json!({"n": 3}))]);
        assert_eq!((&after.epoch, after.seq), (&before.epoch, 3));
        assert_eq!(o.recent_here("t", 10).unwrap().len(), 3);
        assert!(o.recent_here("u", 10).is_none());
    }

    #[test]
    fn local_history_is_bounded_by_size_and_the_total_and_a_trimmed_position_is_lost() {
        let limits = BrokerLimits { history_size: 3, max_total_events: 5, ..BrokerLimits::default() };
        let (o, senders) = (down(limits), Senders::default());
        let first = o.publish(&senders, "a", ev(1)).unwrap();
        for n in 2..=5 {
            o.publish(&senders, "a", ev(n)).unwrap();
        }
        assert_eq!(o.recent("a", 10).unwrap().len(), 3);
        assert!(matches!(o.since("a", &first.position()), Some(History::Lost)));
        for n in 1..=3 {
            o.publish(&senders, "b", ev(n)).unwrap();
        }
        // 6 held > 5: the least recently published history ("a") goes.
        assert!(o.recent("a", 10).unwrap().is_empty());
        assert_eq!(o.recent("b", 10).unwrap().len(), 3);
        assert_eq!(o.state().held, 3);
    }

    #[test]
    fn local_history_older_than_the_age_limit_is_not_served() {
        let limits = BrokerLimits { history_age: Duration::from_millis(20), ..BrokerLimits::default() };
        let (o, senders) = (down(limits), Senders::default());
        let at = o.position("t").unwrap();
        o.publish(&senders, "t", ev(1)).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        assert!(matches!(o.since("t", &at), Some(History::Lost)));
        assert!(o.recent("t", 10).unwrap().is_empty());
    }
}
