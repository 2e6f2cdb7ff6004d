//! Lenient reading of VAPI messages (spec §1–§4, §8–§9). VAPI's schema is not strictly valid,
//! fields change shape between versions, and new types appear often, so a message stays a
//! `serde_json::Value` read through accessors that accept every documented variant.

use serde_json::Value;

use crate::clock::parse_iso;

/// The message types the hub acts on; everything else is `Other` and acknowledged with `{}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    AssistantRequest,
    ToolCalls,
    FunctionCall,
    TransferDestinationRequest,
    HandoffDestinationRequest,
    KnowledgeBaseRequest,
    VoiceRequest,
    EndpointingRequest,
    CampaignPredial,
    StatusUpdate,
    EndOfCallReport,
    Transcript,
    SpeechUpdate,
    /// Informational types stored and shown as call activity (hang, model-output, …).
    Activity,
    /// A type this version does not know: acknowledged, logged, kept in the raw log.
    Other,
}

impl Kind {
    pub fn of(type_str: &str) -> Kind {
        match type_str {
            "assistant-request" => Kind::AssistantRequest,
            "tool-calls" => Kind::ToolCalls,
            "function-call" => Kind::FunctionCall,
            "transfer-destination-request" => Kind::TransferDestinationRequest,
            "handoff-destination-request" => Kind::HandoffDestinationRequest,
            "knowledge-base-request" => Kind::KnowledgeBaseRequest,
            "voice-request" => Kind::VoiceRequest,
            "call.endpointing.request" => Kind::EndpointingRequest,
            "campaign.predial" => Kind::CampaignPredial,
            "status-update" => Kind::StatusUpdate,
            "end-of-call-report" => Kind::EndOfCallReport,
            "speech-update" => Kind::SpeechUpdate,
            // Also the literal `transcript[transcriptType="final"]` of final-only subscriptions.
            t if t.starts_with("transcript") => Kind::Transcript,
            "conversation-update"
            | "hang"
            | "model-output"
            | "user-interrupted"
            | "transfer-update"
            | "phone-call-control"
            | "language-changed"
            | "language-change-detected"
            | "voice-input"
            | "assistant.speechStarted"
            | "assistant.started"
            | "chat.created"
            | "chat.deleted"
            | "session.created"
            | "session.updated"
            | "session.deleted"
            | "call.deleted"
            | "call.delete.failed"
            | "call.artifact.upload" => Kind::Activity,
            _ => Kind::Other,
        }
    }

    /// A bounded label for metrics (unknown types must not explode cardinality).
    pub fn metric_label(self, type_str: &str) -> &str {
        if self == Kind::Other { "unknown" } else { type_str }
    }
}

/// The `message` object of a webhook body.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub v: &'a Value,
}

impl<'a> Message<'a> {
    /// Reads `{"message": {"type": "…", …}}`; `None` when the body is not that envelope.
    pub fn from_body(body: &'a Value) -> Option<Self> {
        let v = body.get("message")?;
        v.get("type")?.as_str()?;
        Some(Self { v })
    }

    pub fn type_str(&self) -> &'a str {
        self.v.get("type").and_then(Value::as_str).unwrap_or_default()
    }

    pub fn kind(&self) -> Kind {
        Kind::of(self.type_str())
    }

    pub fn str(&self, path: &[&str]) -> Option<&'a str> {
        get(self.v, path).and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    pub fn get(&self, path: &[&str]) -> Option<&'a Value> {
        get(self.v, path).filter(|v| !v.is_null())
    }

    /// `timestamp`: milliseconds (current) or an ISO string (before April 2025).
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.get(&["timestamp"]).and_then(time_value)
    }

    pub fn call_id(&self) -> Option<&'a str> {
        self.str(&["call", "id"])
    }

    pub fn org_id(&self) -> Option<&'a str> {
        self.str(&["call", "orgId"]).or_else(|| self.str(&["phoneNumber", "orgId"])).or_else(|| self.str(&["chat", "orgId"]))
    }

    pub fn customer_number(&self) -> Option<&'a str> {
        self.str(&["call", "customer", "number"]).or_else(|| self.str(&["customer", "number"]))
    }

    /// The VAPI number that was called or is calling.
    pub fn phone_number(&self) -> Option<&'a str> {
        self.str(&["phoneNumber", "number"])
    }

    pub fn assistant_id(&self) -> Option<&'a str> {
        self.str(&["call", "assistantId"]).or_else(|| self.str(&["assistant", "id"])).or_else(|| self.str(&["call", "assistant", "id"]))
    }
}

pub fn get<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |cur, key| cur.get(*key))
}

/// A time given as epoch milliseconds (number or digit string) or RFC 3339.
pub fn time_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0).map(|f| f as i64),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Value::String(s) => parse_iso(s),
        _ => None,
    }
}

/// A control/listen URL with the `<…>` wrapping VAPI's docs sometimes show removed.
pub fn clean_url(s: &str) -> String {
    s.trim().trim_start_matches('<').trim_end_matches('>').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timestamps_are_read_as_milliseconds_or_iso_strings() {
        assert_eq!(time_value(&json!(1773500976935u64)), Some(1773500976935));
        assert_eq!(time_value(&json!("2026-03-14T15:09:36.935Z")), Some(1773500976935));
        assert_eq!(time_value(&json!("1773500976935")), Some(1773500976935));
        assert_eq!(time_value(&json!("yesterday")), None);
        assert_eq!(time_value(&json!(-5)), None);
    }

    #[test]
    fn every_transcript_type_spelling_is_a_transcript() {
        assert_eq!(Kind::of("transcript"), Kind::Transcript);
        assert_eq!(Kind::of("transcript[transcriptType=\"final\"]"), Kind::Transcript);
        assert_eq!(Kind::of("brand-new-type"), Kind::Other);
        assert_eq!(Kind::Other.metric_label("brand-new-type"), "unknown");
    }

    #[test]
    fn the_envelope_needs_a_message_with_a_string_type() {
        assert!(Message::from_body(&json!({"message": {"type": "hang"}})).is_some());
        assert!(Message::from_body(&json!({"message": {"type": 5}})).is_none());
        assert!(Message::from_body(&json!({"type": "hang"})).is_none());
    }

    #[test]
    fn org_falls_back_from_call_to_phone_number() {
        let body = json!({"message": {"type": "hang", "phoneNumber": {"orgId": "org-p"}}});
        assert_eq!(Message::from_body(&body).unwrap().org_id(), Some("org-p"));
    }
}
