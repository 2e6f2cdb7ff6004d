//! The Redis broker against a real Redis. These tests need `SWITCHBOARD_TEST_REDIS_URL` (CI sets
//! it); without it they return early and pass, so `cargo test` works on a machine without
//! Redis. Each broker gets a random prefix: pub/sub channels are shared by every database of a
//! Redis, so parallel tests would otherwise see each other's events.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::*;
use crate::hub::DynBroker;
use crate::hub::conformance::{Make, ev, next};

fn redis_url() -> Option<String> {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

fn prefix() -> String {
    format!("sbtest-{}", uuid::Uuid::new_v4().simple())
}

/// Test keys outlive a test by minutes, not a day.
async fn broker(url: &str, prefix: &str, limits: BrokerLimits) -> RedisBroker {
    RedisBroker::connect(url, prefix, limits).await.unwrap().with_meta_ttl(Duration::from_secs(300))
}

fn redis() -> Option<Make> {
    let url = redis_url()?;
    Some(Box::new(move |limits| {
        let url = url.clone();
        Box::pin(async move { Arc::new(broker(&url, &prefix(), limits).await) as DynBroker })
    }))
}

mod conformance {
    use super::redis;

    crate::hub::conformance::broker_conformance!(redis());
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap()
}

async fn pttl(con: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query_async(con).await.unwrap()
}

/// Deletes what a test left behind.
async fn forget(url: &str, prefix: &str) {
    let mut con = raw(url).await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut con).await.unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut con).await.unwrap();
    }
}

#[tokio::test]
async fn an_event_published_on_one_instance_reaches_a_subscriber_on_another_in_order() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (a, b) = (broker(&url, &p, BrokerLimits::default()).await, broker(&url, &p, BrokerLimits::default()).await);
    let mut rx = b.subscribe("call:x");
    let publisher = tokio::spawn(async move {
        for n in 1..=1000 {
            a.publish("call:x", ev(n)).await.unwrap();
        }
    });
    for want in 1..=1000u64 {
        let p = next(&mut rx).await;
        assert_eq!((p.seq, &p.event.data), (want, &serde_json::json!({ "n": want })), "no gap, no reordering");
        assert_eq!(p.event.org_id, "o");
    }
    publisher.await.unwrap();
    forget(&url, &p).await;
}

#[tokio::test]
async fn numbering_and_history_are_shared_between_instances() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let (a, b) = (broker(&url, &p, BrokerLimits::default()).await, broker(&url, &p, BrokerLimits::default()).await);
    let mut last = None;
    for n in 1..=5 {
        last = Some(a.publish("t", ev(n)).await.unwrap());
    }
    let last = last.unwrap();
    assert_eq!(b.position("t").await.unwrap(), last.position());
    let History::Recovered(missed) = b.since("t", &Position { epoch: last.epoch.clone(), seq: 2 }).await.unwrap() else {
        panic!("history written by A is readable on B")
    };
    assert_eq!(missed.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    let on_b = b.publish("t", ev(6)).await.unwrap();
    assert_eq!((on_b.seq, &on_b.epoch), (6, &last.epoch), "B continues A's numbering");
    assert_eq!(a.recent("t", 2).await.unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), vec![5, 6]);
    forget(&url, &p).await;
}

#[tokio::test]
async fn instances_with_other_prefixes_do_not_see_each_others_topics() {
    let Some(url) = redis_url() else { return };
    let (p1, p2) = (prefix(), prefix());
    let (a, b) = (broker(&url, &p1, BrokerLimits::default()).await, broker(&url, &p2, BrokerLimits::default()).await);
    let mut rx = b.subscribe("t");
    a.publish("t", ev(1)).await.unwrap();
    a.publish("t", ev(2)).await.unwrap();
    let own = b.publish("t", ev(3)).await.unwrap();
    assert_eq!(own.seq, 1, "numbering is per prefix");
    let p = next(&mut rx).await;
    assert_eq!((p.seq, &p.epoch, &p.event.data), (1, &own.epoch, &serde_json::json!({ "n": 3 })));
    forget(&url, &p1).await;
    forget(&url, &p2).await;
}

#[tokio::test]
async fn the_epoch_changes_when_a_topics_keys_are_lost() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let b = broker(&url, &p, BrokerLimits::default()).await;
    for n in 1..=3 {
        b.publish("t", ev(n)).await.unwrap();
    }
    let before = b.position("t").await.unwrap();
    // An eviction or expiry of the numbering alone: the history left over must not be served
    // (nor block the new numbering's first entries).
    let _: i64 = redis::cmd("DEL").arg(b.key("t", "meta")).query_async(&mut raw(&url).await).await.unwrap();
    let after = b.publish("t", ev(4)).await.unwrap();
    assert_eq!(after.seq, 1);
    assert_ne!(after.epoch, before.epoch);
    assert!(matches!(b.since("t", &before).await.unwrap(), History::Lost), "a position of the old numbering is not resumed");
    let History::Recovered(now) = b.since("t", &Position { epoch: after.epoch.clone(), seq: 0 }).await.unwrap() else {
        panic!("the new numbering's history is served")
    };
    assert_eq!(now.iter().map(|p| (p.seq, p.event.data["n"].as_u64())).collect::<Vec<_>>(), vec![(1, Some(4))]);
    forget(&url, &p).await;
}

#[tokio::test]
async fn memory_stays_bounded_by_trimming_and_expiry() {
    let Some(url) = redis_url() else { return };
    let p = prefix();
    let limits = BrokerLimits { history_size: 100, history_age: Duration::from_secs(60), ..BrokerLimits::default() };
    let b = broker(&url, &p, limits).await;
    for n in 1..=5000 {
        b.publish("t", ev(n)).await.unwrap();
    }
    b.presence_set("t", &Watcher { id: "w".into(), name: "w".into(), role: "r".into(), since: 0 }, Duration::from_secs(30)).await.unwrap();
    let mut con = raw(&url).await;
    let len: i64 = redis::cmd("XLEN").arg(b.key("t", "log")).query_async(&mut con).await.unwrap();
    // Trimming is approximate (whole stream nodes of 100 entries), never unbounded.
    assert!((100..=200).contains(&len), "the stream holds {len} entries");
    let log_ttl = pttl(&mut con, &b.key("t", "log")).await;
    assert!(log_ttl > 0 && log_ttl <= 60_000, "history expires with its age limit: {log_ttl}");
    let meta_ttl = pttl(&mut con, &b.key("t", "meta")).await;
    assert!(meta_ttl > 0, "numbering expires: {meta_ttl}");
    for kind in ["watchers", "cards"] {
        let ttl = pttl(&mut con, &b.key("t", kind)).await;
        assert!(ttl > 0 && ttl <= 30_000, "presence {kind} expires with its last watcher: {ttl}");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{p}:*")).query_async(&mut con).await.unwrap();
    for key in &keys {
        assert!(pttl(&mut con, key).await > 0, "{key} has no expiry");
    }
    assert_eq!(keys.len(), 4, "{keys:?}");
    forget(&url, &p).await;
}

#[tokio::test]
async fn maintain_forgets_topics_nobody_listens_to() {
    let Some(url) = redis_url() else { return };
    let b = broker(&url, &prefix(), BrokerLimits::default()).await;
    let kept = b.subscribe("kept");
    drop(b.subscribe("left"));
    assert_eq!(b.local_topics(), 2);
    b.maintain().await;
    assert_eq!(b.local_topics(), 1);
    drop(kept);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn an_unreachable_redis_fails_start_up_quickly_with_its_address_and_no_password() {
    let port = free_port();
    // rediss:// too: TLS support is built in, so the URL is accepted and a connection tried.
    for url in [format!("redis://:hunter2@127.0.0.1:{port}"), format!("rediss://:hunter2@127.0.0.1:{port}")] {
        let began = Instant::now();
        let Err(e) = crate::hub::connect(&url, "switchboard", BrokerLimits::default()).await else {
            panic!("nothing listens on port {port}")
        };
        assert!(began.elapsed() < Duration::from_secs(5), "took {:?}", began.elapsed());
        let e = e.to_string();
        assert!(e.contains(&format!("cannot connect to Redis at 127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}

/// A Redis of the test's own, with nothing saved, so a restart loses everything.
async fn start_redis(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server on PATH");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("redis-server did not start on port {port}");
}

/// Waits (up to 10 s) until the broker's live feed has noticed it is down.
async fn feed_down(b: &RedisBroker) {
    let began = Instant::now();
    while b.outage.feed_is_up() {
        assert!(began.elapsed() < Duration::from_secs(10), "the feed did not notice that Redis is gone");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Skips live events until the receiver is closed (the feed came back), within 10 s.
async fn until_closed(rx: &mut broadcast::Receiver<Arc<Published>>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the feed reconnects within seconds") {
            Ok(_) => continue,
            Err(RecvError::Closed) => return,
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[tokio::test]
async fn after_a_redis_restart_the_feed_breaks_publishing_stays_fast_and_both_recover_by_themselves() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let mut server = start_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let b = broker(&url, &prefix(), BrokerLimits::default()).await;
    let mut rx = b.subscribe("t");
    let first = b.publish("t", ev(1)).await.unwrap();
    assert_eq!(next(&mut rx).await.seq, 1);

    server.kill().await.unwrap();
    for _ in 0..3 {
        let began = Instant::now();
        // Failed while the feed has not noticed yet, delivered locally once it has: never
        // numbered by Redis, and never slow.
        if let Ok(p) = b.publish("t", ev(2)).await {
            assert!(p.epoch.starts_with("local-"), "{p:?}");
        }
        assert!(began.elapsed() < Duration::from_secs(2), "a publish took {:?}", began.elapsed());
    }
    assert!(b.ping().await.is_err());
    // Longer than the command connection's own retries after those failures: it now waits
    // for a command to fail before it tries again.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let _server = start_redis(port).await;
    // The live feed reconnects by itself; what was published meanwhile is unknown to it, so
    // its subscribers are told to catch up.
    until_closed(&mut rx).await;

    // The command connection was woken up too: the next publish needs no failure to notice.
    let again = b.publish("t", ev(3)).await.unwrap();
    assert_eq!(again.seq, 1, "the restarted Redis has no history");
    assert_ne!(again.epoch, first.epoch, "so the epoch changed");
    assert!(matches!(b.since("t", &first.position()).await.unwrap(), History::Lost));

    let mut fresh = b.subscribe("t");
    b.publish("t", ev(4)).await.unwrap();
    let mut p = next(&mut fresh).await;
    if p.seq == again.seq {
        // Event 1 may still have been on its way when `fresh` subscribed; subscribers skip
        // what they have seen by its sequence number.
        p = next(&mut fresh).await;
    }
    assert_eq!((p.seq, &p.epoch), (2, &again.epoch), "a new subscription receives live events again");
    b.ping().await.unwrap();
}

#[tokio::test]
async fn while_redis_is_down_this_instances_subscribers_still_get_its_events_in_a_local_numbering() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let mut server = start_redis(port).await;
    let b = broker(&format!("redis://127.0.0.1:{port}"), &prefix(), BrokerLimits::default()).await;
    let mut rx = b.subscribe("t");
    let first = b.publish("t", ev(1)).await.unwrap();
    assert_eq!(next(&mut rx).await.seq, 1);

    server.kill().await.unwrap();
    feed_down(&b).await;
    let during = b.publish("t", ev(2)).await.expect("delivered to this instance's subscribers");
    assert!(during.epoch.starts_with("local-") && during.seq == 1, "{during:?}");
    let got = next(&mut rx).await;
    assert_eq!((&got.epoch, got.seq, &got.event.data), (&during.epoch, 1, &ev(2).data));
    // A subscriber at a Redis position cannot carry on from there: a gap, so it reloads…
    assert!(matches!(b.since("t", &first.position()).await.unwrap(), History::Lost));
    // …and goes on from the local position, recovering from local history like any other.
    let at = b.position("t").await.unwrap();
    assert_eq!(at, during.position());
    let more = b.publish("t", ev(3)).await.unwrap();
    let History::Recovered(missed) = b.since("t", &at).await.unwrap() else { panic!("local history serves its epoch") };
    assert_eq!(missed.iter().map(|p| (&p.epoch, p.seq)).collect::<Vec<_>>(), vec![(&more.epoch, 2)]);
    let recent = b.recent("t", 10).await.unwrap();
    assert_eq!(recent.iter().map(|p| p.seq).collect::<Vec<_>>(), vec![1, 2]);
    // What /metrics shows meanwhile.
    assert_eq!(b.health(), BrokerHealth { feed_up: false, local_events: 2, local_topics: 1, topics_to_reset: 1 });

    let _server = start_redis(port).await;
    until_closed(&mut rx).await;
    let back = b.health();
    assert_eq!((back.feed_up, back.local_events, back.local_topics, back.topics_to_reset), (true, 2, 0, 0));
    // The local numbering ended with the outage; no one may continue it.
    assert!(matches!(b.since("t", &more.position()).await.unwrap(), History::Lost));
    // The topic's new epoch was set before its subscribers were told: the position they read
    // now is the one the next event continues, with no second reset to come.
    let mut fresh = b.subscribe("t");
    let now = b.position("t").await.unwrap();
    assert!(!now.epoch.starts_with("local-"), "{now:?}");
    let after = b.publish("t", ev(4)).await.unwrap();
    assert_eq!((&after.epoch, after.seq), (&now.epoch, now.seq + 1));
    let p = next(&mut fresh).await;
    assert_eq!((&p.epoch, p.seq), (&after.epoch, after.seq));
}

#[tokio::test]
async fn when_only_the_live_feed_drops_subscribers_are_closed_and_catch_up_from_history() {
    if redis_url().is_none() {
        return;
    }
    // A private server: killing pub/sub clients of the shared one would break parallel tests.
    let port = free_port();
    let _server = start_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let b = broker(&url, &prefix(), BrokerLimits::default()).await;
    let mut rx = b.subscribe("t");
    let first = b.publish("t", ev(1)).await.unwrap();
    assert_eq!(next(&mut rx).await.seq, 1);

    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut raw(&url).await).await.unwrap();
    assert_eq!(killed, 1);
    // The command connection is untouched, so this is numbered and stored, but no feed hears it.
    b.publish("t", ev(2)).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("the feed reconnects within seconds");
    assert!(matches!(closed, Err(RecvError::Closed)), "{closed:?}");
    b.ping().await.unwrap();
    let History::Recovered(missed) = b.since("t", &first.position()).await.unwrap() else { panic!("history survived") };
    assert_eq!(missed.iter().map(|p| (p.seq, &p.epoch)).collect::<Vec<_>>(), vec![(2, &first.epoch)]);
    let mut again = b.subscribe("t");
    b.publish("t", ev(3)).await.unwrap();
    let mut p = next(&mut again).await;
    if p.seq == 2 {
        // The feed may have come back before event 2 was published; a subscriber skips it,
        // having recovered it from history.
        p = next(&mut again).await;
    }
    assert_eq!(p.seq, 3);
}

#[tokio::test]
async fn a_dropped_broker_closes_its_live_feed() {
    if redis_url().is_none() {
        return;
    }
    let port = free_port();
    let _server = start_redis(port).await;
    let url = format!("redis://127.0.0.1:{port}");
    let mut con = raw(&url).await;
    let feeds = |list: String| list.lines().count();
    let b = broker(&url, &prefix(), BrokerLimits::default()).await;
    let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut con).await.unwrap();
    assert_eq!(feeds(list), 1);
    drop(b);
    let began = Instant::now();
    loop {
        let list: String = redis::cmd("CLIENT").arg("LIST").arg("TYPE").arg("pubsub").query_async(&mut con).await.unwrap();
        if feeds(list) == 0 {
            break;
        }
        assert!(began.elapsed() < Duration::from_secs(5), "the feed outlived its broker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP relay to a Redis that a test can cut (open connections end, new ones are closed at
/// once) and restore: a network outage during which Redis keeps everything it has.
struct Relay {
    port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Relay {
    async fn to(target: u16) -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(tokio::sync::watch::Sender::new(false));
        let state = cut.subscribe();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut state = state.clone();
                if *state.borrow() {
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = state.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Relay { port, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn restore(&self) {
        self.cut.send_replace(false);
    }
}

/// A publish during a cut: failed, or (once the feed noticed) numbered locally, never by Redis.
fn never_in_redis(published: Result<Arc<Published>, BrokerError>) {
    if let Ok(p) = published {
        assert!(p.epoch.starts_with("local-"), "the network is cut, yet {p:?} was numbered by Redis");
    }
}

/// A private Redis (its port) and a relay to it that the test can cut.
async fn cuttable_redis() -> Option<(tokio::process::Child, u16, Relay)> {
    redis_url()?;
    let port = free_port();
    let server = start_redis(port).await;
    Some((server, port, Relay::to(port).await))
}

#[tokio::test]
async fn an_event_lost_to_a_network_cut_gives_its_topic_a_new_epoch_on_every_instance() {
    let Some((_server, port, relay)) = cuttable_redis().await else { return };
    let p = prefix();
    // Instance A reaches Redis through the relay; B directly, so B's feed never breaks.
    let a = broker(&format!("redis://127.0.0.1:{}", relay.port), &p, BrokerLimits::default()).await;
    let b = broker(&format!("redis://127.0.0.1:{port}"), &p, BrokerLimits::default()).await;
    let mut on_b = b.subscribe("call:x");
    let first = a.publish("call:x", ev(1)).await.unwrap();
    assert_eq!(next(&mut on_b).await.seq, 1);

    relay.cut();
    never_in_redis(a.publish("call:x", ev(2)).await);
    // Redis kept everything: without the reset, history after event 1 would look whole.
    assert!(matches!(b.since("call:x", &first.position()).await.unwrap(), History::Recovered(ref v) if v.is_empty()));
    relay.restore();

    // B's subscribers are told, although B never lost Redis: their topic missed an event.
    let closed = tokio::time::timeout(Duration::from_secs(10), on_b.recv()).await.expect("the reset reaches B within seconds");
    assert!(matches!(closed, Err(RecvError::Closed)), "{closed:?}");
    assert!(matches!(b.since("call:x", &first.position()).await.unwrap(), History::Lost), "a subscriber at event 1 must reload");
    let next_one = a.publish("call:x", ev(3)).await.unwrap();
    assert_ne!(next_one.epoch, first.epoch, "nothing is numbered after the hole in the old epoch");
    // Other topics are untouched.
    let other = b.publish("call:y", ev(1)).await.unwrap();
    let again = b.publish("call:y", ev(2)).await.unwrap();
    assert_eq!((&again.epoch, again.seq), (&other.epoch, 2));
}

#[tokio::test]
async fn a_publish_after_a_missed_one_never_continues_the_old_epoch() {
    let Some((_server, _, relay)) = cuttable_redis().await else { return };
    let a = broker(&format!("redis://127.0.0.1:{}", relay.port), &prefix(), BrokerLimits::default()).await;
    let first = a.publish("t", ev(1)).await.unwrap();
    relay.cut();
    never_in_redis(a.publish("t", ev(2)).await);
    relay.restore();
    // Straight away (the reset task may or may not have run by then): either way the
    // publish must not number its event in the epoch that has the hole.
    let mut after = None;
    for _ in 0..50 {
        // Until the feed is back, an event may still be numbered locally: not Redis' answer.
        if let Ok(p) = a.publish("t", ev(3)).await
            && !p.epoch.starts_with("local-")
        {
            after = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = after.expect("Redis answers again");
    assert_ne!(after.epoch, first.epoch);
    assert_eq!(after.seq, 1);
    let History::Recovered(rest) = a.since("t", &after.position()).await.unwrap() else { panic!("the new epoch is whole") };
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_broker_refused_by_redis_for_a_while_recovers_by_itself_once_let_in() {
    let Some((_server, port, _)) = cuttable_redis().await else { return };
    let admin = format!("redis://127.0.0.1:{port}");
    let acl = |args: &'static [&'static str]| {
        let admin = admin.clone();
        async move {
            let _: redis::Value = redis::cmd(args[0]).arg(&args[1..]).query_async(&mut raw(&admin).await).await.unwrap();
        }
    };
    acl(&["ACL", "SETUSER", "hub-a", "on", ">pw-a", "~*", "&*", "+@all"]).await;
    let a = broker(&format!("redis://hub-a:pw-a@127.0.0.1:{port}"), &prefix(), BrokerLimits::default()).await;
    a.publish("t", ev(1)).await.unwrap();
    acl(&["ACL", "SETUSER", "hub-a", "off"]).await;
    acl(&["CLIENT", "KILL", "USER", "hub-a"]).await;
    // Commands while the login is refused: the manager's own reconnection fails with an
    // authentication error, not an I/O one.
    for _ in 0..5 {
        assert!(a.ping().await.is_err());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    acl(&["ACL", "SETUSER", "hub-a", "on"]).await;
    let began = Instant::now();
    while a.ping().await.is_err() {
        assert!(began.elapsed() < Duration::from_secs(10), "still refused long after Redis lets the broker in again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.publish("t", ev(2)).await.unwrap();
}
