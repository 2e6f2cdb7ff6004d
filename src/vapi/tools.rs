//! Tool calls out of `tool-calls` and legacy `function-call` messages, in every documented
//! shape (spec §2.1, §9.1–9.2, §10): OpenAI-style or flat items, `toolCallList`, the `toolCalls`
//! alias or `toolWithToolCallList`, and arguments as an object or a JSON string.

use serde_json::{Map, Value};

use super::message::{Message, get};
use crate::functions::ToolCall;

#[derive(Debug, Clone)]
pub struct Extracted {
    pub call: ToolCall,
    /// VAPI does not wait for an async tool: it is run in the background and not answered.
    pub is_async: bool,
}

pub fn extract(m: &Message<'_>) -> Vec<Extracted> {
    let wrapped: &[Value] = m.get(&["toolWithToolCallList"]).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let items: Vec<&Value> = match m.get(&["toolCallList"]).or_else(|| m.get(&["toolCalls"])).and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => wrapped.iter().filter_map(|w| w.get("toolCall")).collect(),
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let w = wrapped.get(i).filter(|w| w.get("toolCall").and_then(|t| t.get("id")) == item.get("id") || item.get("id").is_none());
            let id = str_at(item, &["id"]).or_else(|| w.and_then(|w| str_at(w, &["toolCall", "id"]))).map(str::to_string);
            let name = str_at(item, &["function", "name"])
                .or_else(|| str_at(item, &["name"]))
                .or_else(|| w.and_then(|w| str_at(w, &["function", "name"]).or_else(|| str_at(w, &["name"]))))
                .unwrap_or_default();
            let args = [&["function", "arguments"][..], &["arguments"], &["parameters"]]
                .iter()
                .find_map(|p| get(item, p).filter(|v| !v.is_null()))
                .or_else(|| w.and_then(|w| get(w, &["toolCall", "function", "arguments"]).or_else(|| get(w, &["toolCall", "parameters"]))));
            let args = arguments(args);
            // Without an id, identity comes from the message and the call itself, never "".
            let id = id.unwrap_or_else(|| derived_id("tc", m, &format!("{i}:{name}"), &args));
            Extracted {
                call: ToolCall { id, name: name.to_string(), args },
                is_async: w.and_then(|w| w.get("async")).and_then(Value::as_bool).unwrap_or(false),
            }
        })
        .collect()
}

/// The single call of a legacy `function-call`. Without `functionCall.id` its identity comes
/// from the message (call id, time, name), so a redelivery still finds the stored result.
pub fn extract_legacy(m: &Message<'_>) -> Option<(ToolCall, bool)> {
    let name = m.str(&["functionCall", "name"])?;
    let explicit = m.str(&["functionCall", "id"]);
    let args = arguments(m.get(&["functionCall", "parameters"]).or_else(|| m.get(&["functionCall", "arguments"])));
    let id = match explicit {
        Some(id) => id.to_string(),
        None => derived_id("fc", m, name, &args),
    };
    Some((ToolCall { id, name: name.to_string(), args }, explicit.is_some()))
}

/// An identity for a call VAPI sent without one: call, time, position/name and arguments, so
/// a redelivery finds it again and two different calls never share it.
fn derived_id(prefix: &str, m: &Message<'_>, what: &str, args: &Result<Value, String>) -> String {
    use sha2::Digest;
    let args_text = match args {
        Ok(v) => v.to_string(),
        Err(e) => e.clone(),
    };
    let digest = sha2::Sha256::digest(args_text.as_bytes());
    format!(
        "{prefix}:{}:{}:{what}:{}",
        m.call_id().unwrap_or("-"),
        m.timestamp_ms().map(|t| t.to_string()).unwrap_or_else(|| "-".into()),
        hex::encode(&digest[..6])
    )
}

fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    get(v, path).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Objects pass; strings are parsed as JSON; missing or null is `{}`.
fn arguments(v: Option<&Value>) -> Result<Value, String> {
    match v {
        None | Some(Value::Null) => Ok(Value::Object(Map::new())),
        Some(Value::Object(_)) => Ok(v.cloned().unwrap_or_default()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Value::Object(Map::new())),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(o @ Value::Object(_)) => Ok(o),
            Ok(_) => Err("Arguments must be a JSON object.".into()),
            Err(_) => Err("Arguments are not valid JSON.".into()),
        },
        Some(_) => Err("Arguments must be a JSON object.".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn calls(v: Value) -> Vec<Extracted> {
        let body = json!({ "message": v });
        extract(&Message::from_body(&body).unwrap())
    }

    #[test]
    fn openai_style_items_with_object_arguments() {
        let c = calls(
            json!({"type": "tool-calls", "toolCallList": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}),
        );
        assert_eq!((c[0].call.id.as_str(), c[0].call.name.as_str()), ("t1", "f"));
        assert_eq!(c[0].call.args, Ok(json!({"a": 1})));
    }

    #[test]
    fn string_arguments_are_parsed_and_broken_ones_become_an_error() {
        let c = calls(json!({"type": "tool-calls", "toolCallList": [
            {"id": "t1", "function": {"name": "f", "arguments": "{\"a\":2}"}},
            {"id": "t2", "function": {"name": "f", "arguments": "{nope"}}]}));
        assert_eq!(c[0].call.args, Ok(json!({"a": 2})));
        assert!(c[1].call.args.is_err());
    }

    #[test]
    fn flat_items_with_arguments_or_parameters() {
        let c = calls(json!({"type": "tool-calls", "toolCallList": [
            {"id": "t1", "name": "f", "arguments": {"x": 1}}, {"id": "t2", "name": "g", "parameters": {"y": 2}}]}));
        assert_eq!(c[0].call.args, Ok(json!({"x": 1})));
        assert_eq!((c[1].call.name.as_str(), c[1].call.args.clone()), ("g", Ok(json!({"y": 2}))));
    }

    #[test]
    fn the_tool_calls_alias_alone_is_read() {
        let c = calls(json!({"type": "tool-calls", "toolCalls": [{"id": "t9", "function": {"name": "f", "arguments": {}}}]}));
        assert_eq!(c[0].call.id, "t9");
    }

    #[test]
    fn tool_with_tool_call_list_alone_gives_name_and_async_flag() {
        let c = calls(json!({"type": "tool-calls", "toolWithToolCallList": [
            {"name": "f", "async": true, "toolCall": {"id": "t3", "parameters": {"z": 3}}}]}));
        assert_eq!((c[0].call.id.as_str(), c[0].call.name.as_str()), ("t3", "f"));
        assert_eq!(c[0].call.args, Ok(json!({"z": 3})));
        assert!(c[0].is_async);
    }

    #[test]
    fn legacy_function_call_without_id_gets_a_stable_identity() {
        let body = json!({"message": {"type": "function-call", "timestamp": 7, "call": {"id": "c"},
            "functionCall": {"name": "f", "parameters": "{\"q\":1}"}}});
        let (call, explicit) = extract_legacy(&Message::from_body(&body).unwrap()).unwrap();
        assert!(call.id.starts_with("fc:c:7:f:"), "{}", call.id);
        assert!(!explicit);
        assert_eq!(call.args, Ok(json!({"q": 1})));
    }
}
