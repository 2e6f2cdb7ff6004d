//! Live call control: an action reaches the call's control URL (a fake VAPI here) with the
//! exact body of spec §7, is audited and published; refusals, upstream errors and timeouts
//! answer as documented and send nothing they should not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use switchboard::config::Settings;

use crate::helpers::*;

/// What the fake control URL received.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
    body: Value,
}

#[derive(Clone)]
struct FakeState {
    status: u16,
    delay: Duration,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A fake VAPI control endpoint on 127.0.0.1 that records every request and answers `status`
/// after `delay` (a 3xx points at `/elsewhere`, to show redirects are not followed).
struct FakeControl {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeControl {
    async fn start(status: u16, delay: Duration) -> FakeControl {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState { status, delay, seen: seen.clone() };
        let app = axum::Router::new().fallback(record).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeControl { base, seen }
    }

    fn url(&self, call: &str) -> String {
        format!("{}/{call}/control", self.base)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(State(s): State<FakeState>, uri: Uri, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let h = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    s.seen.lock().unwrap().push(Seen {
        path: uri.path().to_string(),
        content_type: h(header::CONTENT_TYPE),
        authorization: h(header::AUTHORIZATION),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    tokio::time::sleep(s.delay).await;
    let status = StatusCode::from_u16(s.status).unwrap();
    if status.is_redirection() {
        return (status, [(header::LOCATION, "/elsewhere")]).into_response();
    }
    (status, axum::Json(json!({ "message": format!("fake says {}", s.status) }))).into_response()
}

/// The hub, allowed to call the loopback fake over plain http.
async fn spawn_control_app(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_with(|s| {
        s.live.control.allowed_hosts = vec!["127.0.0.1".into()];
        s.live.control.allow_http = true;
        s.live.control.allow_loopback = true;
        adjust(s);
    })
    .await
}

/// Creates a live call whose `monitor.controlUrl` is `control_url`, the way VAPI tells us.
async fn live_call(app: &TestApp, call: &str, control_url: &str) {
    let body = message(
        call,
        ORG,
        json!({ "type": "status-update", "status": "in-progress",
                "call": { "id": call, "orgId": ORG, "monitor": { "controlUrl": control_url, "listenUrl": "wss://example.invalid/listen" } } }),
    );
    assert_eq!(app.post_vapi(&body).await.0, 200);
}

/// The `control.sent` events a subscriber got. With the Redis broker the call's own status
/// events, published just before the subscription, may still arrive after it.
async fn control_sent(
    rx: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<switchboard::hub::Published>>,
) -> Vec<std::sync::Arc<switchboard::hub::Published>> {
    received(rx, Duration::from_millis(300)).await.into_iter().filter(|p| p.event.kind == "control.sent").collect()
}

async fn act(app: &TestApp, token: &str, call: &str, action: Value) -> (u16, Value) {
    let r = app
        .http
        .post(app.url(&format!("/api/calls/{call}/control")))
        .bearer_auth(token)
        .json(&json!({ "action": action }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn audit(app: &TestApp, token: &str, call: &str) -> Vec<Value> {
    let (status, body) = app.get_json(&format!("/api/calls/{call}"), token).await;
    assert_eq!(status, 200);
    body["control_actions"].as_array().unwrap().clone()
}

fn six_actions() -> Vec<(Value, Value)> {
    vec![
        (
            json!({ "type": "say", "content": "A supervisor is joining.", "endCallAfterSpoken": false }),
            json!({ "type": "say", "content": "A supervisor is joining.", "endCallAfterSpoken": false }),
        ),
        (
            json!({ "type": "whisper", "content": "Offer the 10% discount." }),
            json!({ "type": "add-message", "message": { "role": "system", "content": "Offer the 10% discount." }, "triggerResponseEnabled": false }),
        ),
        (json!({ "type": "mute-assistant" }), json!({ "type": "control", "control": "mute-assistant" })),
        (json!({ "type": "unmute-assistant" }), json!({ "type": "control", "control": "unmute-assistant" })),
        (
            json!({ "type": "transfer", "destination": { "type": "number", "number": "+14155550123" }, "content": "Transferring you now." }),
            json!({ "type": "transfer", "destination": { "type": "number", "number": "+14155550123" }, "content": "Transferring you now." }),
        ),
        (json!({ "type": "end-call" }), json!({ "type": "end-call" })),
    ]
}

#[tokio::test]
async fn each_action_reaches_the_control_url_with_the_exact_body_of_spec_section_7() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-1", &fake.url("ctl-1")).await;
    for (action, _) in six_actions() {
        let (status, body) = act(&app, &token, "ctl-1", action.clone()).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!((body["ok"].clone(), body["action"].clone(), body["upstream_status"].clone()), (json!(true), action, json!(200)));
        assert!(body["audit_id"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let seen = fake.seen();
    let bodies: Vec<Value> = seen.iter().map(|s| s.body.clone()).collect();
    assert_eq!(bodies, six_actions().into_iter().map(|(_, vapi)| vapi).collect::<Vec<_>>(), "one bare control object each, in order");
    assert!(seen.iter().all(|s| s.path == "/ctl-1/control" && s.content_type.as_deref() == Some("application/json")));
    assert!(seen.iter().all(|s| s.authorization.is_none()), "no key configured, no Authorization header");
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains(r#"switchboard_control_actions_total{action="say",outcome="sent"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_sip_transfer_is_forwarded_with_its_sip_uri() {
    let fake = FakeControl::start(201, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-sip", &fake.url("ctl-sip")).await;
    let action = json!({ "type": "transfer", "destination": { "type": "sip", "sipUri": "sip:frontdesk@pbx.example.com" } });
    let (status, body) = act(&app, &token, "ctl-sip", action.clone()).await;
    assert_eq!((status, body["upstream_status"].clone()), (200, json!(201)), "any 2xx is accepted");
    assert_eq!(fake.seen()[0].body, action, "the hub's transfer shape is VAPI's");
}

#[tokio::test]
async fn every_action_is_audited_with_who_what_when_and_outcome_oldest_first() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-2", &fake.url("ctl-2")).await;
    let before = switchboard::clock::now_ms();
    let (_, first) = act(&app, &token, "ctl-2", json!({ "type": "whisper", "content": "Slow down." })).await;
    let (_, second) = act(&app, &token, "ctl-2", json!({ "type": "end-call" })).await;
    let rows = audit(&app, &token, "ctl-2").await;
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0]["id"].clone(), rows[1]["id"].clone()), (first["audit_id"].clone(), second["audit_id"].clone()), "newest last");
    let w = &rows[0];
    assert_eq!(w["actor"], "test", "the token's label");
    assert!(w["token_id"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!((w["type"].as_str(), w["outcome"].as_str(), w["upstream_status"].as_i64()), (Some("whisper"), Some("sent"), Some(200)));
    assert_eq!(w["action"], json!({ "type": "whisper", "content": "Slow down." }));
    assert_eq!(w["upstream_body"]["type"], "add-message");
    assert!(w["error"].is_null());
    let requested = switchboard::clock::parse_iso(w["requested_at"].as_str().unwrap()).unwrap();
    let finished = switchboard::clock::parse_iso(w["finished_at"].as_str().unwrap()).unwrap();
    assert!(before <= requested && requested <= finished, "{requested} {finished}");
    assert!(w["latency_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
}

#[tokio::test]
async fn control_sent_is_published_on_the_call_topic_and_nowhere_else() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-3", &fake.url("ctl-3")).await;
    let mut call_rx = app.subscribe("call:ctl-3");
    let mut calls_rx = app.subscribe("calls");
    let (_, body) = act(&app, &token, "ctl-3", json!({ "type": "mute-assistant" })).await;
    let got = control_sent(&mut call_rx).await;
    assert_eq!(got.len(), 1);
    let e = &got[0].event;
    assert_eq!((e.kind.as_str(), e.org_id.as_str()), ("control.sent", ORG));
    assert_eq!(e.data["call_id"], "ctl-3");
    assert_eq!(e.data["audit_id"], body["audit_id"]);
    assert_eq!(e.data["actor"], "test");
    assert_eq!(e.data["action"], json!({ "type": "mute-assistant" }));
    assert_eq!((e.data["outcome"].as_str(), e.data["upstream_status"].as_i64()), (Some("sent"), Some(200)));
    assert_eq!(e.data["at"], json!(e.at));
    let on_calls = received(&mut calls_rx, Duration::from_millis(100)).await;
    assert!(on_calls.iter().all(|p| p.event.kind != "control.sent"), "the calls topic is for lifecycle only");
}

#[tokio::test]
async fn an_upstream_400_is_answered_502_with_its_status_and_audited_as_rejected() {
    let fake = FakeControl::start(400, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-4", &fake.url("ctl-4")).await;
    let mut rx = app.subscribe("call:ctl-4");
    let (status, body) = act(&app, &token, "ctl-4", json!({ "type": "say", "content": "Hello" })).await;
    assert_eq!(status, 502);
    assert_eq!((body["error"]["code"].as_str(), body["error"]["upstream_status"].as_i64()), (Some("upstream_rejected"), Some(400)));
    let rows = audit(&app, &token, "ctl-4").await;
    assert_eq!((rows[0]["outcome"].as_str(), rows[0]["upstream_status"].as_i64()), (Some("rejected"), Some(400)));
    assert!(rows[0]["error"].as_str().unwrap().contains("fake says 400"), "the refusal's body is kept for the audit");
    let got = control_sent(&mut rx).await;
    assert_eq!((got[0].event.data["outcome"].as_str(), got[0].event.data["upstream_status"].as_i64()), (Some("rejected"), Some(400)));
}

#[tokio::test]
async fn a_redirect_from_the_control_url_is_not_followed() {
    let fake = FakeControl::start(307, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-5", &fake.url("ctl-5")).await;
    let (status, body) = act(&app, &token, "ctl-5", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["upstream_status"].as_i64()), (502, Some(307)));
    assert_eq!(fake.seen().len(), 1, "the Location was not requested");
}

#[tokio::test]
async fn an_upstream_slower_than_the_timeout_is_answered_504_in_about_the_timeout() {
    let fake = FakeControl::start(200, Duration::from_secs(5)).await;
    let app = spawn_control_app(|s| s.live.control_timeout = Duration::from_millis(300)).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-6", &fake.url("ctl-6")).await;
    let started = Instant::now();
    let (status, body) = act(&app, &token, "ctl-6", json!({ "type": "end-call" })).await;
    let took = started.elapsed();
    assert_eq!((status, body["error"]["code"].as_str()), (504, Some("upstream_timeout")));
    assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(2_000), "{took:?}");
    let rows = audit(&app, &token, "ctl-6").await;
    assert_eq!((rows[0]["outcome"].as_str(), rows[0]["upstream_status"].clone()), (Some("timeout"), Value::Null));
}

#[tokio::test]
async fn an_unreachable_control_url_is_answered_502_and_audited_as_failed() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-7", &format!("http://{closed}/ctl-7/control")).await;
    let (status, body) = act(&app, &token, "ctl-7", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_failed")));
    assert!(body["error"].get("upstream_status").is_none());
    let rows = audit(&app, &token, "ctl-7").await;
    assert_eq!(rows[0]["outcome"], "failed");
    assert!(rows[0]["error"].as_str().unwrap().contains("could not connect"), "{}", rows[0]["error"]);
}

#[tokio::test]
async fn an_invalid_action_is_422_naming_the_field_and_nothing_is_sent_or_audited() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-8", &fake.url("ctl-8")).await;
    let cases = [
        (json!({ "type": "say" }), "action.content"),
        (json!({ "type": "say", "content": "" }), "action.content"),
        (json!({ "type": "say", "content": "x".repeat(2_001) }), "action.content"),
        (json!({ "type": "whisper", "content": "hi", "role": "user" }), "action.role"),
        (json!({ "type": "transfer", "destination": { "type": "number", "number": "911" } }), "action.destination.number"),
        (json!({ "type": "transfer", "destination": { "type": "sip", "sipUri": "http://x" } }), "action.destination.sipUri"),
        (json!({ "type": "handoff" }), "action.type"),
        (json!("end-call"), "action"),
    ];
    for (action, field) in cases {
        let (status, body) = act(&app, &token, "ctl-8", action.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_action")), "{action}");
        assert!(body["error"]["message"].as_str().unwrap().contains(field), "{action}: {body}");
    }
    let post = |ct: &'static str, body: &'static str| {
        app.http.post(app.url("/api/calls/ctl-8/control")).bearer_auth(&token).header("content-type", ct).body(body).send()
    };
    assert_eq!(post("application/json", "{\"action\":").await.unwrap().status(), 400);
    assert_eq!(post("text/plain", "{\"action\":{\"type\":\"end-call\"}}").await.unwrap().status(), 415);
    assert_eq!(post("application/json", "{\"action\":{\"type\":\"end-call\"},\"force\":1}").await.unwrap().status(), 422);
    assert_eq!(post("application/json", "{}").await.unwrap().status(), 422);
    assert!(fake.seen().is_empty());
    assert!(audit(&app, &token, "ctl-8").await.is_empty());
}

#[tokio::test]
async fn another_orgs_token_and_an_unknown_call_get_the_same_404_and_nothing_is_sent() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let stranger = app.token("supervisor", &["some-other-org"]).await;
    live_call(&app, "ctl-9", &fake.url("ctl-9")).await;
    let (status, theirs) = act(&app, &stranger, "ctl-9", json!({ "type": "end-call" })).await;
    let (_, unknown) = act(&app, &stranger, "no-such-call", json!({ "type": "end-call" })).await;
    assert_eq!((status, &theirs), (404, &unknown));
    let unauthenticated =
        app.http.post(app.url("/api/calls/ctl-9/control")).json(&json!({ "action": { "type": "end-call" } })).send().await;
    assert_eq!(unauthenticated.unwrap().status(), 401);
    assert!(fake.seen().is_empty());
    let admin = app.token("admin", &["*"]).await;
    assert!(audit(&app, &admin, "ctl-9").await.is_empty());
}

#[tokio::test]
async fn an_ended_call_is_409_call_not_live() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-10", &fake.url("ctl-10")).await;
    app.post_vapi(&message("ctl-10", ORG, json!({ "type": "status-update", "status": "ended", "endedReason": "customer-ended-call" })))
        .await;
    let (status, body) = act(&app, &token, "ctl-10", json!({ "type": "say", "content": "Hello?" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("call_not_live")));
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn a_call_without_a_control_url_is_409_control_unavailable() {
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    app.post_vapi(&message("ctl-11", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let (status, body) = act(&app, &token, "ctl-11", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("control_unavailable")));
}

#[tokio::test]
async fn a_control_url_off_the_allowlist_is_refused_audited_and_never_called() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    // The same fake under a name that is not on the list: reachable, but not allowed.
    let by_name = fake.url("ctl-12").replace("127.0.0.1", "localhost");
    for (call, url) in [("ctl-12", by_name.as_str()), ("ctl-13", "https://evil.example/ctl-13/control")] {
        live_call(&app, call, url).await;
        let mut rx = app.subscribe(&format!("call:{call}"));
        let (status, body) = act(&app, &token, call, json!({ "type": "end-call" })).await;
        assert_eq!((status, body["error"]["code"].as_str()), (409, Some("control_url_refused")), "{url}");
        let rows = audit(&app, &token, call).await;
        assert_eq!((rows.len(), rows[0]["outcome"].as_str(), rows[0]["upstream_status"].clone()), (1, Some("refused"), Value::Null));
        assert!(rows[0]["error"].as_str().unwrap().contains("control.allowed_hosts"));
        let got = control_sent(&mut rx).await;
        assert_eq!((got.len(), got[0].event.data["outcome"].as_str()), (1, Some("refused")));
    }
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn an_http_control_url_is_refused_unless_allow_http_is_set() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|s| s.live.control.allow_http = false).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-14", &fake.url("ctl-14")).await;
    let (status, body) = act(&app, &token, "ctl-14", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("control_url_refused")));
    assert!(fake.seen().is_empty());
}

#[tokio::test]
async fn the_configured_api_key_is_sent_as_a_bearer_token() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|s| s.live.control.api_key = Some(switchboard::config::Secret::new("pk_live_123"))).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-15", &fake.url("ctl-15")).await;
    assert_eq!(act(&app, &token, "ctl-15", json!({ "type": "end-call" })).await.0, 200);
    assert_eq!(fake.seen()[0].authorization.as_deref(), Some("Bearer pk_live_123"));
}

#[tokio::test]
async fn a_control_message_on_the_socket_acts_like_the_route_and_answers_on_the_socket() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    let app = spawn_control_app(|_| {}).await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-ws", &fake.url("ctl-ws")).await;
    let mut sup = crate::ws::Supervisor::connect(&app, &token).await;
    sup.subscribe("call:ctl-ws").await;
    let whisper = json!({ "type": "whisper", "content": "Offer the callback." });
    sup.send(json!({ "type": "control", "call_id": "ctl-ws", "action": whisper, "id": 7 })).await;
    let answer = sup.expect("control_result").await;
    assert_eq!(
        (answer["ok"].clone(), answer["id"].clone(), answer["result"]["upstream_status"].clone()),
        (json!(true), json!(7), json!(200))
    );
    let sent = sup.expect_event("control.sent").await;
    assert_eq!(sent["event"]["data"]["outcome"], "sent");
    assert_eq!(fake.seen()[0].body["type"], "add-message");
    assert_eq!(audit(&app, &token, "ctl-ws").await.len(), 1);

    sup.send(json!({ "type": "control", "call_id": "ctl-ws", "action": { "type": "dance" }, "id": "x" })).await;
    let refused = sup.expect("control_result").await;
    assert_eq!((refused["ok"].clone(), refused["status"].clone(), refused["id"].clone()), (json!(false), json!(422), json!("x")));
    assert!(refused["error"]["code"].is_string());
    assert_eq!(fake.seen().len(), 1, "nothing more was sent");
}

#[tokio::test]
async fn a_control_url_that_points_inward_is_never_called() {
    let fake = FakeControl::start(200, Duration::ZERO).await;
    // The fake is on the allowlist, by address and by a name that resolves to it, but loopback
    // is not allowed: neither form may reach it.
    let app = spawn_control_app(|s| {
        s.live.control.allowed_hosts = vec!["127.0.0.1".into(), "localhost".into()];
        s.live.control.allow_loopback = false;
    })
    .await;
    let token = app.token("supervisor", &[ORG]).await;
    live_call(&app, "ctl-in-1", &fake.url("ctl-in-1")).await;
    let (status, body) = act(&app, &token, "ctl-in-1", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("control_url_refused")), "{body}");
    let by_name = fake.url("ctl-in-2").replace("127.0.0.1", "localhost");
    live_call(&app, "ctl-in-2", &by_name).await;
    let (status, body) = act(&app, &token, "ctl-in-2", json!({ "type": "end-call" })).await;
    assert_eq!((status, body["error"]["code"].as_str()), (502, Some("upstream_failed")), "{body}");
    let rows = audit(&app, &token, "ctl-in-2").await;
    assert!(rows[0]["error"].as_str().unwrap().contains("loopback"), "{}", rows[0]);
    assert!(fake.seen().is_empty(), "the fake was never called");
}
