//! Retention: the cleanup removes what is older than each configured age — raw payloads,
//! transcripts of ended calls, idle chats, recording files — keeps everything newer and
//! everything without an age, reports what it removed, and only admins may run it by hand.

use std::time::Duration;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};

use crate::helpers::*;

const OLD_CALL: &str = "0a1b2c3d-0000-4000-8000-000000000001";
const NEW_CALL: &str = "0a1b2c3d-0000-4000-8000-000000000002";
const AUDIO: &[u8] = &[7u8; 4096];

async fn audio_host() -> String {
    let app = axum::Router::new().route("/a.wav", get(|| async { ([(header::CONTENT_TYPE, "audio/wav")], AUDIO).into_response() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

async fn post(app: &TestApp, call: &str, fields: Value) {
    let (status, body) = app.post_vapi(&message(call, ORG, fields)).await;
    assert_eq!(status, 200, "{body}");
}

/// The hourly cleanup's first slot is enqueued at start; holding its kind at a limit of 0 keeps
/// it from running beside the test's own run, so the counts are the test's.
fn no_scheduled_cleanup(s: &mut switchboard::config::Settings) {
    s.jobs.kinds.insert("retention".into(), switchboard::config::KindSettings { limit: Some(0), ..Default::default() });
}

async fn run_cleanup(app: &TestApp, token: &str) -> Value {
    let r = app.http.post(app.url("/api/admin/retention/run")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test]
async fn a_cleanup_removes_only_what_is_older_than_its_age_and_says_what_it_removed() {
    let files = audio_host().await;
    let age = Some(Duration::from_secs(1));
    let app = spawn_with(|s| {
        no_scheduled_cleanup(s);
        s.retention.raw_events = age;
        s.retention.transcripts = age;
        s.retention.chats = age;
        s.retention.recordings = age;
        s.recordings.allowed_hosts = vec!["127.0.0.1".into()];
        s.recordings.allow_http = true;
        s.recordings.allow_loopback = true;
    })
    .await;
    let admin = app.token("admin", &["*"]).await;

    // Old: an ended call with a transcript line and a downloaded recording, and an idle chat.
    post(&app, OLD_CALL, json!({"type": "status-update", "status": "in-progress"})).await;
    post(&app, OLD_CALL, json!({"type": "transcript", "role": "user", "transcriptType": "final", "transcript": "old words"})).await;
    let url = format!("{files}/a.wav");
    post(
        &app,
        OLD_CALL,
        json!({"type": "end-of-call-report", "endedReason": "hangup", "artifact": {"recording": {"mono": {"combinedUrl": url}}}}),
    )
    .await;
    let ready =
        crate::recordings::settled(&app, OLD_CALL).await.into_iter().find(|r| r.state == "ready").expect("the recording was downloaded");
    let file = app.state.settings.recordings.dir.join(ready.path.as_deref().unwrap());
    assert!(file.exists());
    let chat: Value = app.http.post(app.url("/api/chat/sessions")).send().await.unwrap().json().await.unwrap();
    let chat_id = chat["session_id"].as_str().unwrap().to_string();

    tokio::time::sleep(Duration::from_millis(1200)).await;
    // New: a live call heard from just now.
    post(&app, NEW_CALL, json!({"type": "transcript", "role": "user", "transcriptType": "final", "transcript": "new words"})).await;

    let summary = run_cleanup(&app, &admin).await;
    assert_eq!(summary["raw_events"], 3, "{summary}");
    assert_eq!(summary["transcript_segments"], 1, "{summary}");
    assert_eq!((summary["chat_sessions"].as_u64(), summary["chat_messages"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!((summary["recordings"].as_u64(), summary["recording_bytes"].as_u64()), (Some(1), Some(AUDIO.len() as u64)), "{summary}");

    assert!(!file.exists(), "the recording file is removed");
    let rec = app.state.store.recordings(OLD_CALL).await.unwrap();
    assert_eq!(rec[0].state, "deleted");
    let served = app.http.get(app.url(&format!("/api/calls/{OLD_CALL}/recording"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(served.status(), 404);
    let (status, old) = app.get_json(&format!("/api/calls/{OLD_CALL}"), &admin).await;
    assert_eq!(status, 200, "the call itself stays in the history");
    assert_eq!(old["transcript"].as_array().map(Vec::len), Some(0));
    let (_, new) = app.get_json(&format!("/api/calls/{NEW_CALL}"), &admin).await;
    assert_eq!(new["transcript"].as_array().map(Vec::len), Some(1), "a newer transcript is kept");
    assert_eq!(app.state.store.count_raw_events(Some(OLD_CALL)).await.unwrap(), 0);
    assert_eq!(app.state.store.count_raw_events(Some(NEW_CALL)).await.unwrap(), 1);
    let (gone, _) = app.get_json(&format!("/api/chat/sessions/{chat_id}"), &admin).await;
    assert_eq!(gone, 404);

    let again = run_cleanup(&app, &admin).await;
    assert!(again.as_object().unwrap().values().all(|v| v == 0), "nothing left to remove: {again}");
    app.shutdown().await;
}

#[tokio::test]
async fn by_default_transcripts_chats_and_recordings_are_kept() {
    let app = spawn_app().await;
    post(&app, OLD_CALL, json!({"type": "transcript", "role": "user", "transcriptType": "final", "transcript": "kept"})).await;
    let admin = app.token("admin", &["*"]).await;
    let summary = run_cleanup(&app, &admin).await;
    assert!(summary.as_object().unwrap().values().all(|v| v == 0), "{summary}");
    let (_, call) = app.get_json(&format!("/api/calls/{OLD_CALL}"), &admin).await;
    assert_eq!(call["transcript"].as_array().map(Vec::len), Some(1));
    assert!(app.state.jobs.is_registered("retention"), "the cleanup is a scheduled job kind");
    app.shutdown().await;
}

#[tokio::test]
async fn only_an_admin_may_run_the_cleanup() {
    let app = spawn_app().await;
    let supervisor = app.token("supervisor", &["*"]).await;
    let r = app.http.post(app.url("/api/admin/retention/run")).bearer_auth(&supervisor).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = app.http.post(app.url("/api/admin/retention/run")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.shutdown().await;
}

#[tokio::test]
async fn old_outgoing_webhook_delivery_logs_are_removed_and_recent_ones_kept() {
    use switchboard::store::{AttemptOutcome, NewWebhook, WebhookAttempt};
    let app = spawn_with(|s| {
        no_scheduled_cleanup(s);
        s.retention.webhook_deliveries = Some(Duration::from_secs(3600));
    })
    .await;
    let store = &app.state.store;
    let now = switchboard::clock::now_ms();
    store
        .create_webhook(NewWebhook {
            id: "wh_1".into(),
            url: "https://crm.example/hook".into(),
            events: "[\"*\"]".into(),
            orgs: "[\"*\"]".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            description: None,
            now,
        })
        .await
        .unwrap();
    for (i, at) in [now - 7_200_000, now - 5_000_000, now - 60_000].into_iter().enumerate() {
        let attempt = WebhookAttempt {
            endpoint_id: "wh_1".into(),
            event_type: "call.started".into(),
            webhook_id: format!("msg_{i}"),
            attempt: 1,
            status_code: Some(200),
            duration_ms: 5,
            error: None,
            at,
            outcome: AttemptOutcome::Delivered,
        };
        store.record_webhook_attempt(attempt).await.unwrap();
    }
    let admin = app.token("admin", &["*"]).await;
    let summary = run_cleanup(&app, &admin).await;
    assert_eq!(summary["webhook_deliveries"], 2, "{summary}");
    let left = store.webhook_deliveries("wh_1", None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].webhook_id, "msg_2");
    app.shutdown().await;
}
