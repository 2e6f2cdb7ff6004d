//! Who may use the chat API: pages of the hub's own origin or of a configured widget's, with
//! CORS for exactly those; rate limits per client address, session and site; daily token budgets.

use serde_json::{Value, json};
use switchboard::config::{Budgets, Rate, Widget};

use crate::chat::{mock, new_session, read_events, send, settled, use_mock};
use crate::helpers::*;

const SITE: &str = "https://clinic.example";

fn widget() -> Widget {
    Widget { site_key: "pk_clinic".into(), name: "Clinic".into(), allowed_origins: vec![SITE.into()], org: "org-clinic".into() }
}

const OTHER_SITE: &str = "https://other.example";

fn other_widget() -> Widget {
    Widget { site_key: "pk_other".into(), name: "o".into(), allowed_origins: vec![OTHER_SITE.into()], org: "o".into() }
}

/// A new session of widget `key`, created from its page `origin`.
async fn widget_session(app: &TestApp, origin: &str, key: &str) -> String {
    let r = create(app, Some(origin), json!({ "site_key": key })).await;
    assert_eq!(r.status(), 201);
    r.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string()
}

async fn create(app: &TestApp, origin: Option<&str>, body: Value) -> reqwest::Response {
    let mut r = app.http.post(app.url("/api/chat/sessions")).json(&body);
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn without_widgets_only_the_hubs_own_pages_and_non_browsers_may_chat() {
    let m = mock().await;
    let app = spawn_with(|s| use_mock(s, &m)).await;
    let own = app.base.clone();
    assert_eq!(create(&app, Some(&own), json!({})).await.status(), 201);
    assert_eq!(create(&app, None, json!({})).await.status(), 201);
    let refused = create(&app, Some("https://evil.example"), json!({})).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");
}

#[tokio::test]
async fn a_widgets_origin_gets_cors_and_a_session_of_its_org() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.widgets.push(widget());
    })
    .await;
    let pre = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/chat/sessions"))
        .header("origin", SITE)
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], SITE);
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("last-event-id"));
    let r = create(&app, Some(SITE), json!({"site_key": "pk_clinic"})).await;
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["access-control-allow-origin"], SITE);
    let vary: Vec<&str> = r.headers().get_all("vary").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(vary.iter().any(|v| v.contains("Origin")), "{vary:?}");
    let id = r.json::<Value>().await.unwrap()["session_id"].as_str().unwrap().to_string();
    let token = app.token("supervisor", &["org-clinic"]).await;
    let (status, session) = app.get_json(&format!("/api/chat/sessions/{id}"), &token).await;
    assert_eq!((status, session["org_id"].as_str()), (200, Some("org-clinic")));
    // The session answers its widget's page, and refuses look-alikes.
    let ok = app
        .http
        .post(app.url(&format!("/api/chat/sessions/{id}/messages")))
        .header("origin", SITE)
        .json(&json!({"content": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(read_events(ok, 1000).await.last().unwrap().event, "done");
    for evil in ["https://clinic.example.evil.com", "http://clinic.example", "https://evil.example"] {
        let r = app.http.get(app.url(&format!("/api/chat/sessions/{id}"))).header("origin", evil).send().await.unwrap();
        assert_eq!(r.status(), 403, "{evil}");
        assert!(r.headers().get("access-control-allow-origin").is_none(), "{evil}");
    }
}

#[tokio::test]
async fn a_site_key_must_be_known_and_used_from_its_origins() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.widgets.push(widget());
        s.chat.widgets.push(other_widget());
    })
    .await;
    let r = create(&app, Some(SITE), json!({"site_key": "pk_nope"})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "unknown_site_key");
    // A key of another site, from this site's page.
    let r = create(&app, Some(SITE), json!({"site_key": "pk_other"})).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "origin_not_allowed");
    let r = create(&app, Some(SITE), json!({"site_key": "pk_clinic", "model": "gpt-5"})).await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn a_burst_from_one_address_is_answered_429_with_retry_after() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.ip_rate = Rate { per_minute: 6, burst: 3 };
    })
    .await;
    for _ in 0..3 {
        assert_eq!(create(&app, None, json!({})).await.status(), 201);
    }
    let r = create(&app, None, json!({})).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn messages_per_session_are_limited() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.session_rate = Rate { per_minute: 1, burst: 2 };
    })
    .await;
    let s = new_session(&app).await;
    for _ in 0..2 {
        read_events(send(&app, &s, "hi").await, 1000).await;
        settled(&app, &s).await;
    }
    let r = send(&app, &s, "once more").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(settled(&app, &s).await["message_count"], 4, "the refused message was not stored");
    // Another session is not affected.
    let other = new_session(&app).await;
    assert_eq!(send(&app, &other, "hi").await.status(), 200);
}

#[tokio::test]
async fn a_site_keys_bucket_is_shared_by_all_its_visitors_and_leaves_other_sites_alone() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.site_rate = Rate { per_minute: 1, burst: 3 };
        s.chat.widgets.push(widget());
        s.chat.widgets.push(other_widget());
    })
    .await;
    // Two sessions and one message of the clinic's site (the address's own limit is far off)…
    let sessions = [widget_session(&app, SITE, "pk_clinic").await, widget_session(&app, SITE, "pk_clinic").await];
    let message = |id: &str| {
        app.http.post(app.url(&format!("/api/chat/sessions/{id}/messages"))).header("origin", SITE).json(&json!({"content": "hi"})).send()
    };
    let ok = message(&sessions[0]).await.unwrap();
    assert_eq!(ok.status(), 200);
    read_events(ok, 1000).await;
    settled(&app, &sessions[0]).await;
    // …use the site's burst: its next session and its other session's message are refused.
    let r = create(&app, Some(SITE), json!({"site_key": "pk_clinic"})).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = message(&sessions[1]).await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(settled(&app, &sessions[1]).await["message_count"], 0, "the refused message was not stored");
    // Another site's visitors, from the same address, are not affected.
    assert_eq!(create(&app, Some(OTHER_SITE), json!({"site_key": "pk_other"})).await.status(), 201);
}

/// One answered message of `session`, sent from `origin`.
async fn answered(app: &TestApp, session: &str, origin: Option<&str>) -> reqwest::Response {
    let mut r = app.http.post(app.url(&format!("/api/chat/sessions/{session}/messages"))).json(&json!({"content": "hi"}));
    if let Some(o) = origin {
        r = r.header("origin", o);
    }
    r.send().await.unwrap()
}

/// A hub on the mock with these daily budgets and both widgets.
async fn budget_app(m: &switchboard::mockllm::MockLlm, budgets: Budgets) -> TestApp {
    spawn_with(|s| {
        use_mock(s, m);
        s.chat.widgets.extend([widget(), other_widget()]);
        s.chat.budgets = budgets;
    })
    .await
}

/// Sends one message and waits until its answer is stored (and its tokens counted).
async fn spend(app: &TestApp, session: &str, origin: Option<&str>) {
    read_events(answered(app, session, origin).await, 1000).await;
    settled(app, session).await;
}

async fn refusal(r: reqwest::Response, status: u16, code: &str) {
    assert_eq!(r.status(), status);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "renews by the next UTC midnight: {retry}");
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], code);
}

#[tokio::test]
async fn a_session_that_spent_its_daily_tokens_gets_429_and_other_sessions_go_on() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 1, site: 0, all: 0 }).await;
    let s = new_session(&app).await;
    spend(&app, &s, None).await;
    let before = m.request_count();
    refusal(answered(&app, &s, None).await, 429, "budget_exhausted").await;
    assert_eq!(settled(&app, &s).await["message_count"], 2, "the refused message was not stored");
    assert_eq!(m.request_count(), before, "and reached no model");
    let other = new_session(&app).await;
    assert_eq!(answered(&app, &other, None).await.status(), 200);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_chat_over_budget_total{budget=\"session\"} 1"), "{metrics}");
}

#[tokio::test]
async fn a_site_that_spent_its_daily_tokens_gets_429_for_all_its_sessions_and_other_sites_go_on() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 0, site: 1, all: 0 }).await;
    let sessions = [widget_session(&app, SITE, "pk_clinic").await, widget_session(&app, SITE, "pk_clinic").await];
    spend(&app, &sessions[0], Some(SITE)).await;
    refusal(answered(&app, &sessions[1], Some(SITE)).await, 429, "budget_exhausted").await;
    let id = widget_session(&app, OTHER_SITE, "pk_other").await;
    assert_eq!(answered(&app, &id, Some(OTHER_SITE)).await.status(), 200, "another site is not held back");
    // Sessions of no widget count as one site of their own, with the same budget.
    let own = new_session(&app).await;
    spend(&app, &own, None).await;
    let own_too = new_session(&app).await;
    refusal(answered(&app, &own_too, None).await, 429, "budget_exhausted").await;
}

#[tokio::test]
async fn once_all_chat_spent_the_daily_tokens_every_model_route_answers_503() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 0, site: 0, all: 1 }).await;
    let s = new_session(&app).await;
    spend(&app, &s, None).await;
    let before = m.request_count();
    let fresh = new_session(&app).await;
    refusal(answered(&app, &fresh, None).await, 503, "spend_limit_reached").await;
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    refusal(app.http.post(app.url("/api/ai/chat")).json(&hi).send().await.unwrap(), 503, "spend_limit_reached").await;
    let token = app.token("supervisor", &["*"]).await;
    let r = app.http.post(app.url("/v1/chat/completions")).bearer_auth(&token).json(&hi).send().await.unwrap();
    refusal(r, 503, "spend_limit_reached").await;
    assert_eq!(m.request_count(), before, "nothing more reached the model");
}

/// Sends `send` until it is refused with 503 (the spent tokens are counted off the answer's
/// path, a moment later); panics if that does not happen within 10 s.
async fn until_breaker(mut send: impl AsyncFnMut() -> reqwest::Response) -> reqwest::Response {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut answered = 0;
    while tokio::time::Instant::now() < deadline {
        let r = send().await;
        if r.status() == 503 {
            assert!(answered > 0, "the first answer was within the budget");
            return r;
        }
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
        answered += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the spend breaker never opened");
}

#[tokio::test]
async fn a_stateless_client_that_leaves_before_the_usage_report_is_still_charged() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 0, site: 0, all: 1 }).await;
    // A long answer (the mock reports usage only at its end): read its first words, then leave.
    let long = json!({"messages": [{"role": "user", "content": "[mock:chunks=500] [mock:delay_ms=20] tell me everything"}]});
    let mut r = app.http.post(app.url("/api/ai/chat")).json(&long).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("content"), "it had started");
    drop(r);
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = app.http.post(app.url("/api/ai/chat")).json(&hi).send().await.unwrap();
        if r.status() == 503 {
            break refusal(r, 503, "spend_limit_reached").await;
        }
        assert!(tokio::time::Instant::now() < deadline, "the answer left early was never charged");
        r.bytes().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn what_the_stateless_route_and_the_pass_through_spend_counts_toward_the_daily_breaker() {
    let m = mock().await;
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    let app = budget_app(&m, Budgets { session: 0, site: 0, all: 1 }).await;
    let r = until_breaker(async || app.http.post(app.url("/api/ai/chat")).json(&hi).send().await.unwrap()).await;
    refusal(r, 503, "spend_limit_reached").await;
    let app = budget_app(&m, Budgets { session: 0, site: 0, all: 1 }).await;
    let token = app.token("supervisor", &["*"]).await;
    let r =
        until_breaker(async || app.http.post(app.url("/v1/chat/completions")).bearer_auth(&token).json(&hi).send().await.unwrap()).await;
    refusal(r, 503, "spend_limit_reached").await;
}

#[tokio::test]
async fn a_session_is_followed_by_at_most_its_limit_of_streams_and_a_closed_one_frees_its_place() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.max_streams_per_session = 2;
    })
    .await;
    let s = new_session(&app).await;
    // The answer's own stream (held open, unread) and one follower: the limit.
    let answer = send(&app, &s, "[mock:chunks=5000] [mock:delay_ms=25] a long one").await;
    assert_eq!(answer.status(), 200);
    let follow = || app.http.get(app.url(&format!("/api/chat/sessions/{s}/stream"))).send();
    let second = follow().await.unwrap();
    assert_eq!(second.status(), 200);
    let third = follow().await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.headers().contains_key("retry-after"));
    assert_eq!(third.json::<Value>().await.unwrap()["error"]["code"], "too_many_streams");
    // A follower that leaves gives its place back.
    drop(second);
    let mut status = 0;
    for _ in 0..100 {
        let r = follow().await.unwrap();
        status = r.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "the place was given back");
    drop(answer);
    let stopped = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert!(stopped.status().is_success());
    // Another session is not affected by this one's streams.
    let other = new_session(&app).await;
    assert_eq!(send(&app, &other, "hi").await.status(), 200);
}

#[tokio::test]
async fn an_answer_stopped_before_its_first_token_still_spends_its_prompt() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 1, site: 0, all: 0 }).await;
    let s = new_session(&app).await;
    // The model takes its request (headers at once) and waits 5 s before its first token.
    let slow = send(&app, &s, "[mock:ttft_ms=5000] a question the model has to read first").await;
    assert_eq!(slow.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let stopped = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert!(stopped.status().is_success());
    drop(slow);
    settled(&app, &s).await;
    refusal(answered(&app, &s, None).await, 429, "budget_exhausted").await;
}

#[tokio::test]
async fn an_answer_stopped_in_the_round_after_a_tool_call_adds_that_rounds_estimate_to_the_reported_tokens() {
    use futures::StreamExt;
    use switchboard::store::ChatUsage;
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.tools = vec!["lookupCustomer".into()];
        s.chat.budgets = Budgets { session: 1_000_000, site: 0, all: 0 };
    })
    .await;
    let s = new_session(&app).await;
    let prompt = r#"[mock:tool=lookupCustomer {"phone":"+14155550123"}] [mock:delay_ms=100] [mock:chunks=40] who am I?"#;
    let mut stream = eventsource_stream::Eventsource::eventsource(send(&app, &s, prompt).await.bytes_stream());
    let mut tool_done = false;
    // The first round asks for the tool and reports its usage; the second is stopped at its first words.
    loop {
        let ev = stream.next().await.expect("the stream ended early").unwrap();
        tool_done |= ev.event == "tool" && ev.data.contains("finished");
        if tool_done && ev.event == "delta" {
            break;
        }
    }
    let stopped = app.http.post(app.url(&format!("/api/chat/sessions/{s}/stop"))).send().await.unwrap();
    assert!(stopped.status().is_success());
    let session = settled(&app, &s).await;
    let run_id = session["messages"].as_array().unwrap().last().unwrap()["run_id"].as_str().unwrap().to_string();
    let run = app.state.store.chat_run(&run_id).await.unwrap().unwrap();
    let reported = run.prompt_tokens.unwrap_or(0) + run.completion_tokens.unwrap_or(0);
    assert!(reported > 0, "the tool round reported its usage: {run:?}");
    let day = ChatUsage::day(switchboard::clock::now_ms());
    let counted = app.state.store.chat_usage(day, &s).await.unwrap().session;
    // The stopped round read the whole conversation again (system prompt, question, tool call
    // and result: far more than 40 characters) and reported nothing.
    assert!(counted >= reported + 10, "counted {counted}, reported {reported}");
}

#[tokio::test]
async fn once_the_spend_breaker_is_open_its_refusals_take_nothing_from_the_callers_rate_limit() {
    let m = mock().await;
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.budgets = Budgets { session: 0, site: 0, all: 1 };
        // One token a minute after the burst: a refusal that took one would show as a 429.
        s.chat.ip_rate = Rate { per_minute: 1, burst: 6 };
    })
    .await;
    let hi = json!({"messages": [{"role": "user", "content": "hi"}]});
    let r = until_breaker(async || app.http.post(app.url("/api/ai/chat")).json(&hi).send().await.unwrap()).await;
    refusal(r, 503, "spend_limit_reached").await;
    for i in 0..12 {
        let r = app.http.post(app.url("/api/ai/chat")).json(&hi).send().await.unwrap();
        assert_eq!(r.status(), 503, "refusal {i} after the breaker opened");
    }
}

#[tokio::test]
async fn a_server_that_reports_a_running_total_in_every_chunk_is_counted_once() {
    let m = mock().await;
    let app = budget_app(&m, Budgets { session: 1_000_000, site: 0, all: 0 }).await;
    // The same number of words either way, so the mock counts the same prompt.
    let mut stored = Vec::new();
    for style in ["every", "final"] {
        let s = new_session(&app).await;
        read_events(send(&app, &s, &format!("[mock:usage={style}] [mock:chunks=8] count me once")).await, 1000).await;
        let session = settled(&app, &s).await;
        let run_id = session["messages"][1]["run_id"].as_str().unwrap().to_string();
        let run = app.state.store.chat_run(&run_id).await.unwrap().unwrap();
        let day = switchboard::store::ChatUsage::day(switchboard::clock::now_ms());
        let counted = app.state.store.chat_usage(day, &s).await.unwrap().session;
        stored.push((run.prompt_tokens, run.completion_tokens, counted));
    }
    assert!(stored[1].0.is_some_and(|p| p > 0), "{stored:?}");
    assert_eq!(stored[0], stored[1], "running totals (first) against one final report (second)");
}

#[tokio::test]
async fn a_server_that_never_reports_usage_is_charged_each_rounds_reading_of_the_conversation() {
    let m = mock().await;
    // A long system prompt: what each round reads dwarfs what the model writes.
    let system = "Answer briefly. ".repeat(250);
    let app = spawn_with(|s| {
        use_mock(s, &m);
        s.chat.tools = vec!["lookupCustomer".into()];
        s.chat.budgets = Budgets { session: 1_000_000, site: 0, all: 0 };
        s.chat.system_prompt = system.clone();
    })
    .await;
    let s = new_session(&app).await;
    let prompt = r#"[mock:usage=none] [mock:tool=lookupCustomer {"phone":"+14155550123"}] who am I?"#;
    let events = read_events(send(&app, &s, prompt).await, 1000).await;
    assert_eq!(events.last().unwrap().event, "done");
    settled(&app, &s).await;
    let requests = m.requests();
    assert_eq!(requests.len(), 2, "a tool round, then the answer");
    let day = switchboard::store::ChatUsage::day(switchboard::clock::now_ms());
    let counted = app.state.store.chat_usage(day, &s).await.unwrap().session;
    // Both requests carried the system prompt: each round is charged for reading it.
    let read_twice = (2 * system.len() / 4) as i64;
    assert!(counted >= read_twice, "counted {counted}, the system prompt alone read twice is {read_twice} tokens");
}
