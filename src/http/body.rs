//! Reading a JSON request body the same way on every JSON route: 415 for another content type,
//! 413 past the route's limit (however the body is framed), 408 when it dribbles, 400 when it
//! is not JSON.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use serde_json::Value;

use super::ApiError;

pub async fn read_json(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !(essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let raw = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await.map_err(|_| ApiError::Timeout)?.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large { ApiError::TooLarge(limit) } else { ApiError::Malformed("The body could not be read.".into()) }
    })?;
    serde_json::from_slice(&raw).map_err(|e| ApiError::Malformed(format!("The body is not valid JSON: {e}.")))
}

/// For a route whose body is optional: `None` when the request has none (`Content-Length: 0`,
/// or neither a content type nor chunked framing), else as `read_json`.
pub async fn read_optional_json(headers: &HeaderMap, body: Body, limit: usize, timeout: Duration) -> Result<Option<Value>, ApiError> {
    let empty = headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0")
        || (!headers.contains_key(header::CONTENT_TYPE) && !headers.contains_key(header::TRANSFER_ENCODING));
    if empty { Ok(None) } else { read_json(headers, body, limit, timeout).await.map(Some) }
}
