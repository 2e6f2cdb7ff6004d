//! Recordings in an S3-compatible bucket, against a real S3 server: moto's (`pip install
//! 'moto[server]'`), started by each test on a free loopback port and killed when it ends. A
//! reported recording is streamed into the bucket as a multipart upload (several parts here),
//! stored with its size, SHA-256 and content type, served with HTTP Range from the bucket and
//! removed by retention; one over the size cap leaves neither an object nor an unfinished
//! upload behind. Without moto these tests are skipped with a note, except under CI=true, where
//! they fail.

use std::process::Stdio;
use std::time::Duration;

use axum::body::Body;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{Value, json};
use sha2::Digest;
use switchboard::config::{S3Settings, Secret, Settings};

use crate::helpers::*;
use crate::recordings::{report, settled};

const BUCKET: &str = "switchboard-recordings";
const PREFIX: &str = "calls/audio";

/// moto's S3 server on a loopback port of its own; killed on drop.
struct Moto {
    endpoint: String,
    _child: tokio::process::Child,
}

impl Moto {
    /// The server with an empty bucket, or `None` (after printing why) when moto is not
    /// installed and this is not CI.
    #[allow(clippy::print_stderr)]
    async fn start() -> Option<Moto> {
        let importable = std::process::Command::new("python3")
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !importable {
            let why = "moto's S3 server is not installed (python3 -m moto.server); install it with: pip install 'moto[server]'";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}; CI=true requires the S3 recordings tests to run");
            }
            eprintln!("note: skipping an S3 recordings test: {why}");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = tokio::process::Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 starts");
        let moto = Moto { endpoint: format!("http://127.0.0.1:{port}"), _child: child };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for _ in 0..300 {
            if http.get(&moto.endpoint).send().await.is_ok_and(|r| r.status().is_success()) {
                // moto takes unsigned requests: a plain PUT creates the bucket.
                let made = http.put(moto.url("")).send().await.unwrap();
                assert!(made.status().is_success(), "creating the bucket: {}", made.status());
                return Some(moto);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto's S3 server did not answer on {} within 30 s", moto.endpoint);
    }

    /// `key` in the test bucket (the bucket itself for "").
    fn url(&self, key: &str) -> String {
        format!("{}/{BUCKET}/{key}", self.endpoint)
    }

    fn settings(&self) -> S3Settings {
        S3Settings {
            bucket: BUCKET.into(),
            prefix: PREFIX.into(),
            endpoint: Some(self.endpoint.clone()),
            region: None,
            allow_http: true,
            access_key_id: Some("testing".into()),
            secret_access_key: Some(Secret::new("testing")),
            session_token: None,
        }
    }

    /// What the bucket lists: its objects' keys and its unfinished multipart uploads' keys.
    async fn listing(&self) -> (Vec<String>, Vec<String>) {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let objects = http.get(format!("{}?list-type=2", self.url(""))).send().await.unwrap().text().await.unwrap();
        let uploads = http.get(format!("{}?uploads", self.url(""))).send().await.unwrap().text().await.unwrap();
        (keys(&objects), keys(&uploads))
    }
}

/// The `<Key>` elements of an S3 listing.
fn keys(xml: &str) -> Vec<String> {
    xml.split("<Key>").skip(1).filter_map(|s| s.split_once("</Key>")).map(|(k, _)| k.to_string()).collect()
}

/// Larger than two S3 parts (5 MiB each), so the upload really is multipart.
fn audio() -> Vec<u8> {
    (0..(11 * 1024 * 1024 + 12_345u32)).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// Serves `/audio.wav` with a Content-Length and `/stream.wav` chunked, without one (so the
/// size cap can only be found out while streaming).
async fn file_server() -> String {
    let app =
        axum::Router::new().route("/audio.wav", get(|| async { ([(header::CONTENT_TYPE, "audio/wav")], audio()).into_response() })).route(
            "/stream.wav",
            get(|| async {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = audio().chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
                ([(header::CONTENT_TYPE, "audio/wav")], Body::from_stream(futures::stream::iter(chunks))).into_response()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

fn in_bucket(s: &mut Settings, moto: &Moto) {
    s.recordings.s3 = Some(moto.settings());
    s.recordings.allowed_hosts = vec!["127.0.0.1".into()];
    s.recordings.allow_http = true;
    s.recordings.allow_loopback = true;
}

#[tokio::test]
async fn a_reported_recording_is_streamed_into_the_bucket_served_with_ranges_from_it_and_removed_by_retention() {
    let Some(moto) = Moto::start().await else { return };
    let files = file_server().await;
    let app = spawn_with(|s| {
        in_bucket(s, &moto);
        s.retention.recordings = Some(Duration::from_secs(1));
    })
    .await;
    let (status, _) = app.post_vapi(&report(CALL_ID, json!({ "mono": { "combinedUrl": format!("{files}/audio.wav") } }))).await;
    assert_eq!(status, 200);

    let rows = settled(&app, CALL_ID).await;
    let body = audio();
    let r = &rows[0];
    assert_eq!((r.state.as_str(), r.reason.as_deref()), ("ready", None));
    assert_eq!(r.size_bytes, Some(body.len() as i64));
    assert_eq!(r.sha256.as_deref(), Some(hex::encode(sha2::Sha256::digest(&body)).as_str()));
    assert_eq!(r.content_type.as_deref(), Some("audio/wav"));
    let rel = format!("{ORG}/{CALL_ID}/mono.wav");
    assert_eq!(r.path.as_deref(), Some(rel.as_str()), "the path relative to the bucket's prefix");

    let key = format!("{PREFIX}/{rel}");
    let (objects, uploads) = moto.listing().await;
    assert_eq!((objects, uploads), (vec![key.clone()], vec![]), "one object under the prefix, no unfinished upload");
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let object = http.get(moto.url(&key)).send().await.unwrap();
    assert_eq!(object.headers()["content-type"], "audio/wav", "the content type is stored with the object");
    assert!(object.bytes().await.unwrap().as_ref() == body.as_slice(), "the object holds the file");

    let token = app.token("supervisor", &[ORG]).await;
    let path = app.url(&format!("/api/calls/{CALL_ID}/recording?kind=mono"));
    let whole = app.http.get(&path).bearer_auth(&token).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-length"], body.len().to_string().as_str());
    assert!(whole.bytes().await.unwrap().as_ref() == body.as_slice());

    let part = app.http.get(&path).bearer_auth(&token).header("range", "bytes=5242870-5242889").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 5242870-5242889/{}", body.len()).as_str());
    assert_eq!(part.bytes().await.unwrap().as_ref(), &body[5_242_870..5_242_890], "a range across a part boundary");

    let tail = app.http.get(&path).bearer_auth(&token).header("range", "bytes=-10").send().await.unwrap();
    assert_eq!(tail.status(), 206);
    assert_eq!(tail.bytes().await.unwrap().as_ref(), &body[body.len() - 10..]);

    let past = app.http.get(&path).bearer_auth(&token).header("range", format!("bytes={}-", body.len())).send().await.unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(past.headers()["content-range"], format!("bytes */{}", body.len()).as_str());

    let several = app.http.get(&path).bearer_auth(&token).header("range", "bytes=0-1,5-9").send().await.unwrap();
    assert_eq!(several.status(), 200);
    assert_eq!(several.headers()["content-length"], body.len().to_string().as_str());

    let other_org = app.token("supervisor", &["another-org"]).await;
    assert_eq!(app.http.get(&path).bearer_auth(&other_org).send().await.unwrap().status(), 404);
    let stereo = app.url(&format!("/api/calls/{CALL_ID}/recording?kind=stereo"));
    assert_eq!(app.http.get(&stereo).bearer_auth(&token).send().await.unwrap().status(), 404);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let admin = app.token("admin", &["*"]).await;
    let summary: Value = app.http.post(app.url("/api/admin/retention/run")).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!((summary["recordings"].as_u64(), summary["recording_bytes"].as_u64()), (Some(1), Some(body.len() as u64)), "{summary}");
    assert_eq!(moto.listing().await, (vec![], vec![]), "retention removed the object");
    assert_eq!(app.http.get(&path).bearer_auth(&token).send().await.unwrap().status(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_recording_over_the_size_cap_leaves_no_object_and_no_unfinished_upload_in_the_bucket() {
    let Some(moto) = Moto::start().await else { return };
    let files = file_server().await;
    let app = spawn_with(|s| {
        in_bucket(s, &moto);
        s.recordings.max_bytes = 6 * 1024 * 1024;
    })
    .await;
    // Declared too large (refused before any upload) and found too large while streaming
    // (past the first 5 MiB part, so the upload has begun and must be aborted).
    let recording = json!({
        "mono": { "combinedUrl": format!("{files}/audio.wav"), "customerUrl": format!("{files}/stream.wav") },
    });
    app.post_vapi(&report(CALL_ID, recording)).await;
    let rows = settled(&app, CALL_ID).await;
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.state, "refused", "{}: {:?}", r.kind, r.reason);
        assert!(r.reason.as_deref().unwrap_or_default().contains("max_bytes"), "{:?}", r.reason);
    }
    let mut listing = moto.listing().await;
    for _ in 0..50 {
        if listing == (vec![], vec![]) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        listing = moto.listing().await;
    }
    assert_eq!(listing, (vec![], vec![]), "no object and no unfinished multipart upload");
    app.shutdown().await;
}
