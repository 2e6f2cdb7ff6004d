//! Credentials out of stored and logged payloads. VAPI embeds provider secrets in
//! `phoneNumber` (`twilioAuthToken`, `twilioApiSecret`, …) and may echo `server.headers`.

use serde_json::Value;

const REDACTED: &str = "[redacted]";

/// A key names a secret when it ends in one of these (case-insensitive). Counts such as
/// `promptTokens` end in "tokens" and are kept.
const SECRET_SUFFIXES: &[&str] = &["token", "secret", "password", "apikey", "secretkey", "privatekey", "credentials", "authorization"];

pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase().replace(['_', '-'], "");
    SECRET_SUFFIXES.iter().any(|s| k.ends_with(s))
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
    }
}
