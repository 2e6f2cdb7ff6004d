//! Parsing a webhook body into the JSON tree `Message` reads. Most of VAPI's traffic is partial
//! transcripts and speech updates, published to supervisors and not stored: for those only a
//! few fields matter, and building the whole tree (the call, the assistant, the phone number:
//! dozens of objects) and dropping it again was the largest share of a webhook's work. So the
//! body is first read with every field such a message does not use skipped; only a message
//! that will be stored is then parsed whole. Anything unusual (a field of an unexpected type,
//! a repeated key) falls back to the whole tree, so the answer is always the one the full
//! parse gives.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::message::Message;
use super::record;

/// The body as a JSON tree: whole, or only what an unstored message uses when
/// `keep_ephemeral` is off (ephemeral messages are then published and not logged).
pub fn body(raw: &[u8], keep_ephemeral: bool) -> serde_json::Result<Value> {
    if !keep_ephemeral && let Some(slim) = slim(raw) {
        return Ok(slim);
    }
    serde_json::from_slice(raw)
}

/// What publishing an unstored message reads (`events::transcript_partial`, `speech`,
/// `activity`; the call, org and time of `Message`). A field missing here would silently
/// vanish from the live event, so the test below compares with the full parse.
#[derive(Deserialize)]
struct Slim {
    message: SlimMessage,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SlimMessage {
    #[serde(rename = "type")]
    kind: String,
    transcript_type: Option<Value>,
    timestamp: Option<Value>,
    role: Option<Value>,
    transcript: Option<Value>,
    status: Option<Value>,
    turn: Option<Value>,
    turn_id: Option<Value>,
    output: Option<Value>,
    request: Option<Value>,
    destination: Option<Value>,
    language: Option<Value>,
    input: Option<Value>,
    text: Option<Value>,
    call: Option<Ids>,
    phone_number: Option<Ids>,
    chat: Option<Ids>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Ids {
    id: Option<Value>,
    org_id: Option<Value>,
}

fn slim(raw: &[u8]) -> Option<Value> {
    let m = serde_json::from_slice::<Slim>(raw).ok()?.message;
    let mut head = Map::new();
    head.insert("type".into(), Value::String(m.kind.clone()));
    if let Some(t) = &m.transcript_type {
        head.insert("transcriptType".into(), t.clone());
    }
    if !record::is_ephemeral(&Message { v: &Value::Object(head) }) {
        return None;
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(m.kind));
    let fields = [
        ("transcriptType", m.transcript_type),
        ("timestamp", m.timestamp),
        ("role", m.role),
        ("transcript", m.transcript),
        ("status", m.status),
        ("turn", m.turn),
        ("turnId", m.turn_id),
        ("output", m.output),
        ("request", m.request),
        ("destination", m.destination),
        ("language", m.language),
        ("input", m.input),
        ("text", m.text),
    ];
    out.extend(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))));
    for (k, ids) in [("call", m.call), ("phoneNumber", m.phone_number), ("chat", m.chat)] {
        if let Some(ids) = ids {
            let mut o = Map::new();
            o.extend([("id", ids.id), ("orgId", ids.org_id)].into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))));
            out.insert(k.to_string(), Value::Object(o));
        }
    }
    let mut body = Map::new();
    body.insert("message".into(), Value::Object(out));
    Some(Value::Object(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vapi::events;
    use crate::vapi::message::Kind;
    use serde_json::json;

    fn envelope(message: Value) -> Vec<u8> {
        let mut m = json!({
            "timestamp": 1773500976935u64,
            "call": {"id": "c-1", "orgId": "org-1", "assistantId": "a", "customer": {"number": "+1"}, "monitor": {"listenUrl": "wss://x"}},
            "phoneNumber": {"orgId": "org-1", "number": "+2", "twilioAuthToken": "t"},
            "assistant": {"name": "Riley", "model": {"provider": "openai"}},
        });
        m.as_object_mut().unwrap().extend(message.as_object().unwrap().clone());
        serde_json::to_vec(&json!({ "message": m })).unwrap()
    }

    /// The live event an unstored message becomes, as `VapiService::publish_live` builds it.
    fn live(body: &Value) -> (Option<String>, Option<i64>, Value) {
        let m = Message::from_body(body).unwrap();
        let (call, org, at) = (m.call_id().unwrap(), m.org_id().unwrap(), m.timestamp_ms());
        let out = match m.kind() {
            Kind::Transcript => events::transcript_partial(&m, call, org, 0),
            Kind::SpeechUpdate => events::speech(&m, call, org, 0),
            _ => events::activity(&m, call, org, 0),
        };
        (Some(format!("{call}/{org}")), at, json!({"topics": out.topics, "data": out.event.data}))
    }

    #[test]
    fn unstored_messages_read_slim_publish_exactly_what_the_full_parse_does() {
        let cases = [
            json!({"type": "transcript", "transcriptType": "partial", "role": "user", "transcript": "I'd like to \"book\""}),
            json!({"type": "speech-update", "status": "started", "role": "assistant", "turn": 3}),
            json!({"type": "model-output", "output": [{"role": "assistant", "content": "Hi"}], "turnId": "t-9"}),
            json!({"type": "transcript", "role": "assistant", "transcript": "no type given", "timestamp": "2026-03-14T15:09:36.935Z"}),
        ];
        for case in cases {
            let raw = envelope(case.clone());
            let full: Value = serde_json::from_slice(&raw).unwrap();
            let slim = body(&raw, false).unwrap();
            assert_ne!(slim, full, "the slim tree is smaller: {case}");
            assert_eq!(live(&slim), live(&full), "{case}");
        }
    }

    #[test]
    fn stored_unusual_or_logged_messages_are_parsed_whole() {
        let whole = |raw: &[u8], keep: bool| body(raw, keep).unwrap() == serde_json::from_slice::<Value>(raw).unwrap();
        let stored = [
            json!({"type": "transcript", "transcriptType": "final", "role": "user", "transcript": "done"}),
            json!({"type": "transcript[transcriptType=\"final\"]", "role": "user", "transcript": "done"}),
            json!({"type": "status-update", "status": "in-progress"}),
            json!({"type": "tool-calls", "toolCallList": []}),
        ];
        for case in stored {
            assert!(whole(&envelope(case.clone()), false), "{case}");
        }
        // Kept in the raw log when configured so.
        assert!(whole(&envelope(json!({"type": "speech-update", "status": "started"})), true));
        // A field of an unexpected type, a repeated key: the full parse decides.
        assert!(whole(&envelope(json!({"type": "speech-update", "call": "c-1"})), false));
        assert!(whole(br#"{"message": {"type": "speech-update", "role": "user", "role": "bot", "call": {"id": "c"}}}"#, false));
        assert!(body(b"{not json", false).is_err());
    }
}
