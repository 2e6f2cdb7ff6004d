//! The `webhook.deliver` job kind: one event to one endpoint. Each attempt is signed afresh
//! (new timestamp, same `webhook-id`; with the rotated-out secret too while it is valid), sent without following redirects, given
//! `webhooks.timeout_ms` in all, and logged with its outcome; the log and the endpoint's
//! failure count change together (`Store::record_webhook_attempt`). 2xx succeeds; 410 Gone
//! disables the endpoint; anything else is a failed attempt the job retries with its backoff,
//! unless that failure disabled the endpoint. A queued delivery to an endpoint disabled or
//! deleted meanwhile ends without sending.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use serde::Deserialize;
use serde_json::Value;

use super::{Cache, sign, target};
use crate::config::WebhooksSettings;
use crate::jobs::JobContext;
use crate::store::{AttemptOutcome, DynStore, WebhookAttempt, WebhookRow};

/// Enough of a receiver's answer to say what went wrong; the rest is never read.
const BODY_CAP: usize = 1024;
const ERROR_CAP: usize = 500;

pub(super) struct Deliverer {
    pub settings: Arc<WebhooksSettings>,
    pub store: DynStore,
    /// No redirects, no proxy, public addresses only (loopback with `allow_loopback`).
    pub client: reqwest::Client,
    /// Refreshed when an attempt disables an endpoint, so this instance stops enqueueing at once.
    pub cache: Arc<Cache>,
}

/// What `Outbox::deliveries` enqueues.
#[derive(Debug, Deserialize)]
pub(super) struct Payload {
    pub endpoint_id: String,
    pub webhook_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// Serialised the same way on every attempt (keys in order), so every attempt sends one body.
    pub body: Value,
}

/// An answer, or why there was none.
enum Sent {
    Answered { status: u16, snippet: String },
    NoAnswer(String),
}

pub(super) async fn run(d: &Deliverer, payload: Value, ctx: JobContext) -> Result<(), String> {
    let p: Payload = serde_json::from_value(payload).map_err(|e| format!("the payload is not a webhook delivery: {e}"))?;
    let Some(endpoint) = d.store.get_webhook(&p.endpoint_id).await.map_err(|e| e.to_string())? else {
        return Ok(()); // deleted since
    };
    if !endpoint.enabled() {
        tracing::debug!(endpoint = %endpoint.id, webhook_id = %p.webhook_id, "endpoint disabled; delivery dropped");
        return Ok(());
    }
    let started = Instant::now();
    let sent = send(d, &endpoint, &p).await;
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let disable_after = i64::from(d.settings.disable_after);
    let (status_code, error, outcome) = match sent {
        Sent::Answered { status, .. } if (200..300).contains(&status) => (Some(status), None, AttemptOutcome::Delivered),
        Sent::Answered { status: 410, .. } => {
            (Some(410), Some("410 Gone: the endpoint asked for no more deliveries".into()), AttemptOutcome::Gone)
        }
        Sent::Answered { status, snippet } => (Some(status), Some(http_error(status, &snippet)), AttemptOutcome::Failed { disable_after }),
        Sent::NoAnswer(why) => (None, Some(why), AttemptOutcome::Failed { disable_after }),
    };
    let attempt = WebhookAttempt {
        endpoint_id: endpoint.id.clone(),
        event_type: p.kind.clone(),
        webhook_id: p.webhook_id.clone(),
        attempt: ctx.attempt,
        status_code: status_code.map(i64::from),
        duration_ms,
        error: error.clone(),
        at: crate::clock::now_ms(),
        outcome,
    };
    let Some(after) = d.store.record_webhook_attempt(attempt).await.map_err(|e| e.to_string())? else {
        return Ok(()); // deleted while this attempt ran
    };
    if after.disabled {
        tracing::warn!(endpoint = %endpoint.id, failures = after.consecutive_failures, error = ?error, "webhook endpoint disabled");
        d.cache.refresh().await;
        return Ok(());
    }
    match (outcome, error) {
        (AttemptOutcome::Failed { .. }, Some(e)) => Err(e),
        _ => Ok(()),
    }
}

async fn send(d: &Deliverer, endpoint: &WebhookRow, p: &Payload) -> Sent {
    // Checked again: the settings may have changed since the endpoint was created.
    let url = match target::check(&endpoint.url, &d.settings) {
        Ok(u) => u,
        Err(why) => return Sent::NoAnswer(why),
    };
    let key = match sign::decode_secret(&endpoint.secret) {
        Ok(k) => k,
        Err(why) => return Sent::NoAnswer(format!("the endpoint's secret is unusable: {why}")),
    };
    let body = p.body.to_string();
    let now = crate::clock::now_ms();
    let timestamp = now / 1000;
    // While a rotated-out secret still signs, both signatures go (space-separated, as the
    // scheme allows), so a receiver verifies with whichever secret it has.
    let mut signature = sign::sign(&key, &p.webhook_id, timestamp, &body);
    if let Some(old) = endpoint.previous_secret_at(now).and_then(|s| sign::decode_secret(s).ok()) {
        signature.push(' ');
        signature.push_str(&sign::sign(&old, &p.webhook_id, timestamp, &body));
    }
    let request = d
        .client
        .post(url)
        .timeout(d.settings.timeout)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
        .header("webhook-id", &p.webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(body);
    let exchange = async {
        let mut resp = request.send().await.map_err(|e| describe(&e, d))?;
        let status = resp.status().as_u16();
        let mut snippet = Vec::new();
        // A slow or endless body must not hold the attempt: read a little, then hang up.
        while snippet.len() < BODY_CAP {
            match resp.chunk().await {
                Ok(Some(chunk)) => snippet.extend_from_slice(&chunk[..chunk.len().min(BODY_CAP - snippet.len())]),
                _ => break,
            }
        }
        Ok::<_, String>(Sent::Answered { status, snippet: String::from_utf8_lossy(&snippet).into_owned() })
    };
    match tokio::time::timeout(d.settings.timeout, exchange).await {
        Ok(Ok(sent)) => sent,
        Ok(Err(why)) => Sent::NoAnswer(why),
        Err(_) => Sent::NoAnswer(format!("no answer within {} ms", d.settings.timeout.as_millis())),
    }
}

fn http_error(status: u16, snippet: &str) -> String {
    let mut e = if (300..400).contains(&status) { format!("HTTP {status} (redirects are not followed)") } else { format!("HTTP {status}") };
    let text: String = snippet.chars().filter(|c| !c.is_control()).take(200).collect();
    if !text.trim().is_empty() {
        e.push_str(": ");
        e.push_str(text.trim());
    }
    e
}

/// The error and its causes (the resolver's refusal is a cause), shortened.
fn describe(e: &reqwest::Error, d: &Deliverer) -> String {
    if e.is_timeout() {
        return format!("no answer within {} ms", d.settings.timeout.as_millis());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.chars().take(ERROR_CAP).collect()
}
