//! What every broker must do, as checks any implementation runs. `broker_conformance!(factory)`
//! turns them into tests of one broker; the factory returns `None` when that broker cannot be
//! tested here (the Redis one without `SWITCHBOARD_TEST_REDIS_URL`), and its tests then pass
//! without checking anything.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::json;
use tokio::sync::broadcast;

use super::{BrokerLimits, DynBroker, Event, History, Position, Published, Watcher};

/// Builds a fresh broker (an empty namespace) with the given limits.
pub(crate) type Make = Box<dyn Fn(BrokerLimits) -> BoxFuture<'static, DynBroker> + Send + Sync>;

/// Live events may cross a network: wait for them, but not forever.
const LIVE_WAIT: Duration = Duration::from_secs(5);

macro_rules! broker_conformance {
    ($make:expr) => {
        $crate::hub::conformance::broker_conformance!(@tests $make;
            sequence_numbers_grow_by_one_per_topic,
            the_position_is_the_last_published_event,
            history_since_a_position_returns_exactly_what_followed,
            a_position_taken_before_the_first_event_recovers_it,
            the_current_position_recovers_nothing_and_a_later_one_is_lost,
            a_trimmed_or_foreign_position_is_reported_lost,
            history_older_than_the_age_limit_is_lost,
            live_subscribers_receive_their_topic_in_sequence_order,
            an_event_keeps_its_kind_time_org_and_data,
            recent_returns_the_newest_events_oldest_first,
            watchers_appear_refresh_leave_and_expire,
            watchers_are_listed_oldest_first_as_first_recorded,
        );
    };
    (@tests $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                let Some(make) = $make else { return };
                $crate::hub::conformance::$check(&make).await;
            }
        )*
    };
}
pub(crate) use broker_conformance;

pub(crate) fn ev(n: u64) -> Event {
    Event { kind: "test".into(), at: format!("t{n}"), org_id: "o".into(), data: json!({ "n": n }) }
}

fn seqs(ps: &[Arc<Published>]) -> Vec<u64> {
    ps.iter().map(|p| p.seq).collect()
}

pub(crate) async fn next(rx: &mut broadcast::Receiver<Arc<Published>>) -> Arc<Published> {
    tokio::time::timeout(LIVE_WAIT, rx.recv()).await.expect("a live event in time").expect("an open feed")
}

async fn recovered(b: &DynBroker, topic: &str, from: &Position) -> Vec<u64> {
    match b.since(topic, from).await.unwrap() {
        History::Recovered(ps) => seqs(&ps),
        History::Lost => panic!("history from {from:?} was lost"),
    }
}

async fn lost(b: &DynBroker, topic: &str, from: &Position) -> bool {
    matches!(b.since(topic, from).await.unwrap(), History::Lost)
}

pub(crate) async fn sequence_numbers_grow_by_one_per_topic(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let a1 = b.publish("a", ev(1)).await.unwrap();
    let a2 = b.publish("a", ev(2)).await.unwrap();
    let b1 = b.publish("b", ev(3)).await.unwrap();
    assert_eq!((a1.seq, a2.seq, b1.seq), (1, 2, 1));
    assert_eq!(a1.epoch, a2.epoch);
}

pub(crate) async fn the_position_is_the_last_published_event(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let empty = b.position("t").await.unwrap();
    assert_eq!(empty.seq, 0);
    b.publish("t", ev(1)).await.unwrap();
    let last = b.publish("t", ev(2)).await.unwrap();
    assert_eq!(b.position("t").await.unwrap(), last.position());
    assert_eq!(last.epoch, empty.epoch, "numbering a topic before its first event does not change its epoch");
}

pub(crate) async fn history_since_a_position_returns_exactly_what_followed(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    for n in 1..=5 {
        b.publish("t", ev(n)).await.unwrap();
    }
    let epoch = b.position("t").await.unwrap().epoch;
    assert_eq!(recovered(&b, "t", &Position { epoch, seq: 2 }).await, vec![3, 4, 5]);
}

pub(crate) async fn a_position_taken_before_the_first_event_recovers_it(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let start = b.position("t").await.unwrap();
    b.publish("t", ev(1)).await.unwrap();
    assert_eq!(recovered(&b, "t", &start).await, vec![1]);
}

pub(crate) async fn the_current_position_recovers_nothing_and_a_later_one_is_lost(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    for n in 1..=3 {
        b.publish("t", ev(n)).await.unwrap();
    }
    let now = b.position("t").await.unwrap();
    assert!(recovered(&b, "t", &now).await.is_empty());
    assert!(lost(&b, "t", &Position { epoch: now.epoch.clone(), seq: 4 }).await);
    assert!(lost(&b, "t", &Position { epoch: now.epoch, seq: u64::MAX }).await);
}

pub(crate) async fn a_trimmed_or_foreign_position_is_reported_lost(make: &Make) {
    let b = make(BrokerLimits { history_size: 3, ..BrokerLimits::default() }).await;
    for n in 1..=10 {
        b.publish("t", ev(n)).await.unwrap();
    }
    let epoch = b.position("t").await.unwrap().epoch;
    assert!(lost(&b, "t", &Position { epoch: epoch.clone(), seq: 2 }).await);
    assert!(lost(&b, "t", &Position { epoch: epoch.clone(), seq: 6 }).await, "event 7 was trimmed");
    assert_eq!(recovered(&b, "t", &Position { epoch, seq: 7 }).await, vec![8, 9, 10], "the last 3 are kept");
    assert!(lost(&b, "t", &Position { epoch: "other".into(), seq: 9 }).await);
}

pub(crate) async fn history_older_than_the_age_limit_is_lost(make: &Make) {
    let b = make(BrokerLimits { history_age: Duration::from_millis(300), ..BrokerLimits::default() }).await;
    let start = b.position("t").await.unwrap();
    b.publish("t", ev(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = b.publish("t", ev(2)).await.unwrap();
    assert!(lost(&b, "t", &start).await, "event 1 is too old to recover");
    assert_eq!(recovered(&b, "t", &Position { epoch: second.epoch.clone(), seq: 1 }).await, vec![2]);
    assert_eq!(seqs(&b.recent("t", 10).await.unwrap()), vec![2]);
}

pub(crate) async fn live_subscribers_receive_their_topic_in_sequence_order(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let mut rx = b.subscribe("t");
    let mut other = b.subscribe("u");
    for n in 1..=3 {
        b.publish("t", ev(n)).await.unwrap();
    }
    b.publish("u", ev(9)).await.unwrap();
    for want in 1..=3 {
        let p = next(&mut rx).await;
        assert_eq!((p.topic.as_str(), p.seq), ("t", want));
    }
    let p = next(&mut other).await;
    assert_eq!((p.topic.as_str(), p.seq, &p.event.data), ("u", 1, &json!({ "n": 9 })));
}

pub(crate) async fn an_event_keeps_its_kind_time_org_and_data(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let mut rx = b.subscribe("t");
    let start = b.position("t").await.unwrap();
    let sent = Event {
        kind: "transcript.final".into(),
        at: "2026-01-01T00:00:00Z".into(),
        org_id: "org-42".into(),
        data: json!({ "text": "line\nbreak \"quoted\" ünïcode", "n": 1.5, "list": [null, true] }),
    };
    let published = b.publish("t", sent.clone()).await.unwrap();
    let live = next(&mut rx).await;
    let History::Recovered(history) = b.since("t", &start).await.unwrap() else { panic!("history lost") };
    let recent = b.recent("t", 1).await.unwrap();
    for p in [&published, &live, &history[0], &recent[0]] {
        assert_eq!((p.topic.as_str(), &p.epoch, p.seq), ("t", &published.epoch, 1));
        assert_eq!((&p.event.kind, &p.event.at, &p.event.org_id, &p.event.data), (&sent.kind, &sent.at, &sent.org_id, &sent.data));
    }
}

pub(crate) async fn recent_returns_the_newest_events_oldest_first(make: &Make) {
    let b = make(BrokerLimits { history_size: 4, ..BrokerLimits::default() }).await;
    for n in 1..=6 {
        b.publish("t", ev(n)).await.unwrap();
    }
    assert_eq!(seqs(&b.recent("t", 2).await.unwrap()), vec![5, 6]);
    assert_eq!(seqs(&b.recent("t", 100).await.unwrap()), vec![3, 4, 5, 6], "no more than history holds");
    assert!(b.recent("t", 0).await.unwrap().is_empty());
    assert!(b.recent("unknown", 2).await.unwrap().is_empty());
}

fn watcher(id: &str, since: i64) -> Watcher {
    Watcher { id: id.into(), name: format!("name of {id}"), role: "supervisor".into(), since }
}

pub(crate) async fn watchers_appear_refresh_leave_and_expire(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    assert!(b.presence("call:1").await.unwrap().is_empty());
    b.presence_remove("call:1", "nobody").await.unwrap();
    b.presence_set("call:1", &watcher("a", 0), Duration::from_secs(60)).await.unwrap();
    b.presence_set("call:1", &watcher("b", 0), Duration::from_millis(1)).await.unwrap();
    b.presence_set("call:1", &watcher("a", 0), Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(b.presence("call:1").await.unwrap(), vec![watcher("a", 0)], "a refresh does not duplicate; an expired watcher is gone");
    assert!(b.presence("call:2").await.unwrap().is_empty(), "watchers belong to their topic");
    b.presence_remove("call:1", "a").await.unwrap();
    assert!(b.presence("call:1").await.unwrap().is_empty());
}

pub(crate) async fn watchers_are_listed_oldest_first_as_first_recorded(make: &Make) {
    let b = make(BrokerLimits::default()).await;
    let ttl = Duration::from_secs(60);
    b.presence_set("call:1", &watcher("late", 300), ttl).await.unwrap();
    b.presence_set("call:1", &watcher("early", 100), ttl).await.unwrap();
    // A refresh carries a newer `since`; the watcher keeps the one it joined with.
    b.presence_set("call:1", &watcher("early", 900), ttl).await.unwrap();
    assert_eq!(b.presence("call:1").await.unwrap(), vec![watcher("early", 100), watcher("late", 300)]);
}
