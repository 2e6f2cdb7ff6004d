//! Credentials out of stored and logged payloads. VAPI embeds provider secrets in
//! `phoneNumber` (`twilioAuthToken`, `twilioApiSecret`, …) and may echo `server.headers`.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;

const REDACTED: &str = "[redacted]";

/// A key names a secret when it ends in one of these (case-insensitive). Counts such as
/// `promptTokens` end in "tokens" and are kept.
const SECRET_SUFFIXES: &[&str] = &["token", "secret", "password", "apikey", "secretkey", "privatekey", "credentials", "authorization"];

/// Compared from the end, ignoring case, `_` and `-`, without building a lowered copy: this
/// runs for every key of every stored message.
pub fn is_secret_key(key: &str) -> bool {
    SECRET_SUFFIXES.iter().any(|suffix| {
        let mut letters = key.bytes().rev().filter(|b| *b != b'_' && *b != b'-');
        suffix.bytes().rev().all(|want| letters.next().is_some_and(|got| got.to_ascii_lowercase() == want))
    })
}

/// `v` serialized with every secret-named field replaced, without copying the tree first.
pub fn redacted_json(v: &Value) -> String {
    serde_json::to_string(&Redacted(v)).unwrap_or_else(|_| redacted(v).to_string())
}

/// Serializes like the value it wraps, secrets replaced.
struct Redacted<'a>(&'a Value);

impl Serialize for Redacted<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut out = s.serialize_map(Some(map.len()))?;
                for (k, v) in map {
                    if is_secret_key(k) && !v.is_null() {
                        out.serialize_entry(k, REDACTED)?;
                    } else {
                        out.serialize_entry(k, &Redacted(v))?;
                    }
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&Redacted(item))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

/// A copy of `v` with every secret-named field replaced.
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) && !v.is_null() { Value::String(REDACTED.into()) } else { redacted(v) };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_credentials_are_redacted_and_token_counts_kept() {
        let v = json!({"phoneNumber": {"twilioAuthToken": "tok", "twilioApiSecret": "sec", "number": "+1"},
                       "server": {"headers": {"Authorization": "Bearer x"}},
                       "costs": [{"promptTokens": 12, "completionTokens": 3}]});
        let r = redacted(&v);
        assert_eq!(r["phoneNumber"]["twilioAuthToken"], REDACTED);
        assert_eq!(r["phoneNumber"]["twilioApiSecret"], REDACTED);
        assert_eq!(r["phoneNumber"]["number"], "+1");
        assert_eq!(r["server"]["headers"]["Authorization"], REDACTED);
        assert_eq!(r["costs"][0]["promptTokens"], 12);
        let streamed: Value = serde_json::from_str(&redacted_json(&v)).unwrap();
        assert_eq!(streamed, r, "the serializer redacts exactly what the copy does");
    }

    #[test]
    fn secret_names_are_matched_by_suffix_ignoring_case_and_separators() {
        for k in ["twilioAuthToken", "api_key", "API-KEY", "x-secret", "Authorization", "private_key", "SECRET", "dbPassword"] {
            assert!(is_secret_key(k), "{k}");
        }
        for k in ["promptTokens", "number", "key", "secretary", "tokenCount", "", "-"] {
            assert!(!is_secret_key(k), "{k}");
        }
    }
}
