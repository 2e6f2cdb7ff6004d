//! Bad credentials are a 401 that changes nothing; HMAC works end to end and refuses stale
//! timestamps.

use serde_json::Value;
use switchboard::config::{HmacSettings, Secret};
use switchboard::vapi::auth::{RequestFacts, sign};

use crate::helpers::*;

async fn post_with(app: &TestApp, headers: &[(&str, &str)], body: Vec<u8>) -> reqwest::Response {
    let mut req = app.http.post(app.url("/vapi/webhook")).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.unwrap()
}

async fn assert_unauthorized(app: &TestApp, resp: reqwest::Response) {
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");
    assert_eq!(app.raw_events().await, 0);
    assert_eq!(app.call_count().await, 0);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_is_401_and_changes_nothing() {
    let app = spawn_with(|s| s.vapi.secrets = vec![Secret::new("right")]).await;
    let body = fixture_bytes("status-update.in-progress.json");
    for headers in [&[("x-vapi-secret", "wrong")][..], &[("authorization", "Bearer nope")], &[]] {
        assert_unauthorized(&app, post_with(&app, headers, body.clone()).await).await;
    }
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("switchboard_webhook_auth_failures_total{reason=\"wrong_secret\"} 2"), "{metrics}");
}

#[tokio::test]
async fn malformed_json_without_credentials_is_401_not_400() {
    let app = spawn_with(|s| s.vapi.secrets = vec![Secret::new("right")]).await;
    assert_unauthorized(&app, post_with(&app, &[], b"{\"message\":".to_vec()).await).await;
}

#[tokio::test]
async fn the_right_secret_is_accepted_as_header_or_bearer() {
    let app = spawn_with(|s| s.vapi.secrets = vec![Secret::new("right")]).await;
    let body = fixture_bytes("status-update.in-progress.json");
    assert_eq!(post_with(&app, &[("x-vapi-secret", "right")], body.clone()).await.status().as_u16(), 200);
    assert_eq!(post_with(&app, &[("authorization", "Bearer right")], body).await.status().as_u16(), 200);
}

fn hmac_app_settings() -> HmacSettings {
    HmacSettings::with_key(b"whsec_test".to_vec())
}

#[tokio::test]
async fn an_hmac_signed_webhook_is_accepted_and_a_stale_one_refused() {
    let app = spawn_with(|s| s.vapi.hmac = Some(hmac_app_settings())).await;
    let h = hmac_app_settings();
    let body = fixture_bytes("status-update.in-progress.json");
    let facts = RequestFacts { method: "POST", url: "", now_ms: 0 };
    let now = switchboard::clock::now_ms();
    let fresh = now.to_string();
    let sig = sign(&h, &body, &fresh, "", &facts);
    assert_eq!(post_with(&app, &[("x-timestamp", &fresh), ("x-signature", &sig)], body.clone()).await.status().as_u16(), 200);

    let app = spawn_with(|s| s.vapi.hmac = Some(hmac_app_settings())).await;
    let stale = (now - 301_000).to_string();
    let sig = sign(&h, &body, &stale, "", &facts);
    assert_unauthorized(&app, post_with(&app, &[("x-timestamp", &stale), ("x-signature", &sig)], body.clone()).await).await;
    let future = (now + 301_000).to_string();
    let sig = sign(&h, &body, &future, "", &facts);
    assert_unauthorized(&app, post_with(&app, &[("x-timestamp", &future), ("x-signature", &sig)], body).await).await;
}

#[tokio::test]
async fn an_hmac_over_the_url_uses_the_configured_public_url() {
    let mut h = hmac_app_settings();
    h.payload_format = "{timestamp}.{method}.{url}.{body}".into();
    let settings_h = h.clone();
    let app = spawn_with(move |s| {
        s.vapi.hmac = Some(settings_h);
        s.public_url = Some("https://hub.example.com".into());
    })
    .await;
    let body = fixture_bytes("hang.json");
    let ts = switchboard::clock::now_ms().to_string();
    let facts = RequestFacts { method: "POST", url: "https://hub.example.com/vapi/webhook", now_ms: 0 };
    let sig = sign(&h, &body, &ts, "", &facts);
    assert_eq!(post_with(&app, &[("x-timestamp", &ts), ("x-signature", &sig)], body.clone()).await.status().as_u16(), 200);
    let wrong = RequestFacts { method: "POST", url: "http://elsewhere/vapi/webhook", now_ms: 0 };
    let sig = sign(&h, &body, &ts, "", &wrong);
    assert_eq!(post_with(&app, &[("x-timestamp", &ts), ("x-signature", &sig)], body).await.status().as_u16(), 401);
}
