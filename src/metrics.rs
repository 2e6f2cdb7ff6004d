//! Prometheus metrics, held in the application state (no global recorder): webhooks by type
//! and outcome, authentication failures, tool-call latency, store latency, supervisor sockets,
//! chat runs and the broker's feed.

use std::future::Future;
use std::time::Instant;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::hub::BrokerHealth;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: Registry,
    webhooks: Family<Labels, Counter>,
    webhook_seconds: Family<Labels, Histogram>,
    auth_failures: Family<Labels, Counter>,
    tool_calls: Family<Labels, Histogram>,
    store_seconds: Family<Labels, Histogram>,
    control_actions: Family<Labels, Counter>,
    /// Supervisor sockets open now.
    pub ws_connections: Gauge,
    /// Sockets closed with 4008 because they could not keep up.
    pub ws_slow_closed: Counter,
    /// Gaps seen by subscriptions (lag, a broken broker feed, a new epoch).
    pub ws_gaps: Counter,
    /// Gaps history could not cover: the client was told to resync.
    pub ws_resyncs: Counter,
    chat_runs: Family<Labels, Counter>,
    chat_over_budget: Family<Labels, Counter>,
    /// Chat answers streaming now.
    pub chat_active_runs: Gauge,
    broker_feed_up: Gauge,
    broker_local_events: Counter,
    broker_local_topics: Gauge,
    broker_topics_to_reset: Gauge,
    /// Two scrapes at once must not both add the same difference to the counter.
    broker_observe: std::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard");
        let webhooks = Family::<Labels, Counter>::default();
        registry.register("webhooks", "VAPI webhooks received, by message type and outcome", webhooks.clone());
        let webhook_seconds = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_1, 2.0, 18)));
        registry.register("webhook_duration_seconds", "Time to answer a VAPI webhook, by message type", webhook_seconds.clone());
        let auth_failures = Family::<Labels, Counter>::default();
        registry.register("webhook_auth_failures", "Webhooks refused by authentication, by reason", auth_failures.clone());
        let tool_calls = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_5, 2.0, 16)));
        registry.register("tool_call_duration_seconds", "Function run time of tool calls, by function and outcome", tool_calls.clone());
        let store_seconds = Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18)));
        registry.register("store_operation_duration_seconds", "Store latency, by operation", store_seconds.clone());
        let control_actions = Family::<Labels, Counter>::default();
        registry.register("control_actions", "Live control actions, by action and outcome", control_actions.clone());
        let ws_connections = Gauge::default();
        registry.register("ws_connections", "Supervisor sockets open", ws_connections.clone());
        let ws_slow_closed = Counter::default();
        registry.register("ws_slow_closed", "Supervisor sockets closed with 4008 for not keeping up", ws_slow_closed.clone());
        let ws_gaps = Counter::default();
        registry.register("ws_gaps", "Sequence gaps seen by subscriptions (repaired from history when possible)", ws_gaps.clone());
        let ws_resyncs = Counter::default();
        registry.register("ws_resyncs", "Gaps history could not cover; the client was told to resync", ws_resyncs.clone());
        let chat_runs = Family::<Labels, Counter>::default();
        registry.register("chat_runs", "Chat answers, by how they ended (done, stopped, failed)", chat_runs.clone());
        let chat_over_budget = Family::<Labels, Counter>::default();
        registry.register(
            "chat_over_budget",
            "Chat answers refused because a daily token budget was spent, by budget (session, site, all)",
            chat_over_budget.clone(),
        );
        let chat_active_runs = Gauge::default();
        registry.register("chat_active_runs", "Chat answers being generated now", chat_active_runs.clone());
        let broker_feed_up = Gauge::default();
        registry.register(
            "broker_feed_up",
            "1 while the shared bus's live feed is connected (always 1 in-process)",
            broker_feed_up.clone(),
        );
        let broker_local_events = Counter::default();
        registry.register(
            "broker_local_events",
            "Events numbered in this instance's own epoch while the bus's feed was down (delivered to its own subscribers only)",
            broker_local_events.clone(),
        );
        let broker_local_topics = Gauge::default();
        registry.register("broker_local_topics", "Topics numbered by this instance alone now", broker_local_topics.clone());
        let broker_topics_to_reset = Gauge::default();
        registry.register(
            "broker_topics_to_reset",
            "Topics that missed events on the bus and still wait for a new epoch",
            broker_topics_to_reset.clone(),
        );
        Self {
            registry,
            webhooks,
            webhook_seconds,
            auth_failures,
            tool_calls,
            store_seconds,
            control_actions,
            ws_connections,
            ws_slow_closed,
            ws_gaps,
            ws_resyncs,
            chat_runs,
            chat_over_budget,
            chat_active_runs,
            broker_feed_up,
            broker_local_events,
            broker_local_topics,
            broker_topics_to_reset,
            broker_observe: std::sync::Mutex::new(()),
        }
    }

    /// The broker's state, read at each scrape (the broker keeps its own counts).
    pub fn observe_broker(&self, h: BrokerHealth) {
        let _one = self.broker_observe.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.broker_feed_up.set(i64::from(h.feed_up));
        self.broker_local_events.inc_by(h.local_events.saturating_sub(self.broker_local_events.get()));
        self.broker_local_topics.set(i64::try_from(h.local_topics).unwrap_or(i64::MAX));
        self.broker_topics_to_reset.set(i64::try_from(h.topics_to_reset).unwrap_or(i64::MAX));
    }

    pub fn webhook(&self, kind: &str, outcome: &'static str, started: Instant) {
        self.webhooks.get_or_create(&vec![("type", kind.to_string()), ("outcome", outcome.to_string())]).inc();
        self.webhook_seconds.get_or_create(&vec![("type", kind.to_string())]).observe(started.elapsed().as_secs_f64());
    }

    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    pub fn tool_call(&self, function: &str, ok: bool, seconds: f64) {
        let outcome = if ok { "ok" } else { "error" };
        self.tool_calls.get_or_create(&vec![("function", function.to_string()), ("outcome", outcome.to_string())]).observe(seconds);
    }

    pub fn control_action(&self, action: &str, outcome: &'static str) {
        self.control_actions.get_or_create(&vec![("action", action.to_string()), ("outcome", outcome.to_string())]).inc();
    }

    pub fn chat_run(&self, outcome: &str) {
        self.chat_runs.get_or_create(&vec![("outcome", outcome.to_string())]).inc();
    }

    pub fn chat_over_budget(&self, budget: &str) {
        self.chat_over_budget.get_or_create(&vec![("budget", budget.to_string())]).inc();
    }

    /// Times a store operation and records it under `op`.
    pub async fn time_store<T>(&self, op: &'static str, fut: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = fut.await;
        self.store_seconds.get_or_create(&vec![("op", op.to_string())]).observe(started.elapsed().as_secs_f64());
        out
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
