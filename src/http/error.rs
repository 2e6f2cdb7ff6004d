//! The one error type at the HTTP boundary: `{"error":{"code","message"}}` with the right
//! status. Server-side failures are logged in full and answered without internal details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    /// 400: the body is not valid JSON (or not the JSON shape the route takes).
    Malformed(String),
    /// 400: the request itself is wrong (not a body problem), e.g. a plain GET on `/ws`.
    BadRequest { code: &'static str, message: String },
    /// 401: missing or wrong credentials. The message never says which check failed.
    Unauthenticated,
    /// 403: authenticated, but not allowed to see or do this.
    Forbidden,
    /// 403 with the reason, where the caller can do something about it (another token).
    Denied { code: &'static str, message: String },
    /// 403: a browser page whose origin may not use this route (no CORS headers either).
    OriginNotAllowed,
    /// 403: a widget site key that is not configured.
    UnknownSiteKey,
    /// 429: too many requests; retry after this many seconds.
    RateLimited(u64),
    /// 429: a chat session's or site's daily token budget is spent; it renews after this many
    /// seconds (UTC midnight).
    BudgetExhausted { scope: &'static str, retry_after: u64 },
    /// 503: all chat has spent its daily token budget (the spend breaker); until UTC midnight.
    SpendLimit { retry_after: u64 },
    /// 429: a chat session has its maximum of streams open.
    TooManyStreams,
    /// 404: nothing here, or nothing this caller may see (the same answer, so ids can't be probed).
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    Timeout,
    /// 409: valid, but the resource's state does not allow it now.
    Conflict { code: &'static str, message: String },
    /// 413: the body is over the configured limit.
    TooLarge(usize),
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 422: well-formed, but a field is invalid.
    Invalid { code: &'static str, message: String },
    /// 502: an upstream (VAPI's control URL) refused the request or could not be reached; its
    /// HTTP status, when it answered, is passed on as `upstream_status`.
    BadGateway { code: &'static str, message: String, upstream_status: Option<u16> },
    /// 504: an upstream did not answer in time.
    GatewayTimeout { code: &'static str, message: String },
    /// 503: a dependency (store, broker) is down; retry later.
    Unavailable(&'static str),
    /// Any status with a body in another API's own error shape (OpenAI's, on the pass-through).
    Passthrough { status: StatusCode, body: serde_json::Value },
    /// 500: a bug; details go to the log only.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        match self {
            ApiError::Malformed(m) => (StatusCode::BAD_REQUEST, "malformed_json", m.clone()),
            ApiError::BadRequest { code, message } => (StatusCode::BAD_REQUEST, code, message.clone()),
            ApiError::Conflict { code, message } => (StatusCode::CONFLICT, code, message.clone()),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", "Missing or invalid credentials.".into()),
            ApiError::Forbidden => (StatusCode::FORBIDDEN, "forbidden", "This token may not do that.".into()),
            ApiError::Denied { code, message } => (StatusCode::FORBIDDEN, code, message.clone()),
            ApiError::OriginNotAllowed => {
                (StatusCode::FORBIDDEN, "origin_not_allowed", "This page's origin may not use the chat API.".into())
            }
            ApiError::UnknownSiteKey => (StatusCode::FORBIDDEN, "unknown_site_key", "This site key is not configured.".into()),
            ApiError::RateLimited(secs) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", format!("Too many requests; try again in {secs} s."))
            }
            ApiError::BudgetExhausted { scope, .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "budget_exhausted",
                format!("This {scope}'s answers for today are used up; they renew at midnight UTC."),
            ),
            ApiError::SpendLimit { .. } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "spend_limit_reached",
                "The chat has reached its limit for today; try again tomorrow.".into(),
            ),
            ApiError::TooManyStreams => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                "This conversation is open in too many places; close one and try again.".into(),
            ),
            ApiError::Passthrough { status, body } => {
                let message = body["error"]["message"].as_str().unwrap_or_default().to_string();
                (*status, "upstream_error", message)
            }
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not_found", "Nothing found here.".into()),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "Method not allowed on this route.".into())
            }
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout", "The request body did not arrive in time.".into()),
            ApiError::TooLarge(limit) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", format!("The body is larger than {limit} bytes."))
            }
            ApiError::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Send the body as application/json.".into())
            }
            ApiError::Invalid { code, message } => (StatusCode::UNPROCESSABLE_ENTITY, code, message.clone()),
            ApiError::BadGateway { code, message, .. } => (StatusCode::BAD_GATEWAY, code, message.clone()),
            ApiError::GatewayTimeout { code, message } => (StatusCode::GATEWAY_TIMEOUT, code, message.clone()),
            ApiError::Unavailable(what) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("The {what} is unavailable; retry shortly."))
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "Something went wrong on our side.".into()),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid { code, message: message.into() }
    }

    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// The `{"code","message"}` object (plus `upstream_status` when there is one), for answers
    /// that are not HTTP responses (WebSocket frames).
    pub fn body(&self) -> serde_json::Value {
        let (_, code, message) = self.parts();
        let mut body = json!({ "code": code, "message": message });
        if let ApiError::BadGateway { upstream_status: Some(n), .. } = self {
            body["upstream_status"] = json!(n);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Passthrough { status, body } = self {
            return (status, Json(body)).into_response();
        }
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(detail = %detail, "internal error");
        }
        let mut resp = (status, Json(json!({ "error": self.body() }))).into_response();
        let retry_after = match self {
            ApiError::RateLimited(secs)
            | ApiError::BudgetExhausted { retry_after: secs, .. }
            | ApiError::SpendLimit { retry_after: secs } => Some(secs),
            ApiError::TooManyStreams => Some(5),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(5),
            _ => None,
        };
        if let Some(secs) = retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(detail = %m, "store unavailable");
                ApiError::Unavailable("database")
            }
            StoreError::Internal(m) => ApiError::Internal(m),
        }
    }
}
