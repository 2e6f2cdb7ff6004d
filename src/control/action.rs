//! The hub's control actions: parsed strictly from a supervisor's JSON (camelCase like VAPI,
//! unknown fields refused, every error naming its field) and mapped to the one bare control
//! object VAPI's control URL takes (spec §7).

use serde_json::{Map, Value, json};

use crate::http::ApiError;

/// Longest text a supervisor may have spoken or whispered, in characters.
pub const MAX_CONTENT_CHARS: usize = 2_000;
/// Longest SIP URI accepted.
const MAX_SIP_URI: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The assistant says `content` verbatim.
    Say {
        content: String,
        end_call_after_spoken: Option<bool>,
        interruptions_enabled: Option<bool>,
    },
    /// A system message added to the conversation without triggering a reply: coaching only
    /// the assistant hears.
    Whisper {
        content: String,
    },
    MuteAssistant,
    UnmuteAssistant,
    /// Hands the caller to a number or SIP address, optionally saying `content` first.
    Transfer {
        destination: Destination,
        content: Option<String>,
    },
    EndCall,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Number(String),
    Sip(String),
}

const TYPES: &str = "say, whisper, mute-assistant, unmute-assistant, transfer or end-call";

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::invalid("invalid_action", message)
}

/// Field names come from the client: shown shortened so an error cannot echo a huge key.
fn shown(key: &str) -> String {
    let mut s: String = key.chars().take(40).collect();
    if s.len() < key.len() {
        s.push('…');
    }
    s
}

impl Action {
    pub fn parse(v: &Value) -> Result<Action, ApiError> {
        let obj = v.as_object().ok_or_else(|| invalid("action must be an object with a type"))?;
        let kind = obj.get("type").and_then(Value::as_str).ok_or_else(|| invalid(format!("action.type must be one of {TYPES}")))?;
        let fields: &[&str] = match kind {
            "say" => &["type", "content", "endCallAfterSpoken", "interruptionsEnabled"],
            "whisper" => &["type", "content"],
            "transfer" => &["type", "destination", "content"],
            "mute-assistant" | "unmute-assistant" | "end-call" => &["type"],
            other => return Err(invalid(format!("action.type {:?} is not one of {TYPES}", shown(other)))),
        };
        only(obj, fields, "action", &format!("a {kind} action"))?;
        Ok(match kind {
            "say" => Action::Say {
                content: content(obj.get("content"), "action.content")?,
                end_call_after_spoken: flag(obj, "endCallAfterSpoken")?,
                interruptions_enabled: flag(obj, "interruptionsEnabled")?,
            },
            "whisper" => Action::Whisper { content: content(obj.get("content"), "action.content")? },
            "transfer" => Action::Transfer {
                destination: destination(obj.get("destination"))?,
                content: match obj.get("content") {
                    None | Some(Value::Null) => None,
                    c => Some(content(c, "action.content")?),
                },
            },
            "mute-assistant" => Action::MuteAssistant,
            "unmute-assistant" => Action::UnmuteAssistant,
            _ => Action::EndCall,
        })
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Action::Say { .. } => "say",
            Action::Whisper { .. } => "whisper",
            Action::MuteAssistant => "mute-assistant",
            Action::UnmuteAssistant => "unmute-assistant",
            Action::Transfer { .. } => "transfer",
            Action::EndCall => "end-call",
        }
    }

    /// The action as the hub shows it (audit, events, answers): the validated fields only.
    pub fn to_hub(&self) -> Value {
        let mut v = json!({ "type": self.type_name() });
        match self {
            Action::Say { content, end_call_after_spoken, interruptions_enabled } => {
                v["content"] = json!(content);
                optional(&mut v, "endCallAfterSpoken", *end_call_after_spoken);
                optional(&mut v, "interruptionsEnabled", *interruptions_enabled);
            }
            Action::Whisper { content } => v["content"] = json!(content),
            Action::Transfer { destination, content } => {
                v["destination"] = destination.to_json();
                if let Some(c) = content {
                    v["content"] = json!(c);
                }
            }
            Action::MuteAssistant | Action::UnmuteAssistant | Action::EndCall => {}
        }
        v
    }

    /// The body POSTed to the control URL: one bare control object (spec §7).
    pub fn to_vapi(&self) -> Value {
        match self {
            Action::Say { content, end_call_after_spoken, interruptions_enabled } => {
                let mut v = json!({ "type": "say", "content": content });
                optional(&mut v, "endCallAfterSpoken", *end_call_after_spoken);
                optional(&mut v, "interruptionsEnabled", *interruptions_enabled);
                v
            }
            // triggerResponseEnabled defaults to true in VAPI: false keeps the assistant quiet.
            Action::Whisper { content } => {
                json!({ "type": "add-message", "message": { "role": "system", "content": content }, "triggerResponseEnabled": false })
            }
            Action::MuteAssistant => json!({ "type": "control", "control": "mute-assistant" }),
            Action::UnmuteAssistant => json!({ "type": "control", "control": "unmute-assistant" }),
            Action::Transfer { destination, content } => {
                let mut v = json!({ "type": "transfer", "destination": destination.to_json() });
                if let Some(c) = content {
                    v["content"] = json!(c);
                }
                v
            }
            Action::EndCall => json!({ "type": "end-call" }),
        }
    }
}

impl Destination {
    fn to_json(&self) -> Value {
        match self {
            Destination::Number(n) => json!({ "type": "number", "number": n }),
            Destination::Sip(u) => json!({ "type": "sip", "sipUri": u }),
        }
    }
}

fn optional(v: &mut Value, key: &str, value: Option<bool>) {
    if let Some(b) = value {
        v[key] = json!(b);
    }
}

fn only(obj: &Map<String, Value>, allowed: &[&str], path: &str, what: &str) -> Result<(), ApiError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(invalid(format!("{path}.{} is not a field of {what} (allowed: {})", shown(k), allowed.join(", ")))),
        None => Ok(()),
    }
}

fn flag(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("action.{key} must be true or false"))),
    }
}

/// Spoken text: present, not blank, bounded, and free of control characters other than
/// line breaks and tabs (they would reach a speech engine, and NUL cannot be stored).
fn content(v: Option<&Value>, path: &str) -> Result<String, ApiError> {
    let s = v.and_then(Value::as_str).ok_or_else(|| invalid(format!("{path} must be a string")))?;
    if s.trim().is_empty() {
        return Err(invalid(format!("{path} must not be empty")));
    }
    if s.chars().count() > MAX_CONTENT_CHARS {
        return Err(invalid(format!("{path} must be at most {MAX_CONTENT_CHARS} characters")));
    }
    if s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid(format!("{path} must not contain control characters")));
    }
    Ok(s.to_string())
}

fn destination(v: Option<&Value>) -> Result<Destination, ApiError> {
    let obj = v.and_then(Value::as_object).ok_or_else(|| invalid("action.destination must be an object with a type"))?;
    match obj.get("type").and_then(Value::as_str) {
        Some("number") => {
            only(obj, &["type", "number"], "action.destination", "a number destination")?;
            let n = obj.get("number").and_then(Value::as_str).unwrap_or_default();
            if !is_e164(n) {
                return Err(invalid("action.destination.number must be an E.164 number like +14155550123"));
            }
            Ok(Destination::Number(n.to_string()))
        }
        Some("sip") => {
            only(obj, &["type", "sipUri"], "action.destination", "a sip destination")?;
            let u = obj.get("sipUri").and_then(Value::as_str).unwrap_or_default();
            if !is_sip_uri(u) {
                return Err(invalid(format!("action.destination.sipUri must be a sip: or sips: URI of at most {MAX_SIP_URI} characters")));
            }
            Ok(Destination::Sip(u.to_string()))
        }
        _ => Err(invalid("action.destination.type must be number or sip")),
    }
}

/// `+`, a non-zero country digit, then 7 to 15 digits in all.
fn is_e164(n: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else { return false };
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

fn is_sip_uri(u: &str) -> bool {
    let lower = u.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("sip:").or_else(|| lower.strip_prefix("sips:")) else { return false };
    !rest.is_empty()
        && u.len() <= MAX_SIP_URI
        && !rest.starts_with('@')
        && u.chars().all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '"' | '\\' | '`'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Action, String> {
        Action::parse(&v).map_err(|e| e.body()["message"].as_str().unwrap_or_default().to_string())
    }

    #[test]
    fn each_action_maps_to_the_control_object_of_spec_section_7() {
        let cases = [
            (json!({"type":"say","content":"Hello"}), json!({"type":"say","content":"Hello"})),
            (
                json!({"type":"say","content":"Bye","endCallAfterSpoken":true,"interruptionsEnabled":false}),
                json!({"type":"say","content":"Bye","endCallAfterSpoken":true,"interruptionsEnabled":false}),
            ),
            (
                json!({"type":"whisper","content":"Offer the discount"}),
                json!({"type":"add-message","message":{"role":"system","content":"Offer the discount"},"triggerResponseEnabled":false}),
            ),
            (json!({"type":"mute-assistant"}), json!({"type":"control","control":"mute-assistant"})),
            (json!({"type":"unmute-assistant"}), json!({"type":"control","control":"unmute-assistant"})),
            (
                json!({"type":"transfer","destination":{"type":"number","number":"+14155550123"},"content":"One moment"}),
                json!({"type":"transfer","destination":{"type":"number","number":"+14155550123"},"content":"One moment"}),
            ),
            (
                json!({"type":"transfer","destination":{"type":"sip","sipUri":"sip:desk@pbx.example.com"}}),
                json!({"type":"transfer","destination":{"type":"sip","sipUri":"sip:desk@pbx.example.com"}}),
            ),
            (json!({"type":"end-call"}), json!({"type":"end-call"})),
        ];
        for (input, vapi) in cases {
            let a = Action::parse(&input).unwrap();
            assert_eq!(a.to_vapi(), vapi, "{input}");
            assert_eq!(a.to_hub(), input, "the hub's own shape is kept as given");
        }
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        assert!(parse(json!({"type":"end-call","force":true})).unwrap_err().contains("action.force"));
        assert!(parse(json!({"type":"say","content":"x","volume":3})).unwrap_err().contains("action.volume"));
        let e = parse(json!({"type":"transfer","destination":{"type":"number","number":"+14155550123","extension":"12"}})).unwrap_err();
        assert!(e.contains("action.destination.extension"), "{e}");
    }

    #[test]
    fn content_must_be_present_bounded_and_printable() {
        assert!(parse(json!({"type":"say"})).unwrap_err().contains("action.content must be a string"));
        assert!(parse(json!({"type":"whisper","content":"  "})).unwrap_err().contains("must not be empty"));
        assert!(parse(json!({"type":"say","content":"x".repeat(MAX_CONTENT_CHARS + 1)})).unwrap_err().contains("at most 2000"));
        assert!(parse(json!({"type":"say","content":"é".repeat(MAX_CONTENT_CHARS)})).is_ok(), "characters, not bytes");
        assert!(parse(json!({"type":"say","content":"a\u{0}b"})).unwrap_err().contains("control characters"));
        assert!(parse(json!({"type":"say","content":"line one\nline two"})).is_ok());
        assert!(parse(json!({"type":"say","content":"x","endCallAfterSpoken":"yes"})).unwrap_err().contains("action.endCallAfterSpoken"));
    }

    #[test]
    fn the_type_must_be_one_of_the_six() {
        assert!(parse(json!({"content":"x"})).unwrap_err().contains("action.type"));
        assert!(parse(json!({"type":"handoff"})).unwrap_err().contains("not one of"));
        assert!(parse(json!("end-call")).unwrap_err().contains("must be an object"));
    }

    #[test]
    fn transfer_destinations_must_be_e164_numbers_or_sip_uris() {
        for good in ["+14155550123", "+442071838750", "+3312345"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in ["14155550123", "+0123456789", "+123456", "+1 415 555 0123", "+1234567890123456", "+"] {
            assert!(!is_e164(bad), "{bad}");
        }
        for good in ["sip:desk@pbx.example.com", "sips:agent@10.0.0.1:5061;transport=tls", "SIP:pbx.example.com"] {
            assert!(is_sip_uri(good), "{good}");
        }
        for bad in ["sip:", "tel:+14155550123", "sip:a b@x", "sip:<x>", "sip:@x", "http://x"] {
            assert!(!is_sip_uri(bad), "{bad}");
        }
        assert!(parse(json!({"type":"transfer","destination":{"type":"number","number":"555"}})).unwrap_err().contains("E.164"));
        assert!(parse(json!({"type":"transfer","destination":{"type":"sip","sipUri":"x"}})).unwrap_err().contains("sipUri"));
        assert!(parse(json!({"type":"transfer","destination":{"type":"assistant"}})).unwrap_err().contains("number or sip"));
        assert!(parse(json!({"type":"transfer"})).unwrap_err().contains("action.destination"));
    }
}
