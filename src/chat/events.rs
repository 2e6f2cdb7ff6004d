//! What a run says while it answers, as broker events on `chat:<session>` and as the SSE
//! events a browser reads. A run numbers its own events (`n` from 1) so any follower, on any
//! instance, can resume after `<run_id>:<n>` and see each event exactly once.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
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

/// One event of a run, read back from the broker: the published event itself, shared, not a
/// copy (a follower reads every event of its run).
#[derive(Debug, Clone)]
pub struct RunEvent {
    published: Arc<Published>,
    pub n: u64,
}

impl RunEvent {
    /// `None` for events that are not numbered run events (user messages, stop requests).
    pub fn from_published(p: &Arc<Published>) -> Option<RunEvent> {
        let data = &p.event.data;
        data.get("run_id")?.as_str()?;
        let n = data.get("n")?.as_u64()?;
        Some(RunEvent { published: p.clone(), n })
    }

    pub fn run_id(&self) -> &str {
        self.data().get("run_id").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        &self.published.event.kind
    }

    pub fn data(&self) -> &Value {
        &self.published.event.data
    }

    /// The run is over after this event: nothing follows it.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind(), DONE | STOPPED | ERROR)
    }

    /// The SSE frame of the contract; `None` for events a browser does not need (`started`).
    pub fn to_sse(&self) -> Option<Bytes> {
        let data = self.data();
        let name = match self.kind() {
            DELTA => "delta",
            TOOL => "tool",
            // A stop ends the stream like an answer does: `done`, with finish_reason `stopped`.
            DONE | STOPPED => "done",
            ERROR => "error",
            _ => return None,
        };
        let mut out = BytesMut::with_capacity(128 + data.get("content").and_then(Value::as_str).map_or(0, str::len));
        // Ids and names are ours, never user text: no line breaks can get into these lines.
        let _ = write!(out, "id: {}:{}\nevent: {name}\ndata: ", self.run_id(), self.n);
        let body = match self.kind() {
            // The hot path: one delta per chunk (or fold of chunks), written straight out.
            DELTA => {
                out.extend_from_slice(b"{\"content\":");
                let written = serde_json::to_writer((&mut out).writer(), data.get("content").unwrap_or(&Value::Null));
                out.extend_from_slice(b"}");
                written
            }
            TOOL => serde_json::to_writer((&mut out).writer(), &pick(data, &["name", "status", "result", "error", "tool_call_id"])),
            DONE | STOPPED => serde_json::to_writer((&mut out).writer(), &pick(data, &["message_id", "finish_reason", "usage"])),
            _ => serde_json::to_writer((&mut out).writer(), &pick(data, &["error", "message_id"])),
        };
        body.ok()?;
        out.extend_from_slice(b"\n\n");
        Some(out.freeze())
    }
}

/// An `error` event outside any run's numbering (no id): the stream cannot go on.
pub fn error_frame(code: &str, message: &str) -> Bytes {
    let body = json!({"error": {"code": code, "message": message}});
    Bytes::from(format!("event: error\ndata: {body}\n\n"))
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

    fn published(kind: &str, data: Value) -> Arc<Published> {
        Arc::new(Published::new("chat:s", "e", 1, Event { kind: kind.into(), at: String::new(), org_id: "o".into(), data }))
    }

    #[test]
    fn a_delta_becomes_an_sse_delta_with_the_run_position_as_id() {
        let ev = run_event(DELTA, "o", "s", "r1", 7, json!({"content": "Hel \"lo\"\n"}));
        let p = Arc::new(Published::new("chat:s", "e", 3, ev));
        let r = RunEvent::from_published(&p).unwrap();
        assert_eq!((r.run_id(), r.n, r.is_terminal()), ("r1", 7, false));
        let frame = r.to_sse().unwrap();
        assert_eq!(&frame[..], b"id: r1:7\nevent: delta\ndata: {\"content\":\"Hel \\\"lo\\\"\\n\"}\n\n");
    }

    #[test]
    fn terminal_events_carry_only_their_contract_fields() {
        let data = json!({"message_id": "m", "finish_reason": "stopped", "usage": null});
        let r = RunEvent::from_published(&published(STOPPED, run_data("r", 9, data))).unwrap();
        let frame = String::from_utf8(r.to_sse().unwrap().to_vec()).unwrap();
        assert_eq!(frame, "id: r:9\nevent: done\ndata: {\"finish_reason\":\"stopped\",\"message_id\":\"m\",\"usage\":null}\n\n");
        assert!(RunEvent::from_published(&published(STARTED, run_data("r", 1, json!({})))).unwrap().to_sse().is_none());
        assert_eq!(&error_frame("run_lost", "x")[..], b"event: error\ndata: {\"error\":{\"code\":\"run_lost\",\"message\":\"x\"}}\n\n");
    }

    fn run_data(run: &str, n: u64, mut data: Value) -> Value {
        data["run_id"] = json!(run);
        data["n"] = json!(n);
        data
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
