//! How a call looks from outside (API responses and events): ISO times, parsed JSON fields,
//! and a duration derived from start and end.

use serde_json::{Value, json};

use crate::clock::iso;
use crate::store::{CallRow, InvocationRow, RecordingRow, SegmentRow};

fn json_field(s: &Option<String>) -> Value {
    s.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or(Value::Null)
}

pub fn duration_seconds(c: &CallRow) -> Option<f64> {
    match (c.started_at, c.ended_at) {
        (Some(s), Some(e)) if e >= s => Some((e - s) as f64 / 1000.0),
        _ => None,
    }
}

/// The fields a live board or a list needs.
pub fn summary(c: &CallRow) -> Value {
    json!({
        "id": c.id,
        "org_id": c.org_id,
        "assistant_id": c.assistant_id,
        "assistant_name": c.assistant_name,
        "type": c.call_type,
        "customer_number": c.customer_number,
        "phone_number": c.phone_number,
        "status": c.status,
        "created_at": iso(c.created_at),
        "started_at": c.started_at.map(iso),
        "ended_at": c.ended_at.map(iso),
        "duration_seconds": duration_seconds(c),
        "ended_reason": c.ended_reason,
        "cost": c.cost,
        "summary": c.summary,
    })
}

pub fn segment(s: &SegmentRow) -> Value {
    json!({ "id": s.id, "role": s.role, "text": s.text, "spoken_at": iso(s.spoken_at) })
}

pub fn invocation(i: &InvocationRow) -> Value {
    json!({
        "tool_call_id": i.tool_call_id,
        "name": i.name,
        "arguments": serde_json::from_str::<Value>(&i.arguments).unwrap_or(Value::String(i.arguments.clone())),
        "status": i.status,
        "result": i.result,
        "error": i.error,
        "latency_ms": i.latency_ms,
        "started_at": iso(i.started_at),
        "finished_at": i.finished_at.map(iso),
    })
}

pub fn recording(r: &RecordingRow) -> Value {
    json!({
        "kind": r.kind,
        "source_url": r.source_url,
        "state": r.state,
        "created_at": iso(r.created_at),
        "size_bytes": r.size_bytes,
        "sha256": r.sha256,
        "content_type": r.content_type,
        "reason": r.reason,
    })
}

/// One call with everything known about it.
pub fn detail(c: &CallRow, transcript: &[SegmentRow], invocations: &[InvocationRow], recordings: &[RecordingRow]) -> Value {
    let mut v = summary(c);
    v["cost_breakdown"] = json_field(&c.cost_breakdown);
    v["analysis"] = json_field(&c.analysis);
    v["metadata"] = json_field(&c.metadata);
    v["monitor"] = json!({ "control_url": c.control_url, "listen_url": c.listen_url });
    v["transcript"] = transcript.iter().map(segment).collect();
    v["function_invocations"] = invocations.iter().map(invocation).collect();
    v["recordings"] = recordings.iter().map(recording).collect();
    v
}
