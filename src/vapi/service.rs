//! Handling one verified VAPI message: store what must last, answer what needs an answer,
//! publish what supervisors watch. Stored before answered: a 2xx means the write committed.

use std::sync::Arc;

use futures::future::join_all;
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use super::message::{Kind, Message};
use super::{events, outbox, record, replies, tools};
use crate::config::VapiSettings;
use crate::functions::{CallContext, Executor, Outcome, ToolOutcome};
use crate::http::ApiError;
use crate::hub::DynBroker;
use crate::metrics::Metrics;
use crate::store::{Applied, CallChange, DynStore, IngestOutcome};
use crate::webhooks::{Webhooks, events as hooks};

/// How long a reply VAPI waits for (assistant-request: 7.5 s in all) may wait on its log write.
const LOG_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

pub struct VapiService {
    pub cfg: Arc<VapiSettings>,
    pub public_url: Option<String>,
    pub body_read_timeout: std::time::Duration,
    pub store: DynStore,
    pub broker: DynBroker,
    pub executor: Executor,
    pub metrics: Arc<Metrics>,
    /// Background work (async tools) that shutdown waits for.
    pub tasks: TaskTracker,
    /// What a stored message leads to (recording downloads, webhook deliveries) is queued here.
    pub jobs: Arc<crate::jobs::Jobs>,
    /// Outgoing webhooks for what the live events announce (call, transcript, function).
    pub webhooks: Arc<Webhooks>,
}

/// The reply body VAPI gets.
pub enum Answer {
    Json(Value),
    /// `voice-request` wants raw PCM; the hub is no voice provider and sends none.
    Audio(Vec<u8>),
}

pub struct Handled {
    pub answer: Answer,
    /// For metrics: processed, duplicate or ignored.
    pub outcome: &'static str,
    /// For a message that ran functions: the longest of their own run times (a replayed result
    /// ran nothing: 0), so the response can say how much of its time was the hub's own.
    pub functions_ms: Option<f64>,
}

impl VapiService {
    pub async fn handle(&self, m: &Message<'_>, raw: &[u8]) -> Result<Handled, ApiError> {
        let now = crate::clock::now_ms();
        let org = record::org_of(m, &self.cfg.default_org);
        let json = |v: Value, outcome| Ok(Handled { answer: Answer::Json(v), outcome, functions_ms: None });
        match m.kind() {
            Kind::ToolCalls => self.tool_calls(m, raw, &org, now).await,
            Kind::FunctionCall => self.function_call(m, raw, &org, now).await,
            // Calls in progress must get their answer even if the log write fails.
            Kind::AssistantRequest => {
                let (outcome, answer) =
                    tokio::join!(self.record_bounded(m, raw, &org, now), replies::assistant_request(&self.cfg, m, self.store.as_ref()));
                json(answer, outcome)
            }
            Kind::TransferDestinationRequest => {
                json(replies::destination(&self.cfg.transfer_destination, "transfer"), self.record_bounded(m, raw, &org, now).await)
            }
            Kind::HandoffDestinationRequest => {
                json(replies::destination(&self.cfg.handoff_destination, "handoff"), self.record_bounded(m, raw, &org, now).await)
            }
            Kind::KnowledgeBaseRequest => json(replies::knowledge(&self.cfg, m), self.record_bounded(m, raw, &org, now).await),
            Kind::EndpointingRequest => json(replies::endpointing(&self.cfg), self.record_bounded(m, raw, &org, now).await),
            Kind::CampaignPredial => json(replies::predial(&self.cfg), self.record_bounded(m, raw, &org, now).await),
            Kind::VoiceRequest => {
                let outcome = self.record_bounded(m, raw, &org, now).await;
                Ok(Handled { answer: Answer::Audio(Vec::new()), outcome, functions_ms: None })
            }
            // Informational: a failed write is a 503, so VAPI's retry (if configured) can redeliver.
            Kind::Other => json(json!({}), self.record(m, raw, &org, now).await.map(|o| if o == "duplicate" { o } else { "ignored" })?),
            _ => json(json!({}), self.record(m, raw, &org, now).await?),
        }
    }

    /// For messages VAPI waits on: the log write gets a budget, then the answer goes out anyway.
    async fn record_bounded(&self, m: &Message<'_>, raw: &[u8], org: &str, now: i64) -> &'static str {
        match tokio::time::timeout(LOG_BUDGET, self.record(m, raw, org, now)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::error!(error = ?e, "could not log a message that needs an answer; answering anyway");
                "processed"
            }
            Err(_) => {
                tracing::error!("logging a message that needs an answer took too long; answering anyway");
                "processed"
            }
        }
    }

    /// Stores the message (raw log, call, change) in one transaction and publishes the result.
    async fn record(&self, m: &Message<'_>, raw: &[u8], org: &str, now: i64) -> Result<&'static str, ApiError> {
        let at = m.timestamp_ms().unwrap_or(now);
        if record::is_ephemeral(m) && !self.cfg.raw_log_ephemeral {
            self.publish_live(m, org, at).await;
            return Ok("processed");
        }
        let mut ingest = record::ingest(m, org, raw, now);
        let ended = matches!(ingest.change, CallChange::Ended(_));
        ingest.follow_ups = outbox::follow_ups(&self.webhooks, &self.jobs, org, at, ended);
        match self.metrics.time_store("ingest", self.store.ingest(ingest)).await? {
            IngestOutcome::Duplicate => Ok("duplicate"),
            IngestOutcome::Applied(applied) => {
                for kind in &applied.jobs_created {
                    self.jobs.created(kind);
                }
                self.publish_applied(m, org, at, &applied, ended).await;
                Ok("processed")
            }
        }
    }

    async fn publish_applied(&self, m: &Message<'_>, org: &str, at: i64, a: &Applied, ended: bool) {
        if let Some(call) = &a.call {
            if a.call_created || (a.status_changed && !ended) {
                self.publish(events::status(call, at)).await;
            }
            if ended {
                self.publish(events::ended(call, at)).await;
            }
        }
        if let Some(seg) = &a.segment {
            self.publish(events::transcript_final(org, seg)).await;
        }
        if matches!(m.kind(), Kind::Activity | Kind::SpeechUpdate) || record::is_ephemeral(m) {
            self.publish_live(m, org, at).await;
        }
    }

    /// Events that need no stored state: partials, speech, other activity.
    async fn publish_live(&self, m: &Message<'_>, org: &str, at: i64) {
        let Some(call_id) = m.call_id() else { return };
        let out = match m.kind() {
            Kind::Transcript => events::transcript_partial(m, call_id, org, at),
            Kind::SpeechUpdate => events::speech(m, call_id, org, at),
            _ => events::activity(m, call_id, org, at),
        };
        self.publish(out).await;
    }

    async fn publish(&self, out: events::Outgoing) {
        publish_to(&self.broker, out).await;
    }

    fn context(&self, m: &Message<'_>, org: &str) -> CallContext {
        CallContext {
            call_id: m.call_id().map(str::to_string),
            org_id: org.to_string(),
            customer_number: m.customer_number().map(str::to_string),
        }
    }

    async fn tool_calls(&self, m: &Message<'_>, raw: &[u8], org: &str, now: i64) -> Result<Handled, ApiError> {
        let calls = tools::extract(m);
        let ctx = self.context(m, org);
        let (sync_calls, async_calls): (Vec<_>, Vec<_>) = calls.into_iter().partition(|c| !c.is_async);
        for c in async_calls {
            let (svc_exec, broker, webhooks, ctx, call) =
                (self.executor.clone(), self.broker.clone(), self.webhooks.clone(), ctx.clone(), c.call);
            self.tasks.spawn(async move {
                let _ = run_tool(&svc_exec, &broker, &webhooks, &call, &ctx).await;
            });
        }
        let running = join_all(sync_calls.iter().map(|c| run_tool(&self.executor, &self.broker, &self.webhooks, &c.call, &ctx)));
        // The functions first: their claims are normally queued before the message's record, so
        // the answer's critical path does not wait behind the record's commit to start.
        let (outcomes, outcome) = tokio::join!(running, self.record_bounded(m, raw, org, now));
        if outcomes.is_empty() {
            return Ok(Handled { answer: Answer::Json(json!({})), outcome, functions_ms: None });
        }
        let results: Vec<Value> = outcomes.iter().map(result_json).collect();
        let functions_ms = outcomes.iter().map(own_time_ms).fold(0.0, f64::max);
        Ok(Handled { answer: Answer::Json(json!({ "results": results })), outcome, functions_ms: Some(functions_ms) })
    }

    async fn function_call(&self, m: &Message<'_>, raw: &[u8], org: &str, now: i64) -> Result<Handled, ApiError> {
        let Some((call, explicit_id)) = tools::extract_legacy(m) else {
            let outcome = self.record_bounded(m, raw, org, now).await;
            return Ok(Handled { answer: Answer::Json(json!({ "result": "No function was named." })), outcome, functions_ms: None });
        };
        let ctx = self.context(m, org);
        let running = run_tool(&self.executor, &self.broker, &self.webhooks, &call, &ctx);
        let (o, outcome) = tokio::join!(running, self.record_bounded(m, raw, org, now));
        let text = match &o.outcome {
            Outcome::Ok(r) => r.clone(),
            Outcome::Err(e) => format!("Error: {e}"),
        };
        let mut answer = json!({ "result": text });
        // The 2025 shape carries the tool-call id; answering in both forms suits both readers (spec §3.3).
        if explicit_id {
            answer["results"] = json!([result_json(&o)]);
        }
        Ok(Handled { answer: Answer::Json(answer), outcome, functions_ms: Some(own_time_ms(&o)) })
    }
}

/// How long this request spent in the function itself.
fn own_time_ms(o: &ToolOutcome) -> f64 {
    if o.replayed { 0.0 } else { o.latency_ms }
}

async fn run_tool(
    executor: &Executor,
    broker: &DynBroker,
    webhooks: &Webhooks,
    call: &crate::functions::ToolCall,
    ctx: &CallContext,
) -> ToolOutcome {
    let call_id = ctx.call_id.clone().unwrap_or_default();
    let on_start = || async {
        if !call_id.is_empty() {
            let args = call.args.clone().unwrap_or(Value::Null);
            publish_to(broker, events::function_invoked(&call_id, &ctx.org_id, &call.id, &call.name, &args)).await;
        }
    };
    // The endpoints are read once the function has run (an HTTP function takes up to its
    // timeout): one added or disabled meanwhile is seen.
    let announced = std::sync::atomic::AtomicBool::new(false);
    let deliveries = |o: &ToolOutcome| {
        let Some(outbox) = webhooks.outbox(&[hooks::FUNCTION_COMPLETED]).filter(|_| !call_id.is_empty()) else { return Vec::new() };
        let data = events::function_completed(&call_id, &ctx.org_id, o).event.data;
        let jobs = outbox.deliveries(&hooks::function_completed(&ctx.org_id, &o.id, crate::clock::now_ms(), data));
        announced.store(!jobs.is_empty(), std::sync::atomic::Ordering::Relaxed);
        jobs
    };
    let outcome = executor.execute(call, ctx, on_start, deliveries).await;
    if !call_id.is_empty() && !outcome.replayed {
        publish_to(broker, events::function_completed(&call_id, &ctx.org_id, &outcome)).await;
    }
    if announced.load(std::sync::atomic::Ordering::Relaxed) {
        webhooks.committed();
    }
    outcome
}

async fn publish_to(broker: &DynBroker, out: events::Outgoing) {
    for topic in &out.topics {
        if let Err(e) = broker.publish(topic, out.event.clone()).await {
            // Stored already: a supervisor that missed it reloads from the API.
            tracing::warn!(error = %e, topic, "could not publish event");
        }
    }
}

/// One `ToolCallResult`: `result` or `error`, always a string, `name` included (spec §3.1).
fn result_json(o: &ToolOutcome) -> Value {
    match &o.outcome {
        Outcome::Ok(r) => json!({ "name": o.name, "toolCallId": o.id, "result": r }),
        Outcome::Err(e) => json!({ "name": o.name, "toolCallId": o.id, "error": e }),
    }
}
