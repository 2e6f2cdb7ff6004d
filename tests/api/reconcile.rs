//! Reconciliation with VAPI's API: calls whose end-of-call report never arrived are looked up
//! with the API key and completed from VAPI's record; fresh calls are not asked about, calls VAPI
//! says are still going stay open, and a failing API fails the job (so it is retried).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use switchboard::config::Secret;
use switchboard::reconcile::{Outcome, ReconcileDeps};

use crate::helpers::*;

const LOST: &str = "5e1d0000-0000-4000-8000-00000000000a";
const GOING: &str = "5e1d0000-0000-4000-8000-00000000000b";
const FRESH: &str = "5e1d0000-0000-4000-8000-00000000000c";

/// One request the fake API got: its Authorization header and query.
type Seen = (Option<String>, std::collections::HashMap<String, String>);

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail: bool,
}

async fn list_calls(
    State(f): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    f.seen.lock().unwrap().push((auth, q));
    if f.fail {
        return (StatusCode::INTERNAL_SERVER_ERROR, "{}").into_response();
    }
    axum::Json(json!([
        { "id": LOST, "orgId": ORG, "status": "ended", "endedReason": "customer-ended-call", "cost": 0.31,
          "startedAt": "2026-11-30T10:00:00Z", "endedAt": "2026-11-30T10:03:00Z",
          "analysis": { "summary": "Booked a cleaning." },
          "artifact": { "recording": { "mono": { "combinedUrl": "https://storage.vapi.ai/lost-mono.wav" } } } },
        { "id": GOING, "orgId": ORG, "status": "in-progress" }
    ]))
    .into_response()
}

async fn fake_vapi(fail: bool) -> (String, Fake) {
    let fake = Fake { fail, ..Fake::default() };
    let app = axum::Router::new().route("/call", get(list_calls)).with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, fake)
}

fn deps(app: &TestApp) -> ReconcileDeps {
    ReconcileDeps {
        settings: app.state.settings.reconcile.clone(),
        store: app.state.store.clone(),
        vapi: app.state.vapi.clone(),
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

async fn start(app: &TestApp, call: &str) {
    let (status, _) = app.post_vapi(&message(call, ORG, json!({"type": "status-update", "status": "in-progress"}))).await;
    assert_eq!(status, 200);
}

async fn spawn_reconciling(base: &str) -> TestApp {
    let base = base.to_string();
    spawn_with(move |s| {
        s.reconcile.api_key = Some(Secret::new("vapi-key"));
        s.reconcile.api_url = base;
        s.reconcile.after = Duration::from_millis(300);
    })
    .await
}

#[tokio::test]
async fn a_call_whose_report_never_came_is_completed_from_vapis_record() {
    let (base, fake) = fake_vapi(false).await;
    let app = spawn_reconciling(&base).await;
    assert!(app.state.jobs.is_registered("vapi.reconcile"));
    start(&app, LOST).await;
    start(&app, GOING).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    start(&app, FRESH).await;

    let d = deps(&app);
    assert_eq!(switchboard::reconcile::run(&d).await.unwrap(), Outcome { asked: 2, completed: 1 });
    let (auth, query) = fake.seen.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer vapi-key"));
    assert!(query.contains_key("createdAtGe") && query.contains_key("createdAtLe"), "{query:?}");

    let lost = app.state.store.get_call(LOST).await.unwrap().unwrap();
    assert_eq!(lost.status, "ended");
    assert_eq!(lost.ended_reason.as_deref(), Some("customer-ended-call"));
    assert_eq!(lost.cost, Some(0.31));
    assert_eq!(lost.summary.as_deref(), Some("Booked a cleaning."));
    let recordings = app.state.store.recordings(LOST).await.unwrap();
    assert_eq!(recordings.len(), 1, "the recording VAPI kept is picked up too");
    assert_eq!(app.state.store.get_call(GOING).await.unwrap().unwrap().status, "in-progress");
    assert_eq!(app.state.store.get_call(FRESH).await.unwrap().unwrap().status, "in-progress");

    // Next time only the call VAPI says is still going is asked about again.
    assert_eq!(switchboard::reconcile::run(&d).await.unwrap(), Outcome { asked: 1, completed: 0 });
    app.shutdown().await;
}

#[tokio::test]
async fn a_failing_vapi_api_fails_the_run_and_changes_nothing() {
    let (base, _) = fake_vapi(true).await;
    let app = spawn_reconciling(&base).await;
    start(&app, LOST).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let err = switchboard::reconcile::run(&deps(&app)).await.unwrap_err();
    assert!(err.contains("500"), "{err}");
    assert_eq!(app.state.store.get_call(LOST).await.unwrap().unwrap().status, "in-progress");
    app.shutdown().await;
}

#[tokio::test]
async fn without_an_api_key_there_is_no_reconciliation_job() {
    let app = spawn_app().await;
    assert!(!app.state.jobs.is_registered("vapi.reconcile"));
    assert_eq!(switchboard::reconcile::run(&deps(&app)).await.unwrap(), Outcome::default());
    app.shutdown().await;
}
