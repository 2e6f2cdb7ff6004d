//! `GET /api/calls/{id}/recording?kind=`: a ready recording, org-scoped like the call itself,
//! with single-range HTTP Range support (players seek with it), streamed from the recordings
//! storage (a ranged read from the folder or the bucket, never the whole file in memory).
//! Several ranges in one request are answered with the whole file, which RFC 9110 allows.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::storage::StorageError;
use crate::app::AppState;
use crate::auth::Principal;
use crate::http::ApiError;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/calls/{id}/recording", get(recording))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KindQuery {
    kind: Option<String>,
}

async fn recording(
    State(app): State<Arc<AppState>>,
    who: Principal,
    Path(id): Path<String>,
    q: Result<Query<KindQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let kind = q.kind.unwrap_or_else(|| "mono".into());
    let call = crate::calls::visible_call(&app, &who, &id).await?;
    let rec = app.store.recordings(&call.id).await?.into_iter().find(|r| r.kind == kind && r.state == "ready").ok_or(ApiError::NotFound)?;
    let rel = rec.path.ok_or(ApiError::NotFound)?;
    let content_type = rec.content_type.unwrap_or_else(|| "application/octet-stream".into());
    let storage = &app.recordings;
    // Without a Range header one read answers; with one, the size comes first (a suffix range
    // and 416 depend on it), then the ranged read.
    let (range, known_size) = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => (Range::Whole, 0),
        Some(r) => {
            let size = storage.size(&rel).await.map_err(not_found)?;
            (parse_range(r, size), size)
        }
    };
    let (status, object, start, len) = match range {
        Range::Whole => {
            let o = storage.read(&rel, None).await.map_err(not_found)?;
            let size = o.size;
            (StatusCode::OK, o, 0, size)
        }
        Range::Unsatisfiable => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{known_size}"))]).into_response());
        }
        Range::Bytes(start, end) => {
            let o = storage.read(&rel, Some(start..end + 1)).await.map_err(not_found)?;
            (StatusCode::PARTIAL_CONTENT, o, start, end - start + 1)
        }
    };
    let size = object.size;
    let mut resp = Response::new(Body::from_stream(object.body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_str(&content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

/// A file gone from storage is a 404 like one never downloaded; anything else is the
/// storage failing (logged as an internal error).
fn not_found(e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::NotFound,
        StorageError::Other(e) => ApiError::Internal(format!("cannot read a recording from storage: {e}")),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Range {
    /// No usable range: the whole file with `200`.
    Whole,
    Unsatisfiable,
    /// First and last byte, inclusive.
    Bytes(u64, u64),
}

/// One `bytes=` range (RFC 9110 §14.1.2); anything else is ignored, as the RFC allows.
fn parse_range(v: &str, size: u64) -> Range {
    let Some(spec) = v.trim().strip_prefix("bytes=") else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else { return Range::Whole };
    let (a, b) = (a.trim(), b.trim());
    if a.is_empty() {
        return match b.parse::<u64>() {
            Ok(0) => Range::Unsatisfiable,
            Ok(_) if size == 0 => Range::Unsatisfiable,
            Ok(n) => Range::Bytes(size.saturating_sub(n), size - 1),
            Err(_) => Range::Whole,
        };
    }
    let Ok(start) = a.parse::<u64>() else { return Range::Whole };
    let end = if b.is_empty() {
        u64::MAX
    } else {
        match b.parse::<u64>() {
            Ok(end) if end >= start => end,
            _ => return Range::Whole,
        }
    };
    if start >= size {
        return Range::Unsatisfiable;
    }
    Range::Bytes(start, end.min(size - 1))
}

#[cfg(test)]
mod tests {
    use super::{Range, parse_range};

    #[test]
    fn single_ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-99", 1000), Range::Bytes(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Range::Bytes(900, 999));
        assert_eq!(parse_range("bytes=-5000", 1000), Range::Bytes(0, 999));
        assert_eq!(parse_range("bytes=990-5000", 1000), Range::Bytes(990, 999));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable_and_odd_ones_are_ignored() {
        assert_eq!(parse_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Range::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-1", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=0-1,5-9", 1000), Range::Whole);
        assert_eq!(parse_range("items=0-1", 1000), Range::Whole);
        assert_eq!(parse_range("bytes=x-", 1000), Range::Whole);
    }
}
