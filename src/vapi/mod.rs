//! VAPI's Server URL: verify, parse leniently, store, answer in time, publish (spec: VAPI
//! webhook protocol). Depends on the store, the broker and the function executor.

pub mod auth;
mod events;
mod handler;
pub mod message;
mod outbox;
mod parse;
mod record;
pub mod redact;
mod replies;
mod service;
mod tools;

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

pub use service::VapiService;

pub fn router(svc: Arc<VapiService>) -> Router {
    Router::new().route("/vapi/webhook", post(handler::webhook)).with_state(svc)
}
