//! What a run says while it answers, as broker events on `chat:<session>` and as the SSE
//! events a browser reads. A run numbers its own events (`n` from 1) so any follower, on any
//! instance, can resume after `<run_id>:<n>` and see each event exactly once.

use axum::response::sse::Event as SseEvent;
use serde_json::{Value, json};

use crate::hub::{Event, Published};

pub const STARTED: &str = "chat.started";
pub const DELTA: &str = "chat.delta";
pub const TOOL: &str = "chat.tool";
pub const DONE: &str = "chat.done";
pub const STOPPED: &str = "chat.stopped";
pub const ERROR: &str = "chat.error";
/// A user message stored (also on `chats`).
pub const MESSAGE: &str = "chat.message";
/// Someone asked the run to stop; the instance running it stops it.
pub const STOP_REQUESTED: &str = "chat.stop_requested";

/// One event of a run, read back from the broker.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub run_id: String,
    pub n: u64,
    pub kind: String,
    pub data: Value,
}

impl RunEvent {
    /// `None` for events that are not numbered run events (user messages, stop requests).
    pub fn from_published(p: &Published) -> Option<RunEvent> {
        let data = &p.event.data;
        let run_id = data.get("run_id")?.as_str()?;
        let n = data.get("n")?.as_u64()?;
        Some(RunEvent { run_id: run_id.to_string(), n, kind: p.event.kind.clone(), data: data.clone() })
    }

    /// The run is over after this event: nothing follows it.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind.as_str(), DONE | STOPPED | ERROR)
    }

    /// The SSE form of the contract; `None` for events a browser does not need (`started`).
    pub fn to_sse(&self) -> Option<SseEvent> {
        let id = format!("{}:{}", self.run_id, self.n);
        let (name, body) = match self.kind.as_str() {
            DELTA => ("delta", json!({ "content": self.data.get("content").cloned().unwrap_or(Value::Null) })),
            TOOL => ("tool", pick(&self.data, &["name", "status", "result", "error", "tool_call_id"])),
            DONE => ("done", pick(&self.data, &["message_id", "finish_reason", "usage"])),
            // A stop ends the stream like an answer does: `done`, with finish_reason `stopped`.
            STOPPED => ("done", pick(&self.data, &["message_id", "finish_reason", "usage"])),
            ERROR => ("error", pick(&self.data, &["error", "message_id"])),
            _ => return None,
        };
        // `json_data` writes one `data:` line of JSON; ids and names are ours, never user text.
        SseEvent::default().id(id).event(name).json_data(body).ok()
    }
}

/// The listed fields of `data`, as an object (absent ones left out).
fn pick(data: &Value, keys: &[&str]) -> Value {
    let mut out = serde_json::Map::new();
    for k in keys {
        if let Some(v) = data.get(*k) {
            out.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(out)
}

/// An event of a run, before the broker numbers it on its topic.
pub fn run_event(kind: &str, org_id: &str, session_id: &str, run_id: &str, n: u64, mut data: Value) -> Event {
    if let Some(obj) = data.as_object_mut() {
        obj.insert("session_id".into(), session_id.into());
        obj.insert("run_id".into(), run_id.into());
        obj.insert("n".into(), n.into());
    }
    Event { kind: kind.into(), at: crate::clock::iso(crate::clock::now_ms()), org_id: org_id.into(), data }
}

/// Parses `Last-Event-ID` (`<run_id>:<n>`); anything else is no position at all.
pub fn parse_last_event_id(raw: &str) -> Option<(String, u64)> {
    if raw.len() > 200 {
        return None;
    }
    let (run, n) = raw.trim().rsplit_once(':')?;
    let n: u64 = n.parse().ok()?;
    (!run.is_empty()).then(|| (run.to_string(), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(kind: &str, data: Value) -> Published {
        Published::new("chat:s", "e", 1, Event { kind: kind.into(), at: String::new(), org_id: "o".into(), data })
    }

    #[test]
    fn a_delta_becomes_an_sse_delta_with_the_run_position_as_id() {
        let ev = run_event(DELTA, "o", "s", "r1", 7, json!({"content": "Hel"}));
        let p = Published::new("chat:s", "e", 3, ev);
        let r = RunEvent::from_published(&p).unwrap();
        assert_eq!((r.run_id.as_str(), r.n, r.is_terminal()), ("r1", 7, false));
        assert!(r.to_sse().is_some());
    }

    #[test]
    fn events_without_a_run_position_are_not_run_events() {
        assert!(RunEvent::from_published(&published(MESSAGE, json!({"session_id": "s"}))).is_none());
        assert!(RunEvent::from_published(&published(STOP_REQUESTED, json!({"run_id": "r"}))).is_none());
    }

    #[test]
    fn done_stopped_and_error_end_a_run() {
        for kind in [DONE, STOPPED, ERROR] {
            let r = RunEvent::from_published(&published(kind, json!({"run_id": "r", "n": 2}))).unwrap();
            assert!(r.is_terminal(), "{kind}");
        }
    }

    #[test]
    fn last_event_ids_parse_only_in_their_own_shape() {
        assert_eq!(parse_last_event_id("0193-abc:12"), Some(("0193-abc".into(), 12)));
        for bad in ["", "12", ":3", "r:-1", "r:x", &"r".repeat(300)] {
            assert_eq!(parse_last_event_id(bad), None, "{bad}");
        }
    }
}
