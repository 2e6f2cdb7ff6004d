//! A call's status only moves forward, whatever order VAPI's messages arrive in.

use serde_json::json;

use crate::helpers::*;

fn status(call: &str, s: &str, ts: i64) -> serde_json::Value {
    message(call, ORG, json!({ "type": "status-update", "status": s, "timestamp": ts }))
}

async fn status_of(app: &TestApp, call: &str) -> String {
    app.state.store.get_call(call).await.unwrap().unwrap().status
}

#[tokio::test]
async fn out_of_order_status_updates_never_move_a_call_backwards() {
    let app = spawn_app().await;
    app.post_vapi(&status("c1", "in-progress", 2_000)).await;
    app.post_vapi(&status("c1", "ringing", 1_000)).await;
    assert_eq!(status_of(&app, "c1").await, "in-progress");
    app.post_vapi(&status("c1", "ended", 9_000)).await;
    app.post_vapi(&status("c1", "queued", 500)).await;
    app.post_vapi(&status("c1", "in-progress", 3_000)).await;
    assert_eq!(status_of(&app, "c1").await, "ended");
}

#[tokio::test]
async fn an_ended_call_stays_ended_when_the_report_arrives_first() {
    let app = spawn_app().await;
    app.post_fixture("end-of-call-report.json").await;
    app.post_fixture("status-update.in-progress.json").await;
    let call = app.state.store.get_call(CALL_ID).await.unwrap().unwrap();
    assert_eq!((call.status.as_str(), call.ended_reason.as_deref()), ("ended", Some("customer-ended-call")));
}

#[tokio::test]
async fn a_newer_in_progress_after_forwarding_resumes_the_call() {
    let app = spawn_app().await;
    app.post_vapi(&status("c2", "in-progress", 1_000)).await;
    app.post_vapi(&status("c2", "forwarding", 2_000)).await;
    app.post_vapi(&status("c2", "in-progress", 1_500)).await;
    assert_eq!(status_of(&app, "c2").await, "forwarding", "an older in-progress is out of order");
    app.post_vapi(&status("c2", "in-progress", 3_000)).await;
    assert_eq!(status_of(&app, "c2").await, "in-progress", "a newer one means the transfer did not happen");
}

#[tokio::test]
async fn the_start_time_comes_from_the_in_progress_update() {
    let app = spawn_app().await;
    app.post_vapi(&status("c3", "ringing", 1_000)).await;
    app.post_vapi(&status("c3", "in-progress", 4_000)).await;
    app.post_vapi(&status("c3", "ended", 64_000)).await;
    let call = app.state.store.get_call("c3").await.unwrap().unwrap();
    assert_eq!((call.started_at, call.ended_at), (Some(4_000), Some(64_000)));
}

#[tokio::test]
async fn a_late_forwarding_older_than_the_current_status_is_ignored() {
    let app = spawn_app().await;
    app.post_vapi(&status("c4", "in-progress", 1_000)).await;
    app.post_vapi(&status("c4", "in-progress", 3_000)).await;
    app.post_vapi(&status("c4", "forwarding", 2_000)).await;
    assert_eq!(status_of(&app, "c4").await, "in-progress");
}

#[tokio::test]
async fn a_message_naming_another_org_never_changes_the_call() {
    let app = spawn_app().await;
    app.post_vapi(&status("c5", "in-progress", 1_000)).await;
    let intruder =
        message("c5", "other-org", json!({ "type": "status-update", "status": "ended", "endedReason": "spoofed", "timestamp": 2_000 }));
    assert_eq!(app.post_vapi(&intruder).await.0, 200);
    let call = app.state.store.get_call("c5").await.unwrap().unwrap();
    assert_eq!((call.status.as_str(), call.org_id.as_str(), call.ended_reason), ("in-progress", ORG, None));
}
