//! The running mock: `MockLlm` (start, observe, shut down) and the route that answers
//! `POST /v1/chat/completions`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::MockConfig;
use super::answer::{Reply, short_id};
use super::directives::{self, FailFirst};
use super::request::ChatRequest;
use super::script::{self, Fault, FaultKind, Pacing};
use super::stream::{self, OpenStream, Step};
use super::wire::{Envelope, Usage, error_response};

/// Request bodies kept for `requests()`: enough for any test, bounded for a long benchmark.
const KEPT_REQUESTS: usize = 1000;

/// A mock model serving in a background task. Dropping it stops the server too;
/// `shutdown` also waits until it has stopped.
pub struct MockLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<JoinHandle<()>>,
}

struct Shared {
    cfg: MockConfig,
    open: Arc<AtomicUsize>,
    count: AtomicU64,
    requests: Mutex<VecDeque<Value>>,
    /// Requests seen per `fail_first` value.
    fail_counts: Mutex<HashMap<String, u64>>,
    stop: CancellationToken,
}

/// Connections the kernel queues for the mock (capped by `somaxconn`).
const MOCK_BACKLOG: u32 = 4096;

impl MockLlm {
    /// Binds `cfg.listen` (port 0 picks a free port) and serves until `shutdown` or drop.
    pub async fn start(cfg: MockConfig) -> std::io::Result<MockLlm> {
        // A real model's endpoint takes thousands of connections at once; so does the mock.
        let listener = crate::http::listen(cfg.listen, MOCK_BACKLOG)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            cfg,
            open: Arc::new(AtomicUsize::new(0)),
            count: AtomicU64::new(0),
            requests: Mutex::new(VecDeque::new()),
            fail_counts: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(complete))
            .fallback(unknown_route)
            .method_not_allowed_fallback(unknown_route)
            .with_state(shared.clone());
        let opts = crate::http::ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(120),
            // Streams abort on shutdown, so connections close at once; this only bounds a
            // client that never reads.
            shutdown_timeout: Duration::from_secs(2),
            max_connections: 10_000,
        };
        let server = tokio::spawn(crate::http::serve(listener, router, shared.stop.clone(), opts));
        Ok(MockLlm { addr, shared, server: Some(server) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/v1`: what an OpenAI client takes as its base URL. A wildcard
    /// listen address is reached over loopback.
    pub fn base_url(&self) -> String {
        let ip = match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        format!("http://{}/v1", SocketAddr::new(ip, self.addr.port()))
    }

    /// Response bodies being written now: falls as soon as a client disconnects, so a test
    /// can prove its client let go of the upstream.
    pub fn open_streams(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Every request body received, oldest first (the last 1,000). A body that is not JSON
    /// is kept as a JSON string.
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    /// Requests received on the completions route, including refused ones.
    pub fn request_count(&self) -> u64 {
        self.shared.count.load(Ordering::SeqCst)
    }

    /// Stops accepting, ends open streams, and waits for the server task.
    pub async fn shutdown(mut self) {
        self.shared.stop.cancel();
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for MockLlm {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

/// A poisoned lock only means a test panicked mid-push; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn record(&self, body: &Bytes) -> Result<Value, serde_json::Error> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let parsed = serde_json::from_slice::<Value>(body);
        let kept = match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
        };
        let mut requests = lock(&self.requests);
        if requests.len() == KEPT_REQUESTS {
            requests.pop_front();
        }
        requests.push_back(kept);
        parsed
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(key) = &self.cfg.api_key else { return true };
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        given == Some(key.as_str())
    }

    /// Counts this request against its `fail_first` value; true while it should still fail.
    fn should_fail(&self, ff: &FailFirst) -> bool {
        let mut counts = lock(&self.fail_counts);
        let seen = counts.entry(ff.key.clone()).or_insert(0);
        *seen += 1;
        *seen <= ff.n
    }

    fn body(&self, steps: Vec<Step>) -> axum::body::Body {
        stream::body(steps, OpenStream::new(self.open.clone()), self.stop.clone())
    }
}

async fn complete(State(mock): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let parsed = mock.record(&body);
    if !mock.authorized(&headers) {
        let message = if headers.contains_key(header::AUTHORIZATION) {
            "Incorrect API key provided."
        } else {
            "You didn't provide an API key. Send it as Authorization: Bearer YOUR_KEY."
        };
        return error_response(StatusCode::UNAUTHORIZED, Some(message));
    }
    let Ok(value) = parsed else {
        return error_response(StatusCode::BAD_REQUEST, Some("We could not parse the JSON body of your request."));
    };
    let req: ChatRequest = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, Some(&format!("Invalid request body: {e}."))),
    };
    let user = req.last_user_text();
    let mut d = match directives::parse(&user) {
        Ok(d) => d,
        Err(message) => return error_response(StatusCode::BAD_REQUEST, Some(&message)),
    };
    if d.fail_first.as_ref().is_some_and(|ff| mock.should_fail(ff)) {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, None);
    }
    if let Some(status) = d.status {
        return error_response(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), None);
    }
    if d.drop_first.as_ref().is_some_and(|df| mock.should_fail(df)) {
        d.drop_after = Some(0);
    }

    let cfg = &mock.cfg;
    // An echoed or written answer streams word by word, like a real model's tokens.
    let text = if d.echo { Some(directives::without(&user)) } else { cfg.answers.map(|f| f(&directives::without(&user))) };
    let words = text.as_deref().map(|t| t.split_whitespace().count().max(1));
    let pacing = Pacing {
        ttft: d.ttft.unwrap_or(cfg.ttft),
        delay: d.delay.unwrap_or(cfg.chunk_delay),
        chunks: d.chunks.or(words).unwrap_or(cfg.chunks).clamp(1, directives::MAX_CHUNKS as usize),
    };
    let reply = Reply::for_request(&req, &d.tools, pacing.chunks, text);
    let usage = Usage { prompt: req.prompt_tokens(), completion: reply.tokens() };
    let env = Envelope::new(
        format!("chatcmpl-{}", short_id()),
        crate::clock::now_ms() / 1000,
        req.model.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| cfg.model.clone()),
        req.include_usage() && !d.no_usage,
    );
    let fault = Fault::from_directives(&d);

    if req.streams() {
        let steps = script::streamed(&env, &reply, usage, d.running_usage, pacing, fault);
        let headers = [(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")];
        return (headers, mock.body(steps)).into_response();
    }
    // Not streamed: the whole answer after the time streaming it would have taken.
    tokio::select! {
        _ = tokio::time::sleep(pacing.total()) => {}
        _ = mock.stop.cancelled() => return error_response(StatusCode::SERVICE_UNAVAILABLE, None),
    }
    match fault {
        None => Json(env.completion(&reply, usage)).into_response(),
        Some(f) if f.kind == FaultKind::Error => error_response(StatusCode::INTERNAL_SERVER_ERROR, None),
        // Drop and stall: the headers go out, then the body is cut or never comes.
        Some(f) => ([(header::CONTENT_TYPE, "application/json")], mock.body(f.steps())).into_response(),
    }
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let message = format!("Invalid URL ({method} {}).", uri.path());
    error_response(StatusCode::NOT_FOUND, Some(&message))
}
