//! The browser side served by the hub: the widget script, the dashboard and demo pages with
//! their cache and security headers, the widget's public configuration by origin, and the
//! `switchboard demo` command a newcomer runs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchboard::config::Widget;

use crate::helpers::*;

const SITE: &str = "https://clinic.example";

#[tokio::test]
async fn the_widget_script_is_served_cacheable_with_a_validator_that_answers_304() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/widget.js")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert_eq!(h["cache-control"], "public, max-age=300");
    assert_eq!(h["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(!r.bytes().await.unwrap().is_empty());
    let again = app.http.get(app.url("/widget.js")).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let stale = app.http.get(app.url("/widget.js")).header("if-none-match", "\"other\"").send().await.unwrap();
    assert_eq!(stale.status(), 200);
    app.shutdown().await;
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_content_security_policy_and_no_framing() {
    let app = spawn_app().await;
    let r = app.http.get(app.url("/dashboard/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-cache");
    let bare = app.http.get(app.url("/dashboard")).send().await.unwrap();
    assert!(bare.url().path().ends_with("/dashboard/"), "redirected to the folder: {}", bare.url());
    let demo = app.http.get(app.url("/demo/")).send().await.unwrap();
    assert_eq!(demo.status(), 200);
    assert!(demo.headers()["content-security-policy"].to_str().unwrap().contains("connect-src 'self'"));
    app.shutdown().await;
}

#[tokio::test]
async fn asset_paths_outside_the_web_folders_are_not_found() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let from_dir = spawn_with(|s| s.web_dir = Some(web)).await;
    let embedded = spawn_app().await;
    for app in [&from_dir, &embedded] {
        for path in [
            "/dashboard/../Cargo.toml",
            "/dashboard/%2e%2e/%2e%2e/Cargo.toml",
            "/dashboard/README.md",
            "/dashboard/nope.js",
            "/demo/.hidden",
        ] {
            let r = app.http.get(app.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 404, "{path}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "not_found", "{path}");
        }
        assert_eq!(app.http.get(app.url("/widget.js")).send().await.unwrap().status(), 200);
    }
    from_dir.shutdown().await;
    embedded.shutdown().await;
}

#[tokio::test]
async fn the_widget_learns_its_configuration_only_on_pages_its_site_key_allows() {
    let app = spawn_with(|s| {
        s.chat.widgets.push(Widget {
            site_key: "pk_clinic".into(),
            name: "Clinic".into(),
            allowed_origins: vec![SITE.into()],
            org: "o".into(),
        });
        s.chat.widgets.push(Widget {
            site_key: "pk_other".into(),
            name: "Other".into(),
            allowed_origins: vec!["https://other.example".into()],
            org: "o2".into(),
        });
    })
    .await;
    let get = |key: &str, origin: &str| app.http.get(app.url(&format!("/api/chat/widgets/{key}"))).header("origin", origin).send();
    let ok = get("pk_clinic", SITE).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], SITE);
    let body: serde_json::Value = ok.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"site_key": "pk_clinic", "name": "Clinic", "max_message_chars": 4000}));
    // Another widget's origin may not use this key; an origin of no widget is refused outright.
    let wrong = get("pk_clinic", "https://other.example").await.unwrap();
    assert_eq!(wrong.status(), 403);
    assert_eq!(wrong.json::<serde_json::Value>().await.unwrap()["error"]["code"], "origin_not_allowed");
    assert_eq!(get("pk_clinic", "https://evil.example").await.unwrap().status(), 403);
    let unknown = get("pk_nope", SITE).await.unwrap();
    assert_eq!(unknown.status(), 403);
    assert_eq!(unknown.json::<serde_json::Value>().await.unwrap()["error"]["code"], "unknown_site_key");
    app.shutdown().await;
}

/// Kills the child when the test ends, whatever happens.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn switchboard_demo_prints_a_working_dashboard_url_and_a_live_call_appears_within_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["demo", "--listen", "127.0.0.1:0", "--site-listen", "127.0.0.1:0", "--speed", "4", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.trim_start().starts_with("Demo page:");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    })
    .await
    .unwrap();
    let find = |label: &str| lines.iter().find_map(|l| l.trim().strip_prefix(label).map(|v| v.trim().to_string())).unwrap_or_default();
    let dashboard = find("Dashboard:");
    let site = find("Demo page:");
    let (hub, token) = dashboard.split_once("/dashboard/#token=").unwrap_or_else(|| panic!("{lines:?}"));
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut live = 0;
    while started.elapsed() < Duration::from_secs(10) && live == 0 {
        let r = http.get(format!("{hub}/api/calls?status=in-progress")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), 200, "the printed token works");
        live = r.json::<serde_json::Value>().await.unwrap()["calls"].as_array().map_or(0, Vec::len);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(live > 0, "a simulated call is live within ten seconds of the start");

    // The demo site is another origin whose page loads the widget from the hub, and its key
    // lets that origin chat; the mock model answers in the clinic's words.
    let page = http.get(&site).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("src=\"{hub}/widget.js\"")), "{page}");
    let origin = site.trim_end_matches('/');
    let session: serde_json::Value = http
        .post(format!("{hub}/api/chat/sessions"))
        .header("origin", origin)
        .json(&serde_json::json!({"site_key": "demo"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = session["session_id"].as_str().unwrap();
    let answer = http
        .post(format!("{hub}/api/chat/sessions/{id}/messages"))
        .header("origin", origin)
        .json(&serde_json::json!({"content": "When are you open?"}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(answer.contains("event: done") && answer.contains("Saturdays"), "{answer}");
    drop(child);
}
