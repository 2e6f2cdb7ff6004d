//! The admin webhooks API (admin tokens only): create, list, show and delete endpoints,
//! re-enable one that was disabled, rotate its secret, and page through its delivery attempts. An endpoint
//! receives the events of some orgs (its creator's by default); an admin token sees and
//! changes only the endpoints whose orgs it covers.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::input::{NewEndpoint, Rotation, delivery_view, endpoint_view};
use super::{sign, target};
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::{ApiError, read_json, read_optional_json};
use crate::store::{NewWebhook, OrgScope, SecretRotation, WebhookRow};

const BODY_LIMIT: usize = 16 * 1024;
/// Every event is matched against every endpoint: keep the list short.
const MAX_ENDPOINTS: usize = 100;
/// What an admin of some orgs may hold of them.
const MAX_ENDPOINTS_PER_ORG_ADMIN: usize = 10;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/admin/webhooks", get(list).post(create))
        .route("/api/admin/webhooks/{id}", get(show).delete(remove))
        .route("/api/admin/webhooks/{id}/enable", post(enable))
        .route("/api/admin/webhooks/{id}/rotate", post(rotate))
        .route("/api/admin/webhooks/{id}/deliveries", get(deliveries))
}

/// The endpoint, if the caller's orgs cover every org it receives events of; else it is not
/// there for this caller (`404`, so ids cannot be probed).
async fn visible(app: &AppState, who: &Principal, id: &str) -> Result<WebhookRow, ApiError> {
    who.admin()?;
    let row = app.store.get_webhook(id).await?.ok_or(ApiError::NotFound)?;
    if covers(who, &row) { Ok(row) } else { Err(ApiError::NotFound) }
}

/// An endpoint of no org, or whose orgs cannot be read, is seen by admins of every org only
/// (an empty list would be "covered" by anyone).
fn covers(who: &Principal, row: &WebhookRow) -> bool {
    match OrgScope::from_json(&row.orgs) {
        Some(OrgScope::Only(orgs)) if orgs.is_empty() => who.scope == OrgScope::All,
        Some(orgs) => who.scope.covers(&orgs),
        None => who.scope == OrgScope::All,
    }
}

/// `201` with the endpoint and its secret, the only time the secret is shown.
async fn create(
    State(app): State<Arc<AppState>>,
    who: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    who.admin()?;
    let v = read_json(&headers, body, BODY_LIMIT, app.settings.body_read_timeout).await?;
    let new = NewEndpoint::parse(v, &app.webhooks.settings)?;
    // An endpoint receives the events of its creator's orgs, or fewer: never more.
    let orgs = new.orgs.unwrap_or_else(|| who.scope.clone());
    if orgs == OrgScope::Only(Vec::new()) || !who.scope.covers(&orgs) {
        return Err(ApiError::Denied {
            code: "org_not_allowed",
            message: "An endpoint receives events of its creator's orgs only: orgs names another, or this token has none.".into(),
        });
    }
    target::check_resolved(&new.url, &app.webhooks.settings).await.map_err(|m| ApiError::invalid("invalid_url", m))?;
    let existing = app.store.list_webhooks(false).await?;
    // One cap for the hub (every event is matched against every endpoint), and a smaller one
    // for an admin of some orgs, so one org cannot take every place.
    let cap = if who.scope == OrgScope::All { MAX_ENDPOINTS } else { MAX_ENDPOINTS_PER_ORG_ADMIN };
    let held = if who.scope == OrgScope::All { existing.len() } else { existing.iter().filter(|r| covers(&who, r)).count() };
    if existing.len() >= MAX_ENDPOINTS || held >= cap {
        let whose = if held >= cap && cap < MAX_ENDPOINTS { " for an admin of some orgs" } else { " on this hub" };
        return Err(ApiError::Conflict {
            code: "too_many_webhooks",
            message: format!("At most {cap} endpoints{whose}; delete one first."),
        });
    }
    let secret = match new.secret {
        Some(s) => s,
        None => sign::new_secret().map_err(ApiError::Internal)?,
    };
    let events = serde_json::to_string(&new.filter.names()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let row = app
        .store
        .create_webhook(NewWebhook {
            id: uuid::Uuid::now_v7().to_string(),
            url: new.url.to_string(),
            events,
            orgs: orgs.to_json(),
            secret: secret.clone(),
            description: new.description,
            now: crate::clock::now_ms(),
        })
        .await?;
    app.webhooks.refresh().await;
    tracing::info!(endpoint = %row.id, by = %who.name, "webhook endpoint created");
    let mut view = endpoint_view(&row);
    view["secret"] = Value::from(secret);
    Ok((StatusCode::CREATED, Json(view)))
}

/// The endpoints within the caller's orgs.
async fn list(State(app): State<Arc<AppState>>, who: Principal) -> Result<Json<Value>, ApiError> {
    who.admin()?;
    let rows = app.store.list_webhooks(false).await?;
    Ok(Json(json!({ "webhooks": rows.iter().filter(|r| covers(&who, r)).map(endpoint_view).collect::<Vec<_>>() })))
}

async fn show(State(app): State<Arc<AppState>>, who: Principal, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(endpoint_view(&visible(&app, &who, &id).await?)))
}

/// `204`; deliveries still queued for it end without sending.
async fn remove(State(app): State<Arc<AppState>>, who: Principal, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    visible(&app, &who, &id).await?;
    if !app.store.delete_webhook(&id).await? {
        return Err(ApiError::NotFound);
    }
    app.webhooks.refresh().await;
    tracing::info!(endpoint = %id, by = %who.name, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Enabled again with its failure count reset (also fine on an enabled endpoint).
async fn enable(State(app): State<Arc<AppState>>, who: Principal, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    visible(&app, &who, &id).await?;
    let row = app.store.enable_webhook(&id, crate::clock::now_ms()).await?.ok_or(ApiError::NotFound)?;
    app.webhooks.refresh().await;
    tracing::info!(endpoint = %id, by = %who.name, "webhook endpoint enabled");
    Ok(Json(endpoint_view(&row)))
}

/// A new signing secret, shown this once; the replaced one keeps signing deliveries (beside
/// the new one) for `grace_ms`, so the receiver can switch without a failed verification.
async fn rotate(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    who.admin()?;
    let rotation = Rotation::parse(read_optional_json(&headers, body, BODY_LIMIT, app.settings.body_read_timeout).await?)?;
    visible(&app, &who, &id).await?;
    let secret = match rotation.secret {
        Some(s) => s,
        None => sign::new_secret().map_err(ApiError::Internal)?,
    };
    let now = crate::clock::now_ms();
    let previous_until = now.saturating_add(i64::try_from(rotation.grace_ms).unwrap_or(i64::MAX));
    let row = app
        .store
        .rotate_webhook_secret(SecretRotation { id: id.clone(), secret: secret.clone(), previous_until, now })
        .await?
        .ok_or(ApiError::NotFound)?;
    tracing::info!(endpoint = %id, by = %who.name, grace_ms = rotation.grace_ms, "webhook endpoint secret rotated");
    let mut view = endpoint_view(&row);
    view["secret"] = Value::from(secret);
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Newest first, `limit` (1–200, default 50) at a time; `next_cursor` continues.
async fn deliveries(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(id): Path<String>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    who.admin()?;
    let Query(q) = q.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = crate::http::page_limit(q.limit)?;
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(c.parse::<i64>().map_err(|_| ApiError::invalid("invalid_cursor", "cursor must be a next_cursor from this list"))?),
    };
    visible(&app, &who, &id).await?;
    let mut rows = app.store.webhook_deliveries(&id, before, limit + 1).await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "deliveries": rows.iter().map(delivery_view).collect::<Vec<_>>(), "next_cursor": next })))
}
