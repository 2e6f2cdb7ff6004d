//! What one streamed completion chunk means to the hub: its text, tool-call fragments, finish
//! reason, usage, or a mid-stream `{"error":…}`.
//!
//! Chunks are read twice over, cheaply first: a borrowed parse of only the fields the hub uses
//! (the text is not copied unless it has escapes; everything else OpenAI sends is skipped), and
//! only if that does not fit (an OpenAI-compatible server with an odd type somewhere) the
//! lenient reading of the whole JSON value, where a field of an unexpected type is just absent.
//! Both give the same answer for every chunk the fast one accepts.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// One chunk's meaning, read leniently.
#[derive(Debug, Default, PartialEq)]
pub struct Chunk<'a> {
    pub content: Option<Cow<'a, str>>,
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

/// Reads a chunk's JSON text; an error only when it is not JSON at all.
pub fn parse_chunk(data: &[u8]) -> Result<Chunk<'_>, serde_json::Error> {
    if let Ok(wire) = serde_json::from_slice::<WireChunk>(data) {
        return Ok(wire.into_chunk());
    }
    let v: Value = serde_json::from_slice(data)?;
    Ok(read_chunk(&v))
}

/// The lenient reading of a chunk already parsed as a JSON value.
pub fn read_chunk(v: &Value) -> Chunk<'static> {
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
    c.content = delta.get("content").and_then(Value::as_str).filter(|s| !s.is_empty()).map(|s| Cow::Owned(s.to_string()));
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

// The fast reading. Every field is optional and `null` counts as absent, as in `read_chunk`;
// a field of another type fails the whole parse, which sends the chunk to `read_chunk`.

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(default, borrow)]
    choices: Option<Vec<WireChoice<'a>>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct WireChoice<'a> {
    #[serde(default, borrow)]
    delta: Option<WireDelta<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(default, borrow)]
    content: Option<Text<'a>>,
    #[serde(default, borrow)]
    tool_calls: Option<Vec<WireToolCall<'a>>>,
}

#[derive(Deserialize)]
struct WireToolCall<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default, borrow)]
    id: Option<Text<'a>>,
    #[serde(default, borrow)]
    function: Option<WireFunction<'a>>,
}

#[derive(Deserialize)]
struct WireFunction<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    arguments: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
    #[serde(default)]
    total_tokens: Option<i64>,
}

/// A JSON string, borrowed from the input when it has no escapes (`Cow`'s own `Deserialize`
/// always copies).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_string())))
            }
            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

fn non_empty(t: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    t.map(|t| t.0).filter(|s| !s.is_empty())
}

impl<'a> WireChunk<'a> {
    fn into_chunk(self) -> Chunk<'a> {
        let mut c = Chunk { error: self.error.is_some(), ..Chunk::default() };
        if let Some(u) = self.usage {
            c.usage = Some(Usage {
                prompt_tokens: u.prompt_tokens.unwrap_or(0),
                completion_tokens: u.completion_tokens.unwrap_or(0),
                total_tokens: u.total_tokens.unwrap_or(0),
            });
        }
        let Some(choice) = self.choices.and_then(|cs| cs.into_iter().next()) else { return c };
        c.finish_reason = non_empty(choice.finish_reason).map(Cow::into_owned);
        let Some(delta) = choice.delta else { return c };
        c.content = non_empty(delta.content);
        for (i, t) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let (name, arguments) = t.function.map_or((None, None), |f| (f.name, f.arguments));
            c.tool_calls.push(ToolCallDelta {
                index: t.index.unwrap_or(i as u64),
                id: non_empty(t.id).map(Cow::into_owned),
                name: non_empty(name).map(Cow::into_owned),
                arguments: arguments.map(|a| a.0.into_owned()),
            });
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Both readings, which must agree.
    fn both(v: Value) -> Chunk<'static> {
        let text = v.to_string();
        let fast = parse_chunk(text.as_bytes()).unwrap();
        let slow = read_chunk(&v);
        assert_eq!(fast, slow, "{text}");
        slow
    }

    #[test]
    fn a_content_chunk_reads_its_text_and_nothing_else() {
        let c = both(json!({"id":"x","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}));
        assert_eq!(c, Chunk { content: Some("Hel".into()), ..Chunk::default() });
    }

    #[test]
    fn plain_text_is_borrowed_and_escaped_text_is_decoded() {
        let raw = br#"{"choices":[{"delta":{"content":"Hel"}}]}"#;
        assert!(matches!(parse_chunk(raw).unwrap().content, Some(Cow::Borrowed("Hel"))));
        let c = both(json!({"choices":[{"delta":{"content":"a\n\"b\" \u{e9}"}}]}));
        assert_eq!(c.content.as_deref(), Some("a\n\"b\" \u{e9}"));
    }

    #[test]
    fn quirky_servers_still_parse_empty_finish_reason_and_missing_ids() {
        let c = both(json!({"choices":[{"delta":{"content":"a"},"finish_reason":""}]}));
        assert_eq!((c.content.as_deref(), c.finish_reason), (Some("a"), None));
        // Azure's content-filter chunk: no delta at all.
        let c = both(json!({"id":"","object":"","created":0,"choices":[{"index":0,"finish_reason":null}]}));
        assert_eq!(c, Chunk::default());
    }

    #[test]
    fn odd_types_fall_back_to_the_lenient_reading() {
        for v in [
            json!({"choices":{"0":{}},"usage":{"prompt_tokens":1.5}}),
            json!({"choices":[{"delta":{"content":"a"},"finish_reason":7}]}),
            json!({"choices":[{"delta":{"content":"a","tool_calls":[{"index":"x","function":{"arguments":"{"}}]}}]}),
            json!({"usage":"none","choices":[{"delta":{"content":["a"]}}]}),
        ] {
            assert_eq!(parse_chunk(v.to_string().as_bytes()).unwrap(), read_chunk(&v), "{v}");
        }
        assert!(parse_chunk(b"not json").is_err());
    }

    #[test]
    fn the_usage_chunk_has_no_choices() {
        let c = both(json!({"choices":[],"usage":{"prompt_tokens":17,"completion_tokens":10,"total_tokens":27}}));
        assert_eq!(c.usage, Some(Usage { prompt_tokens: 17, completion_tokens: 10, total_tokens: 27 }));
    }

    #[test]
    fn tool_call_fragments_keep_their_index() {
        let c = both(json!({"choices":[{"delta":{"tool_calls":[
            {"index":1,"id":"call_b","type":"function","function":{"name":"f","arguments":""}},
            {"index":0,"function":{"arguments":"{\"a\""}}]}}]}));
        assert_eq!(
            c.tool_calls[0],
            ToolCallDelta { index: 1, id: Some("call_b".into()), name: Some("f".into()), arguments: Some(String::new()) }
        );
        assert_eq!(c.tool_calls[1], ToolCallDelta { index: 0, id: None, name: None, arguments: Some("{\"a\"".into()) });
    }

    #[test]
    fn a_mid_stream_error_object_is_recognised() {
        assert!(both(json!({"error":{"message":"boom","type":"server_error"}})).error);
        assert!(!both(json!({"error":null,"choices":[]})).error);
    }
}
