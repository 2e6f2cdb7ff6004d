//! Chat over SSE against the mock model: answers stream, resume after a drop, stop keeps the
//! partial answer, failures end in an error event and a stored failed state, tools run.

use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures::StreamExt;
use serde_json::{Value, json};
use switchboard::config::Settings;
use switchboard::mockllm::{MockConfig, MockLlm};

use crate::helpers::*;

pub const KEY: &str = "sk-test-never-shown-9f2c";

pub async fn mock() -> MockLlm {
    MockLlm::start(MockConfig { listen: "127.0.0.1:0".parse().unwrap(), chunk_delay: Duration::ZERO, ..MockConfig::default() })
        .await
        .unwrap()
}

/// The hub pointed at the mock, with a key the browser must never see.
pub fn use_mock(s: &mut Settings, m: &MockLlm) {
    s.chat.base_url = m.base_url();
    s.chat.api_key = Some(switchboard::config::Secret::new(KEY));
    s.chat.model = "mock-model".into();
    // Limits have tests of their own (chat_access); here they would only make tests flaky.
    s.chat.ip_rate = switchboard::config::Rate { per_minute: 60_000, burst: 1_000 };
    s.chat.session_rate = switchboard::config::Rate { per_minute: 60_000, burst: 1_000 };
    s.chat.site_rate = switchboard::config::Rate { per_minute: 60_000, burst: 1_000 };
}

pub async fn chat_app(m: &MockLlm) -> TestApp {
    spawn_with(|s| use_mock(s, m)).await
}

pub async fn new_session(app: &TestApp) -> String {
    let r = app.http.post(app.url("/api/chat/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    v["session_id"].as_str().unwrap().to_string()
}

pub async fn send(app: &TestApp, session: &str, content: &str) -> reqwest::Response {
    app.http.post(app.url(&format!("/api/chat/sessions/{session}/messages"))).json(&json!({ "content": content })).send().await.unwrap()
}

/// Reads SSE events until the stream ends (or `limit` events, or 20 s).
pub async fn read_events(resp: reqwest::Response, limit: usize) -> Vec<Event> {
    let mut stream = resp.bytes_stream().eventsource();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while out.len() < limit {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(ev))) => out.push(ev),
            _ => break,
        }
    }
    out
}

pub fn text_of(events: &[Event]) -> String {
    events
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| serde_json::from_str::<Value>(&e.data).unwrap()["content"].as_str().unwrap().to_string())
        .collect()
}

fn data(e: &Event) -> Value {
    serde_json::from_str(&e.data).unwrap()
}

/// `(run, n)` of an event id.
fn position(e: &Event) -> (String, u64) {
    let (run, n) = e.id.rsplit_once(':').unwrap();
    (run.to_string(), n.parse().unwrap())
}

pub async fn session_json(app: &TestApp, session: &str) -> Value {
    app.http.get(app.url(&format!("/api/chat/sessions/{session}"))).send().await.unwrap().json().await.unwrap()
}

/// Waits until the session has no active run, then returns it.
pub async fn settled(app: &TestApp, session: &str) -> Value {
    for _ in 0..200 {
        let s = session_json(app, session).await;
        if s["active_run_id"].is_null() {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the run never ended");
}

#[tokio::test]
async fn an_answer_streams_as_delta_events_then_done_and_is_stored() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "Hello there").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    assert_eq!(r.headers()["x-accel-buffering"], "no");
    let events = read_events(r, 1000).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "done");
    assert!(events[..events.len() - 1].iter().all(|e| e.event == "delta"), "{events:?}");
    // Ids are `<run>:<n>`, one run, strictly increasing.
    let ids: Vec<(String, u64)> = events.iter().map(position).collect();
    assert!(ids.iter().all(|(run, _)| *run == ids[0].0));
    assert!(ids.windows(2).all(|w| w[1].1 > w[0].1), "{ids:?}");
    let text = text_of(&events);
    assert!(!text.is_empty());
    let done = data(last);
    assert_eq!(done["finish_reason"], "stop");
    assert!(done["usage"]["completion_tokens"].as_i64().unwrap() > 0);
    let session = settled(&app, &s).await;
    let msgs = session["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!((msgs[0]["role"].as_str(), msgs[0]["content"].as_str()), (Some("user"), Some("Hello there")));
    assert_eq!((msgs[1]["role"].as_str(), msgs[1]["status"].as_str()), (Some("assistant"), Some("complete")));
    assert_eq!(msgs[1]["content"], text);
    assert_eq!(msgs[1]["id"], done["message_id"]);
}

#[tokio::test]
async fn the_model_gets_the_system_prompt_the_history_and_the_hubs_model_and_key() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.system_prompt = "You are the clinic's helper.".into();
    })
    .await;
    let s = new_session(&app).await;
    read_events(send(&app, &s, "first question").await, 1000).await;
    settled(&app, &s).await;
    read_events(send(&app, &s, "second question").await, 1000).await;
    let last = m.requests().last().cloned().unwrap();
    assert_eq!(last["model"], "mock-model");
    assert_eq!(last["stream"], true);
    assert_eq!(last["stream_options"]["include_usage"], true);
    let roles: Vec<&str> = last["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(last["messages"][0]["content"], "You are the clinic's helper.");
    assert_eq!(last["messages"][3]["content"], "second question");
}

#[tokio::test]
async fn the_model_is_told_which_session_asks_by_a_keyed_hash_never_by_its_id() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let (a, b) = (new_session(&app).await, new_session(&app).await);
    let mut names = Vec::new();
    for s in [&a, &a, &b] {
        read_events(send(&app, s, "hi").await, 1000).await;
        settled(&app, s).await;
        names.push(m.requests().last().unwrap()["safety_identifier"].as_str().unwrap().to_string());
    }
    assert_eq!(names[0], names[1], "one session, one name");
    assert_ne!(names[0], names[2], "another session, another name");
    assert!(names.iter().all(|n| n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit())), "{names:?}");
    // Switched off for a compatible server that refuses the field: not sent at all.
    let quiet = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.safety_identifier = false;
    })
    .await;
    let s = new_session(&quiet).await;
    read_events(send(&quiet, &s, "hi").await, 1000).await;
    assert!(m.requests().last().unwrap().get("safety_identifier").is_none());
}

#[tokio::test]
async fn a_message_whose_request_goes_away_while_its_run_commits_is_still_answered() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let chat = app.state.chat.clone();
    let (session, state) = (chat.session(&s).await.unwrap(), chat.state(&s).await.unwrap());
    // Polled once, then dropped (a client that left): the run's row is on its way to the store.
    let sending = chat.send(&session, "hi", state);
    assert!(futures::FutureExt::now_or_never(sending).is_none(), "it was waiting for the store");
    // The message and its answer, not a run left holding the session with no task behind it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = session_json(&app, &s).await;
        if v["message_count"] == 2 && v["active_run_id"].is_null() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never answered: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn a_second_message_while_an_answer_runs_gets_409() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let first = send(&app, &s, "[mock:chunks=20] [mock:delay_ms=50] tell me a story").await;
    assert_eq!(first.status(), 200);
    let second = send(&app, &s, "are you there?").await;
    assert_eq!(second.status(), 409);
    let body: Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "run_active");
    read_events(first, 1000).await;
    let session = settled(&app, &s).await;
    assert_eq!(session["messages"].as_array().unwrap().len(), 2, "the refused message was not stored");
    // The first request goes out while the message commits; a refused one never does.
    assert_eq!(m.request_count(), 1, "the refused message did not reach the model");
}

#[tokio::test]
async fn a_full_session_refuses_the_next_message_without_asking_the_model() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.max_messages_per_session = 4;
    })
    .await;
    let s = new_session(&app).await;
    for q in ["one", "two"] {
        let r = send(&app, &s, q).await;
        assert_eq!(r.status(), 200);
        read_events(r, 1000).await;
        settled(&app, &s).await;
    }
    assert_eq!(m.request_count(), 2);
    let r = send(&app, &s, "three").await;
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "session_full");
    assert_eq!(session_json(&app, &s).await["messages"].as_array().unwrap().len(), 4, "nothing was stored");
    assert_eq!(m.request_count(), 2, "the model was not asked");
}

#[tokio::test]
async fn a_client_that_drops_resumes_with_last_event_id_and_gets_exactly_the_rest() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let first = read_events(send(&app, &s, "[mock:chunks=30] [mock:delay_ms=30] go").await, 5).await;
    assert_eq!(first.len(), 5);
    let last_id = first.last().unwrap().id.clone();
    // The connection is gone; the run goes on. Resume from the last event seen.
    let r = app.http.get(app.url(&format!("/api/chat/sessions/{s}/stream"))).header("last-event-id", &last_id).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let rest = read_events(r, 1000).await;
    assert_eq!(rest.last().unwrap().event, "done");
    let (run, n) = position(first.last().unwrap());
    assert_eq!(position(&rest[0]), (run, n + 1), "the rest starts right after the last event seen");
    let whole = format!("{}{}", text_of(&first), text_of(&rest));
    let session = settled(&app, &s).await;
    assert_eq!(session["messages"][1]["content"], whole, "nothing repeated, nothing missing");
}

#[tokio::test]
async fn a_resume_without_a_position_replays_the_answer_from_its_start() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let started = send(&app, &s, "[mock:chunks=20] [mock:delay_ms=30] go").await;
    let seen = read_events(started, 3).await;
    let r = app.http.get(app.url(&format!("/api/chat/sessions/{s}/stream"))).send().await.unwrap();
    let all = read_events(r, 1000).await;
    assert_eq!(position(&all[0]).0, position(&seen[0]).0);
    assert!(text_of(&all).starts_with(&text_of(&seen)));
    let session = settled(&app, &s).await;
    assert_eq!(session["messages"][1]["content"], text_of(&all));
}

#[tokio::test]
async fn the_stream_route_answers_204_when_no_answer_is_running() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let r = app.http.get(app.url(&format!("/api/chat/sessions/{s}/stream"))).send().await.unwrap();
    assert_eq!(r.status(), 204);
    read_events(send(&app, &s, "hi").await, 1000).await;
    settled(&app, &s).await;
    let r = app.http.get(app.url(&format!("/api/chat/sessions/{s}/stream"))).header("last-event-id", "whatever:3").send().await.unwrap();
    assert_eq!(r.status(), 204);
}

#[tokio::test]
async fn stop_ends_the_run_closes_the_upstream_and_stores_the_partial_answer() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "[mock:chunks=200] [mock:delay_ms=20] a long one").await;
    let mut stream = r.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(stream.next().await.unwrap().unwrap());
    }
    let stop = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert_eq!(stop.status(), 200);
    let body: Value = stop.json().await.unwrap();
    assert_eq!(body["status"], "stopped");
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
        seen.push(ev);
    }
    let last = seen.last().unwrap();
    assert_eq!(last.event, "done");
    assert_eq!(data(last)["finish_reason"], "stopped");
    let session = settled(&app, &s).await;
    let answer = &session["messages"][1];
    assert_eq!(answer["status"], "stopped");
    assert_eq!(answer["content"], text_of(&seen), "the stored partial is exactly what was streamed");
    let deltas = seen.iter().filter(|e| e.event == "delta").count();
    assert!(deltas < 100, "it really stopped early ({deltas} of 200 chunks)");
    // The upstream request is dropped, not left running.
    let mut open = m.open_streams();
    for _ in 0..40 {
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        open = m.open_streams();
    }
    assert_eq!(open, 0);
    // Stopping again: nothing is running.
    let again = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
}

#[tokio::test]
async fn a_browser_that_leaves_does_not_stop_the_answer() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "[mock:chunks=15] [mock:delay_ms=20] keep going").await;
    drop(read_events(r, 1).await);
    let session = settled(&app, &s).await;
    let answer = &session["messages"][1];
    assert_eq!(answer["status"], "complete");
    assert!(answer["content"].as_str().unwrap().split_whitespace().count() >= 10, "{answer}");
}

#[tokio::test]
async fn an_upstream_500_becomes_an_error_event_and_a_stored_failed_state() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.retries = 0;
    })
    .await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, "[mock:status=500] hi").await, 1000).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event, "error");
    assert_eq!(data(&events[0])["error"]["code"], "upstream_unavailable");
    let session = settled(&app, &s).await;
    assert_eq!(session["messages"][1]["status"], "failed");
    let run = app.state.store.chat_run(session["messages"][1]["run_id"].as_str().unwrap()).await.unwrap().unwrap();
    assert_eq!((run.status.as_str(), run.error_code.as_deref()), ("failed", Some("upstream_unavailable")));
}

#[tokio::test]
async fn a_mid_stream_error_keeps_the_text_so_far_and_ends_in_an_error_event() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, "[mock:chunks=10] [mock:error_after=3] hi").await, 1000).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(data(last)["error"]["code"], "upstream_error");
    assert!(!text_of(&events).is_empty());
    let session = settled(&app, &s).await;
    assert_eq!(session["messages"][1]["status"], "failed");
    assert_eq!(session["messages"][1]["content"], text_of(&events));
}

#[tokio::test]
async fn a_dropped_upstream_connection_is_reported_as_an_interrupted_answer() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, "[mock:chunks=10] [mock:drop_after=4] hi").await, 1000).await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert_eq!(data(last)["error"]["code"], "upstream_interrupted");
}

#[tokio::test]
async fn a_model_that_fails_before_its_first_token_is_retried_without_the_browser_noticing() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    // 500s: the client's own HTTP retries absorb them.
    let events = read_events(send(&app, &s, "[mock:fail_first=2] hi").await, 1000).await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    assert!(m.request_count() >= 3);
    settled(&app, &s).await;
    // A stream cut after its 200 but before any text: only the hub's own retry can save it.
    let events = read_events(send(&app, &s, "[mock:drop_first=1 hub] hi").await, 1000).await;
    assert_eq!(events.last().unwrap().event, "done", "{events:?}");
    assert!(events.iter().all(|e| e.event != "error"));
}

#[tokio::test]
async fn without_hub_retries_a_stream_cut_before_its_first_token_is_an_error() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.retries = 0;
    })
    .await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, "[mock:drop_first=1 none] hi").await, 1000).await;
    assert_eq!(events.last().unwrap().event, "error", "{events:?}");
    assert_eq!(data(events.last().unwrap())["error"]["code"], "upstream_interrupted");
}

#[tokio::test]
async fn a_model_that_never_starts_times_out_into_an_error_event() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.retries = 0;
        s.chat.first_token_timeout = Duration::from_millis(300);
    })
    .await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, "[mock:ttft_ms=3000] hi").await, 1000).await;
    assert_eq!(events.last().unwrap().event, "error");
    assert_eq!(data(events.last().unwrap())["error"]["code"], "upstream_timeout");
}

#[tokio::test]
async fn a_tool_round_runs_the_function_and_feeds_its_result_back() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.tools = vec!["lookupCustomer".into()];
    })
    .await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, r#"[mock:tool=lookupCustomer {"phone":"+14155550123"}] who am I?"#).await, 1000).await;
    let tools: Vec<Value> = events.iter().filter(|e| e.event == "tool").map(data).collect();
    assert_eq!(tools.len(), 2, "{events:?}");
    assert_eq!((tools[0]["name"].as_str(), tools[0]["status"].as_str()), (Some("lookupCustomer"), Some("started")));
    assert_eq!(tools[1]["status"], "finished");
    let result = tools[1]["result"].as_str().or(tools[1]["error"].as_str()).unwrap().to_string();
    assert!(text_of(&events).contains(&result), "the model answered with the tool's result");
    assert_eq!(events.last().unwrap().event, "done");
    let session = settled(&app, &s).await;
    let roles: Vec<&str> = session["messages"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant"]);
    assert_eq!(session["messages"][1]["tool_calls"][0]["function"]["name"], "lookupCustomer");
    let last_request = m.requests().last().cloned().unwrap();
    assert!(last_request["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "lookupCustomer"));
}

#[tokio::test]
async fn what_a_browser_may_send_is_limited_and_checked() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.max_message_chars = 50;
        s.chat.body_limit = 1024;
    })
    .await;
    let s = new_session(&app).await;
    let post = |body: String, ct: &'static str| {
        app.http.post(app.url(&format!("/api/chat/sessions/{s}/messages"))).header("content-type", ct).body(body).send()
    };
    let cases: Vec<(String, &str, u16, &str)> = vec![
        (json!({"content": "hi", "role": "system"}).to_string(), "application/json", 422, "unknown_field"),
        (json!({"content": "hi", "model": "gpt-4o"}).to_string(), "application/json", 422, "unknown_field"),
        (json!({"content": "x".repeat(51)}).to_string(), "application/json", 422, "message_too_long"),
        (json!({"content": "   "}).to_string(), "application/json", 422, "invalid_content"),
        (json!({"content": 5}).to_string(), "application/json", 422, "invalid_content"),
        (json!({"content": "x".repeat(2000)}).to_string(), "application/json", 413, "payload_too_large"),
        ("{\"content\":".into(), "application/json", 400, "malformed_json"),
        ("content=hi".into(), "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ];
    for (body, ct, status, code) in cases {
        let r = post(body.clone(), ct).await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
    }
    assert_eq!(session_json(&app, &s).await["message_count"], 0, "nothing was stored");
    assert_eq!(m.request_count(), 0, "nothing reached the model");
    let r = send(&app, "00000000-0000-4000-8000-000000000000", "hi").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_model_key_never_reaches_the_browser() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.retries = 0;
    })
    .await;
    let s = new_session(&app).await;
    let mut seen = String::new();
    for prompt in ["hello", "[mock:status=500] x", "[mock:status=429] x", "[mock:chunks=5] [mock:error_after=2] x"] {
        let r = send(&app, &s, prompt).await;
        seen.push_str(&r.text().await.unwrap());
        settled(&app, &s).await;
    }
    seen.push_str(&session_json(&app, &s).await.to_string());
    assert!(!seen.contains(KEY) && !seen.contains("sk-"), "{seen}");
    assert!(m.requests().len() >= 4, "the key was used upstream");
}

#[tokio::test]
async fn a_supervisor_sees_the_chat_live_and_can_stop_it() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let token = app.token("supervisor", &["default"]).await;
    let other = app.token("supervisor", &["another-org"]).await;
    let s = new_session(&app).await;
    let mut sup = crate::ws::Supervisor::connect(&app, &token).await;
    let snap = sup.subscribe("chats").await;
    assert!(snap["snapshot"]["chats"].as_array().unwrap().iter().any(|c| c["session_id"] == s));
    let snap = sup.subscribe(&format!("chat:{s}")).await;
    assert_eq!(snap["snapshot"]["chat"]["session_id"], s);
    let r = send(&app, &s, "[mock:chunks=100] [mock:delay_ms=20] hello").await;
    let first_delta = sup.expect_event("chat.delta").await;
    assert_eq!(first_delta["topic"], format!("chat:{s}"));
    // Another org's supervisor may not read or stop it.
    let (status, _) = app.get_json(&format!("/api/chat/sessions/{s}"), &other).await;
    assert_eq!(status, 404);
    let stop = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).bearer_auth(&token).send().await.unwrap();
    assert_eq!(stop.status(), 200);
    let stopped = sup.expect_event("chat.stopped").await;
    assert_eq!(stopped["event"]["data"]["finish_reason"], "stopped");
    let events = read_events(r, 10_000).await;
    assert_eq!(data(events.last().unwrap())["finish_reason"], "stopped");
    let mut outsider = crate::ws::Supervisor::connect(&app, &other).await;
    outsider.send(json!({"type": "subscribe", "topic": format!("chat:{s}")})).await;
    assert_eq!(outsider.close_code(Duration::from_secs(5)).await, Some(4003));
}

#[tokio::test]
async fn a_supervisor_joining_mid_answer_gets_the_text_so_far_and_its_position_so_nothing_repeats() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let token = app.token("supervisor", &["default"]).await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "[mock:chunks=40] [mock:delay_ms=15] hello").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sup = crate::ws::Supervisor::connect(&app, &token).await;
    let snap = sup.subscribe(&format!("chat:{s}")).await;
    let partial = &snap["snapshot"]["partial"];
    let mut text = partial["content"].as_str().unwrap().to_string();
    let mut n = partial["n"].as_u64().unwrap();
    assert!(n > 0 && !text.is_empty(), "joined mid-answer: {partial}");
    loop {
        let v = sup.expect("event").await;
        let (kind, data) = (v["event"]["kind"].as_str().unwrap().to_string(), &v["event"]["data"]);
        if kind == "chat.delta" {
            let dn = data["n"].as_u64().unwrap();
            if dn <= n {
                continue; // already in the snapshot's text
            }
            assert_eq!(dn, n + 1, "no delta missing after the snapshot");
            n = dn;
            text.push_str(data["content"].as_str().unwrap());
        }
        if kind == "chat.done" {
            break;
        }
    }
    let answer: String = read_events(r, 1000)
        .await
        .iter()
        .filter(|e| e.event == "delta")
        .map(|e| data(e)["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, answer, "snapshot text + later deltas = the answer, once");
}

#[tokio::test]
async fn no_function_is_offered_to_chat_unless_configured() {
    let m = mock().await;
    let app = chat_app(&m).await;
    let s = new_session(&app).await;
    let events = read_events(send(&app, &s, r#"[mock:tool=lookupCustomer {"phone":"+14155550123"}] who am I?"#).await, 1000).await;
    assert!(events.iter().all(|e| e.event != "tool"), "{events:?}");
    assert!(m.requests().last().unwrap().get("tools").is_none(), "the built-ins are VAPI's; chat offers none by default");
}

#[tokio::test]
async fn a_stop_during_a_tool_call_leaves_a_history_the_model_accepts() {
    let slow = fake_functions(json!({"slowLookup": {"result": "found"}}), Duration::from_secs(3)).await;
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.functions.push(slow.spec("slowLookup", Duration::from_secs(5)));
        s.chat.tools = vec!["slowLookup".into()];
    })
    .await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "[mock:tool=slowLookup {}] [mock:tool=slowLookup {\"n\":2}] look it up").await;
    let mut stream = r.bytes_stream().eventsource();
    loop {
        let ev = stream.next().await.unwrap().unwrap();
        if ev.event == "tool" {
            break;
        }
    }
    let stop = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert_eq!(stop.json::<Value>().await.unwrap()["status"], "stopped");
    settled(&app, &s).await;
    let events = read_events(send(&app, &s, "and now?").await, 1000).await;
    assert_eq!(events.last().unwrap().event, "done");
    // Every tool request the model is shown is followed by a result for each of its calls.
    let sent = m.requests().last().cloned().unwrap();
    let msgs = sent["messages"].as_array().unwrap();
    for (i, msg) in msgs.iter().enumerate() {
        for call in msg["tool_calls"].as_array().into_iter().flatten() {
            let id = &call["id"];
            assert!(msgs[i + 1..].iter().any(|later| later["role"] == "tool" && later["tool_call_id"] == *id), "{sent}");
        }
    }
    assert!(msgs.iter().any(|m| m["tool_calls"].is_array()), "the stopped round is still in the history: {sent}");
}

#[tokio::test]
async fn a_quiet_stream_carries_keep_alive_comments() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.keepalive = Duration::from_millis(100);
    })
    .await;
    let s = new_session(&app).await;
    let r = send(&app, &s, "[mock:ttft_ms=700] [mock:chunks=2] hi").await;
    assert_eq!(r.headers()["cache-control"], "no-cache, no-transform");
    let raw = r.text().await.unwrap();
    let comments = raw.lines().filter(|l| *l == ": keep-alive").count();
    assert!(comments >= 3, "{raw}");
    assert!(raw.contains("event: done"));
}
