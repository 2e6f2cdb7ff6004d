//! The supervisor socket's wire format (architecture.md, "Supervisor WebSocket protocol"):
//! JSON text frames in both directions, and the close codes that tell a client whether to
//! reconnect.

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hub::{Position, Published};

/// Close codes. 4001 and 4003 are terminal; 4008, 4009 and 4408 invite a reconnect.
pub mod close {
    pub const UNAUTHORIZED: u16 = 4001;
    pub const FORBIDDEN: u16 = 4003;
    pub const TOO_SLOW: u16 = 4008;
    pub const SHUTTING_DOWN: u16 = 4009;
    pub const BAD_MESSAGE: u16 = 4400;
    /// Not in the contract's list: nothing (not even a pong) arrived within the idle timeout.
    pub const IDLE: u16 = 4408;
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    Subscribe {
        topic: String,
        #[serde(default)]
        since: Option<Since>,
    },
    Unsubscribe {
        topic: String,
    },
    Ping,
    Control {
        call_id: String,
        action: Value,
        /// Echoed in the answer so a client can match it to its request.
        #[serde(default)]
        id: Option<Value>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
}

impl From<Since> for Position {
    fn from(s: Since) -> Self {
        Position { epoch: s.epoch, seq: s.seq }
    }
}

/// The topics a supervisor can name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topic {
    Calls,
    Call(String),
    Chats,
    Chat(String),
}

/// Ids longer than this are refused, as on the webhook.
const MAX_ID: usize = 256;

impl Topic {
    pub fn parse(s: &str) -> Option<Topic> {
        let id_ok = |id: &str| !id.is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control);
        match s {
            "calls" => Some(Topic::Calls),
            "chats" => Some(Topic::Chats),
            _ => {
                if let Some(id) = s.strip_prefix("call:") {
                    id_ok(id).then(|| Topic::Call(id.to_string()))
                } else if let Some(id) = s.strip_prefix("chat:") {
                    id_ok(id).then(|| Topic::Chat(id.to_string()))
                } else {
                    None
                }
            }
        }
    }
}

#[derive(Serialize)]
struct Subscribed<'a> {
    r#type: &'static str,
    topic: &'a str,
    epoch: &'a str,
    seq: u64,
    recovered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<&'a Value>,
}

fn text(v: &impl Serialize) -> Utf8Bytes {
    // Serializing our own types cannot fail; an empty frame would be refused by clients anyway.
    serde_json::to_string(v).unwrap_or_default().into()
}

pub fn subscribed(topic: &str, at: &Position, recovered: bool, snapshot: Option<&Value>) -> Utf8Bytes {
    text(&Subscribed { r#type: "subscribed", topic, epoch: &at.epoch, seq: at.seq, recovered, snapshot })
}

/// Encoded once per event, shared by every socket that sends it.
pub fn event(p: &Published) -> Utf8Bytes {
    p.frame.get_or_init(|| text(&json!({ "type": "event", "topic": p.topic, "epoch": p.epoch, "seq": p.seq, "event": p.event }))).clone()
}

pub fn resync(topic: &str, reason: &str) -> Utf8Bytes {
    text(&json!({ "type": "resync", "topic": topic, "reason": reason }))
}

pub fn unsubscribed(topic: &str) -> Utf8Bytes {
    text(&json!({ "type": "unsubscribed", "topic": topic }))
}

pub fn pong() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"type":"pong"}"#)
}

pub fn error(code: &str, message: &str, topic: Option<&str>) -> Utf8Bytes {
    let mut v = json!({ "type": "error", "error": { "code": code, "message": message } });
    if let Some(t) = topic {
        v["topic"] = json!(t);
    }
    text(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_and_odd_names_are_refused() {
        assert_eq!(Topic::parse("calls"), Some(Topic::Calls));
        assert_eq!(Topic::parse("call:abc"), Some(Topic::Call("abc".into())));
        assert_eq!(Topic::parse("chat:s1"), Some(Topic::Chat("s1".into())));
        for bad in ["call:", "calls:x", "call", "", "other", "call:a\nb"] {
            assert_eq!(Topic::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Topic::parse(&format!("call:{}", "x".repeat(257))), None);
    }

    #[test]
    fn client_messages_parse_strictly() {
        let m: ClientMessage = serde_json::from_str(r#"{"type":"subscribe","topic":"call:1","since":{"epoch":"e","seq":4}}"#).unwrap();
        assert!(matches!(m, ClientMessage::Subscribe { since: Some(Since { seq: 4, .. }), .. }));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"subscribe","topic":"calls","extra":1}"#).is_err());
    }

    #[test]
    fn an_event_frame_carries_topic_position_and_event_but_not_the_org() {
        let ev = crate::hub::Event { kind: "call.status".into(), at: "t".into(), org_id: "secret-org".into(), data: json!({"a":1}) };
        let p = Published::new("calls", "ep", 7, ev);
        let v: Value = serde_json::from_str(&event(&p)).unwrap();
        assert_eq!(v, json!({"type":"event","topic":"calls","epoch":"ep","seq":7,"event":{"kind":"call.status","at":"t","data":{"a":1}}}));
    }
}
