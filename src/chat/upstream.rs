//! The model endpoint, through async-openai's "bring your own types" calls: requests and chunks
//! are plain JSON, so OpenAI-compatible servers that omit `id`/`created`, send an empty
//! `finish_reason` or add fields still parse, and a mid-stream `{"error":…}` is seen as such
//! instead of failing deserialisation. The client's own layer retries 429/5xx/connect failures
//! (up to 3 times, 100 ms doubling or `Retry-After`) before a stream starts.

use std::pin::Pin;
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use futures::Stream;
use serde_json::Value;

use crate::config::ChatSettings;

pub type ChunkStream = Pin<Box<dyn Stream<Item = Result<Value, OpenAIError>> + Send>>;

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
}

pub struct Upstream {
    client: Client<OpenAIConfig>,
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
        Self { client: Client::build(http, config) }
    }

    /// Sends a request that is answered in one piece (`"stream"` absent or false).
    pub async fn complete(&self, body: Value) -> Result<Value, UpstreamError> {
        self.client.chat().create_byot::<Value, Value>(body).await.map_err(|e| classify(&e))
    }

    /// Sends a streaming request (the body must say `"stream": true`).
    pub async fn open(&self, body: Value) -> Result<ChunkStream, UpstreamError> {
        self.client.chat().create_stream_byot::<Value, Value>(body).await.map_err(|e| classify(&e))
    }
}

/// Maps a client error to what the browser is told; the detail is logged here, once.
pub fn classify(e: &OpenAIError) -> UpstreamError {
    let out = match e {
        OpenAIError::ApiError(api) => match api.status_code.as_u16() {
            429 => UpstreamError { code: "upstream_rate_limited", message: "The model is busy; try again in a moment.", retryable: true },
            401 | 403 => UpstreamError { code: "upstream_auth", message: "The hub's model credentials were refused.", retryable: false },
            400..=499 => UpstreamError { code: "upstream_rejected", message: "The model refused the request.", retryable: false },
            _ => UpstreamError { code: "upstream_unavailable", message: "The model is unavailable right now.", retryable: true },
        },
        OpenAIError::Reqwest(_) => {
            UpstreamError { code: "upstream_unavailable", message: "The model could not be reached.", retryable: true }
        }
        OpenAIError::StreamError(_) => UpstreamError::INTERRUPTED,
        OpenAIError::JSONDeserialize(..) => {
            UpstreamError { code: "upstream_protocol", message: "The model sent something the hub could not read.", retryable: true }
        }
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

/// One chunk's meaning, read leniently.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk {
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCallDelta>,
    pub finish_reason: Option<String>,
    pub usage: Option<Usage>,
    /// A mid-stream `{"error":…}` object.
    pub error: bool,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ToolCallDelta {
    pub index: u64,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
}

pub fn read_chunk(v: &Value) -> Chunk {
    let mut c = Chunk { error: v.get("error").is_some_and(|e| !e.is_null()), ..Chunk::default() };
    if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_i64).unwrap_or(0);
        c.usage =
            Some(Usage { prompt_tokens: n("prompt_tokens"), completion_tokens: n("completion_tokens"), total_tokens: n("total_tokens") });
    }
    // Only the first choice: the hub never asks for more than one.
    let Some(choice) = v.get("choices").and_then(Value::as_array).and_then(|a| a.first()) else { return c };
    if let Some(r) = choice.get("finish_reason").and_then(Value::as_str).filter(|r| !r.is_empty()) {
        c.finish_reason = Some(r.to_string());
    }
    let Some(delta) = choice.get("delta") else { return c };
    c.content = delta.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
        for (i, t) in calls.iter().enumerate() {
            let f = t.get("function");
            c.tool_calls.push(ToolCallDelta {
                index: t.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
                id: t.get("id").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
                name: f.and_then(|f| f.get("name")).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
                arguments: f.and_then(|f| f.get("arguments")).and_then(Value::as_str).map(str::to_string),
            });
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_content_chunk_reads_its_text_and_nothing_else() {
        let c = read_chunk(&json!({"id":"x","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}));
        assert_eq!(c, Chunk { content: Some("Hel".into()), ..Chunk::default() });
    }

    #[test]
    fn quirky_servers_still_parse_empty_finish_reason_and_missing_ids() {
        let c = read_chunk(&json!({"choices":[{"delta":{"content":"a"},"finish_reason":""}]}));
        assert_eq!((c.content.as_deref(), c.finish_reason), (Some("a"), None));
        // Azure's content-filter chunk: no delta at all.
        let c = read_chunk(&json!({"id":"","object":"","created":0,"choices":[{"index":0,"finish_reason":null}]}));
        assert_eq!(c, Chunk::default());
    }

    #[test]
    fn the_usage_chunk_has_no_choices() {
        let c = read_chunk(&json!({"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":10,"total_tokens":27}}));
        assert_eq!(c.usage, Some(Usage { prompt_tokens: 17, completion_tokens: 10, total_tokens: 27 }));
    }

    #[test]
    fn tool_call_fragments_keep_their_index() {
        let c = read_chunk(&json!({"choices":[{"delta":{"tool_calls":[
            {"index":1,"id":"call_b","type":"function","function":{"name":"f","arguments":""}},
            {"index":0,"function":{"arguments":"{\"a\""}}]}}]}));
        assert_eq!(
            c.tool_calls[0],
            ToolCallDelta { index: 1, id: Some("call_b".into()), name: Some("f".into()), arguments: Some(String::new()) }
        );
        assert_eq!(c.tool_calls[1], ToolCallDelta { index: 0, id: None, name: None, arguments: Some("{\"a\"".into()) });
    }

    #[test]
    fn keys_quoted_in_upstream_errors_are_masked() {
        let m = redact_keys("Incorrect API key provided: sk-proj-abc123_XYZ. You can find your key at …");
        assert_eq!(m, "Incorrect API key provided: sk-[redacted] You can find your key at …");
        assert_eq!(redact_keys("no key here"), "no key here");
    }

    #[test]
    fn a_mid_stream_error_object_is_recognised() {
        assert!(read_chunk(&json!({"error":{"message":"boom","type":"server_error"}})).error);
        assert!(!read_chunk(&json!({"error":null,"choices":[]})).error);
    }
}
