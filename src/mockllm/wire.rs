//! OpenAI's JSON on the wire: completion chunks, the completion object, usage and errors,
//! field for field as the real API sends them (clients with strict structs parse these).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use super::answer::{Reply, ToolCall};

/// The mid-stream failure OpenAI sends as a data event after the 200.
pub const SERVER_ERROR_MESSAGE: &str = "The server had an error while processing your request.";

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// What every chunk of one response repeats.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: String,
    pub created: i64,
    pub model: String,
    /// With `stream_options.include_usage`, every chunk carries `usage` (null until the last).
    pub include_usage: bool,
    /// `data: {"id":…,"object":…,"created":…,"model":…,"system_fingerprint":…,"choices":[`,
    /// written once: a stream is dozens of chunks that differ only in their delta, and building
    /// each as a JSON tree cost the mock more CPU than the hub spent relaying it (they share
    /// the load test's two cores).
    head: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
}

impl Usage {
    fn json(self) -> Value {
        json!({ "prompt_tokens": self.prompt, "completion_tokens": self.completion, "total_tokens": self.prompt + self.completion })
    }
}

/// A chunk's choice after its delta, when it carries no finish reason.
const OPEN_CHOICE_END: &str = r#","logprobs":null,"finish_reason":null}]"#;

impl Envelope {
    pub fn new(id: String, created: i64, model: String, include_usage: bool) -> Self {
        let mut head = String::with_capacity(160 + model.len());
        head.push_str(r#"data: {"id":"#);
        push_json(&mut head, &id);
        head.push_str(r#","object":"chat.completion.chunk","created":"#);
        head.push_str(&created.to_string());
        head.push_str(r#","model":"#);
        push_json(&mut head, &model);
        head.push_str(r#","system_fingerprint":"fp_mock","choices":["#);
        Self { id, created, model, include_usage, head }
    }

    fn object(&self, object: &str, choices: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        } else if self.include_usage {
            v["usage"] = Value::Null;
        }
        v
    }

    /// Ends a chunk whose `choices` array is written up to its last element.
    fn end_chunk(&self, mut out: Vec<u8>) -> Bytes {
        if self.include_usage {
            out.extend_from_slice(br#","usage":null"#);
        }
        out.extend_from_slice(b"}\n\n");
        Bytes::from(out)
    }

    /// A chunk with one choice: `delta` and, on the last one, a finish reason.
    pub fn chunk(&self, delta: &Value, finish: Option<&str>) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + 128);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(br#"{"index":0,"delta":"#);
        // Writing a `Value` into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut out, delta);
        match finish {
            None => out.extend_from_slice(OPEN_CHOICE_END.as_bytes()),
            Some(f) => {
                out.extend_from_slice(br#","logprobs":null,"finish_reason":"#);
                let _ = serde_json::to_writer(&mut out, f);
                out.extend_from_slice(b"}]");
            }
        }
        self.end_chunk(out)
    }

    /// A chunk whose delta is `{"content": text}`: the bulk of every text answer.
    pub fn content_chunk(&self, text: &str) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + text.len() + 96);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(br#"{"index":0,"delta":{"content":"#);
        let _ = serde_json::to_writer(&mut out, text);
        out.push(b'}');
        out.extend_from_slice(OPEN_CHOICE_END.as_bytes());
        self.end_chunk(out)
    }

    /// The first chunk: the role, and empty content (null when the answer is tool calls).
    pub fn role_chunk(&self, reply: &Reply) -> Bytes {
        let content = if matches!(reply, Reply::ToolCalls(_)) { Value::Null } else { json!("") };
        self.chunk(&json!({ "role": "assistant", "content": content, "refusal": null }), None)
    }

    /// After the finish chunk, only with `include_usage`: no choices, the counts.
    pub fn usage_chunk(&self, usage: Usage) -> Bytes {
        let mut out = Vec::with_capacity(self.head.len() + 96);
        out.extend_from_slice(self.head.as_bytes());
        out.extend_from_slice(br#"],"usage":"#);
        let _ = serde_json::to_writer(&mut out, &usage.json());
        out.extend_from_slice(b"}\n\n");
        Bytes::from(out)
    }

    /// The whole answer at once, for `stream: false`.
    pub fn completion(&self, reply: &Reply, usage: Usage) -> Value {
        let message = match reply {
            Reply::Text { text, .. } => json!({ "role": "assistant", "content": text, "refusal": null, "annotations": [] }),
            Reply::ToolCalls(calls) => json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "annotations": [],
                "tool_calls": calls.iter().map(|c| tool_call(c, &c.arguments)).collect::<Vec<_>>(),
            }),
        };
        let choice = json!([{ "index": 0, "message": message, "logprobs": null, "finish_reason": reply.finish_reason() }]);
        self.object("chat.completion", choice, Some(usage.json()))
    }
}

/// The first fragment of call `index`: id, type, name and (when streaming) empty arguments.
pub fn tool_call(call: &ToolCall, arguments: &str) -> Value {
    json!({ "id": call.id, "type": "function", "function": { "name": call.name, "arguments": arguments } })
}

pub fn tool_call_delta(index: usize, first: Option<&ToolCall>, arguments: &str) -> Value {
    let mut fragment = match first {
        Some(call) => tool_call(call, ""),
        None => json!({ "function": { "arguments": arguments } }),
    };
    fragment["index"] = json!(index);
    json!({ "tool_calls": [fragment] })
}

/// `text` as a JSON string.
fn push_json(out: &mut String, text: &str) {
    // Serialising a `&str` cannot fail.
    out.push_str(&serde_json::to_string(text).unwrap_or_default());
}

/// One server-sent event: `data: <json>` and a blank line, no `event:` line.
pub fn frame(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

/// OpenAI's error object: `{"error":{"message","type","param","code"}}`.
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
}

/// An error answered instead of a completion, with OpenAI's type and code for the status.
pub fn error_response(status: StatusCode, message: Option<&str>) -> Response {
    let (default_message, kind, code) = match status.as_u16() {
        400 => ("Invalid request.", "invalid_request_error", None),
        401 => ("Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key")),
        404 => ("Not found.", "invalid_request_error", None),
        429 => ("Rate limit reached for requests. Please try again in 1s.", "requests", Some("rate_limit_exceeded")),
        503 => ("The engine is currently overloaded, please try again later.", "server_error", None),
        500..=599 => (SERVER_ERROR_MESSAGE, "server_error", None),
        _ => ("The request was refused.", "invalid_request_error", None),
    };
    let mut resp = (status, Json(error_body(message.unwrap_or(default_message), kind, code))).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(include_usage: bool) -> Envelope {
        Envelope::new("chatcmpl-1".into(), 7, "m".into(), include_usage)
    }

    fn parse(frame: &Bytes) -> Value {
        let text = std::str::from_utf8(frame).unwrap();
        serde_json::from_str(text.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap()).unwrap()
    }

    #[test]
    fn the_role_chunk_is_openais_first_chunk() {
        let reply = Reply::Text { text: "x".into(), finish: "stop" };
        let frame = envelope(false).role_chunk(&reply);
        assert!(frame.starts_with(b"data: {") && frame.ends_with(b"}\n\n"));
        let spec = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}"#;
        assert_eq!(parse(&frame), serde_json::from_str::<Value>(spec).unwrap());
    }

    #[test]
    fn a_content_chunk_is_the_general_chunk_with_that_delta_in_openais_field_order() {
        for include_usage in [false, true] {
            let env = Envelope::new("chatcmpl-\"q\"".into(), 7, "m\u{e9}".into(), include_usage);
            let text = "Hel \"lo\"\n\u{1F600}";
            let fast = env.content_chunk(text);
            assert_eq!(parse(&fast), parse(&env.chunk(&json!({"content": text}), None)));
            assert_eq!(parse(&fast)["choices"][0]["delta"]["content"], text);
            let order: Vec<usize> = ["\"id\"", "\"object\"", "\"created\"", "\"model\"", "\"system_fingerprint\"", "\"choices\""]
                .iter()
                .map(|k| std::str::from_utf8(&fast).unwrap().find(k).unwrap())
                .collect();
            assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        }
    }

    #[test]
    fn usage_is_null_on_every_chunk_only_when_it_was_asked_for() {
        assert!(parse(&envelope(false).chunk(&json!({}), Some("stop"))).get("usage").is_none());
        assert_eq!(parse(&envelope(true).chunk(&json!({}), Some("stop")))["usage"], Value::Null);
        let usage = parse(&envelope(true).usage_chunk(Usage { prompt: 3, completion: 4 }));
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"], json!({"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}));
    }

    #[test]
    fn a_tool_call_starts_with_id_type_and_name_then_carries_only_arguments() {
        let call = ToolCall { id: "call_1".into(), name: "f".into(), arguments: "{}".into() };
        assert_eq!(
            tool_call_delta(1, Some(&call), ""),
            json!({"tool_calls": [{"index": 1, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]})
        );
        assert_eq!(tool_call_delta(1, None, "{\""), json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\""}}]}));
    }
}
