//! HTTP function handlers: the call is POSTed as JSON, signed like VAPI's HMAC credential
//! (`x-switchboard-signature: v1=<hex HMAC-SHA256 of "{timestamp}.{body}">`).

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{CallContext, Outcome};
use crate::config::{FunctionSpec, Secret};

pub async fn call(
    http: &reqwest::Client,
    url: &str,
    secret: Option<&Secret>,
    spec: &FunctionSpec,
    args: &Value,
    ctx: &CallContext,
    tool_call_id: &str,
) -> Outcome {
    let body = json!({
        "name": spec.name,
        "arguments": args,
        "toolCallId": tool_call_id,
        "call": { "id": ctx.call_id, "orgId": ctx.org_id, "customerNumber": ctx.customer_number },
    })
    .to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let mut req =
        http.post(url).timeout(spec.timeout).header("content-type", "application/json").header("x-switchboard-timestamp", &timestamp);
    if let Some(secret) = secret {
        req = req.header("x-switchboard-signature", signature(secret.expose().as_bytes(), &timestamp, body.as_bytes()));
    }
    let resp = match req.body(body).send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Outcome::Err(format!("{} timed out.", spec.name)),
        Err(e) if e.is_connect() => return Outcome::Err(format!("{} is unreachable.", spec.name)),
        Err(_) => return Outcome::Err(format!("{} failed.", spec.name)),
    };
    let status = resp.status();
    let text = match resp.text().await {
        Ok(t) => t,
        Err(_) => return Outcome::Err(format!("{} sent an unreadable answer.", spec.name)),
    };
    if !status.is_success() {
        return Outcome::Err(format!("{} answered HTTP {}.", spec.name, status.as_u16()));
    }
    interpret(&text)
}

/// `{"result": …}` or `{"error": "…"}`; any other body is the result as it is.
fn interpret(text: &str) -> Outcome {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) if o.contains_key("error") && !o.contains_key("result") => Outcome::Err(as_text(&o["error"])),
        Ok(Value::Object(o)) if o.contains_key("result") => Outcome::Ok(as_text(&o["result"])),
        Ok(v) => Outcome::Ok(as_text(&v)),
        Err(_) => Outcome::Ok(text.trim().to_string()),
    }
}

/// Strings stay strings; structured values become one line of JSON (VAPI wants strings).
pub fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_as_result_error_or_plain_text() {
        assert_eq!(interpret(r#"{"result":"ok"}"#), Outcome::Ok("ok".into()));
        assert_eq!(interpret(r#"{"result":{"slots":[1,2]}}"#), Outcome::Ok(r#"{"slots":[1,2]}"#.into()));
        assert_eq!(interpret(r#"{"error":"nope"}"#), Outcome::Err("nope".into()));
        assert_eq!(interpret("plain words"), Outcome::Ok("plain words".into()));
    }
}
