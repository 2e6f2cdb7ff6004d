//! Live call control: `POST /api/calls/{id}/control` with `{"action": {…}}`. A supervisor's
//! action (say, whisper, mute/unmute the assistant, transfer, end the call) is forwarded to the
//! call's VAPI control URL, audited, and published as `control.sent`.
//!
//! `action` parses and maps the action, `target` decides whether a control URL may be called,
//! `forward` calls it, `service` ties them together for this route and the WebSocket.

mod action;
mod forward;
mod service;
pub(crate) mod target;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

pub use action::{Action, MAX_CONTENT_CHARS};
pub use service::{ControlResult, execute};

use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::iso;
use crate::http::ApiError;
use crate::store::ControlActionRow;

/// Largest request body: an action is small even at the content limit (4 bytes a character).
const BODY_LIMIT: usize = 16 * 1024;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/calls/{id}/control", post(control))
}

async fn control(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let action = read_action(&app, &headers, body).await?;
    let done = execute(&app, &who, &id, action).await?;
    Ok(Json(done.to_json()))
}

/// The `action` of a `{"action": {…}}` JSON body: 415 for another content type, 413 past the
/// limit, 408 when it dribbles, 400 for broken JSON, 422 for any other shape.
async fn read_action(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let body = crate::http::read_json(headers, body, BODY_LIMIT, app.settings.body_read_timeout).await?;
    let Value::Object(mut obj) = body else {
        return Err(ApiError::invalid("invalid_action", "The body must be {\"action\": {\"type\": \"…\", …}}."));
    };
    if let Some(k) = obj.keys().find(|k| k.as_str() != "action") {
        let k: String = k.chars().take(40).collect();
        return Err(ApiError::invalid("invalid_action", format!("{k} is not a field of the body; send {{\"action\": {{…}}}}")));
    }
    obj.remove("action").ok_or_else(|| ApiError::invalid("invalid_action", "action is required"))
}

/// One audit row as the calls API shows it.
pub fn audit_view(r: &ControlActionRow) -> Value {
    let parsed = |s: &str| serde_json::from_str::<Value>(s).unwrap_or_else(|_| Value::String(s.to_string()));
    json!({
        "id": r.id,
        "actor": r.actor,
        "token_id": r.token_id,
        "type": r.action_type,
        "action": parsed(&r.action),
        "upstream_body": parsed(&r.vapi_body),
        "outcome": r.outcome,
        "upstream_status": r.upstream_status,
        "error": r.error,
        "requested_at": iso(r.requested_at),
        "finished_at": r.finished_at.map(iso),
        "latency_ms": r.latency_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
    })
}
