//! Domain events for supervisors, built from what a message changed. Lifecycle events go to
//! `calls` and `call:<id>`; everything about one call goes to `call:<id>`.

use serde_json::{Value, json};

use super::message::Message;
use crate::calls::view;
use crate::clock::iso;
use crate::hub::{Event, topics};
use crate::store::{CallRow, SegmentRow};

/// An event and the topics it goes to.
pub struct Outgoing {
    pub topics: Vec<String>,
    pub event: Event,
}

fn event(kind: &str, org: &str, at: i64, data: Value) -> Event {
    Event { kind: kind.to_string(), at: iso(at), org_id: org.to_string(), data }
}

fn both(call_id: &str) -> Vec<String> {
    vec![topics::CALLS.to_string(), topics::call(call_id)]
}

pub fn status(call: &CallRow, at: i64) -> Outgoing {
    Outgoing { topics: both(&call.id), event: event("call.status", &call.org_id, at, json!({ "call": view::summary(call) })) }
}

pub fn ended(call: &CallRow, at: i64) -> Outgoing {
    Outgoing { topics: both(&call.id), event: event("call.ended", &call.org_id, at, json!({ "call": view::summary(call) })) }
}

/// Finals also go to `calls`, so a board can show each call's last utterance.
pub fn transcript_final(org: &str, seg: &SegmentRow) -> Outgoing {
    let data = json!({ "call_id": seg.call_id, "segment_id": seg.id, "role": seg.role, "text": seg.text, "spoken_at": iso(seg.spoken_at) });
    Outgoing { topics: both(&seg.call_id), event: event("transcript.final", org, seg.spoken_at, data) }
}

pub fn transcript_partial(m: &Message<'_>, call_id: &str, org: &str, at: i64) -> Outgoing {
    let data =
        json!({ "call_id": call_id, "role": m.str(&["role"]).unwrap_or("user"), "text": m.str(&["transcript"]).unwrap_or_default() });
    Outgoing { topics: vec![topics::call(call_id)], event: event("transcript.partial", org, at, data) }
}

pub fn speech(m: &Message<'_>, call_id: &str, org: &str, at: i64) -> Outgoing {
    let data = json!({ "call_id": call_id, "role": m.str(&["role"]), "status": m.str(&["status"]), "turn": m.get(&["turn"]) });
    Outgoing { topics: vec![topics::call(call_id)], event: event("speech", org, at, data) }
}

pub fn function_invoked(call_id: &str, org: &str, tool_call_id: &str, name: &str, args: &Value) -> Outgoing {
    let data = json!({ "call_id": call_id, "tool_call_id": tool_call_id, "name": name, "arguments": args });
    Outgoing { topics: vec![topics::call(call_id)], event: event("function.invoked", org, crate::clock::now_ms(), data) }
}

pub fn function_completed(call_id: &str, org: &str, o: &crate::functions::ToolOutcome) -> Outgoing {
    let (ok, text) = match &o.outcome {
        crate::functions::Outcome::Ok(r) => (true, r),
        crate::functions::Outcome::Err(e) => (false, e),
    };
    let data = json!({ "call_id": call_id, "tool_call_id": o.id, "name": o.name, "ok": ok,
        if ok { "result" } else { "error" }: text, "latency_ms": (o.latency_ms * 1000.0).round() / 1000.0, "replayed": o.replayed });
    Outgoing { topics: vec![topics::call(call_id)], event: event("function.completed", org, crate::clock::now_ms(), data) }
}

/// Other informational messages (hang, user-interrupted, model-output, …), with the few
/// fields a supervisor can use and none of the bulk.
pub fn activity(m: &Message<'_>, call_id: &str, org: &str, at: i64) -> Outgoing {
    let mut data = json!({ "call_id": call_id, "type": m.type_str() });
    for key in ["turnId", "output", "request", "destination", "language", "input", "text"] {
        if let Some(v) = m.get(&[key]) {
            data[key] = v.clone();
        }
    }
    Outgoing { topics: vec![topics::call(call_id)], event: event("call.activity", org, at, data) }
}
