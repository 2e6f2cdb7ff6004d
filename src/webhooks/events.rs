//! The events endpoints subscribe to, the filter that picks them, and one event's identity.
//! An event's id is a hash of what it is about (the call, the segment, the tool call, …), not
//! of when it was seen: the same fact reported twice (a redelivered VAPI webhook, two
//! instances) has one id, so the jobs' dedup key lets one delivery per endpoint through.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::calls::view;
use crate::clock::iso;
use crate::store::{CallRow, SegmentRow};

pub const CALL_STARTED: &str = "call.started";
pub const CALL_ENDED: &str = "call.ended";
pub const TRANSCRIPT_FINAL: &str = "transcript.final";
pub const FUNCTION_COMPLETED: &str = "function.completed";
pub const RECORDING_READY: &str = "recording.ready";
pub const CHAT_MESSAGE: &str = "chat.message";

/// Every event an endpoint can subscribe to.
pub const ALL: [&str; 6] = [CALL_STARTED, CALL_ENDED, TRANSCRIPT_FINAL, FUNCTION_COMPLETED, RECORDING_READY, CHAT_MESSAGE];

/// One thing that happened, ready to deliver to every endpoint that wants it.
#[derive(Debug, Clone)]
pub struct WebhookEvent {
    pub kind: &'static str,
    /// `msg_` and 32 hex digits: the `webhook-id` header, the same for every attempt.
    pub id: String,
    /// When it happened (ms).
    pub at: i64,
    /// `data` of the body; always has `org_id`.
    pub data: Value,
}

impl WebhookEvent {
    /// `identity` names the fact (e.g. the call id for `call.started`); see the module doc.
    pub fn new(kind: &'static str, identity: &str, org_id: &str, at: i64, data: Value) -> Self {
        let mut obj = match data {
            Value::Object(o) => o,
            other => Map::from_iter([("value".to_string(), other)]),
        };
        obj.insert("org_id".into(), Value::from(org_id));
        let digest = Sha256::digest(format!("{kind}\n{identity}").as_bytes());
        Self { kind, id: format!("msg_{}", hex::encode(&digest[..16])), at, data: Value::Object(obj) }
    }

    /// The body every endpoint gets: `{"type","timestamp","data"}`.
    pub fn body(&self) -> Value {
        json!({ "type": self.kind, "timestamp": iso(self.at), "data": self.data })
    }
}

/// What an endpoint receives: every event, or the ones named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    All,
    Only(Vec<&'static str>),
}

impl Filter {
    /// From an admin's list: known names (duplicates dropped), or `["*"]` alone. `Err` says why.
    pub fn parse(names: &[String]) -> Result<Filter, String> {
        if names.is_empty() {
            return Err(format!("events must name at least one event: {} (or \"*\" for all)", ALL.join(", ")));
        }
        if names.iter().any(|n| n == "*") {
            return if names.len() == 1 { Ok(Filter::All) } else { Err("\"*\" must be the only entry of events".into()) };
        }
        let mut picked: Vec<&'static str> = Vec::new();
        for n in names {
            let Some(known) = ALL.iter().find(|k| **k == n.as_str()) else {
                let shown: String = n.chars().take(60).collect();
                return Err(format!("{shown:?} is not an event; events are {} (or \"*\" for all)", ALL.join(", ")));
            };
            if !picked.contains(known) {
                picked.push(known);
            }
        }
        Ok(Filter::Only(picked))
    }

    /// From the stored JSON; an unreadable one matches nothing (and is logged by the caller).
    pub fn from_stored(json: &str) -> Option<Filter> {
        let names: Vec<String> = serde_json::from_str(json).ok()?;
        Filter::parse(&names).ok()
    }

    pub fn names(&self) -> Vec<&'static str> {
        match self {
            Filter::All => vec!["*"],
            Filter::Only(v) => v.clone(),
        }
    }

    pub fn matches(&self, kind: &str) -> bool {
        match self {
            Filter::All => true,
            Filter::Only(v) => v.contains(&kind),
        }
    }
}

/// `call.started`: the first time the hub records the call as in progress (see the README).
pub fn call_started(call: &CallRow, at: i64) -> WebhookEvent {
    WebhookEvent::new(CALL_STARTED, &call.id, &call.org_id, at, json!({ "call": view::summary(call) }))
}

/// `call.ended`: the end-of-call report was stored.
pub fn call_ended(call: &CallRow, at: i64) -> WebhookEvent {
    WebhookEvent::new(CALL_ENDED, &call.id, &call.org_id, at, json!({ "call": view::summary(call) }))
}

pub fn transcript_final(org: &str, seg: &SegmentRow) -> WebhookEvent {
    let data = json!({ "call_id": seg.call_id, "segment_id": seg.id, "role": seg.role, "text": seg.text, "spoken_at": iso(seg.spoken_at) });
    WebhookEvent::new(TRANSCRIPT_FINAL, &seg.id.to_string(), org, seg.spoken_at, data)
}

/// `data` is the live event's (`call_id`, `tool_call_id`, `name`, `ok`, `result`|`error`, …).
pub fn function_completed(org: &str, tool_call_id: &str, at: i64, data: Value) -> WebhookEvent {
    WebhookEvent::new(FUNCTION_COMPLETED, tool_call_id, org, at, data)
}

pub fn recording_ready(org: &str, recording_id: i64, at: i64, data: Value) -> WebhookEvent {
    WebhookEvent::new(RECORDING_READY, &recording_id.to_string(), org, at, data)
}

/// `message` carries the stored message's `id`, which names the event.
pub fn chat_message(org: &str, session_id: &str, message_id: &str, at: i64, message: Value) -> WebhookEvent {
    WebhookEvent::new(CHAT_MESSAGE, message_id, org, at, json!({ "session_id": session_id, "message": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_filter_takes_known_names_or_a_lone_star() {
        assert_eq!(Filter::parse(&names(&["*"])), Ok(Filter::All));
        assert_eq!(Filter::parse(&names(&["call.ended", "call.ended", "call.started"])), Ok(Filter::Only(vec![CALL_ENDED, CALL_STARTED])));
        for bad in [&[][..], &["call.exploded"], &["*", "call.ended"], &["Call.Ended"], &[""]] {
            assert!(Filter::parse(&names(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_filter_matches_only_what_it_names() {
        let f = Filter::parse(&names(&["call.ended"])).unwrap();
        assert!(f.matches(CALL_ENDED) && !f.matches(CALL_STARTED));
        assert!(Filter::All.matches(CHAT_MESSAGE));
        assert_eq!(Filter::from_stored("[\"transcript.final\"]"), Some(Filter::Only(vec![TRANSCRIPT_FINAL])));
        assert_eq!(Filter::from_stored("not json"), None);
    }

    #[test]
    fn the_same_fact_has_the_same_id_and_different_facts_do_not() {
        let a = WebhookEvent::new(CALL_ENDED, "c1", "o", 1, json!({}));
        let b = WebhookEvent::new(CALL_ENDED, "c1", "o", 2, json!({"x": 1}));
        let c = WebhookEvent::new(CALL_STARTED, "c1", "o", 1, json!({}));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert!(a.id.starts_with("msg_") && a.id.len() == 36 && a.id[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.body()["data"]["org_id"], "o");
        assert_eq!(a.body()["type"], "call.ended");
    }
}
