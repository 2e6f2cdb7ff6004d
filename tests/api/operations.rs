//! Health, readiness, metrics, and a shutdown that finishes in-flight webhooks.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let h: Value = app.http.get(app.url("/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h, json!({ "status": "ok" }));
    let r = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["store"], "ok");
}

#[tokio::test]
async fn metrics_count_webhooks_and_time_tool_calls_and_the_store() {
    let app = spawn_app().await;
    app.post_fixture("status-update.in-progress.json").await;
    app.post_vapi(&message(
        "c-m",
        ORG,
        json!({ "type": "tool-calls", "toolCallList": [{ "id": "t-m", "function": { "name": "transferCall", "arguments": {} } }] }),
    ))
    .await;
    let r = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = r.text().await.unwrap();
    assert!(text.contains("switchboard_webhooks_total{type=\"status-update\",outcome=\"processed\"} 1"), "{text}");
    assert!(text.contains("switchboard_tool_call_duration_seconds_count{function=\"transferCall\",outcome=\"ok\"} 1"));
    assert!(text.contains("switchboard_store_operation_duration_seconds_count{op=\"ingest\"}"));
    // The in-process broker has no feed to lose.
    assert!(text.contains("\nswitchboard_broker_feed_up 1\n"), "{text}");
    assert!(text.contains("\nswitchboard_broker_local_events_total 0\n"), "{text}");
}

#[tokio::test]
async fn shutdown_finishes_a_webhook_in_flight() {
    let fake = fake_functions(json!({ "slow": { "result": "finished" } }), Duration::from_millis(600)).await;
    let spec = fake.spec("slow", Duration::from_secs(3));
    let mut app = spawn_with(move |s| s.functions = vec![spec]).await;
    let body = message(
        "c-sd",
        ORG,
        json!({ "type": "tool-calls", "toolCallList": [{ "id": "t-sd", "function": { "name": "slow", "arguments": {} } }] }),
    );
    let in_flight = {
        let (http, url) = (app.http.clone(), app.url("/vapi/webhook"));
        tokio::spawn(async move { http.post(url).header("content-type", "application/json").body(body.to_string()).send().await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (http, ready_url, base) = (app.http.clone(), app.url("/readyz"), app.base.clone());
    app.stop.cancel();
    let resp = in_flight.await.unwrap().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["results"][0]["result"], "finished");
    let _ = tokio::time::timeout(Duration::from_secs(5), &mut app.server).await;
    assert!(http.get(ready_url).send().await.is_err(), "{base} no longer accepts connections");
}
