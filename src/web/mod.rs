//! The browser side served from the binary: `GET /widget.js` (the embeddable chat widget),
//! `/dashboard/` (the supervisor dashboard) and `/demo/` (a page embedding the widget), plus
//! the widget's public configuration. Assets are embedded at build time; `web_dir` serves them
//! from a folder instead, so the web can be worked on without rebuilding.

mod assets;
mod headers;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

pub use assets::Assets;

use crate::app::AppState;
use crate::http::ApiError;
use headers::Kind;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard/") }))
        .route("/widget.js", get(widget))
        .route("/dashboard", get(|| async { Redirect::permanent("/dashboard/") }))
        .route("/dashboard/", get(dashboard_index))
        .route("/dashboard/{*path}", get(dashboard_file))
        .route("/demo", get(|| async { Redirect::permanent("/demo/") }))
        .route("/demo/", get(demo_index))
        .route("/demo/{*path}", get(demo_file))
}

async fn widget(State(app): State<Arc<AppState>>, req: HeaderMap) -> Response {
    serve(&app.assets, "widget/widget.js", Kind::Widget, &req).await
}

async fn dashboard_index(State(app): State<Arc<AppState>>, req: HeaderMap) -> Response {
    serve(&app.assets, "dashboard/index.html", Kind::Dashboard, &req).await
}

async fn dashboard_file(State(app): State<Arc<AppState>>, Path(path): Path<String>, req: HeaderMap) -> Response {
    serve(&app.assets, &format!("dashboard/{path}"), Kind::Dashboard, &req).await
}

async fn demo_index(State(app): State<Arc<AppState>>, req: HeaderMap) -> Response {
    serve(&app.assets, "demo/index.html", Kind::Demo, &req).await
}

async fn demo_file(State(app): State<Arc<AppState>>, Path(path): Path<String>, req: HeaderMap) -> Response {
    serve(&app.assets, &format!("demo/{path}"), Kind::Demo, &req).await
}

/// One asset with its validators: `304` when the browser's copy is current.
async fn serve(assets: &Assets, path: &str, kind: Kind, req: &HeaderMap) -> Response {
    let Some(asset) = assets.get(path).await else { return ApiError::NotFound.into_response() };
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().trim_start_matches("W/") == asset.etag));
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { asset.bytes.clone().into_response() };
    headers::apply(resp.headers_mut(), kind, &asset);
    resp
}
