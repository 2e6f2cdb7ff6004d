//! The chat routes. Handlers only translate: JSON in, the service's answer out, a follower of a
//! run turned into the contract's Server-Sent Events.
//!
//! A session id is a bearer capability (random, 122 bits): whoever holds it may read the
//! session, send to it and stop it, as a widget keeps it in `localStorage`. A supervisor token,
//! when presented, must also be allowed the session's org.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::events::error_frame;
use super::sse_body::KeepAlive;
use super::{ChatError, Followed, Follower, Visitor};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::iso;
use crate::http::ApiError;
use crate::store::{ChatMessageRow, ChatSessionRow};

/// How often a follower that heard nothing checks that its run is still alive somewhere.
const WATCHDOG: Duration = Duration::from_secs(15);
/// At shutdown, how long a stream waits for its next event before it ends.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

pub fn router(app: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/chat/widgets/{site_key}", get(widget_config).options(preflight))
        .route("/api/chat/sessions", post(create_session).options(preflight))
        .route("/api/chat/sessions/{id}", get(get_session).options(preflight))
        .route("/api/chat/sessions/{id}/messages", post(send_message).options(preflight))
        .route("/api/chat/sessions/{id}/stream", get(resume).options(preflight))
        .route("/api/chat/sessions/{id}/stop", post(stop).options(preflight))
        .merge(super::compat::browser_router())
        .layer(middleware::from_fn_with_state(app, super::guard::cors))
        .merge(super::compat::sdk_router())
}

/// CORS preflights are answered by the origin guard; one without an `Origin` gets here.
pub(super) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::NotFound => ApiError::NotFound,
            ChatError::Invalid { code, message } => ApiError::Invalid { code, message },
            ChatError::Busy { run_id } => ApiError::Conflict {
                code: "run_active",
                message: format!("An answer is still being generated (run {run_id}); follow it with GET …/stream or stop it first."),
            },
            ChatError::Full => {
                ApiError::Invalid { code: "session_full", message: "This session holds its maximum of messages; start a new one.".into() }
            }
            ChatError::NoActiveRun => ApiError::Conflict { code: "no_active_run", message: "No answer is being generated.".into() },
            ChatError::RateLimited(wait) => ApiError::RateLimited(super::limits::retry_after_secs(wait)),
            ChatError::OverBudget { scope: "all", renews } => ApiError::SpendLimit { retry_after: super::limits::retry_after_secs(renews) },
            ChatError::OverBudget { scope, renews } => {
                ApiError::BudgetExhausted { scope, retry_after: super::limits::retry_after_secs(renews) }
            }
            ChatError::TooManyStreams => ApiError::TooManyStreams,
            ChatError::ShuttingDown => ApiError::Unavailable("chat service (shutting down)"),
            ChatError::Store(e) => e.into(),
        }
    }
}

/// `GET /api/chat/widgets/{site_key}`: what the widget script asks before it shows itself, so
/// it appears only on pages its site key allows (`403 origin_not_allowed` elsewhere). Public:
/// a site key is not a secret.
async fn widget_config(State(app): State<Arc<AppState>>, visitor: Visitor, Path(key): Path<String>) -> Result<Json<Value>, ApiError> {
    let settings = &app.chat.settings;
    let w = super::guard::widget(settings, &key).ok_or(ApiError::UnknownSiteKey)?;
    if !visitor.page.may_use(settings, Some(&w.site_key)) {
        return Err(ApiError::OriginNotAllowed);
    }
    Ok(Json(json!({"site_key": w.site_key, "name": w.name, "max_message_chars": settings.max_message_chars})))
}

/// `POST /api/chat/sessions` with no body, `{}` or `{"site_key": "…"}` (or the key in
/// `x-switchboard-site-key`): a widget's key names the org and the origins that may use it.
async fn create_session(State(app): State<Arc<AppState>>, visitor: Visitor, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let who = optional_principal(&app, &headers).await?;
    app.chat.limit(visitor.ip.as_deref(), None)?;
    let mut site_key = headers.get("x-switchboard-site-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    let has_body = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        let v = crate::http::read_json(&headers, body, app.chat.settings.body_limit, app.settings.body_read_timeout).await?;
        let Value::Object(mut o) = v else { return Err(ApiError::invalid("invalid_body", "The body must be a JSON object.")) };
        if let Some(k) = o.keys().find(|k| k.as_str() != "site_key") {
            return Err(unknown_field(k, "{\"site_key\": \"…\"}"));
        }
        match o.remove("site_key") {
            Some(Value::String(k)) => site_key = Some(k),
            Some(Value::Null) | None => {}
            Some(_) => return Err(ApiError::invalid("invalid_site_key", "site_key must be a string.")),
        }
    }
    let settings = &app.chat.settings;
    let org = match site_key.as_deref() {
        Some(key) => {
            let w = super::guard::widget(settings, key).ok_or(ApiError::UnknownSiteKey)?;
            if !visitor.page.may_use(settings, Some(&w.site_key)) {
                return Err(ApiError::OriginNotAllowed);
            }
            w.org.clone()
        }
        None => settings.org.clone(),
    };
    // Only a configured key gets here: made-up keys cannot grow the buckets' table.
    app.chat.limit_site(site_key.as_deref())?;
    let s = app.chat.create_session(&org, site_key).await?;
    if let Some(p) = &who {
        tracing::debug!(session_id = %s.id, by = %p.name, "chat session created by a token holder");
    }
    let body = json!({"session_id": s.id, "created_at": iso(s.created_at)});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn get_session(
    State(app): State<Arc<AppState>>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let who = optional_principal(&app, &headers).await?;
    let s = open_session(&app, &visitor, who.as_ref(), &id).await?;
    let messages = app.store.chat_messages(&s.id).await?;
    Ok(Json(session_view(&s, &messages, who.is_some())))
}

async fn send_message(
    State(app): State<Arc<AppState>>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The address's bucket first: a flood is turned away before its bodies are read.
    app.chat.limit(visitor.ip.as_deref(), None)?;
    let who = optional_principal(&app, &headers).await?;
    let v = crate::http::read_json(&headers, body, app.chat.settings.body_limit, app.settings.body_read_timeout).await?;
    let content = read_content(v)?;
    // The session's history is read while the session itself is read and checked; a caller
    // that may not use the session never sees it.
    let (s, state) = tokio::join!(open_session(&app, &visitor, who.as_ref(), &id), app.chat.state(&id));
    let (s, state) = (s?, state?);
    app.chat.check_budget(&state)?;
    app.chat.limit(None, Some(&s.id))?;
    app.chat.limit_site(s.site_key.as_deref())?;
    let follower = app.chat.send(&s, &content, state).await?;
    Ok(sse(&app, follower, true))
}

async fn resume(
    State(app): State<Arc<AppState>>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (s, _) = limited_session(&app, &visitor, &headers, &id).await?;
    let last = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    match app.chat.resume(&s.id, last).await? {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some((follower, complete)) => Ok(sse(&app, follower, complete)),
    }
}

async fn stop(
    State(app): State<Arc<AppState>>,
    visitor: Visitor,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (s, who) = limited_session(&app, &visitor, &headers, &id).await?;
    let actor = who.as_ref().map(|p| p.name.clone()).unwrap_or_else(|| "visitor".into());
    let stopped = app.chat.stop(&s, &actor).await?;
    let code = if stopped.status == "running" { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((code, Json(json!({"run_id": stopped.run_id, "status": stopped.status}))).into_response())
}

/// The address's bucket, the caller's token if any, then the session they may use.
async fn limited_session(
    app: &AppState,
    visitor: &Visitor,
    headers: &HeaderMap,
    id: &str,
) -> Result<(ChatSessionRow, Option<Principal>), ApiError> {
    app.chat.limit(visitor.ip.as_deref(), None)?;
    let who = optional_principal(app, headers).await?;
    let s = open_session(app, visitor, who.as_ref(), id).await?;
    Ok((s, who))
}

/// The session, if this caller may use it: a token must be allowed its org, a page must be one
/// of its widget's origins (or the hub's own).
async fn open_session(app: &AppState, visitor: &Visitor, who: Option<&Principal>, id: &str) -> Result<ChatSessionRow, ApiError> {
    let s = app.chat.session(id).await?;
    if let Some(p) = who
        && !p.scope.allows(&s.org_id)
    {
        return Err(ApiError::NotFound);
    }
    if !visitor.page.may_use(&app.chat.settings, s.site_key.as_deref()) {
        return Err(ApiError::OriginNotAllowed);
    }
    Ok(s)
}

/// `{"content": "…"}` and nothing else: the server owns roles, prompt, model and tools.
fn read_content(v: Value) -> Result<String, ApiError> {
    let Value::Object(mut obj) = v else { return Err(ApiError::invalid("invalid_body", "The body must be {\"content\": \"…\"}.")) };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "content") {
        return Err(unknown_field(k, "{\"content\": \"…\"} (the hub sets roles, model and tools)"));
    }
    match obj.remove("content") {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::invalid("invalid_content", "content must be a string.")),
        None => Err(ApiError::invalid("invalid_content", "content is required.")),
    }
}

fn unknown_field(k: &str, expected: &str) -> ApiError {
    let k: String = k.chars().take(40).collect();
    ApiError::invalid("unknown_field", format!("{k} is not accepted; send only {expected}."))
}

/// A token is optional on chat routes; one that is sent must be valid.
async fn optional_principal(app: &AppState, headers: &HeaderMap) -> Result<Option<Principal>, ApiError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let token = v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")).ok_or(ApiError::Unauthenticated)?;
    crate::auth::authenticate(&app.store, token.trim()).await?.map(Some).ok_or(ApiError::Unauthenticated)
}

pub fn session_view(s: &ChatSessionRow, messages: &[ChatMessageRow], with_org: bool) -> Value {
    let mut v = json!({
        "session_id": s.id,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
        "message_count": s.message_count,
        "active_run_id": s.active_run_id,
        "messages": messages.iter().map(message_view).collect::<Vec<_>>(),
    });
    if with_org {
        v["org_id"] = Value::from(s.org_id.clone());
    }
    v
}

fn message_view(m: &ChatMessageRow) -> Value {
    json!({
        "id": m.id,
        "seq": m.seq,
        "role": m.role,
        "content": m.content,
        "status": m.status,
        "run_id": m.run_id,
        "finish_reason": m.finish_reason,
        "tool_calls": m.tool_calls.as_deref().and_then(|t| serde_json::from_str::<Value>(t).ok()),
        "tool_call_id": m.tool_call_id,
        "name": m.name,
        "created_at": iso(m.created_at),
    })
}

/// The contract's event stream: `id: <run>:<n>`, named events, keep-alive comments, never
/// buffered by a proxy. It ends after the run's `done` or `error`; a follower whose history is
/// gone gets `error` `resume_unavailable` (reload the session), one of a run whose instance
/// died gets `run_lost`. At shutdown this instance's runs end (as `failed`, `shutting_down`) and
/// their streams carry that last event; a stream of a run elsewhere that has nothing within
/// `SHUTDOWN_GRACE` gets `error` `shutting_down` and ends: resume it on another instance.
fn sse(app: &Arc<AppState>, follower: Follower, complete: bool) -> Response {
    let body = KeepAlive::new(Box::pin(events(app.clone(), follower, complete)), app.chat.settings.keepalive);
    let mut resp = Body::from_stream(body).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, no-transform"));
    resp
}

struct Cursor {
    app: Arc<AppState>,
    follower: Follower,
    run_id: String,
    complete: bool,
    over: bool,
    /// The watchdog (or, once shutting down, the grace period) counts from the last event. One
    /// timer for the whole stream, moved only when it fires early: not one per event.
    last_event: Instant,
    timer: Pin<Box<Sleep>>,
    /// Made once per stream: a fresh `cancelled()` at every event joined and left the waiter
    /// list every stream shares, under its lock, once per chunk.
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    shutting_down: bool,
}

const RESUME_UNAVAILABLE: &str = "Part of this answer can no longer be replayed; reload the session.";

fn events(app: Arc<AppState>, follower: Follower, complete: bool) -> impl Stream<Item = Bytes> + Send {
    let now = Instant::now();
    let run_id = follower.run_id().to_string();
    let timer = Box::pin(tokio::time::sleep_until(now + WATCHDOG));
    let shutdown = Box::pin(app.shutdown.clone().cancelled_owned());
    let cursor = Cursor { app, follower, run_id, complete, over: false, last_event: now, timer, shutdown, shutting_down: false };
    futures::stream::unfold(cursor, |mut c| async move {
        if c.over {
            return None;
        }
        if !c.complete {
            c.over = true;
            return Some((error_frame("resume_unavailable", RESUME_UNAVAILABLE), c));
        }
        loop {
            let next = {
                let next = c.follower.next();
                tokio::pin!(next);
                loop {
                    tokio::select! {
                        biased;
                        n = &mut next => break Some(n),
                        () = &mut c.shutdown, if !c.shutting_down => {
                            c.shutting_down = true;
                            c.last_event = Instant::now();
                            c.timer.as_mut().reset(c.last_event + SHUTDOWN_GRACE);
                        }
                        () = &mut c.timer => {
                            let due = c.last_event + if c.shutting_down { SHUTDOWN_GRACE } else { WATCHDOG };
                            if due <= Instant::now() {
                                break None;
                            }
                            c.timer.as_mut().reset(due);
                        }
                    }
                }
            };
            match next {
                Some(None) => return None,
                Some(Some(Followed::Lost)) => {
                    c.over = true;
                    return Some((error_frame("resume_unavailable", RESUME_UNAVAILABLE), c));
                }
                Some(Some(Followed::Event(ev))) => {
                    c.last_event = Instant::now();
                    if let Some(frame) = ev.to_sse() {
                        return Some((frame, c));
                    }
                }
                None if c.shutting_down => {
                    c.over = true;
                    return Some((error_frame("shutting_down", "This server is restarting; resume the answer."), c));
                }
                None => {
                    if !run_alive(&c.app, &c.run_id).await {
                        c.over = true;
                        return Some((error_frame("run_lost", "The answer stopped arriving; reload the session."), c));
                    }
                    c.last_event = Instant::now();
                    let due = c.last_event + WATCHDOG;
                    c.timer.as_mut().reset(due);
                }
            }
        }
    })
}

/// Still running with a valid lease (a store error counts as alive: don't cut a stream over it).
async fn run_alive(app: &AppState, run_id: &str) -> bool {
    match app.store.chat_run(run_id).await {
        Ok(Some(r)) => r.status == "running" && r.lease_until >= crate::clock::now_ms(),
        Ok(None) => false,
        Err(_) => true,
    }
}
