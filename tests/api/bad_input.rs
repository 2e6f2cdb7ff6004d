//! Bad input gets a clear 4xx JSON error and changes nothing (reliability.md §7).

use serde_json::{Value, json};

use crate::helpers::*;

async fn assert_refused(app: &TestApp, resp: reqwest::Response, status: u16, code: &str) {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(app.raw_events().await, 0, "nothing was logged");
    assert_eq!(app.call_count().await, 0, "no call was created");
}

#[tokio::test]
async fn malformed_json_is_400_and_changes_nothing() {
    let app = spawn_app().await;
    for body in ["{\"message\":", "{} {}", "\u{feff}{\"message\":{\"type\":\"hang\"}}", "{\"message\":{\"type\":\"hang\",\"x\":1e400}}"] {
        let resp = app.post_raw(body.to_string()).await;
        assert_refused(&app, resp, 400, "malformed_json").await;
    }
}

#[tokio::test]
async fn deeply_nested_json_is_400_not_a_crash() {
    let app = spawn_app().await;
    let body = format!("{{\"message\":{}{}}}", "[".repeat(200), "]".repeat(200));
    assert_refused(&app, app.post_raw(body).await, 400, "malformed_json").await;
}

#[tokio::test]
async fn json_that_is_not_a_vapi_envelope_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    for body in [json!({ "type": "status-update" }), json!({ "message": { "status": "ended" } }), json!([1, 2])] {
        let resp = app.post_raw(body.to_string()).await;
        assert_refused(&app, resp, 422, "invalid_message").await;
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_changes_nothing() {
    let app = spawn_with(|s| s.vapi.body_limit = 4096).await;
    let mut big = fixture("transcript.final.json");
    big["message"]["transcript"] = json!("x".repeat(5000));
    assert_refused(&app, app.post_raw(big.to_string()).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_chunked_body_growing_past_the_limit_is_413() {
    let app = spawn_with(|s| s.vapi.body_limit = 4096).await;
    let chunks: Vec<Result<String, std::io::Error>> = (0..10).map(|_| Ok("x".repeat(1000))).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    assert_refused(&app, app.post_raw(body).await, 413, "payload_too_large").await;
}

#[tokio::test]
async fn a_wrong_or_missing_content_type_is_415_and_changes_nothing() {
    let app = spawn_app().await;
    let body = fixture_bytes("transcript.final.json");
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data; boundary=x"), None] {
        let mut req = app.http.post(app.url("/vapi/webhook")).body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        assert_refused(&app, req.send().await.unwrap(), 415, "unsupported_media_type").await;
    }
}

#[tokio::test]
async fn json_with_a_charset_or_a_json_suffix_type_is_accepted() {
    let app = spawn_app().await;
    for ct in ["application/json; charset=utf-8", "application/vnd.vapi+json"] {
        let resp =
            app.http.post(app.url("/vapi/webhook")).header("content-type", ct).body(fixture_bytes("hang.json")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{ct}");
    }
}

#[tokio::test]
async fn a_nul_character_in_a_transcript_is_stored_sanitised() {
    let app = spawn_app().await;
    let body =
        message("c-nul", ORG, json!({ "type": "transcript", "transcriptType": "final", "role": "user", "transcript": "a\u{0000}b" }));
    assert_eq!(app.post_vapi(&body).await.0, 200);
    let segs = app.state.store.transcript("c-nul").await.unwrap();
    assert_eq!(segs[0].text, "a\u{FFFD}b");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/vapi/webhook")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "method_not_allowed");
    let r = app.http.post(app.url("/vapi/webhook/")).header("content-type", "application/json").body("{}").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "a trailing slash is not redirected");
}

#[tokio::test]
async fn nul_characters_in_any_field_never_become_a_server_error() {
    let app = spawn_app().await;
    let status = message("c-nul2", ORG, json!({ "type": "status-update", "status": "ended", "endedReason": "x\u{0000}y" }));
    assert_eq!(app.post_vapi(&status).await.0, 200);
    let role =
        message("c-nul2", ORG, json!({ "type": "transcript", "transcriptType": "final", "role": "user\u{0000}", "transcript": "hi" }));
    assert_eq!(app.post_vapi(&role).await.0, 200);
    let call = app.state.store.get_call("c-nul2").await.unwrap().unwrap();
    assert_eq!(call.ended_reason.as_deref(), Some("x\u{FFFD}y"));
    let t = app.token("supervisor", &["*"]).await;
    assert_eq!(app.get_json("/api/calls/%00", &t).await.0, 404);
    assert_eq!(app.get_json("/api/calls?q=%00", &t).await.0, 200);
}

#[tokio::test]
async fn an_absurdly_long_call_id_is_422_and_changes_nothing() {
    let app = spawn_app().await;
    let long = "c".repeat(3000);
    let resp = app.post_raw(message(&long, ORG, json!({ "type": "hang" })).to_string()).await;
    assert_refused(&app, resp, 422, "invalid_message").await;
}

#[tokio::test]
async fn a_body_that_trickles_in_too_slowly_is_408() {
    let app = spawn_with(|s| s.body_read_timeout = std::time::Duration::from_millis(300)).await;
    let slow = futures::stream::unfold(0, |n| async move {
        if n == 3 {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        Some((Ok::<_, std::io::Error>("{\"message\":".to_string()), n + 1))
    });
    let resp = app.post_raw(reqwest::Body::wrap_stream(slow)).await;
    assert_refused(&app, resp, 408, "request_timeout").await;
}
