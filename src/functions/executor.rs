//! Exactly-once execution per tool-call id: the first delivery claims the id in the store and
//! runs the function; a redelivery (on any instance) gets the stored result, or waits for the
//! running one until the deadline. The result is stored before it is answered.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{CallContext, Outcome, Registry};
use crate::config::FunctionHandler;
use crate::metrics::Metrics;
use crate::store::{Claim, DynStore, Finished, InvocationRow, NewInvocation, NewJob};

/// How often a redelivery checks on a call still running elsewhere.
const POLL: Duration = Duration::from_millis(25);
/// Extra lease beyond the timeout before a claim is presumed abandoned.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// Longest a claim or a result write may take: the answer must not miss VAPI's deadline.
const STORE_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// `Err` when the arguments were not valid JSON: answered as an error result.
    pub args: Result<Value, String>,
}

#[derive(Debug, Clone)]
pub struct ToolOutcome {
    pub id: String,
    pub name: String,
    pub outcome: Outcome,
    pub latency_ms: f64,
    /// Answered from the store, without running the function again.
    pub replayed: bool,
}

#[derive(Clone)]
pub struct Executor {
    pub registry: Arc<Registry>,
    store: DynStore,
    metrics: Arc<Metrics>,
    default_timeout: Duration,
}

impl Executor {
    pub fn new(registry: Arc<Registry>, store: DynStore, metrics: Arc<Metrics>, default_timeout: Duration) -> Self {
        Self { registry, store, metrics, default_timeout }
    }

    /// Runs the call at most once. `on_start` runs (and is awaited) only when this caller really
    /// runs the function, so a `function.invoked` event always precedes its completion.
    /// `announce` gives the jobs that announce the result (outgoing webhooks); they are written
    /// in the result's own transaction.
    pub async fn execute<F, Fut, A>(&self, call: &ToolCall, ctx: &CallContext, on_start: F, announce: A) -> ToolOutcome
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = ()>,
        A: FnOnce(&ToolOutcome) -> Vec<NewJob>,
    {
        let spec = self.registry.spec(&call.name);
        let timeout = spec.map(|s| s.timeout).unwrap_or(self.default_timeout);
        // A built-in answers in microseconds; so does a call that cannot run (unknown function,
        // arguments that are not JSON). Only an HTTP function makes the result wait.
        let result_soon = call.args.is_err() || !matches!(spec.map(|s| &s.handler), Some(FunctionHandler::Http { .. }));
        let now = crate::clock::now_ms();
        let claim = NewInvocation {
            tool_call_id: call.id.clone(),
            call_id: ctx.call_id.clone(),
            org_id: ctx.org_id.clone(),
            name: call.name.clone(),
            arguments: call.args.as_ref().map(Value::to_string).unwrap_or_else(|e| e.clone()),
            started_at: now,
            lease_until: now + (timeout + LEASE_MARGIN).as_millis() as i64,
            result_soon,
        };
        let started = Instant::now();
        let claimed =
            tokio::time::timeout(STORE_BUDGET, self.metrics.time_store("claim_invocation", self.store.claim_invocation(claim.clone())))
                .await
                .unwrap_or_else(|_| Err(crate::store::StoreError::Unavailable("claim timed out".into())));
        match claimed {
            Ok(Claim::Claimed) => {}
            // The same id from another call or org is not a redelivery: never hand over its result.
            Ok(Claim::Existing(row)) if row.org_id != ctx.org_id || row.call_id != ctx.call_id => {
                tracing::warn!(tool_call_id = %call.id, "tool call id reused by another call; refused");
                return self.outcome(call, Outcome::Err("This tool call id was already used by another call.".into()), 0.0, false);
            }
            Ok(Claim::Existing(row)) => return self.replay(call, *row, timeout).await,
            Err(e) => {
                // Without a claim the hub cannot promise "once"; it answers rather than risk twice.
                tracing::error!(error = %e, tool_call_id = %call.id, "could not claim tool call");
                return self.outcome(call, Outcome::Err("The hub cannot run functions right now; try again shortly.".into()), 0.0, false);
            }
        }
        on_start().await;
        let ran = Instant::now();
        let outcome = match &call.args {
            Ok(args) => self.registry.invoke(&call.name, args, ctx, &call.id).await,
            Err(e) => Outcome::Err(e.clone()),
        };
        let latency_ms = ran.elapsed().as_secs_f64() * 1000.0;
        self.metrics.tool_call(self.metric_name(&call.name), matches!(outcome, Outcome::Ok(_)), latency_ms / 1000.0);
        let (ok, result, error) = match &outcome {
            Outcome::Ok(r) => (true, Some(r.clone()), None),
            Outcome::Err(e) => (false, None, Some(e.clone())),
        };
        let outcome = self.outcome(call, outcome, latency_ms, false);
        let announce = announce(&outcome);
        let done = Finished { claim, ok, result, error, latency_ms, finished_at: crate::clock::now_ms(), announce };
        let stored = tokio::time::timeout(STORE_BUDGET, self.metrics.time_store("finish_invocation", self.store.finish_invocation(done)))
            .await
            .unwrap_or_else(|_| Err(crate::store::StoreError::Unavailable("result write timed out".into())));
        match stored {
            Ok(true) => {}
            // Answered all the same: the function ran, and VAPI is waiting for what it said.
            Ok(false) => {
                tracing::warn!(tool_call_id = %call.id, "tool call ran past its lease and another delivery took it over; this result was not stored")
            }
            Err(e) => tracing::error!(error = %e, tool_call_id = %call.id, "tool call ran but its result could not be stored"),
        }
        tracing::debug!(tool_call_id = %call.id, function = %call.name, latency_ms, total_ms = started.elapsed().as_secs_f64() * 1000.0, "tool call");
        outcome
    }

    async fn replay(&self, call: &ToolCall, mut row: InvocationRow, timeout: Duration) -> ToolOutcome {
        let deadline = Instant::now() + timeout;
        while row.status == "running" && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
            match self.store.get_invocation(&call.id).await {
                Ok(Some(r)) => row = r,
                // On SQLite the claim is seen by later writes (which is how this delivery found
                // it) before it commits, and reads see it only after: not there yet, not gone.
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let outcome = match row.status.as_str() {
            "ok" => Outcome::Ok(row.result.unwrap_or_default()),
            "error" => Outcome::Err(row.error.unwrap_or_default()),
            _ => Outcome::Err(format!("{} is still running.", call.name)),
        };
        self.outcome(call, outcome, row.latency_ms.unwrap_or(0.0), true)
    }

    fn outcome(&self, call: &ToolCall, outcome: Outcome, latency_ms: f64, replayed: bool) -> ToolOutcome {
        ToolOutcome { id: call.id.clone(), name: call.name.clone(), outcome, latency_ms, replayed }
    }

    /// Metric labels only for declared functions: a model can invent names without end.
    fn metric_name<'a>(&self, name: &'a str) -> &'a str {
        if self.registry.spec(name).is_some() { name } else { "unknown" }
    }
}
