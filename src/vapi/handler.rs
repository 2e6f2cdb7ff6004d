//! `POST /vapi/webhook`: the checks that need no parsing (type, size, authentication on the
//! raw bytes), then JSON, then the service. Every refusal changes nothing.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::Instrument;

use super::auth::{self, RequestFacts};
use super::message::Message;
use super::service::{Answer, VapiService};
use crate::http::ApiError;

/// VAPI ids are UUIDs; anything this long is not one (and would overflow an index entry).
const MAX_ID_LEN: usize = 256;

pub async fn webhook(State(svc): State<Arc<VapiService>>, headers: HeaderMap, uri: Uri, body: Body) -> Response {
    let started = Instant::now();
    match receive(&svc, &headers, &uri, body, started).await {
        Ok(resp) => resp,
        Err((label, outcome, err)) => {
            svc.metrics.webhook(label, outcome, started);
            err.into_response()
        }
    }
}

type Refusal = (&'static str, &'static str, ApiError);

async fn receive(svc: &VapiService, headers: &HeaderMap, uri: &Uri, body: Body, started: Instant) -> Result<Response, Refusal> {
    if !is_json(headers) {
        return Err(("none", "rejected", ApiError::UnsupportedMediaType));
    }
    let limit = svc.cfg.body_limit;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(("none", "rejected", ApiError::TooLarge(limit)));
    }
    let read = tokio::time::timeout(svc.body_read_timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ("none", "rejected", ApiError::Timeout))?;
    let raw: Bytes = read.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        let err = if too_large { ApiError::TooLarge(limit) } else { ApiError::Malformed("The body could not be read.".into()) };
        ("none", "rejected", err)
    })?;
    let url = request_url(svc, headers, uri);
    let facts = RequestFacts { method: "POST", url: &url, now_ms: crate::clock::now_ms() };
    if let Err(refused) = auth::verify(&svc.cfg, headers, &raw, &facts) {
        svc.metrics.auth_failure(refused.reason());
        tracing::warn!(reason = refused.reason(), "webhook refused by authentication");
        return Err(("none", "unauthorized", ApiError::Unauthenticated));
    }
    let mut body: Value = super::parse::body(&raw, svc.cfg.raw_log_ephemeral)
        .map_err(|e| ("none", "rejected", ApiError::Malformed(format!("The body is not valid JSON: {e}."))))?;
    // serde accepts \u0000 but Postgres rejects NUL anywhere in text: clean once, here.
    if memchr::memmem::find(&raw, b"\\u0000").is_some() {
        crate::store::sanitize_json(&mut body);
    }
    let message = Message::from_body(&body).ok_or((
        "none",
        "rejected",
        ApiError::invalid("invalid_message", "The body must be {\"message\": {\"type\": \"…\", …}}."),
    ))?;
    if message.call_id().is_some_and(|id| id.len() > MAX_ID_LEN) || message.type_str().len() > MAX_ID_LEN {
        return Err((
            "none",
            "rejected",
            ApiError::invalid("invalid_message", format!("call.id and type must be at most {MAX_ID_LEN} characters.")),
        ));
    }
    let kind = message.kind();
    let label = kind.metric_label(message.type_str()).to_string();
    let span = tracing::info_span!("webhook", r#type = %label, call_id = message.call_id().unwrap_or("-"));
    let handled = svc.handle(&message, &raw).instrument(span).await.inspect_err(|_| svc.metrics.webhook(&label, "error", started));
    let handled = match handled {
        Ok(h) => h,
        Err(e) => return Ok(e.into_response()),
    };
    svc.metrics.webhook(&label, handled.outcome, started);
    tracing::debug!(r#type = %label, outcome = handled.outcome, "webhook handled");
    let mut response = match handled.answer {
        Answer::Json(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Answer::Audio(pcm) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], pcm).into_response(),
    };
    if let Some(functions_ms) = handled.functions_ms {
        response.headers_mut().insert(SERVER_TIMING, server_timing(functions_ms, started.elapsed().as_secs_f64() * 1000.0));
    }
    Ok(response)
}

const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// `Server-Timing` (W3C) for a message that ran functions: their own time and the hub's whole
/// handling, so a caller sees what the hub added (and the load test measures it per request).
fn server_timing(functions_ms: f64, total_ms: f64) -> header::HeaderValue {
    let text = format!("fn;dur={functions_ms:.3};desc=\"functions\", hub;dur={total_ms:.3}");
    header::HeaderValue::from_str(&text).unwrap_or_else(|_| header::HeaderValue::from_static("hub"))
}

/// `application/json` or any `+json` type, with parameters such as charset.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The URL VAPI posted to, for HMAC `{url}` templates: the configured public URL when behind
/// a proxy, else what the Host header says.
fn request_url(svc: &VapiService, headers: &HeaderMap, uri: &Uri) -> String {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    match &svc.public_url {
        Some(base) => format!("{base}{path}"),
        None => {
            let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("localhost");
            format!("http://{host}{path}")
        }
    }
}
