//! The admin jobs API (admin tokens only): list jobs by status and kind, retry a failed or dead
//! job now, and "Run now" for a kind, the button of the dashboards.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{EnqueueError, EnqueueOptions};
use crate::app::AppState;
use crate::auth::Principal;
use crate::clock::iso;
use crate::http::{ApiError, read_optional_json};
use crate::store::{JobFilter, JobRetry, JobRow};

const STATUSES: [&str; 5] = ["queued", "running", "done", "dead", "cancelled"];
/// A payload is a job's instructions, not its data: small.
const PAYLOAD_LIMIT: usize = 64 * 1024;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/admin/jobs", get(list))
        .route("/api/admin/jobs/{id}/retry", post(retry))
        .route("/api/admin/jobs/run/{kind}", post(run_now))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    kind: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(app): State<Arc<AppState>>,
    who: Principal,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    who.hub_admin()?;
    let Query(q) = q.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = crate::http::page_limit(q.limit)?;
    if let Some(s) = q.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid("invalid_status", format!("status {s:?} is not one of {}", STATUSES.join(", "))));
    }
    let filter = JobFilter { status: q.status, kind: q.kind, before: q.cursor.filter(|c| !c.is_empty()), limit: limit + 1 };
    let mut rows = app.store.list_jobs(&filter).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|j| j.id.clone())
    } else {
        None
    };
    Ok(Json(json!({ "jobs": rows.iter().map(view).collect::<Vec<_>>(), "next_cursor": next })))
}

async fn retry(State(app): State<Arc<AppState>>, who: Principal, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    who.hub_admin()?;
    match app.store.retry_job(&id, crate::clock::now_ms()).await? {
        JobRetry::Retried(job) => {
            tracing::info!(job = %job.id, kind = %job.kind, by = %who.name, "job retried by an admin");
            Ok(Json(view(&job)))
        }
        JobRetry::NotFound => Err(ApiError::NotFound),
        JobRetry::NotRetryable(status) => Err(ApiError::Conflict {
            code: "not_retryable",
            message: format!("The job is {status}; only a dead job or one waiting to retry after a failure can be retried."),
        }),
    }
}

/// Enqueues a job of the kind to run now; the JSON body, when there is one, is its payload.
async fn run_now(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.hub_admin()?;
    if !app.jobs.is_registered(&kind) {
        return Err(ApiError::NotFound);
    }
    let payload = read_optional_json(&headers, body, PAYLOAD_LIMIT, Duration::from_secs(10)).await?.unwrap_or_else(|| json!({}));
    match app.jobs.enqueue(&kind, payload, EnqueueOptions::default()).await {
        Ok(e) => {
            tracing::info!(job = %e.job.id, kind = %kind, by = %who.name, "job run now by an admin");
            Ok((StatusCode::ACCEPTED, Json(view(&e.job))))
        }
        Err(EnqueueError::UnknownKind) => Err(ApiError::NotFound),
        Err(EnqueueError::Store(e)) => Err(e.into()),
    }
}

pub fn view(j: &JobRow) -> Value {
    json!({
        "id": j.id,
        "kind": j.kind,
        "payload": serde_json::from_str::<Value>(&j.payload).unwrap_or_else(|_| Value::String(j.payload.clone())),
        "status": j.status,
        "attempts": j.attempts,
        "max_attempts": j.max_attempts,
        "run_at": iso(j.run_at),
        "lease_until": j.lease_until.map(iso),
        "locked_by": j.locked_by,
        "last_error": j.last_error,
        "dedup_key": j.dedup_key,
        "created_at": iso(j.created_at),
        "updated_at": iso(j.updated_at),
        "finished_at": j.finished_at.map(iso),
    })
}
