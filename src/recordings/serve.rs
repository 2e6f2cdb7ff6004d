//! `GET /api/calls/{id}/recording?kind=`: a ready recording, org-scoped like the call itself,
//! with single-range HTTP Range support (players seek with it). Several ranges in one request
//! are answered with the whole file, which RFC 9110 allows.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::app::AppState;
use crate::auth::Principal;
use crate::http::ApiError;

const CHUNK: usize = 64 * 1024;

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
    let mut file = tokio::fs::File::open(app.settings.recordings.dir.join(rel)).await.map_err(|_| ApiError::NotFound)?;
    let size = file.metadata().await.map_err(|e| ApiError::Internal(e.to_string()))?.len();
    let content_type = rec.content_type.unwrap_or_else(|| "application/octet-stream".into());
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|r| parse_range(r, size)).unwrap_or(Range::Whole);
    let (status, start, len) = match range {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Unsatisfiable => {
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, format!("bytes */{size}"))]).into_response());
        }
        Range::Bytes(start, end) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
    };
    file.seek(SeekFrom::Start(start)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = Response::new(Body::from_stream(chunks(file, len)));
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

/// `len` bytes from the file's current position, in chunks.
fn chunks(file: tokio::fs::File, len: u64) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send {
    futures::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            // The file shrank under us: end the body early rather than loop.
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the recording file is shorter than expected"));
        }
        buf.truncate(n);
        Ok(Some((Bytes::from(buf), (file, left - n as u64))))
    })
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
