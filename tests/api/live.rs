//! The supervisor socket on the in-process broker: snapshots, live order, resume, presence,
//! scoping, limits, slow consumers and shutdown.

use std::time::Duration;

use serde_json::{Value, json};
use switchboard::hub::Event;

use crate::helpers::*;
use crate::ws::{Frame, Supervisor, ws_url};

const OTHER_ORG: &str = "org-b";

fn status(call: &str, org: &str, s: &str) -> Value {
    message(call, org, json!({ "type": "status-update", "status": s }))
}

fn utterance(call: &str, org: &str, kind: &str, text: &str) -> Value {
    message(call, org, json!({ "type": "transcript", "transcriptType": kind, "role": "user", "transcript": text }))
}

async fn live_call(app: &TestApp, call: &str, org: &str) {
    let (code, _) = app.post_vapi(&status(call, org, "in-progress")).await;
    assert_eq!(code, 200);
}

/// `call` live in ORG, and a supervisor of ORG connected to the socket (not yet subscribed).
async fn supervisor_of_live_call(app: &TestApp, call: &str) -> Supervisor {
    live_call(app, call, ORG).await;
    let token = app.token("supervisor", &[ORG]).await;
    Supervisor::connect(app, &token).await
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["seq"].as_u64().unwrap()).collect()
}

#[tokio::test]
async fn a_supervisor_gets_the_live_calls_then_every_event_in_order() {
    let app = spawn_app().await;
    live_call(&app, "c1", ORG).await;
    app.post_vapi(&utterance("c1", ORG, "final", "I need a plumber")).await;
    app.post_vapi(&status("c-over", ORG, "ended")).await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    let sub = sup.subscribe("calls").await;
    assert_eq!(sub["recovered"], false);
    let calls = sub["snapshot"]["calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "only live calls: {calls:?}");
    assert_eq!(calls[0]["id"], "c1");
    assert_eq!(calls[0]["last_utterance"]["text"], "I need a plumber");
    let start = sub["seq"].as_u64().unwrap();
    for n in 0..5 {
        live_call(&app, &format!("n{n}"), ORG).await;
    }
    let events = sup.events(Duration::from_millis(500)).await;
    assert_eq!(seqs(&events), (start + 1..=start + 5).collect::<Vec<_>>(), "gapless and in order");
    assert_eq!(events[0]["event"]["data"]["call"]["id"], "n0");
    assert_eq!(events[0]["topic"], "calls");
    assert!(events[0]["event"].get("org_id").is_none(), "the org is used for scoping, not sent");
}

#[tokio::test]
async fn a_call_subscription_starts_with_its_transcript_partial_line_and_watchers() {
    let app = spawn_app().await;
    live_call(&app, "c1", ORG).await;
    app.post_vapi(&utterance("c1", ORG, "final", "Hello there")).await;
    app.post_vapi(&utterance("c1", ORG, "partial", "I would like")).await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    let sub = sup.subscribe("call:c1").await;
    let snap = &sub["snapshot"];
    assert_eq!(snap["call"]["id"], "c1");
    assert_eq!(snap["call"]["transcript"][0]["text"], "Hello there");
    assert_eq!(snap["partial"][0]["text"], "I would like");
    assert_eq!(snap["watchers"].as_array().unwrap().len(), 1, "the subscriber itself watches");
    app.post_vapi(&utterance("c1", ORG, "partial", "I would like to book")).await;
    let ev = sup.expect_event("transcript.partial").await;
    assert_eq!(ev["event"]["data"]["text"], "I would like to book");
}

#[tokio::test]
async fn a_reconnect_with_since_receives_exactly_what_it_missed() {
    let app = spawn_app().await;
    live_call(&app, "c1", ORG).await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    let sub = sup.subscribe("call:c1").await;
    let epoch = sub["epoch"].as_str().unwrap().to_string();
    app.post_vapi(&utterance("c1", ORG, "final", "one")).await;
    let seen = sup.expect_event("transcript.final").await["seq"].as_u64().unwrap();
    drop(sup);
    for text in ["two", "three", "four"] {
        app.post_vapi(&utterance("c1", ORG, "final", text)).await;
    }
    let mut again = Supervisor::connect(&app, &token).await;
    let sub = again.subscribe_since("call:c1", &epoch, seen).await;
    assert_eq!(sub["recovered"], true);
    assert!(sub.get("snapshot").is_none());
    let missed = again.events(Duration::from_millis(500)).await;
    let texts: Vec<&str> =
        missed.iter().filter(|e| e["event"]["kind"] == "transcript.final").map(|e| e["event"]["data"]["text"].as_str().unwrap()).collect();
    assert_eq!(texts, vec!["two", "three", "four"]);
    let s = seqs(&missed);
    assert_eq!(s, (seen + 1..=seen + s.len() as u64).collect::<Vec<_>>(), "exactly the missed positions, once each");
}

#[tokio::test]
async fn a_position_history_cannot_cover_gets_a_fresh_snapshot() {
    let app = spawn_with(|s| s.live.history_size = 2).await;
    let mut sup = supervisor_of_live_call(&app, "c1").await;
    let epoch = sup.subscribe("call:c1").await["epoch"].as_str().unwrap().to_string();
    for text in ["a", "b", "c", "d", "e"] {
        app.post_vapi(&utterance("c1", ORG, "final", text)).await;
    }
    let trimmed = sup.subscribe_since("call:c1", &epoch, 1).await;
    assert_eq!(trimmed["recovered"], false);
    assert_eq!(trimmed["snapshot"]["call"]["transcript"].as_array().unwrap().len(), 5);
    let foreign = sup.subscribe_since("call:c1", "another-epoch", 3).await;
    assert_eq!(foreign["recovered"], false);
    assert!(foreign["snapshot"]["call"].is_object());
}

#[tokio::test]
async fn an_org_a_token_never_receives_an_org_b_event() {
    let app = spawn_app().await;
    live_call(&app, "b-call", OTHER_ORG).await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    let sub = sup.subscribe("calls").await;
    assert!(sub["snapshot"]["calls"].as_array().unwrap().is_empty());
    live_call(&app, "b-call-2", OTHER_ORG).await;
    app.post_vapi(&utterance("b-call", OTHER_ORG, "final", "secret")).await;
    live_call(&app, "a-call", ORG).await;
    let events = sup.events(Duration::from_millis(500)).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"]["data"]["call"]["id"], "a-call");
    // Guessing the other org's call id gets the same answer as a call that does not exist.
    sup.send(json!({ "type": "subscribe", "topic": "call:b-call" })).await;
    assert_eq!(sup.close_code(Duration::from_secs(2)).await, Some(4003));
    let mut other = Supervisor::connect(&app, &token).await;
    other.send(json!({ "type": "subscribe", "topic": "call:no-such-call" })).await;
    assert_eq!(other.close_code(Duration::from_secs(2)).await, Some(4003));
}

#[tokio::test]
async fn watchers_see_each_other_arrive_and_leave() {
    let app = spawn_app().await;
    live_call(&app, "c1", ORG).await;
    let alice =
        switchboard::auth::create(&app.state.store, switchboard::auth::Role::Supervisor, &[ORG.into()], Some("Alice")).await.unwrap();
    let bob = switchboard::auth::create(&app.state.store, switchboard::auth::Role::Supervisor, &[ORG.into()], Some("Bob")).await.unwrap();
    let mut a = Supervisor::connect(&app, &alice).await;
    a.subscribe("call:c1").await;
    let mut b = Supervisor::connect(&app, &bob).await;
    let snap = b.subscribe("call:c1").await;
    let names: Vec<&str> = snap["snapshot"]["watchers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Alice", "Bob"]);
    let joined = a.expect_event("presence").await;
    assert_eq!(joined["event"]["data"]["watchers"].as_array().unwrap().len(), 2);
    drop(b);
    let left = a.expect_event("presence").await;
    let after: Vec<&str> = left["event"]["data"]["watchers"].as_array().unwrap().iter().map(|w| w["name"].as_str().unwrap()).collect();
    assert_eq!(after, vec!["Alice"]);
    // A board on `calls` sees the watchers of each live call too.
    let mut board = Supervisor::connect(&app, &bob).await;
    let calls = board.subscribe("calls").await;
    assert_eq!(calls["snapshot"]["calls"][0]["watchers"][0]["name"], "Alice");
}

#[tokio::test]
async fn one_socket_follows_two_topics_and_an_unsubscribed_topic_goes_quiet_until_subscribed_again() {
    let app = spawn_app().await;
    let mut sup = supervisor_of_live_call(&app, "c1").await;
    let calls_at = sup.subscribe("calls").await["seq"].as_u64().unwrap();
    let call_at = sup.subscribe("call:c1").await["seq"].as_u64().unwrap();
    // A final goes to both topics, a partial to the call's only.
    app.post_vapi(&utterance("c1", ORG, "final", "first")).await;
    app.post_vapi(&utterance("c1", ORG, "partial", "second")).await;
    let events = sup.events(Duration::from_millis(500)).await;
    let of = |topic: &str| events.iter().filter(|e| e["topic"] == topic).cloned().collect::<Vec<_>>();
    let (on_calls, on_call) = (of("calls"), of("call:c1"));
    // On `calls`, the presence event of this socket's arrival on the call came before the call's
    // `subscribed` (and was skipped while waiting for it): gapless from there on.
    let calls_seqs = seqs(&on_calls);
    assert!(calls_seqs[0] > calls_at && calls_seqs.windows(2).all(|w| w[1] == w[0] + 1), "calls: gapless {calls_seqs:?}");
    assert_eq!(seqs(&on_call), (call_at + 1..=call_at + on_call.len() as u64).collect::<Vec<_>>(), "call:c1: gapless");
    // Presence (this socket's own arrival) may come too; it is not what this test is about.
    let kinds = |frames: &[Value]| {
        frames.iter().map(|e| e["event"]["kind"].as_str().unwrap().to_string()).filter(|k| k != "presence").collect::<Vec<_>>()
    };
    assert_eq!(kinds(&on_call), ["transcript.final", "transcript.partial"]);
    assert_eq!(kinds(&on_calls), ["transcript.final"]);

    sup.send(json!({ "type": "unsubscribe", "topic": "call:c1" })).await;
    assert_eq!(sup.expect("unsubscribed").await["topic"], "call:c1");
    app.post_vapi(&utterance("c1", ORG, "partial", "unseen")).await;
    let after = sup.events(Duration::from_millis(300)).await;
    assert!(after.iter().all(|e| e["topic"] == "calls"), "nothing of call:c1 after unsubscribe: {after:?}");

    let again = sup.subscribe("call:c1").await["seq"].as_u64().unwrap();
    app.post_vapi(&utterance("c1", ORG, "partial", "third")).await;
    let events = sup.events(Duration::from_millis(500)).await;
    let on_call: Vec<Value> = events.into_iter().filter(|e| e["topic"] == "call:c1").collect();
    assert_eq!(seqs(&on_call), (again + 1..=again + on_call.len() as u64).collect::<Vec<_>>(), "from the new position");
    assert_eq!(on_call.last().unwrap()["event"]["data"]["text"], "third");
    assert!(on_call.iter().all(|e| e["event"]["data"]["text"] != "unseen"));
}

#[tokio::test]
async fn a_burst_of_many_write_batches_reaches_a_socket_whole_and_in_order() {
    let app = spawn_app().await;
    let mut sup = supervisor_of_live_call(&app, "c1").await;
    let start = sup.subscribe("call:c1").await["seq"].as_u64().unwrap();
    // Published back to back without yielding (on the in-process broker): the socket's writer
    // wakes to find them all, several of its batches' worth, and must come back for the rest
    // by itself, since no new event would wake it.
    let burst = 300u64;
    for i in 0..burst {
        let data = json!({ "role": "user", "text": format!("burst {i}") });
        let event = Event { kind: "transcript.partial".into(), at: "2026-12-02T12:00:00Z".into(), org_id: ORG.into(), data };
        app.state.broker.publish("call:c1", event).await.unwrap();
    }
    let mut got = Vec::new();
    while (got.len() as u64) < burst {
        match sup.next_within(Duration::from_secs(10)).await {
            Some(Frame::Json(v)) if v["type"] == "event" => got.push(v),
            Some(Frame::Json(_)) => {}
            other => panic!("the socket stopped after {} of {burst} events: {other:?}", got.len()),
        }
    }
    assert_eq!(seqs(&got), (start + 1..=start + burst).collect::<Vec<_>>(), "every event, in order, no gap");
    assert_eq!(got.last().unwrap()["event"]["data"]["text"], format!("burst {}", burst - 1));
}

#[tokio::test]
async fn a_slow_subscriber_is_cut_with_4008_while_a_fast_one_receives_everything() {
    let app = spawn_with(|s| s.live.ws.queue_bytes = 64 * 1024).await;
    live_call(&app, "c1", ORG).await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut fast = Supervisor::connect(&app, &token).await;
    let start = fast.subscribe("call:c1").await["seq"].as_u64().unwrap();
    let mut slow = Supervisor::connect_small(&app, &token).await;
    slow.subscribe("call:c1").await;
    // Enough data to fill the kernel's buffers and the socket's queue many times over.
    let text = "x".repeat(16 * 1024);
    let total = 600usize;
    let fast_reader = tokio::spawn(async move {
        let mut got: Vec<(u64, String)> = Vec::new();
        while got.iter().filter(|(_, k)| k == "transcript.partial").count() < total {
            match fast.next_within(Duration::from_secs(10)).await {
                Some(Frame::Json(v)) if v["type"] == "event" => {
                    got.push((v["seq"].as_u64().unwrap(), v["event"]["kind"].as_str().unwrap().to_string()))
                }
                Some(Frame::Json(_)) => {}
                other => panic!("the fast subscriber stopped: {other:?}"),
            }
        }
        got
    });
    let (flooded_tx, flooded) = tokio::sync::oneshot::channel::<()>();
    let slow_reader = tokio::spawn(async move {
        // Not reading at all until the flood is over…
        let _ = flooded.await;
        // …then reading fast: what it got is in order, and then comes the 4008.
        let mut last = 0;
        loop {
            match slow.next_within(Duration::from_secs(10)).await {
                Some(Frame::Json(v)) if v["type"] == "event" => {
                    let s = v["seq"].as_u64().unwrap();
                    assert!(s > last, "in order");
                    last = s;
                }
                Some(Frame::Json(_)) => {}
                Some(Frame::Closed(code)) => return (code, last),
                None => panic!("the slow subscriber was never cut"),
            }
        }
    });
    for _ in 0..total {
        let (code, _) = app.post_vapi(&utterance("c1", ORG, "partial", &text)).await;
        assert_eq!(code, 200);
    }
    let _ = flooded_tx.send(());
    let got = tokio::time::timeout(Duration::from_secs(30), fast_reader).await.unwrap().unwrap();
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (start + 1..=start + got.len() as u64).collect::<Vec<_>>(), "every event, in order, no gap");
    let (code, last) = tokio::time::timeout(Duration::from_secs(30), slow_reader).await.unwrap().unwrap();
    assert_eq!(code, Some(4008));
    assert!(last < start + got.len() as u64, "it was cut before the end (last seq {last})");
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_4009() {
    let app = spawn_app().await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    sup.subscribe("calls").await;
    app.stop.cancel();
    assert_eq!(sup.close_code(Duration::from_secs(5)).await, Some(4009));
}

#[tokio::test]
async fn a_bad_token_is_closed_with_4001() {
    let app = spawn_app().await;
    let mut sup = Supervisor::connect(&app, "sb_not-a-token").await;
    assert_eq!(sup.close_code(Duration::from_secs(2)).await, Some(4001));
}

#[tokio::test]
async fn the_token_may_come_as_a_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = spawn_app().await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut req = ws_url(&app, "").into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", format!("switchboard, {token}").parse().unwrap());
    let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "switchboard");
    let mut sup = Supervisor { ws };
    assert_eq!(sup.subscribe("calls").await["type"], "subscribed");
}

#[tokio::test]
async fn a_message_outside_the_protocol_is_closed_with_4400() {
    let app = spawn_app().await;
    let token = app.token("supervisor", &[ORG]).await;
    for bad in [json!({ "type": "dance" }), json!({ "type": "subscribe", "topic": "everything" }), json!("just a string")] {
        let mut sup = Supervisor::connect(&app, &token).await;
        sup.send(bad.clone()).await;
        assert_eq!(sup.close_code(Duration::from_secs(2)).await, Some(4400), "{bad}");
    }
}

#[tokio::test]
async fn a_frame_over_64_kib_is_refused() {
    let app = spawn_app().await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    sup.send(json!({ "type": "subscribe", "topic": "x".repeat(70 * 1024) })).await;
    let code = sup.close_code(Duration::from_secs(2)).await;
    assert!(matches!(code, Some(4400) | Some(1009)), "{code:?}");
}

#[tokio::test]
async fn subscriptions_and_sockets_per_token_are_limited() {
    let app = spawn_with(|s| {
        s.live.ws.max_subscriptions = 2;
        s.live.ws.max_connections_per_token = 2;
    })
    .await;
    for c in ["c1", "c2", "c3"] {
        live_call(&app, c, ORG).await;
    }
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    sup.subscribe("call:c1").await;
    sup.subscribe("call:c1").await;
    sup.subscribe("call:c2").await;
    sup.send(json!({ "type": "subscribe", "topic": "call:c3" })).await;
    assert_eq!(sup.close_code(Duration::from_secs(2)).await, Some(4400));
    let _one = Supervisor::connect(&app, &token).await;
    let _two = Supervisor::connect(&app, &token).await;
    let mut three = Supervisor::connect(&app, &token).await;
    assert_eq!(three.close_code(Duration::from_secs(2)).await, Some(4003));
}

/// A hub that pings every 100 ms and gives up on a socket after 300 ms of silence.
async fn spawn_quick_pings() -> TestApp {
    spawn_with(|s| {
        s.live.ws.ping_interval = Duration::from_millis(100);
        s.live.ws.idle_timeout = Duration::from_millis(300);
    })
    .await
}

#[tokio::test]
async fn a_silent_socket_is_closed_after_the_idle_timeout() {
    let app = spawn_quick_pings().await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    // Not reading means not answering pings either.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(sup.close_code(Duration::from_secs(2)).await, Some(4408));
}

#[tokio::test]
async fn a_ping_gets_a_pong_and_an_answered_ping_keeps_the_socket_open() {
    let app = spawn_quick_pings().await;
    let token = app.token("supervisor", &[ORG]).await;
    let mut sup = Supervisor::connect(&app, &token).await;
    sup.send(json!({ "type": "ping" })).await;
    assert_eq!(sup.expect("pong").await["type"], "pong");
    // Reading lets the client answer the server's pings, so it stays open past the timeout.
    assert!(sup.next_within(Duration::from_millis(800)).await.is_none());
    assert_eq!(sup.subscribe("calls").await["type"], "subscribed");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let token = app.token("supervisor", &[ORG]).await;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = ws_url(&app, &format!("?token={token}")).into_client_request().unwrap();
    req.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn a_plain_get_on_the_socket_route_is_a_json_400() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "websocket_required");
}
