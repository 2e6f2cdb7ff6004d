//! Every accepted message is published as a domain event, in order, after it is stored.

use std::time::Duration;

use crate::helpers::*;

fn kinds(events: &[std::sync::Arc<switchboard::hub::Published>]) -> Vec<String> {
    events.iter().map(|p| p.event.kind.clone()).collect()
}

#[tokio::test]
async fn a_call_s_messages_become_events_on_its_topic_in_order() {
    let app = spawn_app().await;
    let mut call_rx = app.subscribe(&format!("call:{CALL_ID}"));
    let mut calls_rx = app.subscribe("calls");
    for f in [
        "status-update.in-progress.json",
        "speech-update.json",
        "transcript.partial.json",
        "transcript.final.json",
        "hang.json",
        "end-of-call-report.json",
    ] {
        assert_eq!(app.post_fixture(f).await.0, 200, "{f}");
    }
    let on_call = received(&mut call_rx, Duration::from_millis(300)).await;
    assert_eq!(kinds(&on_call), ["call.status", "speech", "transcript.partial", "transcript.final", "call.activity", "call.ended"]);
    let seqs: Vec<u64> = on_call.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "sequence numbers grow by one");
    assert!(on_call.iter().all(|p| p.event.org_id == ORG));
    assert_eq!(on_call[3].event.data["text"], "Hi, I'd like to move my cleaning appointment to next Tuesday afternoon.");
    assert_eq!(on_call[5].event.data["call"]["status"], "ended");
    let on_calls = received(&mut calls_rx, Duration::from_millis(100)).await;
    assert_eq!(kinds(&on_calls), ["call.status", "transcript.final", "call.ended"]);
}

#[tokio::test]
async fn tool_calls_publish_invoked_then_completed() {
    let app = spawn_app().await;
    let mut rx = app.subscribe("call:c-ev");
    let body = message(
        "c-ev",
        ORG,
        serde_json::json!({ "type": "tool-calls",
        "toolCallList": [{ "id": "t-ev", "function": { "name": "transferCall", "arguments": {} } }] }),
    );
    app.post_vapi(&body).await;
    let got = received(&mut rx, Duration::from_millis(300)).await;
    let kinds = kinds(&got);
    let invoked = kinds.iter().position(|k| k == "function.invoked").unwrap();
    let completed = kinds.iter().position(|k| k == "function.completed").unwrap();
    assert!(invoked < completed);
    assert_eq!(got[completed].event.data["ok"], true);
    assert!(got[completed].event.data["latency_ms"].is_number());
}
