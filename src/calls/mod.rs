//! The calls API for supervisors: list, one call, its transcript as JSON, text or WebVTT.
//! Every answer is scoped to the token's orgs; another org's call is a plain 404.

mod transcript;
pub mod view;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::ApiError;
use crate::store::{CallFilter, CallRow};

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/calls", get(list)).route("/api/calls/{id}", get(one)).route("/api/calls/{id}/transcript", get(transcript_of))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    assistant_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
    q: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<Arc<AppState>>,
    who: Principal,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = crate::http::page_limit(q.limit)?;
    let time = |name: &'static str, v: &Option<String>| -> Result<Option<i64>, ApiError> {
        v.as_deref()
            .map(|s| {
                crate::clock::parse_iso(s).ok_or_else(|| ApiError::invalid("invalid_time", format!("{name} must be an RFC 3339 time")))
            })
            .transpose()
    };
    let filter = CallFilter {
        status: q.status,
        assistant_id: q.assistant_id,
        since: time("since", &q.since)?,
        until: time("until", &q.until)?,
        q: q.q.filter(|s| !s.trim().is_empty()).map(|s| crate::store::sanitize_text(&s).chars().take(200).collect()),
        limit: limit + 1,
        before: q.cursor.as_deref().map(decode_cursor).transpose()?,
        live_since: None,
    };
    let mut rows = app.store.list_calls(&who.scope, &filter).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(encode_cursor)
    } else {
        None
    };
    Ok(Json(json!({ "calls": rows.iter().map(view::summary).collect::<Vec<_>>(), "next_cursor": next })))
}

async fn one(State(app): State<Arc<AppState>>, who: Principal, Path(id): Path<String>) -> Result<Json<serde_json::Value>, ApiError> {
    let call = visible_call(&app, &who, &id).await?;
    let (segments, mut invocations, recordings, mut controls) =
        tokio::try_join!(app.store.transcript(&id), app.store.invocations(&id), app.store.recordings(&id), app.store.control_actions(&id))?;
    invocations.retain(|i| i.org_id == call.org_id);
    controls.retain(|c| c.org_id == call.org_id);
    let mut detail = view::detail(&call, &segments, &invocations, &recordings);
    detail["control_actions"] = controls.iter().map(crate::control::audit_view).collect();
    Ok(Json(detail))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TranscriptQuery {
    format: Option<String>,
}

async fn transcript_of(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(id): Path<String>,
    q: Result<Query<TranscriptQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let format = transcript::Format::parse(q.format.as_deref().unwrap_or("json"))
        .ok_or_else(|| ApiError::invalid("invalid_format", "format must be json, txt or vtt"))?;
    let call = visible_call(&app, &who, &id).await?;
    let segments = app.store.transcript(&id).await?;
    Ok(transcript::render(format, &call, &segments).into_response())
}

/// The call if it exists and the caller may see it; otherwise the same 404 either way.
pub(crate) async fn visible_call(app: &AppState, who: &Principal, id: &str) -> Result<CallRow, ApiError> {
    if id.is_empty() || id.len() > 256 || id.contains('\0') {
        return Err(ApiError::NotFound);
    }
    match app.store.get_call(id).await? {
        Some(c) if who.scope.allows(&c.org_id) => Ok(c),
        _ => Err(ApiError::NotFound),
    }
}

fn encode_cursor(c: &CallRow) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}|{}", c.created_at, c.id))
}

fn decode_cursor(s: &str) -> Result<(i64, String), ApiError> {
    let bad = || ApiError::invalid("invalid_cursor", "cursor is not one this API returned");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (t, id) = text.split_once('|').ok_or_else(bad)?;
    Ok((t.parse().map_err(|_| bad())?, id.to_string()))
}
