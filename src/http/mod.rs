//! The HTTP boundary: each domain's router merged once, JSON fallbacks, request logging, and
//! the serve loop. Domain modules never see hyper.

mod address;
mod body;
mod conn_clock;
mod error;
mod health;
pub mod openapi;
mod outbound;
mod page;
mod serve;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use address::address_allowed;
pub use body::{read_json, read_optional_json};
pub use error::ApiError;
pub use outbound::{direct_client, public_only_client};
pub use page::page_limit;
pub use serve::{ServeOptions, listen, serve};

use crate::app::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(health::router())
        .merge(crate::calls::router())
        .merge(crate::chat::router(state.clone()))
        .merge(crate::control::router())
        .merge(crate::live::router())
        .merge(crate::jobs::router())
        .merge(crate::recordings::router())
        .merge(crate::retention::router())
        .merge(crate::web::router())
        .route("/openapi.json", axum::routing::get(openapi::openapi))
        .merge(crate::webhooks::router())
        .with_state(state.clone())
        .merge(crate::vapi::router(state.vapi.clone()))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(log_request))
}

/// One line per request at debug level (info would cost too much at webhook rates);
/// errors at warn. Never headers or bodies: they carry secrets.
async fn log_request(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if resp.status().is_server_error() {
        tracing::warn!(%method, route, status, ms, "request failed");
    } else {
        tracing::debug!(%method, route, status, ms, "request");
    }
    resp
}
