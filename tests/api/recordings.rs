//! Recording downloads: a report's recording is fetched from a local server (allowed by this
//! test's settings), checksummed, published and served with HTTP Range; internal targets are
//! refused after resolution, recorded with the reason, and never fetched.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use sha2::Digest;
use switchboard::config::{RecordingsSettings, Settings};
use switchboard::store::RecordingRow;

use crate::helpers::*;

/// A local file server that counts every request it gets.
struct FileServer {
    base: String,
    hits: Arc<AtomicUsize>,
}

fn audio() -> Vec<u8> {
    (0..200_000u32).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

impl FileServer {
    async fn start() -> FileServer {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = |hits: Arc<AtomicUsize>| {
            axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
                hits.fetch_add(1, Ordering::SeqCst);
                next.run(req)
            })
        };
        let app = axum::Router::new()
            .route("/audio.wav", get(|| async { ([(header::CONTENT_TYPE, "audio/wav")], audio()).into_response() }))
            .route(
                "/to-internal",
                get(|| async { (StatusCode::FOUND, [(header::LOCATION, "http://10.0.0.1/secret.wav")]).into_response() }),
            )
            .layer(counted(hits.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FileServer { base, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An end-of-call report carrying `recording` (the `artifact.recording` object).
pub(crate) fn report(call: &str, recording: Value) -> Value {
    message(
        call,
        ORG,
        json!({ "type": "end-of-call-report", "endedReason": "customer-ended-call", "artifact": { "recording": recording } }),
    )
}

/// The call's recordings once none is `pending` any more (at most 30 s: a multipart upload to
/// the S3 test server takes a while).
pub(crate) async fn settled(app: &TestApp, call: &str) -> Vec<RecordingRow> {
    for _ in 0..600 {
        let rows = app.state.store.recordings(call).await.unwrap();
        if !rows.is_empty() && rows.iter().all(|r| r.state != "pending") {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("recordings still pending: {:?}", app.state.store.recordings(call).await.unwrap());
}

fn local(s: &mut Settings, hosts: &[&str], loopback: bool) {
    s.recordings.allowed_hosts = hosts.iter().map(|h| h.to_string()).collect();
    s.recordings.allow_http = true;
    s.recordings.allow_loopback = loopback;
}

#[tokio::test]
async fn a_reported_recording_is_downloaded_checksummed_published_and_served_with_ranges() {
    let files = FileServer::start().await;
    let app = spawn_with(|s| local(s, &["127.0.0.1"], true)).await;
    let mut rx = app.subscribe(&format!("call:{CALL_ID}"));
    let url = format!("{}/audio.wav", files.base);
    let body = report(CALL_ID, json!({ "mono": { "combinedUrl": url } }));
    for _ in 0..2 {
        let (status, _) = app.post_vapi(&body).await;
        assert_eq!(status, 200);
    }

    let rows = settled(&app, CALL_ID).await;
    let body = audio();
    let r = &rows[0];
    assert_eq!((r.kind.as_str(), r.state.as_str(), r.reason.as_deref()), ("mono", "ready", None));
    assert_eq!(r.size_bytes, Some(body.len() as i64));
    assert_eq!(r.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&body)).as_str()));
    assert_eq!(r.content_type.as_deref(), Some("audio/wav"));
    let ready: Vec<_> =
        received(&mut rx, Duration::from_millis(500)).await.into_iter().filter(|p| p.event.kind == "recording.ready").collect();
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0].event.data["sha256"], json!(r.sha256));

    let token = app.token("supervisor", &[ORG]).await;
    let path = app.url(&format!("/api/calls/{CALL_ID}/recording?kind=mono"));
    let whole = app.http.get(&path).bearer_auth(&token).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-length"], body.len().to_string().as_str());
    assert_eq!(whole.bytes().await.unwrap().as_ref(), body.as_slice());

    let part = app.http.get(&path).bearer_auth(&token).header("range", "bytes=100-199").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 100-199/{}", body.len()).as_str());
    assert_eq!(part.bytes().await.unwrap().as_ref(), &body[100..200]);

    let tail = app.http.get(&path).bearer_auth(&token).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &body[body.len() - 10..]);

    let past = app.http.get(&path).bearer_auth(&token).header("range", format!("bytes={}-", body.len())).send().await.unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], format!("bytes */{}", body.len()).as_str());

    let other_org = app.token("supervisor", &["another-org"]).await;
    assert_eq!(app.http.get(&path).bearer_auth(&other_org).send().await.unwrap().status(), 404);
    let stereo = app.url(&format!("/api/calls/{CALL_ID}/recording?kind=stereo"));
    assert_eq!(app.http.get(&stereo).bearer_auth(&token).send().await.unwrap().status(), 404);
    assert_eq!(app.http.get(&path).send().await.unwrap().status(), 401);

    let (_, detail) = app.get_json(&format!("/api/calls/{CALL_ID}"), &token).await;
    assert_eq!(detail["recordings"][0]["state"], "ready");
    assert_eq!(detail["recordings"][0]["size_bytes"], json!(body.len()));
    assert_eq!(files.hits(), 1, "one download, however often the report came");
    app.shutdown().await;
}

#[tokio::test]
async fn internal_addresses_are_refused_after_resolution_recorded_and_never_fetched() {
    let files = FileServer::start().await;
    let port = files.base.rsplit(':').next().unwrap().to_string();
    // The hosts are on the allowlist and http is on, so only the address check stands between
    // the hub and these targets.
    let app = spawn_with(|s| local(s, &["127.0.0.1", "169.254.169.254", "10.0.0.1", "localhost"], false)).await;
    let recording = json!({
        "mono": { "combinedUrl": format!("http://127.0.0.1:{port}/audio.wav"),
                  "assistantUrl": "http://10.0.0.1/x.wav",
                  "customerUrl": format!("http://localhost:{port}/audio.wav") },
        "stereoUrl": "http://169.254.169.254/latest/meta-data/iam",
    });
    app.post_vapi(&report(CALL_ID, recording)).await;
    let rows = settled(&app, CALL_ID).await;
    let reason =
        |kind: &str| rows.iter().find(|r| r.kind == kind).map(|r| (r.state.clone(), r.reason.clone().unwrap_or_default())).unwrap();
    for (kind, range) in [("mono", "loopback"), ("assistant", "private"), ("customer", "loopback"), ("stereo", "link-local")] {
        let (state, why) = reason(kind);
        assert_eq!(state, "refused", "{kind}: {why}");
        assert!(why.contains(range), "{kind}: {why}");
    }
    assert_eq!(files.hits(), 0, "nothing was fetched");
    app.shutdown().await;
}

#[tokio::test]
async fn a_redirect_from_an_allowed_server_to_an_internal_address_is_refused() {
    let files = FileServer::start().await;
    let app = spawn_with(|s| local(s, &["127.0.0.1", "10.0.0.1"], true)).await;
    app.post_vapi(&report(CALL_ID, json!({ "mono": { "combinedUrl": format!("{}/to-internal", files.base) } }))).await;
    let rows = settled(&app, CALL_ID).await;
    assert_eq!(rows[0].state, "refused");
    let why = rows[0].reason.clone().unwrap_or_default();
    assert!(why.contains("redirect") || why.contains("private"), "{why}");
    assert!(why.contains("10.0.0.1"), "{why}");
    assert_eq!(files.hits(), 1, "only the redirecting URL was asked");
    app.shutdown().await;
}

#[tokio::test]
async fn with_default_settings_internal_urls_are_refused_by_scheme_or_host() {
    let files = FileServer::start().await;
    let app = spawn_with(|s| s.recordings.allowed_hosts = RecordingsSettings::defaults().allowed_hosts).await;
    let recording = json!({
        "mono": { "combinedUrl": format!("{}/audio.wav", files.base),
                  "assistantUrl": "https://10.0.0.1/x.wav",
                  "customerUrl": "https://localhost/x.wav" },
        "stereoUrl": "https://169.254.169.254/latest/meta-data",
    });
    app.post_vapi(&report(CALL_ID, recording)).await;
    let rows = settled(&app, CALL_ID).await;
    assert_eq!(rows.len(), 4);
    for r in &rows {
        assert_eq!(r.state, "refused", "{}: {:?}", r.kind, r.reason);
        assert!(r.reason.as_deref().is_some_and(|w| w.contains("scheme") || w.contains("allowed_hosts")), "{:?}", r.reason);
    }
    assert_eq!(files.hits(), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_file_over_the_size_cap_is_refused_and_leaves_nothing_behind() {
    let files = FileServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let rec_dir = dir.path().to_path_buf();
    let app = spawn_with(|s| {
        local(s, &["127.0.0.1"], true);
        s.recordings.max_bytes = 1000;
        s.recordings.dir = rec_dir;
    })
    .await;
    app.post_vapi(&report(CALL_ID, json!({ "mono": { "combinedUrl": format!("{}/audio.wav", files.base) } }))).await;
    let rows = settled(&app, CALL_ID).await;
    assert_eq!(rows[0].state, "refused");
    assert!(rows[0].reason.as_deref().unwrap_or_default().contains("max_bytes"), "{:?}", rows[0].reason);
    let leftovers: Vec<_> = walk(dir.path());
    assert!(leftovers.is_empty(), "{leftovers:?}");
    app.shutdown().await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[tokio::test]
async fn a_ready_recordings_delivery_carries_its_stored_checksum_and_is_made_once_for_a_repeated_report() {
    let files = FileServer::start().await;
    let app = spawn_with(|s| {
        local(s, &["127.0.0.1"], true);
        crate::webhooks::local(s);
    })
    .await;
    let admin = app.token("admin", &["*"]).await;
    // An endpoint nobody answers: only the queued deliveries matter here.
    let endpoint = json!({ "url": format!("{}/hooks", files.base), "events": ["recording.ready"] });
    crate::webhooks::create(&app, &admin, endpoint).await;
    let body = report(CALL_ID, json!({ "mono": { "combinedUrl": format!("{}/audio.wav", files.base) } }));
    for _ in 0..2 {
        assert_eq!(app.post_vapi(&body).await.0, 200);
    }
    let rows = settled(&app, CALL_ID).await;
    assert_eq!(rows[0].state, "ready");
    let filter = switchboard::store::JobFilter { status: None, kind: Some("webhook.deliver".into()), before: None, limit: 50 };
    let jobs = app.state.store.list_jobs(&filter).await.unwrap();
    let ready: Vec<Value> =
        jobs.iter().map(|j| serde_json::from_str::<Value>(&j.payload).unwrap()).filter(|p| p["type"] == "recording.ready").collect();
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert_eq!(ready[0]["body"]["data"]["sha256"], json!(rows[0].sha256));
    assert_eq!(ready[0]["body"]["data"]["call_id"], CALL_ID);
    app.shutdown().await;
}
