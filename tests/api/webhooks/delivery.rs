//! What endpoints receive: events by filter, signed; retries; disabling by failures and by 410;
//! one delivery per fact; nothing without endpoints; another instance; chat.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::receiver::{Got, Receiver, verify};
use super::*;
use crate::helpers::*;

#[tokio::test]
async fn call_transcript_and_function_events_arrive_signed_and_filtered_per_endpoint() {
    let (app, admin) = hooks_app().await;
    let (all, ended_only) = (Receiver::start(&[], 200).await, Receiver::start(&[], 200).await);
    let events = json!(["call.started", "call.ended", "transcript.final", "function.completed"]);
    let a = create(&app, &admin, json!({ "url": all.url, "events": events, "secret": SECRET, "description": "CRM" })).await;
    let b = create(&app, &admin, json!({ "url": ended_only.url, "events": ["call.ended"] })).await;
    assert_eq!(a["secret"], SECRET);
    let b_secret = b["secret"].as_str().unwrap().to_string();
    assert!(b_secret.starts_with("whsec_") && STANDARD.decode(&b_secret[6..]).unwrap().len() == 32, "{b}");

    assert_eq!(app.post_fixture("status-update.in-progress.json").await.0, 200);
    assert_eq!(app.post_fixture("transcript.final.json").await.0, 200);
    assert_eq!(app.post_vapi(&tool_call("t-hook-1")).await.0, 200);
    assert_eq!(app.post_fixture("end-of-call-report.json").await.0, 200);

    let got = all.wait_for(4, Duration::from_secs(10)).await;
    let mut kinds: Vec<String> = got.iter().map(Got::kind).collect();
    kinds.sort();
    assert_eq!(kinds, ["call.ended", "call.started", "function.completed", "transcript.final"]);
    for g in &got {
        assert!(verify(SECRET, g), "signature of {}", g.body);
        assert!(!verify(&b_secret, g), "another endpoint's secret must not verify");
        assert_eq!(g.header("content-type"), "application/json");
        let id = g.header("webhook-id");
        assert!(id.len() == 36 && id.starts_with("msg_") && id[4..].chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        let body = g.json();
        assert!(switchboard::clock::parse_iso(body["timestamp"].as_str().unwrap()).is_some(), "{body}");
        assert_eq!(body["data"]["org_id"], ORG, "{body}");
    }
    let mut tampered = got[0].clone();
    tampered.body.push(' ');
    assert!(!verify(SECRET, &tampered), "the receiver's check is real: one changed byte fails it");
    let of = |kind: &str| got.iter().find(|g| g.kind() == kind).unwrap().json()["data"].clone();
    assert_eq!(of("call.started")["call"]["id"], CALL_ID);
    assert_eq!(of("call.started")["call"]["status"], "in-progress");
    assert_eq!(of("call.ended")["call"]["status"], "ended");
    assert_eq!(of("transcript.final")["call_id"], CALL_ID);
    assert!(of("transcript.final")["text"].as_str().unwrap().contains("cleaning appointment"));
    assert_eq!(
        (of("function.completed")["name"].as_str(), of("function.completed")["tool_call_id"].as_str()),
        (Some("lookupCustomer"), Some("t-hook-1"))
    );

    let only = ended_only.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ended_only.got().len(), 1, "the filter lets call.ended through only");
    assert_eq!(only[0].kind(), "call.ended");
    assert!(verify(&b_secret, &only[0]));
    assert_eq!(only[0].header("webhook-id"), got.iter().find(|g| g.kind() == "call.ended").unwrap().header("webhook-id"));

    let (status, list) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 2);
    assert!(!list.to_string().contains("whsec_"), "secrets are shown once, at create: {list}");
    assert_eq!(list["webhooks"][0]["events"], events);
    assert_eq!(list["webhooks"][0]["description"], "CRM");
    app.shutdown().await;
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_webhook_id_and_each_attempt_is_logged() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[500], 200).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["call.started"], "secret": SECRET })).await;
    let id = ep["id"].as_str().unwrap();
    app.post_fixture("status-update.in-progress.json").await;

    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body, "every attempt sends the same body");
    assert!(got.iter().all(|g| verify(SECRET, g)));

    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = deliveries(&app, &admin, id, "").await;
        if log["deliveries"].as_array().unwrap().len() == 2 || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let rows = log["deliveries"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{log}");
    assert_eq!((rows[0]["attempt"].as_i64(), rows[0]["status_code"].as_i64()), (Some(2), Some(200)), "newest first: {log}");
    assert_eq!(rows[0]["error"], Value::Null);
    assert_eq!((rows[1]["attempt"].as_i64(), rows[1]["status_code"].as_i64()), (Some(1), Some(500)));
    assert!(rows[1]["error"].as_str().unwrap().contains("HTTP 500"), "{log}");
    for r in rows {
        assert_eq!(r["event_type"], "call.started");
        assert_eq!(r["webhook_id"], got[0].header("webhook-id"));
        assert!(r["duration_ms"].as_i64().unwrap() >= 0);
    }
    assert_eq!(endpoint(&app, &admin, id).await["consecutive_failures"], 0, "a success starts the count over");

    let first = deliveries(&app, &admin, id, "?limit=1").await;
    assert_eq!(first["deliveries"][0]["attempt"], 2);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let second = deliveries(&app, &admin, id, &format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(second["deliveries"][0]["attempt"], 1);
    assert_eq!(second["next_cursor"], Value::Null);
    app.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_is_disabled_after_n_consecutive_failures_until_an_admin_enables_it() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 500).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["*"], "secret": SECRET })).await;
    let id = ep["id"].as_str().unwrap();
    app.post_fixture("status-update.in-progress.json").await;

    let off = wait_enabled(&app, &admin, id, false).await;
    assert_eq!(off["consecutive_failures"], 3, "{off}");
    assert!(off["disabled_reason"].as_str().unwrap().contains("3 consecutive"), "{off}");
    assert!(off["disabled_at"].is_string());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.got().len(), 3, "no attempt after the one that disabled it");
    assert_eq!(deliveries(&app, &admin, id, "").await["deliveries"].as_array().unwrap().len(), 3);

    app.post_vapi(&final_transcript("while disabled")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(delivery_jobs(&app).await, 1, "a disabled endpoint gets nothing enqueued");
    assert_eq!(rx.got().len(), 3);

    rx.answer_from_now(200);
    let (status, on) = send_json(&app, reqwest::Method::POST, &format!("/api/admin/webhooks/{id}/enable"), Some(&admin), None).await;
    assert_eq!(status, 200, "{on}");
    assert_eq!(
        (on["enabled"].as_bool(), on["consecutive_failures"].as_i64(), on["disabled_reason"].is_null()),
        (Some(true), Some(0), true)
    );
    app.post_vapi(&final_transcript("after enabling")).await;
    let got = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(got[3].kind(), "transcript.final");
    assert_eq!(got[3].json()["data"]["text"], "after enabling");
    app.shutdown().await;
}

#[tokio::test]
async fn a_410_gone_disables_the_endpoint_at_once() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 410).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["call.started", "transcript.final"] })).await;
    let id = ep["id"].as_str().unwrap();
    app.post_fixture("status-update.in-progress.json").await;

    let off = wait_enabled(&app, &admin, id, false).await;
    assert!(off["disabled_reason"].as_str().unwrap().contains("410"), "{off}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1, "never retried");
    let log = deliveries(&app, &admin, id, "").await;
    assert_eq!(log["deliveries"][0]["status_code"], 410);
    app.post_fixture("transcript.final.json").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_redelivered_vapi_webhook_makes_one_delivery() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 200).await;
    create(&app, &admin, json!({ "url": rx.url, "events": ["*"], "secret": SECRET })).await;
    for _ in 0..2 {
        assert_eq!(app.post_fixture("status-update.in-progress.json").await.0, 200);
        assert_eq!(app.post_fixture("transcript.final.json").await.0, 200);
    }
    rx.wait_for(2, Duration::from_secs(10)).await;
    // The same fact announced again by another write (another instance, another message) has
    // the same event id: the dedup key lets nothing more through.
    let call = app.state.store.get_call(CALL_ID).await.unwrap().unwrap();
    let outbox = app.state.webhooks.outbox(&["call.started"]).expect("an endpoint wants it");
    let again = outbox.deliveries(&switchboard::webhooks::events::call_started(&call, 1));
    assert_eq!(again.len(), 1, "one endpoint, one delivery");
    for job in again {
        assert!(!app.state.store.enqueue_job(job).await.unwrap().created);
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = rx.got();
    assert_eq!(got.len(), 2, "{:?}", got.iter().map(Got::kind).collect::<Vec<_>>());
    assert_eq!(delivery_jobs(&app).await, 2);
    app.shutdown().await;
}

#[tokio::test]
async fn nothing_is_enqueued_while_no_endpoint_is_configured() {
    let (app, _admin) = hooks_app().await;
    for f in ["status-update.in-progress.json", "transcript.final.json", "end-of-call-report.json"] {
        assert_eq!(app.post_fixture(f).await.0, 200);
    }
    assert_eq!(app.post_vapi(&tool_call("t-none")).await.0, 200);
    assert_eq!(delivery_jobs(&app).await, 0);
    app.shutdown().await;
}

#[tokio::test]
async fn another_instance_delivers_to_an_endpoint_created_elsewhere_within_the_refresh_interval() {
    let (a, admin) = hooks_app().await;
    let db = a.state.settings.database_url.clone();
    let b = spawn_with(|s| {
        local(s);
        s.database_url = db;
    })
    .await;
    let rx = Receiver::start(&[], 200).await;
    create(&a, &admin, json!({ "url": rx.url, "events": ["call.started"], "secret": SECRET })).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(b.post_fixture("status-update.in-progress.json").await.0, 200);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].kind(), "call.started");
    assert!(verify(SECRET, &got[0]));
    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn chat_messages_of_the_visitor_and_the_answer_are_delivered() {
    let m = crate::chat::mock().await;
    let app = spawn_with(|s| {
        local(s);
        crate::chat::use_mock(s, &m);
    })
    .await;
    let admin = app.token("admin", &["*"]).await;
    let rx = Receiver::start(&[], 200).await;
    create(&app, &admin, json!({ "url": rx.url, "events": ["chat.message"], "secret": SECRET })).await;
    let session = crate::chat::new_session(&app).await;
    let events = crate::chat::read_events(crate::chat::send(&app, &session, "Hello there").await, 1000).await;
    assert!(events.iter().any(|e| e.event == "done"), "{events:?}");

    // Two jobs: they may arrive in either order.
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let message = |role: &str| got.iter().map(|g| g.json()["data"]["message"].clone()).find(|m| m["role"] == role).unwrap();
    for g in &got {
        assert!(verify(SECRET, g));
        assert_eq!(g.kind(), "chat.message");
        assert_eq!(g.json()["data"]["session_id"], session);
    }
    assert_eq!(message("user")["content"], "Hello there");
    assert_eq!(message("assistant")["content"], crate::chat::text_of(&events));
    assert_eq!(message("assistant")["status"], "complete");
    app.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_keeps_signing_beside_the_new_one_for_its_grace_and_then_stops() {
    const NEW: &str = "whsec_q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA=";
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 200).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["call.started"], "secret": SECRET })).await;
    let id = ep["id"].as_str().unwrap();
    let path = format!("/api/admin/webhooks/{id}/rotate");
    let (status, rotated) = send_json(&app, reqwest::Method::POST, &path, Some(&admin), Some(&json!({ "secret": NEW }))).await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["secret"], NEW, "the new secret is shown this once");
    let expires = switchboard::clock::parse_iso(rotated["previous_secret_expires_at"].as_str().unwrap()).unwrap();
    let day = expires - switchboard::clock::now_ms();
    assert!((86_000_000..=86_400_000).contains(&day), "the old secret signs for a day by default: {day} ms");
    let shown = endpoint(&app, &admin, id).await;
    assert!(!shown.to_string().contains("whsec_"), "a rotated secret is not shown again: {shown}");

    app.post_vapi(&message("c-rot-1", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 2, "one signature per valid secret");
    assert!(verify(SECRET, &got[0]) && verify(NEW, &got[0]), "a receiver with either secret accepts it");

    // Rotated again with no grace and no secret given: a generated one signs alone.
    let (status, again) = send_json(&app, reqwest::Method::POST, &path, Some(&admin), Some(&json!({ "grace_ms": 0 }))).await;
    assert_eq!(status, 200, "{again}");
    let third = again["secret"].as_str().unwrap().to_string();
    assert!(third.starts_with("whsec_") && third != NEW && third != SECRET);
    assert_eq!(again["previous_secret_expires_at"], Value::Null);
    app.post_vapi(&message("c-rot-2", ORG, json!({ "type": "status-update", "status": "in-progress" }))).await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    let last = got.iter().find(|g| g.json()["data"]["call"]["id"] == "c-rot-2").unwrap();
    assert!(verify(&third, last), "the new secret verifies");
    assert!(!verify(NEW, last) && !verify(SECRET, last), "retired secrets no longer do");
    assert_eq!(last.header("webhook-signature").split(' ').count(), 1);
    app.shutdown().await;
}
