//! Two routes for clients that already speak another shape:
//!
//! * `POST /api/ai/chat` — stateless, for the seed's `useAIChat` hook: `{"messages":[…]}` in,
//!   `data: {"content":"…"}` events then `data: [DONE]` out. Nothing is stored; the server's
//!   system prompt goes first and only `user`/`assistant` turns are accepted.
//! * `POST /v1/chat/completions` — an OpenAI-compatible pass-through for SDKs, behind a hub API
//!   token (sent as the SDK's API key): the body goes to the configured model endpoint with the
//!   hub's key, the answer (streamed or not) comes back in OpenAI's own format, so official SDKs
//!   parse it unchanged. Upstream error bodies are replaced by generic ones (they can carry org
//!   or project ids).
//!
//! Both drop the upstream request as soon as the client goes away: the stream is the response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures::Stream;
use serde_json::{Value, json};

use super::Visitor;
use super::budget::{SpendMeter, answer_chars, charge, estimate, prompt_chars};
use super::chunk::{parse_chunk, read_chunk};
use super::safety::Asker;
use super::upstream::{ChunkStream, UpstreamError};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::ApiError;

/// Largest body `/v1/chat/completions` takes: a whole conversation, unlike a widget message.
const PASSTHROUGH_BODY_LIMIT: usize = 1024 * 1024;

/// `/api/ai/chat`, behind the same origin guard as the other browser chat routes.
pub fn browser_router() -> Router<Arc<AppState>> {
    Router::new().route("/api/ai/chat", post(ai_chat).options(super::routes::preflight))
}

/// `/v1/chat/completions`, for servers with a hub token (no CORS: not for pages).
pub fn sdk_router() -> Router<Arc<AppState>> {
    Router::new().route("/v1/chat/completions", post(completions))
}

async fn ai_chat(State(app): State<Arc<AppState>>, visitor: Visitor, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    app.chat.known_spent()?;
    app.chat.limit(visitor.ip.as_deref(), None)?;
    app.chat.within_daily_spend().await?;
    let s = &app.chat.settings;
    let v = crate::http::read_json(&headers, body, s.body_limit, app.settings.body_read_timeout).await?;
    let turns = read_turns(v, s.max_message_chars, s.history_messages + 1)?;
    let mut messages = Vec::with_capacity(turns.len() + 1);
    if !s.system_prompt.trim().is_empty() {
        messages.push(json!({"role": "system", "content": s.system_prompt}));
    }
    messages.extend(turns);
    let mut meter = SpendMeter::new(app.chat.clone(), prompt_chars(&messages));
    let mut request = json!({
        "model": s.model,
        "messages": messages,
        "stream": true,
        // Not for the page (the hook never sees it): counted toward the daily spend.
        "stream_options": {"include_usage": true},
        "max_completion_tokens": s.max_completion_tokens,
    });
    // Stateless: the client's address is all there is to name it by.
    app.chat.name_asker(&mut request, Asker::Client(visitor.ip.as_deref().unwrap_or("unknown")));
    let stream = match tokio::time::timeout(s.first_token_timeout, app.chat.upstream.open(&request)).await {
        Err(_) => return Ok(sse(error_then_done(UpstreamError::TIMEOUT))),
        Ok(Err(e)) => return Ok(sse(error_then_done(e))),
        Ok(Ok(stream)) => stream,
    };
    meter.opened();
    Ok(sse(content_events(app.clone(), stream, meter)))
}

/// `user`/`assistant` turns with string content; anything else is the server's to decide.
fn read_turns(v: Value, max_chars: usize, max_turns: usize) -> Result<Vec<Value>, ApiError> {
    let bad = |m: &str| ApiError::invalid("invalid_messages", m.to_string());
    let Value::Object(mut obj) = v else { return Err(bad("The body must be {\"messages\": [{\"role\", \"content\"}, …]}.")) };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "messages") {
        let k: String = k.chars().take(40).collect();
        return Err(ApiError::invalid("unknown_field", format!("{k} is not accepted; send only {{\"messages\": […]}}.")));
    }
    let Some(Value::Array(list)) = obj.remove("messages") else { return Err(bad("messages must be an array.")) };
    if list.is_empty() || list.len() > max_turns {
        return Err(bad(&format!("messages must hold 1 to {max_turns} turns.")));
    }
    let mut out = Vec::with_capacity(list.len());
    for m in list {
        let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
        let Some(content) = m.get("content").and_then(Value::as_str) else { return Err(bad("every message needs a string content.")) };
        if !matches!(role, "user" | "assistant") {
            return Err(bad("role must be user or assistant (the hub sets the system prompt)."));
        }
        if content.chars().count() > max_chars {
            return Err(ApiError::invalid("message_too_long", format!("a message is longer than {max_chars} characters.")));
        }
        out.push(json!({"role": role, "content": content}));
    }
    if out.last().and_then(|m| m["role"].as_str()) != Some("user") {
        return Err(bad("the last message must be the user's."));
    }
    Ok(out)
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Result<SseEvent, Infallible>> + Send + 'static,
{
    let mut resp = Sse::new(stream).keep_alive(KeepAlive::default().text("keep-alive")).into_response();
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut().insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    resp
}

fn data(v: Value) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data(v.to_string()))
}

fn done() -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().data("[DONE]"))
}

fn error_then_done(e: UpstreamError) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::iter([error_data(&e), done()])
}

enum Relay {
    Live {
        app: Arc<AppState>,
        /// Boxed: the reader's buffers would make every state as large as this one.
        stream: Box<ChunkStream>,
        started: bool,
        /// Dropped with this state: an answer the client left early is still charged.
        meter: SpendMeter,
    },
    /// An error was sent; `[DONE]` still follows, as the hook expects.
    Closing,
    Over,
}

fn error_data(e: &UpstreamError) -> Result<SseEvent, Infallible> {
    data(json!({"error": {"code": e.code, "message": e.message}}))
}

/// The model's text as `{"content"}` events, an `{"error"}` one if it fails, then `[DONE]`.
fn content_events(app: Arc<AppState>, stream: ChunkStream, meter: SpendMeter) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(Relay::Live { app, stream: Box::new(stream), started: false, meter }, |state| async move {
        let (app, mut stream, started, mut meter) = match state {
            Relay::Live { app, stream, started, meter } => (app, stream, started, meter),
            Relay::Closing => return Some((done(), Relay::Over)),
            Relay::Over => return None,
        };
        let s = &app.chat.settings;
        let wait = if started { s.idle_timeout } else { s.first_token_timeout };
        loop {
            let chunk = match tokio::time::timeout(wait, stream.next()).await {
                Err(_) => return Some((error_data(&UpstreamError::TIMEOUT), Relay::Closing)),
                Ok(None) => return Some((done(), Relay::Over)),
                Ok(Some(Err(e))) => return Some((error_data(&e), Relay::Closing)),
                Ok(Some(Ok(chunk))) => chunk,
            };
            let c = match parse_chunk(&chunk) {
                Ok(c) => c,
                Err(_) => return Some((error_data(&UpstreamError::PROTOCOL), Relay::Closing)),
            };
            if c.error {
                return Some((error_data(&UpstreamError::FAILED), Relay::Closing));
            }
            meter.saw(&c);
            if let Some(text) = c.content {
                return Some((data(json!({"content": text})), Relay::Live { app, stream, started: true, meter }));
            }
        }
    })
}

async fn completions(State(app): State<Arc<AppState>>, who: Principal, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    app.chat.known_spent()?;
    app.chat.limit_token(&who.token_id)?;
    app.chat.within_daily_spend().await?;
    let mut v = crate::http::read_json(&headers, body, PASSTHROUGH_BODY_LIMIT, app.settings.body_read_timeout).await?;
    let Some(obj) = v.as_object_mut() else {
        return Err(openai_error(StatusCode::BAD_REQUEST, "The body must be a JSON object.", "invalid_request_error"));
    };
    if !obj.get("messages").is_some_and(Value::is_array) {
        return Err(openai_error(StatusCode::BAD_REQUEST, "messages is required.", "invalid_request_error"));
    }
    // OpenAI's own limit; refused here rather than replaced, so the caller learns of it.
    if obj.get("safety_identifier").is_some_and(|v| !v.as_str().is_some_and(|s| !s.is_empty() && s.len() <= 64)) {
        return Err(openai_error(
            StatusCode::BAD_REQUEST,
            "safety_identifier must be a string of 1 to 64 characters.",
            "invalid_request_error",
        ));
    }
    let settings = &app.chat.settings;
    super::allowance::bound(obj, &settings.model, &settings.passthrough).map_err(refused)?;
    let streamed = obj.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = obj.get("model").and_then(Value::as_str).unwrap_or_default().to_string();
    let prompt = obj.get("messages").and_then(Value::as_array).map_or(0, |m| prompt_chars(m));
    app.chat.name_asker(&mut v, Asker::Token(&who.token_id));
    tracing::info!(caller = %who.name, model, streamed, "chat completion pass-through");
    if !streamed {
        let answer = tokio::time::timeout(settings.first_token_timeout + settings.idle_timeout, app.chat.upstream.complete(v))
            .await
            .map_err(|_| upstream_error(UpstreamError::TIMEOUT))?
            .map_err(upstream_error)?;
        let tokens = match read_chunk(&answer).usage {
            Some(u) => charge(&u),
            None => estimate(prompt, answer_chars(&answer).max(1)),
        };
        app.chat.count_spend(tokens);
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "pass-through answered");
        return Ok(Json(answer).into_response());
    }
    let stream = tokio::time::timeout(settings.first_token_timeout, app.chat.upstream.open(&v))
        .await
        .map_err(|_| upstream_error(UpstreamError::TIMEOUT))?
        .map_err(upstream_error)?;
    let idle = settings.idle_timeout.max(settings.first_token_timeout);
    let mut meter = SpendMeter::new(app.chat.clone(), prompt);
    meter.opened();
    let relayed = futures::stream::unfold(Some((stream, meter)), move |state| async move {
        let (mut stream, mut meter) = state?;
        match tokio::time::timeout(idle, stream.next()).await {
            Ok(Some(Ok(chunk))) => {
                // Relayed as the model wrote it; an upstream error object is passed on in
                // OpenAI's shape, with a generic text, and so is a chunk that is not JSON.
                let fault = match parse_chunk(&chunk) {
                    Ok(c) if !c.error => {
                        meter.saw(&c);
                        None
                    }
                    Ok(_) => Some(UpstreamError::FAILED),
                    Err(_) => Some(UpstreamError::PROTOCOL),
                };
                let e = match (fault, std::str::from_utf8(&chunk)) {
                    (None, Ok(text)) => return Some((Ok(SseEvent::default().data(text)), Some((stream, meter)))),
                    (Some(e), _) => e,
                    (None, Err(_)) => UpstreamError::PROTOCOL,
                };
                Some((data(json!({"error": {"message": e.message, "type": "server_error", "code": e.code}})), None))
            }
            Ok(None) => Some((done(), None)),
            Ok(Some(Err(e))) => Some((data(json!({"error": {"message": e.message, "type": "server_error", "code": e.code}})), None)),
            Err(_) => {
                let e = UpstreamError::TIMEOUT;
                Some((data(json!({"error": {"message": e.message, "type": "server_error", "code": e.code}})), None))
            }
        }
    });
    Ok(sse(relayed))
}

/// OpenAI's error shape, so an SDK raises its usual exception.
fn openai_error(status: StatusCode, message: &str, kind: &str) -> ApiError {
    ApiError::Passthrough { status, body: json!({"error": {"message": message, "type": kind, "param": null, "code": null}}) }
}

fn refused(r: super::allowance::Refusal) -> ApiError {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    ApiError::Passthrough {
        status,
        body: json!({"error": {"message": r.message, "type": "invalid_request_error", "param": r.param, "code": r.code}}),
    }
}

fn upstream_error(e: UpstreamError) -> ApiError {
    let status = match e.code {
        "upstream_rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
        "upstream_rejected" => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    ApiError::Passthrough {
        status,
        body: json!({"error": {"message": e.message, "type": "upstream_error", "param": null, "code": e.code}}),
    }
}
