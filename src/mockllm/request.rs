//! The parts of a `/v1/chat/completions` body the mock reads. Everything else is ignored, as
//! OpenAI-compatible servers do, so any client library's request is accepted.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    #[serde(default)]
    pub model: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub tools: Option<Vec<Value>>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Value,
}

#[derive(Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl ChatRequest {
    pub fn streams(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    pub fn include_usage(&self) -> bool {
        self.streams() && self.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false)
    }

    pub fn offers_tools(&self) -> bool {
        self.tools.as_ref().is_some_and(|t| !t.is_empty())
    }

    /// `max_completion_tokens` replaced `max_tokens`; either caps the answer.
    pub fn token_limit(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    fn last_user_index(&self) -> Option<usize> {
        self.messages.iter().rposition(|m| m.role == "user")
    }

    /// The text of the last user message: where directives are read from.
    pub fn last_user_text(&self) -> String {
        self.last_user_index().map(|i| text_of(&self.messages[i].content)).unwrap_or_default()
    }

    /// Contents of `tool` messages after the last user message: tool results fed back, which
    /// the next answer must use instead of calling the tool again.
    pub fn tool_results(&self) -> Vec<String> {
        let from = self.last_user_index().map_or(0, |i| i + 1);
        self.messages[from..].iter().filter(|m| m.role == "tool").map(|m| text_of(&m.content)).collect()
    }

    /// A word count over every message's text: the same estimate as completion tokens.
    pub fn prompt_tokens(&self) -> u64 {
        self.messages.iter().map(|m| text_of(&m.content).split_whitespace().count() as u64).sum()
    }
}

/// Content is a string, or an array of parts of which the `text` ones count, or null.
fn text_of(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" "),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn req(body: Value) -> ChatRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn unknown_fields_are_ignored_and_content_parts_are_read_as_text() {
        let r = req(json!({
            "model": "m", "temperature": 0.2, "n": 1,
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "image_url", "image_url": {}}]}
            ]
        }));
        assert_eq!(r.last_user_text(), "hello");
        assert_eq!(r.prompt_tokens(), 3);
        assert!(!r.streams() && !r.include_usage() && !r.offers_tools());
    }

    #[test]
    fn only_tool_messages_after_the_last_user_message_are_results() {
        let r = req(json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "tool", "tool_call_id": "a", "content": "old"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": null, "tool_calls": []},
            {"role": "tool", "tool_call_id": "b", "content": "21 degrees"}
        ]}));
        assert_eq!(r.tool_results(), vec!["21 degrees".to_string()]);
        assert_eq!(r.last_user_text(), "second");
    }

    #[test]
    fn max_completion_tokens_wins_over_max_tokens() {
        assert_eq!(req(json!({"messages": [], "max_tokens": 9, "max_completion_tokens": 4})).token_limit(), Some(4));
        assert_eq!(req(json!({"messages": [], "max_tokens": 9})).token_limit(), Some(9));
    }
}
