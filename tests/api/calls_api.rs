//! The calls API: scoped to the token's orgs, paged, filtered, transcripts in three formats.

use serde_json::json;

use crate::helpers::*;

async fn seed_call(app: &TestApp, call: &str, org: &str, created_ms: i64, words: &str) {
    let mut m = message(call, org, json!({ "type": "transcript", "transcriptType": "final", "role": "user", "transcript": words }));
    m["message"]["call"]["createdAt"] = json!(switchboard::clock::iso(created_ms));
    assert_eq!(app.post_vapi(&m).await.0, 200);
}

#[tokio::test]
async fn a_token_of_org_a_never_sees_a_call_of_org_b() {
    let app = spawn_app().await;
    seed_call(&app, "call-a", "org-a", 1_000, "hello from a").await;
    seed_call(&app, "call-b", "org-b", 2_000, "hello from b").await;
    let a = app.token("supervisor", &["org-a"]).await;
    let (_, list) = app.get_json("/api/calls", &a).await;
    assert_eq!(list["calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect::<Vec<_>>(), ["call-a"]);
    let (status, body) = app.get_json("/api/calls/call-b", &a).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(app.get_text("/api/calls/call-b/transcript?format=txt", &a).await.0, 404);
    let (_, q) = app.get_json("/api/calls?q=from%20b", &a).await;
    assert!(q["calls"].as_array().unwrap().is_empty());
    let all = app.token("admin", &["*"]).await;
    assert_eq!(app.get_json("/api/calls", &all).await.1["calls"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn the_api_needs_a_valid_token() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/api/calls")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(app.get_json("/api/calls", "sb_not-a-real-token").await.0, 401);
}

#[tokio::test]
async fn calls_are_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    for i in 0..5 {
        seed_call(&app, &format!("call-{i}"), ORG, 1_000 * (i + 1), "hi").await;
    }
    let t = app.token("supervisor", &[ORG]).await;
    let (_, p1) = app.get_json("/api/calls?limit=2", &t).await;
    let ids =
        |v: &serde_json::Value| v["calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&p1), ["call-4", "call-3"]);
    let cursor = p1["next_cursor"].as_str().unwrap().to_string();
    let (_, p2) = app.get_json(&format!("/api/calls?limit=2&cursor={cursor}"), &t).await;
    assert_eq!(ids(&p2), ["call-2", "call-1"]);
    let (_, p3) = app.get_json(&format!("/api/calls?limit=2&cursor={}", p2["next_cursor"].as_str().unwrap()), &t).await;
    assert_eq!((ids(&p3), p3["next_cursor"].is_null()), (vec!["call-0".to_string()], true));
}

#[tokio::test]
async fn calls_are_filtered_by_status_time_and_transcript_text() {
    let app = spawn_app().await;
    seed_call(&app, "early", ORG, 1_000, "I want a cleaning").await;
    seed_call(&app, "late", ORG, 5_000, "billing question about 100% of my bill").await;
    app.post_vapi(&message("late", ORG, json!({ "type": "status-update", "status": "ended" }))).await;
    let t = app.token("supervisor", &[ORG]).await;
    let ids =
        |v: serde_json::Value| v["calls"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(app.get_json("/api/calls?status=ended", &t).await.1), ["late"]);
    assert_eq!(ids(app.get_json("/api/calls?q=CLEANING", &t).await.1), ["early"]);
    assert_eq!(ids(app.get_json("/api/calls?q=100%25", &t).await.1), ["late"], "a % in the query matches literally");
    let since = switchboard::clock::iso(3_000);
    assert_eq!(ids(app.get_json(&format!("/api/calls?since={since}"), &t).await.1), ["late"]);
}

#[tokio::test]
async fn bad_query_parameters_are_422() {
    let app = spawn_app().await;
    let t = app.token("supervisor", &["*"]).await;
    for q in ["limit=0", "limit=201", "since=yesterday", "cursor=%%%", "nonsense=1"] {
        let (status, body) = app.get_json(&format!("/api/calls?{q}"), &t).await;
        assert_eq!(status, 422, "{q}: {body}");
    }
    seed_call(&app, "c", ORG, 1, "x").await;
    assert_eq!(app.get_json("/api/calls/c/transcript?format=pdf", &t).await.0, 422);
}

#[tokio::test]
async fn one_call_comes_with_its_transcript_invocations_and_recordings() {
    let app = spawn_app().await;
    for f in ["status-update.in-progress.json", "transcript.final.json", "tool-calls.single.json", "end-of-call-report.json"] {
        app.post_fixture(f).await;
    }
    let t = app.token("supervisor", &[ORG]).await;
    let (status, call) = app.get_json(&format!("/api/calls/{CALL_ID}"), &t).await;
    assert_eq!(status, 200);
    assert_eq!(call["status"], "ended");
    assert_eq!(call["ended_reason"], "customer-ended-call");
    assert_eq!(call["cost"], 0.0482);
    assert_eq!(call["analysis"]["structuredData"]["intent"], "reschedule");
    assert_eq!(call["transcript"].as_array().unwrap().len(), 1);
    assert_eq!(call["function_invocations"][0]["name"], "check_availability");
    assert_eq!(call["recordings"].as_array().unwrap().len(), 4);
    assert_eq!(call["monitor"]["control_url"], format!("https://aws-us-west-2-production1-phone-call-websocket.vapi.ai/{CALL_ID}/control"));
    assert_eq!(call["metadata"]["tenantId"], "riverside-dental-042");
}

#[tokio::test]
async fn transcripts_come_as_json_text_and_webvtt() {
    let app = spawn_app().await;
    app.post_fixture("status-update.in-progress.json").await;
    let mut assistant = fixture("transcript.final.json");
    assistant["message"]["role"] = json!("assistant");
    assistant["message"]["transcript"] = json!("How can I help?");
    assistant["message"]["timestamp"] = json!(1_773_500_970_000i64);
    app.post_vapi(&assistant).await;
    app.post_fixture("transcript.final.json").await;
    let t = app.token("supervisor", &[ORG]).await;
    let (_, json_t) = app.get_json(&format!("/api/calls/{CALL_ID}/transcript"), &t).await;
    assert_eq!(
        json_t["segments"].as_array().unwrap().iter().map(|s| s["role"].as_str().unwrap()).collect::<Vec<_>>(),
        ["assistant", "user"]
    );
    let (_, ct, txt) = app.get_text(&format!("/api/calls/{CALL_ID}/transcript?format=txt"), &t).await;
    assert!(ct.starts_with("text/plain"));
    assert_eq!(txt, "AI: How can I help?\nUser: Hi, I'd like to move my cleaning appointment to next Tuesday afternoon.\n");
    let (_, ct, vtt) = app.get_text(&format!("/api/calls/{CALL_ID}/transcript?format=vtt"), &t).await;
    assert!(ct.starts_with("text/vtt"));
    assert!(vtt.starts_with("WEBVTT\n\n1\n00:00:02.565 --> 00:00:08.900\n<v AI>How can I help?\n"), "{vtt}");
}

#[tokio::test]
async fn a_call_is_named_by_its_assistants_display_name_once_a_message_carries_it() {
    let app = spawn_app().await;
    seed_call(&app, "call-n", ORG, 1_000, "hi").await;
    let token = app.token("supervisor", &[ORG]).await;
    let (_, before) = app.get_json("/api/calls/call-n", &token).await;
    assert_eq!(before["assistant_name"], json!(null));
    let named = message(
        "call-n",
        ORG,
        json!({ "type": "status-update", "status": "in-progress", "assistant": { "name": "Riverside Receptionist" } }),
    );
    assert_eq!(app.post_vapi(&named).await.0, 200);
    let (_, list) = app.get_json("/api/calls", &token).await;
    assert_eq!(list["calls"][0]["assistant_name"], "Riverside Receptionist");
    app.shutdown().await;
}
