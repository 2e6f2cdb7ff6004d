//! `spawn_app()`: the real server on port 0 with a fresh database (a SQLite file, or a fresh
//! Postgres schema when SWITCHBOARD_TEST_DATABASE_URL is set), plus a fake function endpoint.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::{Value, json};
use switchboard::app::{AppState, Application};
use switchboard::config::{FunctionHandler, FunctionSpec, Settings};
use switchboard::hub::Published;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vapi");
pub const CALL_ID: &str = "7b1c9a3e-2f4d-4c8b-9e61-0d5a8f3b2c17";
pub const ORG: &str = "c2a7e5d1-8b3f-4a9e-b6d2-5f1e0c9a7b34";

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(PathBuf::from(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap()
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: Arc<AppState>,
    pub stop: CancellationToken,
    pub server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// A test that fails before `shutdown` still frees its app: the job registry's handlers hold
/// services that hold the registry (a cycle), so it is broken here; the database pool then goes
/// with the last handle instead of keeping its connections open for the rest of the suite.
impl Drop for TestApp {
    fn drop(&mut self) {
        self.state.jobs.forget_kinds();
        self.stop.cancel();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

/// Starts the hub with default settings adjusted by `adjust`.
pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Settings::defaults();
    s.listen = "127.0.0.1:0".parse().unwrap();
    s.database_url = database_url(&dir).await;
    s.database_max_connections = 4;
    s.shutdown_timeout = Duration::from_secs(5);
    // Recordings land in the test's own folder, and the fixtures' storage.vapi.ai URLs are
    // refused by an empty allowlist: the suite never reaches the internet.
    s.recordings.dir = dir.path().join("recordings");
    s.recordings.allowed_hosts = Vec::new();
    if let Some(redis) = test_redis_url() {
        // The Redis variant: every app gets its own key and channel prefix.
        s.broker_url = redis;
        s.live.broker_prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    }
    adjust(&mut s);
    let app = Application::build(s).await.expect("the app builds");
    let base = format!("http://{}", app.local_addr());
    let state = app.state();
    let stop = CancellationToken::new();
    let signal = stop.clone();
    let server = tokio::spawn(async move { app.run_until(async move { signal.cancelled().await }).await });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    TestApp { base, http, state, stop, server, _dir: dir }
}

/// Set by `.ci/run`: the integration suite then runs on the Redis broker.
pub fn test_redis_url() -> Option<String> {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").ok().filter(|u| !u.is_empty())
}

/// A fresh SQLite file, or a fresh schema in the test Postgres database.
pub async fn database_url(dir: &tempfile::TempDir) -> String {
    match std::env::var("SWITCHBOARD_TEST_DATABASE_URL") {
        Ok(pg) if !pg.is_empty() => {
            let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
            let pool = sqlx::PgPool::connect(&pg).await.expect("the test Postgres is reachable");
            sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&pool).await.unwrap();
            pool.close().await;
            let sep = if pg.contains('?') { '&' } else { '?' };
            format!("{pg}{sep}options=-c%20search_path%3D{schema}")
        }
        _ => format!("sqlite://{}", dir.path().join("test.db").display()),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Posts raw bytes to the webhook as application/json.
    pub async fn post_raw(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.http.post(self.url("/vapi/webhook")).header("content-type", "application/json").body(body).send().await.unwrap()
    }

    pub async fn post_vapi(&self, body: &Value) -> (u16, Value) {
        let r = self.post_raw(body.to_string()).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_fixture(&self, name: &str) -> (u16, Value) {
        let r = self.post_raw(fixture_bytes(name)).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn token(&self, role: &str, orgs: &[&str]) -> String {
        let orgs: Vec<String> = orgs.iter().map(|s| s.to_string()).collect();
        switchboard::auth::create(&self.state.store, switchboard::auth::Role::parse(role).unwrap(), &orgs, Some("test")).await.unwrap()
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_text(&self, path: &str, token: &str) -> (u16, String, String) {
        let r = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        (status, ct, r.text().await.unwrap())
    }

    pub async fn raw_events(&self) -> i64 {
        self.state.store.count_raw_events(None).await.unwrap()
    }

    pub async fn call_count(&self) -> usize {
        self.state
            .store
            .list_calls(&switchboard::store::OrgScope::All, &switchboard::store::CallFilter { limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .len()
    }

    pub fn subscribe(&self, topic: &str) -> broadcast::Receiver<Arc<Published>> {
        self.state.broker.subscribe(topic)
    }

    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let server = std::mem::replace(&mut self.server, tokio::spawn(async {}));
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }
}

/// Drains what a subscriber has received within `wait`.
pub async fn received(rx: &mut broadcast::Receiver<Arc<Published>>, wait: Duration) -> Vec<Arc<Published>> {
    let mut out = Vec::new();
    while let Ok(Ok(p)) = tokio::time::timeout(wait, rx.recv()).await {
        out.push(p);
    }
    out
}

/// A function endpoint that answers per function name and counts its invocations.
pub struct FakeFunctions {
    pub base: String,
    pub hits: Arc<AtomicUsize>,
    pub signed: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct FakeState {
    answers: Arc<Value>,
    delay: Duration,
    hits: Arc<AtomicUsize>,
    signed: Arc<AtomicUsize>,
}

/// `answers` maps a function name to the JSON body its endpoint returns.
pub async fn fake_functions(answers: Value, delay: Duration) -> FakeFunctions {
    let hits = Arc::new(AtomicUsize::new(0));
    let signed = Arc::new(AtomicUsize::new(0));
    let state = FakeState { answers: Arc::new(answers), delay, hits: hits.clone(), signed: signed.clone() };
    let app = axum::Router::new().route("/fn/{name}", post(answer)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    FakeFunctions { base, hits, signed }
}

async fn answer(State(s): State<FakeState>, Path(name): Path<String>, headers: HeaderMap, Json(_body): Json<Value>) -> Json<Value> {
    s.hits.fetch_add(1, Ordering::SeqCst);
    if headers.get("x-switchboard-signature").is_some_and(|v| v.to_str().unwrap_or_default().starts_with("v1=")) {
        s.signed.fetch_add(1, Ordering::SeqCst);
    }
    tokio::time::sleep(s.delay).await;
    Json(s.answers.get(&name).cloned().unwrap_or(json!({ "error": "no such function" })))
}

impl FakeFunctions {
    /// An HTTP function declaration pointing at this endpoint.
    pub fn spec(&self, name: &str, timeout: Duration) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            description: String::new(),
            parameters: json!({ "type": "object" }),
            handler: FunctionHandler::Http {
                url: format!("{}/fn/{name}", self.base),
                secret: Some(switchboard::config::Secret::new("fn-secret")),
            },
            timeout,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A message envelope for one call, for tests that build their own variants.
pub fn message(call_id: &str, org: &str, fields: Value) -> Value {
    let mut m = json!({ "call": { "id": call_id, "orgId": org }, "timestamp": switchboard::clock::now_ms() });
    for (k, v) in fields.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({ "message": m })
}
