//! What a message means for the record: the call it names, the change it makes, and the
//! dedup key that makes a redelivery a no-op (VAPI messages carry no id of their own, spec §6).

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::message::{Kind, Message, clean_url, time_value};
use super::redact::redacted_json;
use crate::store::{CallChange, CallSeen, EndReport, Ingest, NewRecording, NewSegment, RawEvent, StatusChange};

/// The org a message belongs to.
pub fn org_of(m: &Message<'_>, default_org: &str) -> String {
    m.org_id().unwrap_or(default_org).to_string()
}

pub fn call_seen(m: &Message<'_>, org: &str, now: i64) -> Option<CallSeen> {
    let id = m.call_id()?;
    let created_at = m.str(&["call", "createdAt"]).and_then(crate::clock::parse_iso).or_else(|| m.timestamp_ms()).unwrap_or(now);
    Some(CallSeen {
        id: id.to_string(),
        org_id: org.to_string(),
        assistant_id: m.assistant_id().map(str::to_string),
        assistant_name: m
            .str(&["assistant", "name"])
            .or_else(|| m.str(&["call", "assistant", "name"]))
            .map(|n| n.trim().chars().take(200).collect::<String>())
            .filter(|n| !n.is_empty()),
        call_type: m.str(&["call", "type"]).map(str::to_string),
        customer_number: m.customer_number().map(str::to_string),
        phone_number: m.phone_number().map(str::to_string),
        created_at,
        seen_at: m.timestamp_ms().unwrap_or(now),
        initial_status: m.str(&["call", "status"]).map(str::to_string),
        control_url: m.str(&["call", "monitor", "controlUrl"]).map(clean_url),
        listen_url: m.str(&["call", "monitor", "listenUrl"]).map(clean_url),
        metadata: metadata(m),
    })
}

/// VAPI has no `call.metadata` today (spec §4.1): user data rides on the assistant, its
/// overrides, or the 2024 call object. All three are merged, later ones winning.
fn metadata(m: &Message<'_>) -> Option<String> {
    let mut merged = serde_json::Map::new();
    for path in [&["call", "metadata"][..], &["assistant", "metadata"], &["call", "assistantOverrides", "metadata"]] {
        if let Some(Value::Object(o)) = m.get(path) {
            merged.extend(o.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    (!merged.is_empty()).then(|| redacted_json(&Value::Object(merged)))
}

/// Partial transcripts and other per-token chatter: published live, not stored by default.
pub fn is_ephemeral(m: &Message<'_>) -> bool {
    match m.kind() {
        Kind::Transcript => transcript_type(m) == "partial",
        Kind::SpeechUpdate => true,
        _ => m.type_str() == "model-output",
    }
}

/// `transcriptType`; the typed final-only subscription implies `final`.
pub fn transcript_type<'a>(m: &Message<'a>) -> &'a str {
    m.str(&["transcriptType"]).unwrap_or(if m.type_str().contains("final") { "final" } else { "partial" })
}

pub fn change(m: &Message<'_>, now: i64) -> CallChange {
    let at = m.timestamp_ms().unwrap_or(now);
    match m.kind() {
        Kind::StatusUpdate => match m.str(&["status"]) {
            // `message.status`, never the possibly stale `call.status`.
            Some(status) => CallChange::Status(StatusChange {
                status: status.to_string(),
                at,
                ended_reason: m.str(&["endedReason"]).map(str::to_string),
            }),
            None => CallChange::Nothing,
        },
        Kind::Transcript if transcript_type(m) == "final" => match m.str(&["transcript"]) {
            Some(text) => CallChange::Transcript(NewSegment {
                role: m.str(&["role"]).unwrap_or("user").to_string(),
                text: text.to_string(),
                spoken_at: at,
            }),
            None => CallChange::Nothing,
        },
        Kind::EndOfCallReport => CallChange::Ended(end_report(m, at)),
        _ => CallChange::Nothing,
    }
}

/// Current fields first, then the legacy top-level ones (spec §2.1 EOCR, §8).
fn end_report(m: &Message<'_>, at: i64) -> EndReport {
    let time = |paths: &[&[&str]]| paths.iter().find_map(|p| m.get(p).and_then(time_value));
    let json_at = |paths: &[&[&str]]| paths.iter().find_map(|p| m.get(p)).map(redacted_json);
    EndReport {
        ended_reason: m.str(&["endedReason"]).or_else(|| m.str(&["call", "endedReason"])).map(str::to_string),
        started_at: time(&[&["startedAt"], &["call", "startedAt"]]),
        ended_at: time(&[&["endedAt"], &["call", "endedAt"]]).unwrap_or(at),
        cost: [&["cost"][..], &["call", "cost"]].iter().find_map(|p| m.get(p).and_then(Value::as_f64)),
        cost_breakdown: json_at(&[&["costBreakdown"], &["call", "costBreakdown"], &["costs"], &["call", "costs"]]),
        summary: m.str(&["analysis", "summary"]).or_else(|| m.str(&["summary"])).map(str::to_string),
        analysis: json_at(&[&["analysis"]]),
        recordings: recordings(m),
    }
}

/// Every recording URL the report carries, by kind, current shape before legacy.
pub fn recordings(m: &Message<'_>) -> Vec<NewRecording> {
    let kinds: [(&str, &[&[&str]]); 5] = [
        ("mono", &[&["artifact", "recording", "mono", "combinedUrl"], &["artifact", "recordingUrl"], &["recordingUrl"]]),
        ("stereo", &[&["artifact", "recording", "stereoUrl"], &["artifact", "stereoRecordingUrl"], &["stereoRecordingUrl"]]),
        ("assistant", &[&["artifact", "recording", "mono", "assistantUrl"]]),
        ("customer", &[&["artifact", "recording", "mono", "customerUrl"]]),
        ("video", &[&["artifact", "recording", "videoUrl"], &["artifact", "videoRecordingUrl"]]),
    ];
    kinds
        .iter()
        .filter_map(|(kind, paths)| {
            paths.iter().find_map(|p| m.str(p)).map(|url| NewRecording { kind: (*kind).to_string(), source_url: url.to_string() })
        })
        .collect()
}

/// The identity of a message across redeliveries. Presigned URLs change per delivery, so
/// bodies are not hashed where a semantic key exists (reliability.md WH-6).
pub fn dedup_key(m: &Message<'_>, raw: &[u8]) -> String {
    let key = semantic_key(m, raw);
    // Keys index a unique column: bound their size whatever the input.
    if key.len() <= 200 {
        return key;
    }
    let mut cut = 120;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…{}", &key[..cut], short_hash(key.as_bytes()))
}

fn semantic_key(m: &Message<'_>, raw: &[u8]) -> String {
    let call = m.call_id().unwrap_or("-");
    // Without a timestamp two distinct messages could look alike: the body tells them apart.
    let ts = match m.get(&["timestamp"]) {
        Some(v) => time_value(v).map(|t| t.to_string()).unwrap_or_else(|| v.to_string()),
        None => format!("body-{}", short_hash(raw)),
    };
    match m.kind() {
        // The time is part of it: forwarding → in-progress → forwarding repeats a status.
        Kind::StatusUpdate => format!("status-update:{call}:{}:{ts}", m.str(&["status"]).unwrap_or("-")),
        Kind::EndOfCallReport => format!("end-of-call-report:{call}"),
        Kind::Transcript => format!(
            "transcript:{call}:{}:{}:{ts}:{}",
            transcript_type(m),
            m.str(&["role"]).unwrap_or("-"),
            short_hash(m.str(&["transcript"]).unwrap_or_default().as_bytes())
        ),
        _ => format!("{}:{call}:{ts}", m.type_str()),
    }
}

fn short_hash(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..8])
}

/// Everything one message records. When the message itself sets the status, the embedded
/// (possibly stale) one must not pre-empt it on first insert.
pub fn ingest(m: &Message<'_>, org: &str, raw: &[u8], now: i64) -> Ingest {
    let change = change(m, now);
    let mut call = call_seen(m, org, now);
    if let (Some(c), CallChange::Status(_) | CallChange::Ended(_)) = (&mut call, &change) {
        c.initial_status = None;
    }
    Ingest { raw: raw_event(m, org, dedup_key(m, raw), now), call, change, follow_ups: None }
}

pub fn raw_event(m: &Message<'_>, org: &str, dedup_key: String, now: i64) -> RawEvent {
    RawEvent {
        call_id: m.call_id().map(str::to_string),
        org_id: org.to_string(),
        kind: m.type_str().chars().take(100).collect(),
        received_at: now,
        message_ts: m.timestamp_ms(),
        dedup_key,
        payload: redacted_json(m.v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(v: &Value) -> Message<'_> {
        Message::from_body(v).unwrap()
    }

    #[test]
    fn current_recording_fields_win_over_legacy_ones() {
        let v = json!({"message": {"type": "end-of-call-report", "recordingUrl": "https://old/m.wav",
            "artifact": {"recording": {"mono": {"combinedUrl": "https://new/m.wav"}, "stereoUrl": "https://new/s.wav"}}}});
        let r = recordings(&msg(&v));
        assert_eq!(
            r.iter().map(|r| (r.kind.as_str(), r.source_url.as_str())).collect::<Vec<_>>(),
            vec![("mono", "https://new/m.wav"), ("stereo", "https://new/s.wav")]
        );
    }

    #[test]
    fn legacy_top_level_report_fields_are_read() {
        let v = json!({"message": {"type": "end-of-call-report", "endedReason": "hangup", "summary": "short",
            "recordingUrl": "https://old/m.wav", "stereoRecordingUrl": "https://old/s.wav", "timestamp": "2024-07-04T05:39:10.225Z"}});
        let CallChange::Ended(r) = change(&msg(&v), 0) else { panic!("expected an end report") };
        assert_eq!(r.summary.as_deref(), Some("short"));
        assert_eq!(r.ended_reason.as_deref(), Some("hangup"));
        assert_eq!(r.recordings.len(), 2);
        assert_eq!(r.ended_at, 1720071550225);
    }

    #[test]
    fn the_typed_final_subscription_is_a_final_transcript() {
        let v = json!({"message": {"type": "transcript[transcriptType=\"final\"]", "role": "assistant", "transcript": "Hello"}});
        assert!(matches!(change(&msg(&v), 0), CallChange::Transcript(s) if s.role == "assistant" && s.text == "Hello"));
    }

    #[test]
    fn redeliveries_share_a_key_even_when_presigned_urls_change() {
        let a =
            json!({"message": {"type": "end-of-call-report", "call": {"id": "c1"}, "artifact": {"presignedMonoUrl": "https://x?sig=1"}}});
        let b =
            json!({"message": {"type": "end-of-call-report", "call": {"id": "c1"}, "artifact": {"presignedMonoUrl": "https://x?sig=2"}}});
        assert_eq!(dedup_key(&msg(&a), b"a"), dedup_key(&msg(&b), b"b"));
    }

    #[test]
    fn different_final_utterances_at_the_same_time_get_different_keys() {
        let a = json!({"message": {"type": "transcript", "transcriptType": "final", "role": "user", "transcript": "yes", "timestamp": 5}});
        let b = json!({"message": {"type": "transcript", "transcriptType": "final", "role": "user", "transcript": "no", "timestamp": 5}});
        assert_ne!(dedup_key(&msg(&a), b""), dedup_key(&msg(&b), b""));
    }
}
