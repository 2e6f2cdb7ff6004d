//! Liveness, readiness (store and broker answer) and Prometheus metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let (store, broker) =
        tokio::join!(tokio::time::timeout(READY_TIMEOUT, app.store.ping()), tokio::time::timeout(READY_TIMEOUT, app.broker.ping()));
    let store_ok = matches!(store, Ok(Ok(())));
    let broker_ok = matches!(broker, Ok(Ok(())));
    let draining = app.shutdown.is_cancelled();
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    let body = json!({
        "status": if store_ok && broker_ok && !draining { "ready" } else { "unavailable" },
        "store": word(store_ok), "broker": word(broker_ok), "draining": draining,
    });
    let status = if store_ok && broker_ok && !draining { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    app.metrics.observe_broker(app.broker.health());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], app.metrics.render()).into_response()
}
