//! Two hub instances sharing Postgres and Redis, as behind a load balancer: a webhook posted
//! to one reaches supervisors on the other, in order, and a supervisor can resume on either.
//! These run when `.ci/run` provides both services (SWITCHBOARD_TEST_DATABASE_URL and
//! SWITCHBOARD_TEST_REDIS_URL); with the embedded defaults there is only ever one instance.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;
use crate::ws::{Frame, Supervisor};

pub fn final_line(call: &str, text: &str) -> Value {
    message(call, ORG, json!({ "type": "transcript", "transcriptType": "final", "role": "user", "transcript": text }))
}

fn services() -> Option<(String, String)> {
    let pg = std::env::var("SWITCHBOARD_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())?;
    Some((pg, test_redis_url()?))
}

/// Two instances on one database schema and one Redis prefix.
async fn pair(redis: &str) -> (TestApp, TestApp) {
    pair_via(redis, redis).await
}

/// The same, each instance with its own URL to that Redis (say, another user).
async fn pair_via(redis_a: &str, redis_b: &str) -> (TestApp, TestApp) {
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let a = spawn_with(|s| {
        s.broker_url = redis_a.to_string();
        s.live.broker_prefix = prefix.clone();
    })
    .await;
    let db = a.state.settings.database_url.clone();
    let b = spawn_with(|s| {
        s.database_url = db;
        s.broker_url = redis_b.to_string();
        s.live.broker_prefix = prefix.clone();
    })
    .await;
    (a, b)
}

fn texts(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["event"]["kind"] == "transcript.final")
        .map(|f| f["event"]["data"]["text"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_webhook_posted_to_one_instance_reaches_a_supervisor_on_the_other_in_order() {
    let Some((_, redis)) = services() else { return };
    let (a, b) = pair(&redis).await;
    a.post_vapi(&message("c1", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let token = a.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&b, &token).await;
    let start = sup.subscribe("call:c1").await["seq"].as_u64().unwrap();
    let sent: Vec<String> = (0..200).map(|n| format!("line {n}")).collect();
    for (n, text) in sent.iter().enumerate() {
        let via = if n % 2 == 0 { &a } else { &b };
        assert_eq!(via.post_vapi(&final_line("c1", text)).await.0, 200);
    }
    let mut got = Vec::new();
    while texts(&got).len() < sent.len() {
        match sup.next_within(Duration::from_secs(5)).await {
            Some(Frame::Json(v)) if v["type"] == "event" => got.push(v),
            Some(Frame::Json(v)) => panic!("unexpected frame {v}"),
            other => panic!("the stream stopped after {} events: {other:?}", got.len()),
        }
    }
    assert_eq!(texts(&got), sent, "every line, in the order posted");
    let seqs: Vec<u64> = got.iter().map(|f| f["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (start + 1..=start + got.len() as u64).collect::<Vec<_>>(), "no gap, no repeat");
}

#[tokio::test]
async fn a_supervisor_resumes_on_the_other_instance_with_exactly_what_it_missed() {
    let Some((_, redis)) = services() else { return };
    let (a, b) = pair(&redis).await;
    a.post_vapi(&message("c1", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let token = a.token("supervisor", &[ORG]).await;
    let mut on_a = Supervisor::connect(&a, &token).await;
    let sub = on_a.subscribe("call:c1").await;
    let epoch = sub["epoch"].as_str().unwrap().to_string();
    a.post_vapi(&final_line("c1", "seen")).await;
    let seen = on_a.expect_event("transcript.final").await["seq"].as_u64().unwrap();
    drop(on_a);
    for text in ["one", "two", "three"] {
        b.post_vapi(&final_line("c1", text)).await;
    }
    let mut on_b = Supervisor::connect(&b, &token).await;
    let sub = on_b.subscribe_since("call:c1", &epoch, seen).await;
    assert_eq!(sub["recovered"], true);
    let missed = on_b.events(Duration::from_millis(500)).await;
    assert_eq!(texts(&missed), vec!["one", "two", "three"]);
    assert_eq!(missed[0]["seq"].as_u64().unwrap(), seen + 1);
}

/// A Redis of the test's own, so it can be restarted without disturbing other tests.
pub struct PrivateRedis {
    pub port: u16,
    child: tokio::process::Child,
}

impl PrivateRedis {
    pub async fn start(port: u16) -> PrivateRedis {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        PrivateRedis { port, child }
    }

    /// On a free port, with its URL.
    pub async fn start_anywhere() -> (PrivateRedis, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        (PrivateRedis::start(port).await, format!("redis://127.0.0.1:{port}"))
    }

    pub async fn stop(mut self) -> u16 {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        self.port
    }
}

/// Call `c1` started on A and a supervisor on B watching it, who has seen its line "before".
async fn watching_call_on_b(a: &TestApp, b: &TestApp) -> Supervisor {
    a.post_vapi(&message("c1", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let token = a.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(b, &token).await;
    sup.subscribe("call:c1").await;
    a.post_vapi(&final_line("c1", "before")).await;
    assert_eq!(sup.expect_event("transcript.final").await["event"]["data"]["text"], "before");
    sup
}

#[tokio::test]
async fn after_a_redis_restart_subscribers_resync_and_keep_receiving() {
    let Some(_) = services() else { return };
    let (redis, url) = PrivateRedis::start_anywhere().await;
    let (a, b) = pair(&url).await;
    let mut sup = watching_call_on_b(&a, &b).await;

    let port = redis.stop().await;
    // Webhooks keep being answered: the store is the record; live events are best effort.
    let (code, _) = a.post_vapi(&final_line("c1", "during")).await;
    assert_eq!(code, 200);
    let _redis = PrivateRedis::start(port).await;

    // The subscriber learns that history was lost and is told to resync…
    let resync = loop {
        match sup.next_within(Duration::from_secs(15)).await {
            Some(Frame::Json(v)) if v["type"] == "resync" => break v,
            Some(Frame::Json(_)) => continue,
            other => panic!("no resync after the Redis restart: {other:?}"),
        }
    };
    assert_eq!(resync["topic"], "call:c1");
    // …and subscribing again gives the state from the store, outage included, then live events.
    let sub = sup.subscribe("call:c1").await;
    let lines: Vec<&str> = sub["snapshot"]["call"]["transcript"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(lines, vec!["before", "during"]);
    let mut delivered = false;
    for n in 0..50 {
        a.post_vapi(&final_line("c1", &format!("after {n}"))).await;
        match sup.next_within(Duration::from_millis(200)).await {
            Some(Frame::Json(v)) if v["event"]["kind"] == "transcript.final" => {
                delivered = true;
                break;
            }
            // "during" never reached Redis, so its topic is also given a new epoch once Redis is
            // back, and that can come after the restart's own resync: a client subscribes again.
            Some(Frame::Json(v)) if v["type"] == "resync" => {
                sup.subscribe("call:c1").await;
            }
            _ => {}
        }
    }
    assert!(delivered, "live events flow again after the restart");
}

async fn redis_command(url: &str, args: &[&str]) {
    let mut con = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let _: redis::Value = redis::cmd(args[0]).arg(&args[1..]).query_async(&mut con).await.unwrap();
}

/// Waits for the `resync` of `topic`, past any other frame.
pub async fn resync_of(sup: &mut Supervisor, topic: &str) -> Value {
    loop {
        match sup.next_within(Duration::from_secs(15)).await {
            Some(Frame::Json(v)) if v["type"] == "resync" && v["topic"] == topic => return v,
            Some(Frame::Json(_)) => continue,
            other => panic!("no resync of {topic}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn when_one_instance_loses_redis_supervisors_on_the_other_resync_and_see_what_it_stored() {
    let Some(_) = services() else { return };
    let (redis, admin) = PrivateRedis::start_anywhere().await;
    // Instance A logs in as a user of its own, so the test can shut A out (as a network cut
    // would) while B stays connected and Redis keeps everything.
    redis_command(&admin, &["ACL", "SETUSER", "hub-a", "on", ">pw-a", "~*", "&*", "+@all"]).await;
    let (a, b) = pair_via(&format!("redis://hub-a:pw-a@127.0.0.1:{}", redis.port), &admin).await;
    let mut sup = watching_call_on_b(&a, &b).await;

    redis_command(&admin, &["ACL", "SETUSER", "hub-a", "off"]).await;
    redis_command(&admin, &["CLIENT", "KILL", "USER", "hub-a"]).await;
    // Stored and answered; its live event cannot reach Redis.
    assert_eq!(a.post_vapi(&final_line("c1", "during")).await.0, 200);
    redis_command(&admin, &["ACL", "SETUSER", "hub-a", "on"]).await;

    // B never lost Redis and history still ends at "before", yet its supervisor is told…
    resync_of(&mut sup, "call:c1").await;
    // …and the snapshot has the line the bus never carried.
    let sub = sup.subscribe("call:c1").await;
    let lines: Vec<&str> = sub["snapshot"]["call"]["transcript"].as_array().unwrap().iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(lines, vec!["before", "during"]);
    // Live again once A is back (ready means its broker answers and its feed is up).
    let mut ready = false;
    for _ in 0..100 {
        if a.http.get(a.url("/readyz")).send().await.unwrap().status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "A reconnects to Redis by itself");
    a.post_vapi(&final_line("c1", "after")).await;
    assert_eq!(sup.expect_event("transcript.final").await["event"]["data"]["text"], "after");
}

#[tokio::test]
async fn a_chat_answer_started_on_one_instance_resumes_and_stops_on_the_other() {
    let Some((_, redis)) = services() else { return };
    let m = crate::chat::mock().await;
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let a = spawn_with(|s| {
        s.broker_url = redis.clone();
        s.live.broker_prefix = prefix.clone();
        crate::chat::use_mock(s, &m);
    })
    .await;
    let db = a.state.settings.database_url.clone();
    let b = spawn_with(|s| {
        s.database_url = db;
        s.broker_url = redis.clone();
        s.live.broker_prefix = prefix.clone();
        crate::chat::use_mock(s, &m);
    })
    .await;
    let session = crate::chat::new_session(&a).await;
    let on_a = crate::chat::read_events(crate::chat::send(&a, &session, "[mock:chunks=200] [mock:delay_ms=20] go").await, 4).await;
    let last_id = on_a.last().unwrap().id.clone();
    let url = b.url(&format!("/api/chat/sessions/{session}/stream"));
    let resumed = b.http.get(url).header("last-event-id", &last_id).send().await.unwrap();
    assert_eq!(resumed.status(), 200);
    let mut stream = eventsource_stream::Eventsource::eventsource(resumed.bytes_stream());
    let next = futures::StreamExt::next(&mut stream).await.unwrap().unwrap();
    let (run, n) = last_id.rsplit_once(':').unwrap();
    assert_eq!(next.id, format!("{run}:{}", n.parse::<u64>().unwrap() + 1), "B continues right after what A delivered");
    // A stop sent to B reaches the run on A.
    let stop = b.http.post(b.url(&format!("/api/chat/sessions/{session}/stop"))).send().await.unwrap();
    assert_eq!(stop.status(), 200);
    let mut rest = vec![next];
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut stream)).await {
        rest.push(ev);
    }
    let ns: Vec<u64> = rest.iter().map(|e| e.id.rsplit_once(':').unwrap().1.parse().unwrap()).collect();
    assert!(ns.windows(2).all(|w| w[1] == w[0] + 1), "no gap, no repeat: {ns:?}");
    let ends: Vec<&eventsource_stream::Event> = rest.iter().filter(|e| e.event != "delta").collect();
    assert_eq!(ends.len(), 1, "one terminal event: {rest:?}");
    assert!(ends[0].data.contains("\"stopped\""));
    let stored = crate::chat::settled(&b, &session).await;
    assert_eq!(stored["messages"][1]["status"], "stopped");
    let whole = format!("{}{}", crate::chat::text_of(&on_a), crate::chat::text_of(&rest));
    assert_eq!(stored["messages"][1]["content"], whole, "what A and then B delivered is exactly what was stored");
}
