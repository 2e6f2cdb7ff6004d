//! Outgoing webhooks end to end: endpoints registered through the admin API, events from VAPI
//! webhooks and chat delivered to a receiver on loopback (`receiver`) that checks every
//! signature with its own implementation of the Standard Webhooks scheme; retries, disabling
//! (`delivery`), SSRF refusals, auth and the bad-input catalogue (`admin`).

mod admin;
mod delivery;
mod receiver;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::config::Settings;
use switchboard::store::JobFilter;

use crate::helpers::*;

/// 32 bytes of 0x2a: a secret the test chooses.
const SECRET: &str = "whsec_KioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// Loopback receivers over http, quick retries, three failures to disable.
pub(super) fn local(s: &mut Settings) {
    s.webhooks.allow_http = true;
    s.webhooks.allow_loopback = true;
    s.webhooks.disable_after = 3;
    s.webhooks.refresh = Duration::from_millis(200);
    s.jobs.poll = Duration::from_millis(20);
    s.jobs.backoff_base = Duration::from_millis(50);
    s.jobs.backoff_max = Duration::from_millis(200);
}

pub(super) async fn hooks_app() -> (TestApp, String) {
    let app = spawn_with(local).await;
    let admin = app.token("admin", &["*"]).await;
    (app, admin)
}

pub(super) async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.http.request(method, app.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

pub(super) async fn create(app: &TestApp, admin: &str, body: Value) -> Value {
    let (status, v) = send_json(app, reqwest::Method::POST, "/api/admin/webhooks", Some(admin), Some(&body)).await;
    assert_eq!(status, 201, "{v}");
    v
}

pub(super) async fn endpoint(app: &TestApp, admin: &str, id: &str) -> Value {
    let (status, v) = app.get_json(&format!("/api/admin/webhooks/{id}"), admin).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// Waits until the endpoint's `enabled` is `enabled`.
pub(super) async fn wait_enabled(app: &TestApp, admin: &str, id: &str, enabled: bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = endpoint(app, admin, id).await;
        if v["enabled"] == enabled {
            return v;
        }
        assert!(Instant::now() < deadline, "endpoint never became enabled={enabled}: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) async fn deliveries(app: &TestApp, admin: &str, id: &str, query: &str) -> Value {
    let (status, v) = app.get_json(&format!("/api/admin/webhooks/{id}/deliveries{query}"), admin).await;
    assert_eq!(status, 200, "{v}");
    v
}

pub(super) async fn delivery_jobs(app: &TestApp) -> usize {
    let filter = JobFilter { kind: Some(switchboard::webhooks::KIND.into()), limit: 1000, ..JobFilter::default() };
    app.state.store.list_jobs(&filter).await.unwrap().len()
}

pub(super) fn final_transcript(text: &str) -> Value {
    message(CALL_ID, ORG, json!({ "type": "transcript", "transcriptType": "final", "role": "user", "transcript": text }))
}

pub(super) fn tool_call(id: &str) -> Value {
    message(
        CALL_ID,
        ORG,
        json!({ "type": "tool-calls", "customer": { "number": "+14155550123" },
            "toolCallList": [{ "id": id, "type": "function", "function": { "name": "lookupCustomer", "arguments": {} } }] }),
    )
}
