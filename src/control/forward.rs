//! The request to a call's control URL: one POST of the bare control object, inside the
//! control timeout. Any 2xx is accepted (VAPI documents no response body, spec §7).

use std::time::Duration;

use reqwest::Url;
use serde_json::Value;

use crate::config::Secret;

/// How much of a refusal's body is kept for the audit row.
const ERROR_BODY_BYTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// 2xx.
    Accepted(u16),
    /// Any other status, with the start of the body for the audit.
    Rejected {
        status: u16,
        detail: String,
    },
    TimedOut,
    /// No answer at all (connection refused, TLS, reset).
    Failed(String),
}

impl Sent {
    pub fn outcome(&self) -> &'static str {
        match self {
            Sent::Accepted(_) => "sent",
            Sent::Rejected { .. } => "rejected",
            Sent::TimedOut => "timeout",
            Sent::Failed(_) => "failed",
        }
    }

    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Sent::Accepted(s) | Sent::Rejected { status: s, .. } => Some(*s),
            Sent::TimedOut | Sent::Failed(_) => None,
        }
    }

    pub fn error(&self) -> Option<String> {
        match self {
            Sent::Accepted(_) => None,
            Sent::Rejected { status, detail } if detail.is_empty() => Some(format!("the control URL answered HTTP {status}")),
            Sent::Rejected { status, detail } => Some(format!("the control URL answered HTTP {status}: {detail}")),
            Sent::TimedOut => Some("the control URL did not answer in time".into()),
            Sent::Failed(e) => Some(e.clone()),
        }
    }
}

pub async fn send(http: &reqwest::Client, url: Url, body: &Value, timeout: Duration, api_key: Option<&Secret>) -> Sent {
    let mut req = http.post(url).timeout(timeout).header("content-type", "application/json").body(body.to_string());
    if let Some(key) = api_key {
        req = req.bearer_auth(key.expose());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return Sent::TimedOut,
        Err(e) => return Sent::Failed(describe(&e)),
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() {
        return Sent::Accepted(status);
    }
    // The start of the body only, still inside the timeout: it explains the refusal in the audit.
    let mut kept = Vec::new();
    while kept.len() < ERROR_BODY_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
            _ => break,
        }
    }
    kept.truncate(ERROR_BODY_BYTES);
    let detail = String::from_utf8_lossy(&kept).chars().filter(|c| !c.is_control()).collect::<String>().trim().to_string();
    Sent::Rejected { status, detail }
}

fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() { "could not connect to the control URL" } else { "the request to the control URL failed" };
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() { what.to_string() } else { format!("{what}: {cause}") }
}
