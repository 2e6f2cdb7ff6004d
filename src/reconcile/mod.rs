//! Reconciliation: VAPI's end-of-call report is a webhook, and a webhook can be lost (the hub
//! down past VAPI's retries, a misrouted Server URL). With `VAPI_API_KEY` set, a scheduled job
//! (`vapi.reconcile`, every 10 minutes) finds calls that are not over and have been silent for
//! `reconcile.after_ms`, asks VAPI's API for them (`GET /call` over their creation window), and
//! completes each one VAPI says has ended by feeding its record through the same path as a real
//! end-of-call report — status, ended reason, cost, summary, analysis, recordings (which are
//! then downloaded), `call.ended`. A report that arrives later still applies on top.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::ReconcileSettings;
use crate::jobs::{JobContext, JobKind, Jobs};
use crate::store::DynStore;
use crate::vapi::VapiService;
use crate::vapi::message::Message;

pub const KIND: &str = "vapi.reconcile";
/// Calls one run looks at; the next run takes the rest.
const BATCH: i64 = 200;

pub struct ReconcileDeps {
    pub settings: ReconcileSettings,
    pub store: DynStore,
    pub vapi: Arc<VapiService>,
    pub http: reqwest::Client,
}

/// Registers the job kind when an API key is configured; without one there is nothing to ask.
pub fn register(jobs: &Jobs, deps: ReconcileDeps) {
    if deps.settings.api_key.is_none() {
        return;
    }
    let deps = Arc::new(deps);
    jobs.register(
        JobKind::new(KIND, move |_payload: Value, _ctx: JobContext| {
            let deps = deps.clone();
            async move {
                let done = run(&deps).await?;
                if done.asked > 0 {
                    tracing::info!(asked = done.asked, completed = done.completed, "reconciled calls with VAPI");
                }
                Ok(())
            }
        })
        .every(Duration::from_secs(600))
        .limit(1),
    );
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Stale calls VAPI was asked about.
    pub asked: usize,
    /// Of those, completed from VAPI's record.
    pub completed: usize,
}

pub async fn run(deps: &ReconcileDeps) -> Result<Outcome, String> {
    let s = &deps.settings;
    let Some(key) = &s.api_key else { return Ok(Outcome::default()) };
    let now = crate::clock::now_ms();
    let stale = deps
        .store
        .stale_calls(now - s.lookback.as_millis() as i64, now - s.after.as_millis() as i64, BATCH)
        .await
        .map_err(|e| e.to_string())?;
    let (Some(first), Some(last)) = (stale.first(), stale.last()) else { return Ok(Outcome::default()) };
    let mut out = Outcome { asked: stale.len(), completed: 0 };
    let url = format!("{}/call", s.api_url);
    let window = [
        ("createdAtGe", crate::clock::iso(first.created_at - 60_000)),
        ("createdAtLe", crate::clock::iso(last.created_at + 60_000)),
        ("limit", "1000".to_string()),
    ];
    let resp = deps
        .http
        .get(&url)
        .query(&window)
        .bearer_auth(key.expose())
        .timeout(s.timeout)
        .send()
        .await
        .map_err(|e| format!("VAPI's API did not answer: {e}"))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("VAPI's API answered {status} to GET /call"));
    }
    let calls: Vec<Value> = resp.json().await.map_err(|e| format!("VAPI's GET /call answer is not a list of calls: {e}"))?;
    let by_id: HashMap<&str, &Value> = calls.iter().filter_map(|c| Some((c.get("id")?.as_str()?, c))).collect();
    for call in &stale {
        let Some(record) = by_id.get(call.id.as_str()) else { continue };
        if record.get("status").and_then(Value::as_str) != Some("ended") {
            continue;
        }
        let body = report_from(record);
        let raw = body.to_string();
        let Some(m) = Message::from_body(&body) else { continue };
        match deps.vapi.handle(&m, raw.as_bytes()).await {
            Ok(_) => out.completed += 1,
            Err(e) => return Err(format!("could not complete call {}: {e:?}", call.id)),
        }
    }
    Ok(out)
}

/// An end-of-call report built from VAPI's record of an ended call, shaped like the webhook.
fn report_from(call: &Value) -> Value {
    let field = |k: &str| call.get(k).cloned().unwrap_or(Value::Null);
    let at = call.get("endedAt").or_else(|| call.get("updatedAt")).cloned().unwrap_or(Value::Null);
    json!({ "message": {
        "type": "end-of-call-report",
        "timestamp": at,
        "call": call,
        "endedReason": field("endedReason"),
        "startedAt": field("startedAt"),
        "endedAt": field("endedAt"),
        "cost": field("cost"),
        "costBreakdown": field("costBreakdown"),
        "analysis": field("analysis"),
        "artifact": field("artifact"),
        "summary": call.get("analysis").and_then(|a| a.get("summary")).cloned().unwrap_or(Value::Null),
    }})
}
