//! The model endpoint. Streams are requested and read here, in the task that consumes them: the
//! request goes out with reqwest (URL and headers from async-openai's config), and the SSE body
//! is parsed as its bytes arrive (`sse_reader`), chunk by chunk (`chunk`), with no reader task
//! or channel between the socket and the run — each chunk costs one task wake-up less. Like
//! async-openai's client, 429/5xx answers and connect failures are retried before a stream
//! starts (up to 3 times, 100 ms doubling or `Retry-After`). Answers in one piece
//! (`"stream": false`) still go through async-openai's "bring your own types" call.
//!
//! Chunks are read leniently, so OpenAI-compatible servers that omit `id`/`created`, send an
//! empty `finish_reason` or add fields still parse, and a mid-stream `{"error":…}` is seen as
//! such instead of failing deserialisation.

use std::time::Duration;

use async_openai::Client;
use async_openai::config::{Config, OpenAIConfig};
use async_openai::error::OpenAIError;
use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;

use super::sse_reader::SseReader;
use crate::config::ChatSettings;

/// Retries of a streaming request answered 429/5xx or not connected, before giving up.
const CLIENT_RETRIES: u32 = 3;
const CLIENT_BACKOFF: Duration = Duration::from_millis(100);
const CLIENT_BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Most of an error body kept for the log.
const ERROR_BODY_LOGGED: usize = 2000;

/// Why the model could not answer, in words safe for a browser: upstream bodies can carry org
/// or project ids, so they go to the log only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    pub code: &'static str,
    pub message: &'static str,
    /// Worth another attempt (only before the first token).
    pub retryable: bool,
}

impl UpstreamError {
    pub const TIMEOUT: UpstreamError =
        UpstreamError { code: "upstream_timeout", message: "The model did not answer in time.", retryable: true };
    pub const INTERRUPTED: UpstreamError =
        UpstreamError { code: "upstream_interrupted", message: "The model's answer broke off.", retryable: true };
    pub const FAILED: UpstreamError =
        UpstreamError { code: "upstream_error", message: "The model failed while answering.", retryable: true };
    pub const PROTOCOL: UpstreamError =
        UpstreamError { code: "upstream_protocol", message: "The model sent something the hub could not read.", retryable: true };
    const UNREACHABLE: UpstreamError =
        UpstreamError { code: "upstream_unavailable", message: "The model could not be reached.", retryable: true };
}

pub struct Upstream {
    client: Client<OpenAIConfig>,
    http: reqwest::Client,
    /// `…/chat/completions` and the headers (the key) async-openai would send.
    url: String,
    headers: HeaderMap,
}

impl Upstream {
    pub fn new(s: &ChatSettings) -> Self {
        let key = s.api_key.as_ref().map(|k| k.expose().to_string()).unwrap_or_default();
        let config = OpenAIConfig::new().with_api_base(s.base_url.clone()).with_api_key(key).with_org_id("").with_project_id("");
        // No overall timeout here: the run enforces first-token and between-chunk limits itself.
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .unwrap_or_default();
        let mut headers = config.headers();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let url = config.url("/chat/completions");
        Self { client: Client::build(http.clone(), config), http, url, headers }
    }

    /// Sends a request that is answered in one piece (`"stream"` absent or false).
    pub async fn complete(&self, body: Value) -> Result<Value, UpstreamError> {
        self.client.chat().create_byot::<Value, Value>(body).await.map_err(|e| classify(&e))
    }

    /// Sends a streaming request (the body must say `"stream": true`); resolves once the model
    /// answered `2xx`, retrying rate limits, server errors and connect failures a few times.
    pub async fn open(&self, body: &Value) -> Result<ChunkStream, UpstreamError> {
        let body = match serde_json::to_vec(body) {
            Ok(b) => Bytes::from(b),
            Err(_) => return Err(UpstreamError::FAILED),
        };
        let mut retries = 0;
        loop {
            let sent = self.http.post(&self.url).headers(self.headers.clone()).body(body.clone()).send().await;
            let retry_after = match sent {
                Ok(r) if r.status().is_success() => return Ok(ChunkStream::new(r)),
                Ok(r) if retries < CLIENT_RETRIES && (r.status().as_u16() == 429 || r.status().is_server_error()) => {
                    let wait = r.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                    tracing::debug!(status = r.status().as_u16(), "model request refused; retrying");
                    wait.map(Duration::from_secs)
                }
                Ok(r) => return Err(refused(r).await),
                Err(e) if retries < CLIENT_RETRIES && e.is_connect() => None,
                Err(e) => {
                    tracing::warn!(code = UpstreamError::UNREACHABLE.code, error = %redact_keys(&e.to_string()), "model request failed");
                    return Err(UpstreamError::UNREACHABLE);
                }
            };
            let backoff = CLIENT_BACKOFF.saturating_mul(2u32.saturating_pow(retries)).min(CLIENT_BACKOFF_MAX);
            tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
            retries += 1;
        }
    }
}

/// A streaming answer being read: the data of each event, `[DONE]` and `keepalive` events
/// left out.
pub struct ChunkStream {
    response: reqwest::Response,
    reader: SseReader,
    ended: bool,
}

impl ChunkStream {
    fn new(response: reqwest::Response) -> Self {
        Self { response, reader: SseReader::default(), ended: false }
    }

    /// The next event's data; `None` after `[DONE]` or at the end of the body (an event the
    /// body ends in the middle of is dropped, as SSE says). After an error, `None`.
    pub async fn next(&mut self) -> Option<Result<Bytes, UpstreamError>> {
        loop {
            if !self.ended
                && let Some(ev) = self.reader.pop()
            {
                if ev.data.as_ref() == b"[DONE]" {
                    self.ended = true;
                    return None;
                }
                if ev.event.as_deref() == Some("keepalive") {
                    continue;
                }
                return Some(Ok(ev.data));
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(bytes)) => {
                    if self.reader.push(&bytes).is_err() {
                        self.ended = true;
                        tracing::warn!(code = UpstreamError::PROTOCOL.code, "the model sent an endless line");
                        return Some(Err(UpstreamError::PROTOCOL));
                    }
                }
                Ok(None) => {
                    // Events the last bytes completed were delivered above; a partial one is not.
                    self.ended = true;
                    return None;
                }
                Err(e) => {
                    self.ended = true;
                    tracing::warn!(code = UpstreamError::INTERRUPTED.code, error = %redact_keys(&e.to_string()), "model stream failed");
                    return Some(Err(UpstreamError::INTERRUPTED));
                }
            }
        }
    }
}

/// What the browser is told about a refused request (by its status); the body is logged.
async fn refused(r: reqwest::Response) -> UpstreamError {
    let status = r.status().as_u16();
    let out = status_error(status);
    let body = r.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LOGGED)]).into_owned();
    tracing::warn!(code = out.code, status, error = %redact_keys(&text), "model request failed");
    out
}

fn status_error(status: u16) -> UpstreamError {
    match status {
        429 => UpstreamError { code: "upstream_rate_limited", message: "The model is busy; try again in a moment.", retryable: true },
        401 | 403 => UpstreamError { code: "upstream_auth", message: "The hub's model credentials were refused.", retryable: false },
        400..=499 => UpstreamError { code: "upstream_rejected", message: "The model refused the request.", retryable: false },
        _ => UpstreamError { code: "upstream_unavailable", message: "The model is unavailable right now.", retryable: true },
    }
}

/// Maps a client error to what the browser is told; the detail is logged here, once.
pub fn classify(e: &OpenAIError) -> UpstreamError {
    let out = match e {
        OpenAIError::ApiError(api) => status_error(api.status_code.as_u16()),
        OpenAIError::Reqwest(_) => UpstreamError::UNREACHABLE,
        OpenAIError::StreamError(_) => UpstreamError::INTERRUPTED,
        OpenAIError::JSONDeserialize(..) => UpstreamError::PROTOCOL,
        _ => UpstreamError::FAILED,
    };
    tracing::warn!(code = out.code, error = %redact_keys(&e.to_string()), "model request failed");
    out
}

/// Upstream messages can quote the key they refused ("Incorrect API key provided: sk-…"): any
/// `sk-…` word is masked before it reaches a log.
pub fn redact_keys(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("sk-") {
        out.push_str(&rest[..i]);
        out.push_str("sk-[redacted]");
        let tail = &rest[i + 3..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*' || c == '.')).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_quoted_in_upstream_errors_are_masked() {
        let m = redact_keys("Incorrect API key provided: sk-proj-abc123_XYZ. You can find your key at …");
        assert_eq!(m, "Incorrect API key provided: sk-[redacted] You can find your key at …");
        assert_eq!(redact_keys("no key here"), "no key here");
    }
}
