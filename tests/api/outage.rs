//! An instance that loses Redis keeps serving its own watchers (reliability.md FO-10): events
//! it cannot publish reach the supervisors and chat readers on that instance in a local
//! numbering, a subscriber resyncs at each change of numbering, and nothing is skipped. These
//! run when `.ci/run` provides Redis (SWITCHBOARD_TEST_REDIS_URL): each starts a Redis of its
//! own on a free port, so stopping it disturbs no other test.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::json;

use crate::helpers::*;
use crate::scale_out::{PrivateRedis, final_line, resync_of};
use crate::ws::{Frame, Supervisor};

/// One instance on its own Redis.
async fn instance_on(redis: &str, adjust: impl FnOnce(&mut switchboard::config::Settings)) -> TestApp {
    spawn_with(|s| {
        s.broker_url = redis.to_string();
        s.live.broker_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        adjust(s);
    })
    .await
}

/// Waits until `/readyz` says `ready` (or not), within 15 s.
async fn until_ready(app: &TestApp, ready: bool) {
    for _ in 0..150 {
        if (app.http.get(app.url("/readyz")).send().await.unwrap().status() == 200) == ready {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never turned {}", if ready { "ready" } else { "unready" });
}

/// One unlabelled sample of `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(name)).unwrap_or_else(|| panic!("no {name} in {text}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn transcript(sub: &serde_json::Value) -> Vec<String> {
    sub["snapshot"]["call"]["transcript"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn while_redis_is_down_a_supervisor_on_the_instance_taking_the_webhooks_still_sees_the_call_live() {
    let Some(_) = test_redis_url() else { return };
    let (redis, url) = PrivateRedis::start_anywhere().await;
    let a = instance_on(&url, |_| {}).await;
    a.post_vapi(&message("c1", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let token = a.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&a, &token).await;
    sup.subscribe("call:c1").await;
    a.post_vapi(&final_line("c1", "before")).await;
    assert_eq!(sup.expect_event("transcript.final").await["event"]["data"]["text"], "before");

    let port = redis.stop().await;
    until_ready(&a, false).await;
    // Lines are stored and answered throughout. One posted before the live feed has noticed the
    // outage is not delivered live; once it has, the numbering changes under the subscriber,
    // which is told and reloads from the store…
    let mut lines = vec!["before".to_string()];
    'outage: for n in 0.. {
        assert!(n < 50, "no resync while Redis is down");
        lines.push(format!("during {n}"));
        assert_eq!(a.post_vapi(&final_line("c1", lines.last().unwrap())).await.0, 200);
        while let Some(Frame::Json(v)) = sup.next_within(Duration::from_millis(200)).await {
            assert_ne!(v["event"]["kind"], "transcript.final", "a line delivered before the resync: {v}");
            if v["type"] == "resync" && v["topic"] == "call:c1" {
                break 'outage;
            }
        }
    }
    let sub = sup.subscribe("call:c1").await;
    assert!(sub["epoch"].as_str().unwrap().starts_with("local-"), "{sub}");
    assert_eq!(transcript(&sub), lines);
    // …and from then on sees the call live, though Redis is still away.
    lines.push("live while down".into());
    assert_eq!(a.post_vapi(&final_line("c1", "live while down")).await.0, 200);
    let live = sup.expect_event("transcript.final").await;
    assert_eq!(live["event"]["data"]["text"], "live while down");
    assert_eq!(live["seq"].as_u64(), sub["seq"].as_u64().map(|s| s + 1));
    // Operators see the outage and what this instance delivered alone.
    assert_eq!(metric(&a, "switchboard_broker_feed_up").await, 0.0);
    assert!(metric(&a, "switchboard_broker_local_events_total").await >= 1.0);
    // `call:c1`, and `calls` when the line also went there.
    assert!(metric(&a, "switchboard_broker_local_topics").await >= 1.0);
    assert!(metric(&a, "switchboard_broker_topics_to_reset").await >= 1.0);

    let _redis = PrivateRedis::start(port).await;
    // Back on Redis: the local numbering ends and the subscriber reloads once more…
    resync_of(&mut sup, "call:c1").await;
    let sub = sup.subscribe("call:c1").await;
    assert!(!sub["epoch"].as_str().unwrap().starts_with("local-"), "{sub}");
    assert_eq!(transcript(&sub), lines);
    until_ready(&a, true).await;
    assert_eq!(metric(&a, "switchboard_broker_feed_up").await, 1.0);
    assert_eq!(metric(&a, "switchboard_broker_local_topics").await, 0.0);
    // …once only: the topics that missed events had their new epoch before it was told, so
    // the next lines arrive with no other resync in between.
    for text in ["after 1", "after 2"] {
        a.post_vapi(&final_line("c1", text)).await;
        match sup.next_within(Duration::from_secs(5)).await {
            Some(Frame::Json(v)) if v["type"] == "event" => {
                assert_eq!((&v["event"]["data"]["text"], &v["epoch"]), (&json!(text), &sub["epoch"]), "{v}");
            }
            other => panic!("expected the line {text:?}, got {other:?}"),
        }
    }
}

/// Reads up to `n` more events (fewer if the stream ends); a 10 s silence is a stall.
async fn read<S, E>(stream: &mut S, got: &mut Vec<Event>, n: usize)
where
    S: futures::Stream<Item = Result<Event, E>> + Unpin,
    E: std::fmt::Debug,
{
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
            Ok(Some(Ok(ev))) => got.push(ev),
            Ok(None) => return,
            other => panic!("the answer stalled after {} events: {other:?}", got.len()),
        }
    }
}

/// `(run, n)` of a chat event id.
fn position(e: &Event) -> (String, u64) {
    let (run, n) = e.id.rsplit_once(':').unwrap();
    (run.to_string(), n.parse().unwrap())
}

#[tokio::test]
async fn a_chat_answer_keeps_streaming_to_its_reader_while_redis_goes_away_and_comes_back() {
    let Some(_) = test_redis_url() else { return };
    let (redis, url) = PrivateRedis::start_anywhere().await;
    let m = crate::chat::mock().await;
    let a = instance_on(&url, |s| crate::chat::use_mock(s, &m)).await;
    let session = crate::chat::new_session(&a).await;
    // About 10 s of answer: Redis goes away and comes back in the middle of it.
    let answer = crate::chat::send(&a, &session, "[mock:chunks=500] [mock:delay_ms=20] go").await;
    assert_eq!(answer.status(), 200);
    let mut stream = answer.bytes_stream().eventsource();
    let mut got: Vec<Event> = Vec::new();
    read(&mut stream, &mut got, 5).await;
    let port = redis.stop().await;
    until_ready(&a, false).await;
    read(&mut stream, &mut got, 20).await;
    let _redis = PrivateRedis::start(port).await;
    until_ready(&a, true).await;
    read(&mut stream, &mut got, 1000).await;

    let last = got.last().unwrap();
    assert_eq!(last.event, "done", "the answer ended normally, not with a reload: {last:?}");
    let ids: Vec<(String, u64)> = got.iter().map(position).collect();
    assert!(ids.iter().all(|(run, _)| *run == ids[0].0));
    let ns: Vec<u64> = ids.iter().map(|(_, n)| *n).collect();
    assert!(ns.windows(2).all(|w| w[1] == w[0] + 1), "every event once, in order: {ns:?}");
    // Part of the answer went through the restarted Redis: it came back mid-answer.
    let log = format!("{}:{{chat:{session}}}:log", a.state.settings.live.broker_prefix);
    let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let after_outage: u64 = redis::cmd("XLEN").arg(&log).query_async(&mut con).await.unwrap();
    assert!(after_outage > 5, "only {after_outage} events of the answer went through Redis after the outage");
    let stored = crate::chat::settled(&a, &session).await;
    assert_eq!(stored["messages"][1]["status"], "complete");
    assert_eq!(stored["messages"][1]["content"], crate::chat::text_of(&got), "the reader got exactly what was stored");
}
