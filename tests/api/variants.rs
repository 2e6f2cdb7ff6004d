//! Each variant of spec §8–§9 that the fixture sample does not show, one test each.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

async fn app_with_echo() -> (TestApp, FakeFunctions) {
    let fake = fake_functions(json!({ "echo": { "result": "echoed" } }), Duration::ZERO).await;
    let spec = fake.spec("echo", Duration::from_secs(2));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    (app, fake)
}

#[tokio::test]
async fn tool_call_arguments_given_as_a_json_string_are_parsed() {
    let (app, fake) = app_with_echo().await;
    let body = message(
        "c-str",
        ORG,
        json!({ "type": "tool-calls",
        "toolCallList": [{ "id": "t-str", "type": "function", "function": { "name": "echo", "arguments": "{\"a\":1}" } }] }),
    );
    let (status, reply) = app.post_vapi(&body).await;
    assert_eq!((status, reply["results"][0]["result"].as_str()), (200, Some("echoed")));
    assert_eq!(fake.hits(), 1);
    let inv = app.state.store.get_invocation("t-str").await.unwrap().unwrap();
    assert_eq!(inv.arguments, "{\"a\":1}");
}

#[tokio::test]
async fn arguments_that_are_not_json_get_an_error_result_without_running() {
    let (app, fake) = app_with_echo().await;
    let body = message(
        "c-bad",
        ORG,
        json!({ "type": "tool-calls",
        "toolCallList": [{ "id": "t-bad", "function": { "name": "echo", "arguments": "{oops" } }] }),
    );
    let (status, reply) = app.post_vapi(&body).await;
    assert_eq!(status, 200);
    assert!(reply["results"][0]["error"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn flat_tool_call_items_with_parameters_are_answered() {
    let (app, _fake) = app_with_echo().await;
    let body = message(
        "c-flat",
        ORG,
        json!({ "type": "tool-calls", "toolCallList": [{ "id": "t-flat", "name": "echo", "parameters": { "b": 2 } }] }),
    );
    let (_, reply) = app.post_vapi(&body).await;
    assert_eq!(reply, json!({ "results": [{ "name": "echo", "toolCallId": "t-flat", "result": "echoed" }] }));
}

#[tokio::test]
async fn the_tool_calls_alias_alone_is_answered() {
    let (app, _fake) = app_with_echo().await;
    let body = message(
        "c-alias",
        ORG,
        json!({ "type": "tool-calls", "toolCalls": [{ "id": "t-alias", "function": { "name": "echo", "arguments": {} } }] }),
    );
    let (_, reply) = app.post_vapi(&body).await;
    assert_eq!(reply["results"][0]["toolCallId"], "t-alias");
}

#[tokio::test]
async fn tool_with_tool_call_list_alone_is_answered() {
    let (app, _fake) = app_with_echo().await;
    let body = message(
        "c-wrap",
        ORG,
        json!({ "type": "tool-calls",
        "toolWithToolCallList": [{ "type": "function", "function": { "name": "echo" }, "toolCall": { "id": "t-wrap", "parameters": {} } }] }),
    );
    let (_, reply) = app.post_vapi(&body).await;
    assert_eq!(reply["results"][0], json!({ "name": "echo", "toolCallId": "t-wrap", "result": "echoed" }));
}

#[tokio::test]
async fn an_async_tool_is_acknowledged_at_once_and_still_runs() {
    let fake = fake_functions(json!({ "slow": { "result": "done" } }), Duration::from_millis(400)).await;
    let spec = fake.spec("slow", Duration::from_secs(2));
    let app = spawn_with(move |s| s.functions = vec![spec]).await;
    let body = message(
        "c-async",
        ORG,
        json!({ "type": "tool-calls",
        "toolWithToolCallList": [{ "type": "function", "async": true, "function": { "name": "slow" }, "toolCall": { "id": "t-async", "parameters": {} } }] }),
    );
    let started = std::time::Instant::now();
    let (status, reply) = app.post_vapi(&body).await;
    assert_eq!((status, reply), (200, json!({})));
    assert!(started.elapsed() < Duration::from_millis(350), "answered before the function finished");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let inv = app.state.store.get_invocation("t-async").await.unwrap().unwrap();
    assert_eq!((inv.status.as_str(), inv.result.as_deref()), ("ok", Some("done")));
}

#[tokio::test]
async fn legacy_function_call_with_an_id_is_answered_in_both_shapes() {
    let (app, _fake) = app_with_echo().await;
    let body = message(
        "c-fc",
        ORG,
        json!({ "type": "function-call", "functionCall": { "id": "call_fc1", "type": "function", "name": "echo", "parameters": "{}" } }),
    );
    let (_, reply) = app.post_vapi(&body).await;
    assert_eq!(reply, json!({ "result": "echoed", "results": [{ "name": "echo", "toolCallId": "call_fc1", "result": "echoed" }] }));
}

#[tokio::test]
async fn legacy_function_call_without_an_id_runs_once_across_redeliveries() {
    let (app, fake) = app_with_echo().await;
    let body = message(
        "c-fc2",
        ORG,
        json!({ "type": "function-call", "timestamp": "2026-03-14T15:09:36.935Z", "functionCall": { "name": "echo", "parameters": {} } }),
    );
    let first = app.post_vapi(&body).await;
    let second = app.post_vapi(&body).await;
    assert_eq!(first, second);
    assert_eq!(first.1, json!({ "result": "echoed" }));
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn the_typed_final_transcript_type_is_stored() {
    let app = spawn_app().await;
    let body = message(
        "c-typed",
        ORG,
        json!({ "type": "transcript[transcriptType=\"final\"]", "role": "assistant", "transcript": "Hello there." }),
    );
    assert_eq!(app.post_vapi(&body).await.0, 200);
    let segs = app.state.store.transcript("c-typed").await.unwrap();
    assert_eq!(segs.iter().map(|s| (s.role.as_str(), s.text.as_str())).collect::<Vec<_>>(), [("assistant", "Hello there.")]);
}

#[tokio::test]
async fn partial_transcripts_are_not_stored() {
    let app = spawn_app().await;
    let (status, _) = app.post_fixture("transcript.partial.json").await;
    assert_eq!(status, 200);
    assert!(app.state.store.transcript(CALL_ID).await.unwrap().is_empty());
    assert_eq!(app.raw_events().await, 0);
}

#[tokio::test]
async fn iso_and_millisecond_timestamps_order_the_transcript_whatever_the_arrival_order() {
    let app = spawn_app().await;
    let later = message(
        "c-ts",
        ORG,
        json!({ "type": "transcript", "transcriptType": "final", "role": "user", "transcript": "second", "timestamp": 1_773_500_980_000i64 }),
    );
    let earlier = message(
        "c-ts",
        ORG,
        json!({ "type": "transcript", "transcriptType": "final", "role": "assistant", "transcript": "first", "timestamp": "2026-03-14T15:09:30.000Z" }),
    );
    app.post_vapi(&later).await;
    app.post_vapi(&earlier).await;
    let texts: Vec<String> = app.state.store.transcript("c-ts").await.unwrap().into_iter().map(|s| s.text).collect();
    assert_eq!(texts, ["first", "second"]);
}

#[tokio::test]
async fn a_legacy_end_of_call_report_completes_the_call() {
    let app = spawn_app().await;
    let body = message(
        "c-legacy",
        ORG,
        json!({ "type": "end-of-call-report", "endedReason": "customer-ended-call",
        "summary": "Booked a cleaning.", "transcript": "AI: Hi\nUser: Hello\n", "recordingUrl": "https://storage.vapi.ai/m.wav",
        "stereoRecordingUrl": "https://storage.vapi.ai/s.wav", "durationSeconds": 42.5, "cost": 0.12,
        "startedAt": "2024-07-04T05:38:00.000Z", "endedAt": "2024-07-04T05:39:10.225Z", "timestamp": "2024-07-04T05:39:10.225Z" }),
    );
    assert_eq!(app.post_vapi(&body).await.0, 200);
    let call = app.state.store.get_call("c-legacy").await.unwrap().unwrap();
    assert_eq!(
        (call.status.as_str(), call.ended_reason.as_deref(), call.summary.as_deref(), call.cost),
        ("ended", Some("customer-ended-call"), Some("Booked a cleaning."), Some(0.12))
    );
    // The state is left out: the download job may already have run (see tests/api/recordings.rs).
    let recs = app.state.store.recordings("c-legacy").await.unwrap();
    assert_eq!(
        recs.iter().map(|r| (r.kind.as_str(), r.source_url.as_str())).collect::<Vec<_>>(),
        [("mono", "https://storage.vapi.ai/m.wav"), ("stereo", "https://storage.vapi.ai/s.wav")]
    );
}

#[tokio::test]
async fn the_current_end_of_call_report_stores_every_recording_and_the_analysis() {
    let app = spawn_app().await;
    app.post_fixture("end-of-call-report.json").await;
    let call = app.state.store.get_call(CALL_ID).await.unwrap().unwrap();
    assert_eq!(call.status, "ended");
    assert!(call.analysis.unwrap().contains("reschedule"));
    assert!(call.cost_breakdown.unwrap().contains("llmPromptTokens"));
    let kinds: Vec<String> = app.state.store.recordings(CALL_ID).await.unwrap().into_iter().map(|r| r.kind).collect();
    assert_eq!(kinds, ["assistant", "customer", "mono", "stereo"]);
}

#[tokio::test]
async fn a_stale_embedded_call_status_never_decides_the_status() {
    let app = spawn_app().await;
    // The fixture's message.status is "ended" while its embedded call.status says "in-progress".
    app.post_fixture("status-update.ended.json").await;
    let call = app.state.store.get_call(CALL_ID).await.unwrap().unwrap();
    assert_eq!((call.status.as_str(), call.ended_reason.as_deref()), ("ended", Some("customer-ended-call")));
}

#[tokio::test]
async fn a_minimal_status_update_is_accepted() {
    let app = spawn_app().await;
    let (status, reply) =
        app.post_vapi(&json!({ "message": { "type": "status-update", "status": "queued", "call": { "id": "c-min" } } })).await;
    assert_eq!((status, reply), (200, json!({})));
    let call = app.state.store.get_call("c-min").await.unwrap().unwrap();
    assert_eq!((call.status.as_str(), call.org_id.as_str()), ("queued", "default"));
}

#[tokio::test]
async fn unknown_message_types_are_acknowledged_and_kept_in_the_raw_log() {
    let app = spawn_app().await;
    let (status, reply) = app.post_vapi(&message("c-new", ORG, json!({ "type": "brand-new.thing", "extra": { "x": 1 } }))).await;
    assert_eq!((status, reply), (200, json!({})));
    assert_eq!(app.raw_events().await, 1);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_webhooks_total{type=\"unknown\",outcome=\"ignored\"} 1"), "{metrics}");
}

#[tokio::test]
async fn model_output_as_a_string_token_is_accepted() {
    let app = spawn_app().await;
    assert_eq!(app.post_fixture("model-output.json").await, (200, json!({})));
}

#[tokio::test]
async fn tool_calls_without_ids_in_different_calls_never_share_a_result() {
    let (app, fake) = app_with_echo().await;
    for call in ["c-noid-1", "c-noid-2"] {
        let body =
            message(call, ORG, json!({ "type": "tool-calls", "toolCallList": [{ "function": { "name": "echo", "arguments": {} } }] }));
        let (_, reply) = app.post_vapi(&body).await;
        assert_eq!(reply["results"][0]["result"], "echoed");
        assert!(reply["results"][0]["toolCallId"].as_str().unwrap().contains(call));
    }
    assert_eq!(fake.hits(), 2, "each call ran its own function");
}

#[tokio::test]
async fn a_tool_call_id_reused_by_another_org_does_not_get_the_stored_result() {
    let (app, fake) = app_with_echo().await;
    let mine = message(
        "c-own",
        ORG,
        json!({ "type": "tool-calls", "toolCallList": [{ "id": "t-shared", "function": { "name": "echo", "arguments": {} } }] }),
    );
    let theirs = message(
        "c-theirs",
        "org-b",
        json!({ "type": "tool-calls", "toolCallList": [{ "id": "t-shared", "function": { "name": "echo", "arguments": {} } }] }),
    );
    assert_eq!(app.post_vapi(&mine).await.1["results"][0]["result"], "echoed");
    let (_, reply) = app.post_vapi(&theirs).await;
    assert!(reply["results"][0]["result"].is_null(), "{reply}");
    assert!(reply["results"][0]["error"].as_str().unwrap().contains("already used"));
    assert_eq!(fake.hits(), 1);
}
