//! A redelivered message has no second effect; a repeated tool call is answered from the store.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_redelivered_final_transcript_is_stored_once() {
    let app = spawn_app().await;
    for _ in 0..3 {
        assert_eq!(app.post_fixture("transcript.final.json").await.0, 200);
    }
    assert_eq!(app.state.store.transcript(CALL_ID).await.unwrap().len(), 1);
    assert_eq!(app.raw_events().await, 1);
}

#[tokio::test]
async fn a_redelivered_end_of_call_report_with_fresh_presigned_urls_has_no_second_effect() {
    let app = spawn_app().await;
    let first = fixture("end-of-call-report.json");
    let mut again = first.clone();
    again["message"]["artifact"]["presignedMonoUrl"] = json!("https://storage.vapi.ai/m.wav?sig=other");
    app.post_vapi(&first).await;
    let mut rx = app.subscribe("calls");
    assert_eq!(app.post_vapi(&again).await, (200, json!({})));
    assert_eq!(app.raw_events().await, 1);
    assert!(received(&mut rx, Duration::from_millis(200)).await.is_empty(), "a duplicate publishes nothing");
}

#[tokio::test]
async fn a_repeated_tool_call_returns_the_stored_result_without_running_again() {
    let fake = fake_functions(json!({ "check_availability": { "result": "Open at 15:00" } }), Duration::ZERO).await;
    let spec = fake.spec("check_availability", Duration::from_secs(2));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    let first = app.post_fixture("tool-calls.single.json").await;
    let second = app.post_fixture("tool-calls.single.json").await;
    assert_eq!(first, second);
    assert_eq!(first.1["results"][0]["result"], "Open at 15:00");
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_tool_call_run_it_once() {
    let fake = fake_functions(json!({ "check_availability": { "result": "Open at 15:00" } }), Duration::from_millis(300)).await;
    let spec = fake.spec("check_availability", Duration::from_secs(3));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    let (a, b, c) = tokio::join!(
        app.post_fixture("tool-calls.single.json"),
        app.post_fixture("tool-calls.single.json"),
        app.post_fixture("tool-calls.single.json")
    );
    assert_eq!(fake.hits(), 1);
    for r in [&a, &b, &c] {
        assert_eq!(r.1["results"][0]["result"], "Open at 15:00", "every delivery gets the one result");
    }
}
