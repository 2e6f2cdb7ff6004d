//! The admin API: SSRF refusals at create, admin-only access, and the bad-input catalogue.

use std::time::Duration;

use serde_json::{Value, json};

use super::receiver::Receiver;
use super::*;
use crate::helpers::*;

#[tokio::test]
async fn private_and_loopback_urls_are_refused_at_create_when_loopback_is_not_allowed() {
    let app = spawn_with(|s| {
        local(s);
        s.webhooks.allow_loopback = false;
    })
    .await;
    let admin = app.token("admin", &["*"]).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://0177.0.0.1/hook",
        "http://localhost:9/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let (status, v) =
            send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&admin), Some(&json!({ "url": url, "events": ["*"] })))
                .await;
        assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_url")), "{url}: {v}");
    }
    let (_, list) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(list["webhooks"], json!([]));
    app.shutdown().await;

    let https_only = spawn_app().await;
    let admin = https_only.token("admin", &["*"]).await;
    let body = json!({ "url": "http://hooks.example.com/in", "events": ["*"] });
    let (status, v) = send_json(&https_only, reqwest::Method::POST, "/api/admin/webhooks", Some(&admin), Some(&body)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_url")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("https"));
    https_only.shutdown().await;
}

#[tokio::test]
async fn only_admin_tokens_manage_webhooks() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 200).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["*"] })).await;
    let id = ep["id"].as_str().unwrap();
    let supervisor = app.token("supervisor", &["*"]).await;
    let body = json!({ "url": rx.url, "events": ["*"] });
    let routes = [
        (reqwest::Method::POST, "/api/admin/webhooks".to_string(), Some(&body)),
        (reqwest::Method::GET, "/api/admin/webhooks".to_string(), None),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{id}"), None),
        (reqwest::Method::DELETE, format!("/api/admin/webhooks/{id}"), None),
        (reqwest::Method::POST, format!("/api/admin/webhooks/{id}/enable"), None),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{id}/deliveries"), None),
    ];
    for (method, path, body) in &routes {
        let (status, v) = send_json(&app, method.clone(), path, None, *body).await;
        assert_eq!((status, v["error"]["code"].as_str()), (401, Some("unauthenticated")), "{method} {path}");
        let (status, v) = send_json(&app, method.clone(), path, Some(&supervisor), *body).await;
        assert_eq!((status, v["error"]["code"].as_str()), (403, Some("forbidden")), "{method} {path}");
    }
    let (_, list) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1, "nothing changed");

    let (status, _) = send_json(&app, reqwest::Method::DELETE, &format!("/api/admin/webhooks/{id}"), Some(&admin), None).await;
    assert_eq!(status, 204);
    let (_, list) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(list["webhooks"], json!([]));
    app.post_fixture("status-update.in-progress.json").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((rx.got().len(), delivery_jobs(&app).await), (0, 0), "a deleted endpoint gets nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_a_json_error_and_changes_nothing() {
    let (app, admin) = hooks_app().await;
    let url = "http://127.0.0.1:9/hook";
    let post_raw = |ct: &'static str, body: String| {
        app.http.post(app.url("/api/admin/webhooks")).bearer_auth(&admin).header("content-type", ct).body(body).send()
    };
    for (ct, body, status) in [
        ("application/json", "{\"url\":".to_string(), 400),
        ("application/json", "{} {}".to_string(), 400),
        ("text/plain", json!({ "url": url, "events": ["*"] }).to_string(), 415),
        ("application/json", format!("{{\"description\":\"{}\"}}", "x".repeat(20_000)), 413),
    ] {
        let r = post_raw(ct, body).await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["code"].is_string() && v["error"]["message"].is_string(), "{v}");
    }
    let long = "d".repeat(501);
    let cases = [
        (json!([]), "invalid_body"),
        (json!({ "url": url, "events": ["*"], "enabled": false }), "unknown_field"),
        (json!({ "events": ["*"] }), "invalid_url"),
        (json!({ "url": 42, "events": ["*"] }), "invalid_url"),
        (json!({ "url": "ftp://hooks.example.com/x", "events": ["*"] }), "invalid_url"),
        (json!({ "url": "https://user:pw@hooks.example.com/x", "events": ["*"] }), "invalid_url"),
        (json!({ "url": "not a url", "events": ["*"] }), "invalid_url"),
        (json!({ "url": url }), "invalid_events"),
        (json!({ "url": url, "events": [] }), "invalid_events"),
        (json!({ "url": url, "events": "*" }), "invalid_events"),
        (json!({ "url": url, "events": [1] }), "invalid_events"),
        (json!({ "url": url, "events": ["*", "call.ended"] }), "invalid_events"),
        (json!({ "url": url, "events": ["call.exploded"] }), "unknown_event"),
        (json!({ "url": url, "events": ["call.ended", "Call.Started"] }), "unknown_event"),
        (json!({ "url": url, "events": ["*"], "secret": "hunter2" }), "invalid_secret"),
        (json!({ "url": url, "events": ["*"], "secret": "whsec_c2hvcnQ=" }), "invalid_secret"),
        (json!({ "url": url, "events": ["*"], "secret": 7 }), "invalid_secret"),
        (json!({ "url": url, "events": ["*"], "description": long }), "invalid_description"),
    ];
    for (body, code) in cases {
        let (status, v) = send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&admin), Some(&body)).await;
        assert_eq!((status, v["error"]["code"].as_str()), (422, Some(code)), "{body}: {v}");
        assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let missing = "0190c0de-0000-7000-8000-000000000000";
    for (method, path, status) in [
        (reqwest::Method::GET, format!("/api/admin/webhooks/{missing}"), 404),
        (reqwest::Method::DELETE, format!("/api/admin/webhooks/{missing}"), 404),
        (reqwest::Method::POST, format!("/api/admin/webhooks/{missing}/enable"), 404),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{missing}/deliveries"), 404),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{missing}/deliveries?limit=0"), 422),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{missing}/deliveries?cursor=abc"), 422),
        (reqwest::Method::GET, format!("/api/admin/webhooks/{missing}/deliveries?page=2"), 422),
        (reqwest::Method::PUT, "/api/admin/webhooks".to_string(), 405),
    ] {
        let (got, v) = send_json(&app, method.clone(), &path, Some(&admin), None).await;
        assert_eq!(got, status, "{method} {path}: {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    let (_, list) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(list["webhooks"], json!([]), "nothing was created");
    app.shutdown().await;
}

#[tokio::test]
async fn an_admin_of_one_org_manages_only_that_orgs_endpoints_and_they_receive_only_its_events() {
    const OTHER: &str = "org-other";
    let (app, admin) = hooks_app().await;
    let ours_admin = app.token("admin", &[ORG]).await;
    let (ours, theirs, everyone) = (Receiver::start(&[], 200).await, Receiver::start(&[], 200).await, Receiver::start(&[], 200).await);
    // Made by an admin of ORG: its orgs default to the token's.
    let a = create(&app, &ours_admin, json!({ "url": ours.url, "events": ["call.started"] })).await;
    assert_eq!(a["orgs"], json!([ORG]));
    let b = create(&app, &admin, json!({ "url": theirs.url, "events": ["call.started"], "orgs": [OTHER] })).await;
    let c = create(&app, &admin, json!({ "url": everyone.url, "events": ["call.started"] })).await;
    assert_eq!(c["orgs"], json!(["*"]));
    // It may not reach past its orgs, nor say everyone.
    for orgs in [json!([OTHER]), json!([ORG, OTHER]), json!(["*"])] {
        let body = json!({ "url": ours.url, "events": ["*"], "orgs": orgs });
        let (status, v) = send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&ours_admin), Some(&body)).await;
        assert_eq!((status, v["error"]["code"].as_str()), (403, Some("org_not_allowed")), "{orgs}: {v}");
    }
    for orgs in [json!([]), json!([""]), json!([7]), json!("acme")] {
        let body = json!({ "url": ours.url, "events": ["*"], "orgs": orgs });
        let (status, v) = send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&admin), Some(&body)).await;
        assert_eq!((status, v["error"]["code"].as_str()), (422, Some("invalid_orgs")), "{orgs}: {v}");
    }
    // It sees its own endpoint only; the others are not there for it.
    let (_, list) = app.get_json("/api/admin/webhooks", &ours_admin).await;
    let ids: Vec<&str> = list["webhooks"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [a["id"].as_str().unwrap()]);
    for other in [&b, &c] {
        let id = other["id"].as_str().unwrap();
        for (method, path) in [
            (reqwest::Method::GET, format!("/api/admin/webhooks/{id}")),
            (reqwest::Method::DELETE, format!("/api/admin/webhooks/{id}")),
            (reqwest::Method::POST, format!("/api/admin/webhooks/{id}/enable")),
            (reqwest::Method::GET, format!("/api/admin/webhooks/{id}/deliveries")),
        ] {
            let (status, v) = send_json(&app, method.clone(), &path, Some(&ours_admin), None).await;
            assert_eq!(status, 404, "{method} {path}: {v}");
        }
    }
    let (_, all) = app.get_json("/api/admin/webhooks", &admin).await;
    assert_eq!(all["webhooks"].as_array().unwrap().len(), 3, "nothing was deleted; the admin of every org sees all");

    // A call of each org starts: each endpoint gets the events of its orgs only.
    let started = |org: &str, call: &str| message(call, org, json!({ "type": "status-update", "status": "in-progress" }));
    assert_eq!(app.post_vapi(&started(ORG, "c-org-ours")).await.0, 200);
    assert_eq!(app.post_vapi(&started(OTHER, "c-org-theirs")).await.0, 200);
    let call_of = |g: &super::receiver::Got| g.json()["data"]["call"]["id"].as_str().unwrap().to_string();
    assert_eq!(ours.wait_for(1, Duration::from_secs(10)).await.iter().map(call_of).collect::<Vec<_>>(), ["c-org-ours"]);
    assert_eq!(theirs.wait_for(1, Duration::from_secs(10)).await.iter().map(call_of).collect::<Vec<_>>(), ["c-org-theirs"]);
    let mut both: Vec<String> = everyone.wait_for(2, Duration::from_secs(10)).await.iter().map(call_of).collect();
    both.sort();
    assert_eq!(both, ["c-org-ours", "c-org-theirs"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((ours.got().len(), theirs.got().len()), (1, 1), "no endpoint got another org's event");
    app.shutdown().await;
}

#[tokio::test]
async fn the_job_queue_and_retention_need_an_admin_of_every_org() {
    let (app, admin) = hooks_app().await;
    let ours_admin = app.token("admin", &[ORG]).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/admin/jobs"),
        (reqwest::Method::POST, "/api/admin/jobs/run/noop"),
        (reqwest::Method::POST, "/api/admin/jobs/0190c0de-0000-7000-8000-000000000000/retry"),
        (reqwest::Method::POST, "/api/admin/retention/run"),
    ] {
        let (status, v) = send_json(&app, method.clone(), path, Some(&ours_admin), None).await;
        assert_eq!((status, v["error"]["code"].as_str()), (403, Some("hub_admin_only")), "{method} {path}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("every org"), "{v}");
    }
    let (status, _) = app.get_json("/api/admin/jobs", &admin).await;
    assert_eq!(status, 200, "an admin of every org still may");
    app.shutdown().await;
}

#[tokio::test]
async fn a_bad_rotation_is_refused_and_leaves_the_secret_as_it_was() {
    let (app, admin) = hooks_app().await;
    let rx = Receiver::start(&[], 200).await;
    let ep = create(&app, &admin, json!({ "url": rx.url, "events": ["call.started"], "secret": SECRET })).await;
    let path = format!("/api/admin/webhooks/{}/rotate", ep["id"].as_str().unwrap());
    for (body, code) in [
        (json!({ "grace_ms": -1 }), "invalid_grace"),
        (json!({ "grace_ms": 604_800_001u64 }), "invalid_grace"),
        (json!({ "grace_ms": "60000" }), "invalid_grace"),
        (json!({ "secret": "hunter2" }), "invalid_secret"),
        (json!({ "secret": SECRET, "keep": true }), "unknown_field"),
        (json!([1]), "invalid_body"),
    ] {
        let (status, v) = send_json(&app, reqwest::Method::POST, &path, Some(&admin), Some(&body)).await;
        assert_eq!((status, v["error"]["code"].as_str()), (422, Some(code)), "{body}: {v}");
    }
    let supervisor = app.token("supervisor", &["*"]).await;
    let other_org_admin = app.token("admin", &["org-other"]).await;
    assert_eq!(send_json(&app, reqwest::Method::POST, &path, Some(&supervisor), None).await.0, 403);
    assert_eq!(send_json(&app, reqwest::Method::POST, &path, Some(&other_org_admin), None).await.0, 404, "not its org's endpoint");
    let missing = "/api/admin/webhooks/0190c0de-0000-7000-8000-000000000000/rotate";
    assert_eq!(send_json(&app, reqwest::Method::POST, missing, Some(&admin), None).await.0, 404);
    // Nothing changed: deliveries are still signed with the first secret alone.
    app.post_fixture("status-update.in-progress.json").await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert!(super::receiver::verify(SECRET, &got[0]));
    assert_eq!(got[0].header("webhook-signature").split(' ').count(), 1);
    assert_eq!(endpoint(&app, &admin, ep["id"].as_str().unwrap()).await["previous_secret_expires_at"], Value::Null);
    app.shutdown().await;
}

#[tokio::test]
async fn an_admin_of_some_orgs_holds_at_most_ten_endpoints_and_one_of_no_org_none() {
    let (app, admin) = hooks_app().await;
    let ours_admin = app.token("admin", &[ORG]).await;
    let body = json!({ "url": "http://127.0.0.1:9/hook", "events": ["*"] });
    for _ in 0..10 {
        create(&app, &ours_admin, body.clone()).await;
    }
    let (status, v) = send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&ours_admin), Some(&body)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (409, Some("too_many_webhooks")), "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("admin of some orgs"), "{v}");
    create(&app, &admin, body.clone()).await; // the hub's own cap is not reached
    let nobody = app.token("admin", &[]).await;
    let (status, v) = send_json(&app, reqwest::Method::POST, "/api/admin/webhooks", Some(&nobody), Some(&body)).await;
    assert_eq!((status, v["error"]["code"].as_str()), (403, Some("org_not_allowed")), "{v}");
    let (_, list) = app.get_json("/api/admin/webhooks", &nobody).await;
    assert_eq!(list["webhooks"], json!([]), "a token of no org sees no endpoint");
    app.shutdown().await;
}
