//! One run: the hub's answer to one user message, owned by the server and not by the request
//! that started it. It streams the model's answer onto the session topic, runs the tools the
//! model asks for, and stores what it produced however it ends (done, stopped, failed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::ChatService;
use super::chunk::{Usage, parse_chunk};
use super::events::{self, run_event};
use super::upstream::{ChunkStream, UpstreamError};
use crate::functions::{CallContext, Outcome};
use crate::hub::{Published, topics};
use crate::store::{ChatSessionRow, FinishRun, NewChatMessage};

/// Most chunks folded into one delta when they arrive together (a burst, or a slow reader of
/// the upstream socket): fewer events, same text, no added wait.
const MAX_FOLD: usize = 64;
/// First wait between whole attempts that failed before the first token; doubles each time.
const RETRY_BASE: Duration = Duration::from_millis(250);
const RUN_TIMEOUT: UpstreamError = UpstreamError { code: "run_timeout", message: "The answer took too long.", retryable: false };

/// What a run starts with: the messages the model sees (the new one last), its first request
/// if already sent, the stop button and a receiver already listening for stop requests, and
/// the message to announce.
pub(super) struct Launch {
    pub context: Vec<Value>,
    pub early: Option<EarlyOpen>,
    pub cancel: CancellationToken,
    pub stops: broadcast::Receiver<Arc<Published>>,
    pub session: ChatSessionRow,
    pub user_message: NewChatMessage,
    pub user_seq: i64,
}

/// A first model request sent before the run's row committed. Dropping it (the message was
/// refused, the run was stopped before reading it) aborts the request.
pub(super) struct EarlyOpen(tokio::task::JoinHandle<Result<ChunkStream, UpstreamError>>);

impl EarlyOpen {
    pub(super) fn start(svc: &Arc<ChatService>, body: Value) -> Self {
        let svc = svc.clone();
        Self(tokio::spawn(async move { svc.upstream.open(&body).await }))
    }

    async fn opened(mut self) -> Result<ChunkStream, UpstreamError> {
        (&mut self.0).await.unwrap_or(Err(UpstreamError::FAILED))
    }
}

impl Drop for EarlyOpen {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The streaming request the model gets for `messages`.
pub(super) fn request_body(svc: &ChatService, session_id: &str, messages: &[Value], tools_allowed: bool) -> Value {
    let s = &svc.settings;
    let mut body = json!({
        "model": s.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_completion_tokens": s.max_completion_tokens,
    });
    if tools_allowed && !svc.tools.is_empty() {
        body["tools"] = Value::Array(svc.tools.clone());
    }
    svc.name_asker(&mut body, super::safety::Asker::Session(session_id));
    body
}

/// Forgets the run on this instance however the task ends (a panic in a tool included).
struct Forget {
    svc: Arc<ChatService>,
    run_id: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        self.svc.forget_run(&self.run_id);
    }
}

/// Renews the run's lease every third of it; resolves never. A renewal that finds the run no
/// longer running (another instance declared it abandoned) stops it.
async fn keep_lease(svc: Arc<ChatService>, run_id: String, cancel: CancellationToken) {
    let lease = svc.settings.run_lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        let until = crate::clock::now_ms() + lease.as_millis() as i64;
        match svc.store.renew_chat_run(&run_id, until).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(run_id = %run_id, "a chat run lost its lease; stopping it");
                cancel.cancel();
                std::future::pending::<()>().await;
            }
            Err(e) => tracing::warn!(run_id = %run_id, error = %e, "could not renew a chat run's lease"),
        }
    }
}

pub(super) struct Run {
    svc: Arc<ChatService>,
    org_id: String,
    session_id: String,
    /// The session's widget: the run's tokens count against its budget too.
    site_key: Option<String>,
    run_id: String,
    topic: String,
    n: u64,
    /// The answer of the current round so far (kept when a stop interrupts it).
    text: String,
    /// Finished messages of earlier rounds: tool requests and results.
    produced: Vec<NewChatMessage>,
    /// The rounds' usage reports added up (stored with the run, sent with `done`).
    usage: Option<Usage>,
    /// Characters of the first request's messages, for an estimate when no usage comes.
    prompt_chars: usize,
    /// What the budgets count for the rounds already over: each its usage report, or an
    /// estimate when it sent none.
    settled: i64,
    /// The current round's latest usage report. A server may send a running total in every
    /// chunk, so the latest replaces the earlier ones instead of adding to them.
    round_usage: Option<Usage>,
    /// The model accepted a request whose round is not over: its prompt is spent, whatever
    /// comes back.
    in_round: bool,
    /// The first round's request, when it went out before the run started.
    early: Option<EarlyOpen>,
}

enum End {
    Done { finish_reason: String },
    Stopped,
    Failed(UpstreamError),
    Shutdown,
}

enum RoundEnd {
    Text { finish_reason: String },
    Tools(Vec<ToolRequest>),
}

#[derive(Debug, Default, Clone)]
struct ToolRequest {
    id: String,
    name: String,
    arguments: String,
}

/// An attempt's failure, and whether anything of it reached the browser (then it is not retried).
struct AttemptError {
    error: UpstreamError,
    started: bool,
}

/// What one attempt has read so far.
#[derive(Default)]
struct Read {
    /// Something of it reached the browser (text or a tool call): it is not retried.
    started: bool,
    tools: BTreeMap<u64, ToolRequest>,
    finish: Option<String>,
}

impl Run {
    pub(super) fn new(svc: Arc<ChatService>, session: &ChatSessionRow, run_id: String) -> Self {
        let (org_id, session_id, site_key) = (session.org_id.clone(), session.id.clone(), session.site_key.clone());
        let topic = topics::chat(&session_id);
        Self {
            svc,
            org_id,
            session_id,
            site_key,
            run_id,
            topic,
            n: 0,
            text: String::new(),
            produced: Vec::new(),
            usage: None,
            prompt_chars: 0,
            settled: 0,
            round_usage: None,
            in_round: false,
            early: None,
        }
    }

    /// What the budgets count for this answer: per round, the model's usage report, else an
    /// estimate from what the round read (the whole conversation so far) and wrote — its prompt
    /// at least once the model accepted the request; nothing with no budget set, or when the
    /// model refused every request. A round stopped or failed after a report counts at least
    /// its estimate (the report may have come before the rest of the round).
    fn charge(&self, last_text: &str, complete: bool) -> i64 {
        if !self.svc.settings.budgets.any() || !self.in_round {
            return self.settled;
        }
        let estimate = super::budget::estimate(self.prompt_chars + self.produced_chars(), last_text.len().max(1));
        let last = match &self.round_usage {
            Some(u) if complete => super::budget::charge(u),
            Some(u) => super::budget::charge(u).max(estimate),
            None => estimate,
        };
        self.settled.saturating_add(last).min(super::budget::MAX_CHARGE)
    }

    /// A round ended in tool requests (`written` characters of them): charged as reported, or
    /// estimated, before the next round starts.
    fn end_round(&mut self, written: usize) {
        let read = self.prompt_chars + self.produced_chars();
        let charged = match self.round_usage.take() {
            Some(u) => {
                self.add_usage(u);
                super::budget::charge(&u)
            }
            None if self.in_round => super::budget::estimate(read, written.max(1)),
            None => 0,
        };
        self.settled = self.settled.saturating_add(charged);
        self.in_round = false;
    }

    fn add_usage(&mut self, u: Usage) {
        let acc = self.usage.get_or_insert_with(Usage::default);
        // Saturating: the numbers are the upstream's, and must not panic or wrap the run.
        acc.prompt_tokens = acc.prompt_tokens.saturating_add(u.prompt_tokens);
        acc.completion_tokens = acc.completion_tokens.saturating_add(u.completion_tokens);
        acc.total_tokens = acc.total_tokens.saturating_add(u.total_tokens);
    }

    /// Characters of what earlier rounds produced (tool requests and results): what a later
    /// round's request carries beyond the first one's.
    fn produced_chars(&self) -> usize {
        self.produced.iter().map(|m| m.content.len() + m.tool_calls.as_deref().map_or(0, str::len)).sum()
    }

    /// Runs to the end; `cancel` is the stop button (from this instance, or relayed from
    /// another through a `chat.stop_requested` event on the topic). The run keeps its lease
    /// while it lives; losing it (declared abandoned) stops it.
    pub(super) async fn execute(mut self, l: Launch) {
        let _forget = Forget { svc: self.svc.clone(), run_id: self.run_id.clone() };
        self.early = l.early;
        self.prompt_chars = super::budget::prompt_chars(&l.context);
        self.svc.announce_message(&l.session, &l.user_message, l.user_seq).await;
        let stops = super::stop::watch(
            self.svc.broker.clone(),
            self.topic.clone(),
            self.run_id.clone(),
            l.cancel.clone(),
            l.stops,
            self.svc.history_limit,
        );
        let lease = keep_lease(self.svc.clone(), self.run_id.clone(), l.cancel.clone());
        let work = async {
            self.emit(events::STARTED, json!({})).await;
            self.publish_lifecycle(events::STARTED, json!({"status": "running"})).await;
            let end = self.answer(l.context, &l.cancel).await;
            self.finish(end).await;
        };
        tokio::select! {
            _ = work => {}
            _ = stops => {}
            _ = lease => {}
        }
    }

    async fn answer(&mut self, mut messages: Vec<Value>, cancel: &CancellationToken) -> End {
        let s = self.svc.settings.clone();
        let shutdown = self.svc.shutdown.clone();
        let deadline = tokio::time::Instant::now() + s.max_run;
        let mut rounds = 0;
        loop {
            let round = tokio::select! {
                _ = cancel.cancelled() => return End::Stopped,
                _ = shutdown.cancelled() => return End::Shutdown,
                _ = tokio::time::sleep_until(deadline) => return End::Failed(RUN_TIMEOUT),
                r = self.round(&messages, rounds < s.max_tool_rounds) => r,
            };
            let calls = match round {
                Err(e) => return End::Failed(e),
                Ok(RoundEnd::Text { finish_reason }) => return End::Done { finish_reason },
                // Tools are not offered in the last round; a model that asks anyway is stopped here.
                Ok(RoundEnd::Tools(_)) if rounds >= s.max_tool_rounds => {
                    return End::Failed(UpstreamError {
                        code: "too_many_tool_rounds",
                        message: "The model kept asking for tools.",
                        retryable: false,
                    });
                }
                Ok(RoundEnd::Tools(calls)) => calls,
            };
            rounds += 1;
            let tool_calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            let content = std::mem::take(&mut self.text);
            let said = if content.is_empty() { Value::Null } else { Value::from(content.clone()) };
            messages.push(json!({"role": "assistant", "content": said, "tool_calls": tool_calls}));
            let request = self.message(
                "assistant",
                content,
                "complete",
                Some("tool_calls".into()),
                Some(Value::Array(tool_calls).to_string()),
                None,
                None,
            );
            self.end_round(request.content.len() + request.tool_calls.as_deref().map_or(0, str::len));
            self.produced.push(request);
            for (i, call) in calls.iter().enumerate() {
                let ran = tokio::select! {
                    _ = cancel.cancelled() => Err(End::Stopped),
                    _ = shutdown.cancelled() => Err(End::Shutdown),
                    _ = tokio::time::sleep_until(deadline) => Err(End::Failed(RUN_TIMEOUT)),
                    r = self.tool(call) => Ok(r),
                };
                let result = match ran {
                    Ok(r) => r,
                    Err(end) => {
                        // Every request gets a result, so the stored history stays valid for the model.
                        for c in &calls[i..] {
                            let note = "Error: the answer was stopped before this function finished.".to_string();
                            let m = self.message("tool", note, "complete", None, None, Some(c.id.clone()), Some(c.name.clone()));
                            self.produced.push(m);
                        }
                        return end;
                    }
                };
                messages.push(json!({"role": "tool", "tool_call_id": call.id, "content": result}));
                let m = self.message("tool", result, "complete", None, None, Some(call.id.clone()), Some(call.name.clone()));
                self.produced.push(m);
            }
        }
    }

    /// Runs one function the model asked for through the shared registry (same timeouts as
    /// VAPI's tool calls) and returns what the model is told.
    async fn tool(&mut self, call: &ToolRequest) -> String {
        self.emit(events::TOOL, json!({"name": call.name, "status": "started", "tool_call_id": call.id})).await;
        let ctx = CallContext { call_id: None, org_id: self.org_id.clone(), customer_number: None };
        let args = serde_json::from_str::<Value>(if call.arguments.trim().is_empty() { "{}" } else { &call.arguments });
        // Only what chat offers, whatever the model names: the registry also holds VAPI-only functions.
        let outcome = if !self.svc.settings.tools.contains(&call.name) {
            Outcome::Err(format!("{} is not available here.", call.name))
        } else {
            match args {
                Ok(args) => self.svc.registry.invoke(&call.name, &args, &ctx, &call.id).await,
                Err(_) => Outcome::Err("The arguments were not valid JSON.".into()),
            }
        };
        let (payload, text) = match outcome {
            Outcome::Ok(r) => (json!({"name": call.name, "status": "finished", "tool_call_id": call.id, "result": r}), r),
            Outcome::Err(e) => {
                (json!({"name": call.name, "status": "finished", "tool_call_id": call.id, "error": e}), format!("Error: {e}"))
            }
        };
        self.emit(events::TOOL, payload).await;
        text
    }

    /// One request to the model, retried as a whole while nothing of it has been shown.
    async fn round(&mut self, messages: &[Value], tools_allowed: bool) -> Result<RoundEnd, UpstreamError> {
        let body = request_body(&self.svc, &self.session_id, messages, tools_allowed);
        let mut attempt = 0;
        loop {
            match self.attempt(&body).await {
                Ok(end) => return Ok(end),
                Err(AttemptError { error, started: false }) if error.retryable && attempt < self.svc.settings.retries => {
                    tokio::time::sleep(RETRY_BASE * 2u32.saturating_pow(attempt)).await;
                    attempt += 1;
                }
                Err(AttemptError { error, .. }) => return Err(error),
            }
        }
    }

    async fn attempt(&mut self, body: &Value) -> Result<RoundEnd, AttemptError> {
        let first_token = self.svc.settings.first_token_timeout;
        let idle = self.svc.settings.idle_timeout;
        let not_started = |error| AttemptError { error, started: false };
        // One limit from sending the request to the first chunk, however it splits.
        let first_deadline = Instant::now() + first_token;
        let opening = async {
            match self.early.take() {
                Some(early) => early.opened().await,
                None => self.svc.upstream.open(body).await,
            }
        };
        let mut stream: ChunkStream = match tokio::time::timeout_at(first_deadline, opening).await {
            Err(_) => return Err(not_started(UpstreamError::TIMEOUT)),
            Ok(Err(e)) => return Err(not_started(e)),
            Ok(Ok(s)) => s,
        };
        self.in_round = true;
        self.round_usage = None;
        let mut read = Read::default();
        // One timer for the whole stream, moved only when it fires while chunks kept coming
        // (or once, when the first token starts the idle limit): re-arming a timer at every
        // chunk cost more than the chunk's own work.
        let timer = tokio::time::sleep_until(first_deadline);
        tokio::pin!(timer);
        let mut last = Instant::now();
        let mut idle_armed = false;
        loop {
            let first = tokio::select! {
                biased;
                item = stream.next() => match item {
                    None => break,
                    Some(item) => item,
                },
                () = &mut timer => {
                    let due = if read.started { last + idle } else { first_deadline };
                    if due > Instant::now() {
                        timer.as_mut().reset(due);
                        continue;
                    }
                    return Err(AttemptError { error: UpstreamError::TIMEOUT, started: read.started });
                }
            };
            // Chunks that are already here are folded into one delta.
            let mut delta = String::new();
            let mut failed = None;
            let mut item = Some(first);
            let mut folded = 0;
            while let Some(next) = item.take() {
                folded += 1;
                if let Err(e) = next.and_then(|data| self.take_chunk(&data, &mut read, &mut delta)) {
                    failed = Some(e);
                    break;
                }
                if folded < MAX_FOLD {
                    item = stream.next().now_or_never().flatten();
                }
            }
            if !delta.is_empty() {
                read.started = true;
                self.text.push_str(&delta);
                self.emit(events::DELTA, json!({"content": delta})).await;
            }
            if let Some(error) = failed {
                return Err(AttemptError { error, started: read.started });
            }
            last = Instant::now();
            if read.started && !idle_armed {
                idle_armed = true;
                timer.as_mut().reset(last + idle);
            }
        }
        let Read { started, tools, finish } = read;
        // A stream that ends without saying why was cut off, whatever it sent before.
        let Some(finish_reason) = finish else { return Err(AttemptError { error: UpstreamError::INTERRUPTED, started }) };
        if tools.is_empty() {
            return Ok(RoundEnd::Text { finish_reason });
        }
        let calls = tools
            .into_values()
            .enumerate()
            .map(|(i, mut t)| {
                if t.id.is_empty() {
                    t.id = format!("call_{}_{i}", self.run_id);
                }
                t
            })
            .collect();
        Ok(RoundEnd::Tools(calls))
    }

    /// Adds one chunk's text to `delta` and its tool-call fragments, finish reason and usage to
    /// what the attempt has read.
    fn take_chunk(&mut self, data: &[u8], read: &mut Read, delta: &mut String) -> Result<(), UpstreamError> {
        let c = match parse_chunk(data) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(run_id = %self.run_id, code = UpstreamError::PROTOCOL.code, error = %e, "the model sent a chunk that is not JSON");
                return Err(UpstreamError::PROTOCOL);
            }
        };
        if c.error {
            let error = serde_json::from_slice::<Value>(data).map(|v| v["error"].clone()).unwrap_or_default();
            tracing::warn!(run_id = %self.run_id, error = %error, "the model sent an error mid-stream");
            return Err(UpstreamError::FAILED);
        }
        if let Some(t) = c.content {
            delta.push_str(&t);
        }
        for d in c.tool_calls {
            read.started = true;
            let t = read.tools.entry(d.index).or_default();
            if let Some(id) = d.id {
                t.id = id;
            }
            if let Some(name) = d.name {
                t.name.push_str(&name);
            }
            if let Some(a) = d.arguments {
                t.arguments.push_str(&a);
            }
        }
        if let Some(f) = c.finish_reason {
            read.finish = Some(f);
        }
        if c.usage.is_some() {
            self.round_usage = c.usage;
        }
        Ok(())
    }

    /// Stores the outcome, then tells followers: the terminal event is sent only once the
    /// answer is durable, so a browser that saw `done` can reload and find it.
    async fn finish(&mut self, end: End) {
        let message_id = uuid::Uuid::now_v7().to_string();
        let (status, msg_status, finish_reason, error) = match &end {
            End::Done { finish_reason } => ("done", "complete", Some(finish_reason.clone()), None),
            End::Stopped => ("stopped", "stopped", Some("stopped".to_string()), None),
            End::Failed(e) => ("failed", "failed", None, Some((e.code, e.message))),
            End::Shutdown => {
                ("failed", "failed", None, Some(("shutting_down", "The hub restarted while answering; send the message again.")))
            }
        };
        let content = std::mem::take(&mut self.text);
        let charged_tokens = self.charge(&content, matches!(end, End::Done { .. }));
        if let Some(u) = self.round_usage.take() {
            self.add_usage(u);
        }
        let mut final_msg = self.message("assistant", content.clone(), msg_status, finish_reason.clone(), None, None, None);
        final_msg.id = message_id.clone();
        let announce = self.svc.message_deliveries(&self.org_id, &self.session_id, &final_msg, |m| {
            json!({"id": m.id, "role": m.role, "content": m.content, "status": m.status, "run_id": m.run_id,
                "finish_reason": m.finish_reason, "created_at": crate::clock::iso(m.created_at)})
        });
        let announced = !announce.is_empty();
        let mut messages = std::mem::take(&mut self.produced);
        messages.push(final_msg);
        let record = FinishRun {
            session_id: self.session_id.clone(),
            site_key: self.site_key.clone(),
            charged_tokens,
            run_id: self.run_id.clone(),
            status: status.into(),
            finish_reason: finish_reason.clone(),
            prompt_tokens: self.usage.map(|u| u.prompt_tokens),
            completion_tokens: self.usage.map(|u| u.completion_tokens),
            error_code: error.map(|e| e.0.to_string()),
            error: error.map(|e| e.1.to_string()),
            finished_at: crate::clock::now_ms(),
            messages,
            announce,
        };
        let stored = self.svc.store.finish_chat_run(record).await;
        let (kind, data) = match (&stored, error) {
            (Err(e), _) => {
                tracing::error!(run_id = %self.run_id, error = %e, "a chat answer could not be stored");
                (events::ERROR, json!({"error": {"code": "not_saved", "message": "The answer could not be saved."}}))
            }
            (Ok(false), _) => {
                tracing::warn!(run_id = %self.run_id, "a chat run finished after it was declared abandoned; its answer was not stored");
                (events::ERROR, json!({"error": {"code": "not_saved", "message": "The answer was given up and not saved."}}))
            }
            (Ok(_), Some((code, message))) => {
                (events::ERROR, json!({"message_id": message_id, "error": {"code": code, "message": message}}))
            }
            (Ok(_), None) => {
                let kind = if matches!(end, End::Stopped) { events::STOPPED } else { events::DONE };
                (kind, json!({"message_id": message_id, "finish_reason": finish_reason, "usage": self.usage}))
            }
        };
        if announced && matches!(stored, Ok(true)) {
            self.svc.webhooks.committed();
        }
        self.svc.metrics.chat_run(status);
        let mut summary = data.clone();
        summary["status"] = Value::from(status);
        summary["content_chars"] = Value::from(content.chars().count());
        self.emit(kind, data).await;
        self.publish_lifecycle(kind, summary).await;
    }

    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        role: &str,
        content: String,
        status: &str,
        finish_reason: Option<String>,
        tool_calls: Option<String>,
        tool_call_id: Option<String>,
        name: Option<String>,
    ) -> NewChatMessage {
        NewChatMessage {
            id: uuid::Uuid::now_v7().to_string(),
            role: role.into(),
            content,
            status: status.into(),
            run_id: Some(self.run_id.clone()),
            finish_reason,
            tool_calls,
            tool_call_id,
            name,
            created_at: crate::clock::now_ms(),
        }
    }

    /// Numbers and publishes one event of this run. A broker failure costs live followers the
    /// event (they see a hole and reload); the run itself goes on and is stored.
    async fn emit(&mut self, kind: &str, data: Value) {
        self.n += 1;
        let ev = run_event(kind, &self.org_id, &self.session_id, &self.run_id, self.n, data);
        if let Err(e) = self.svc.broker.publish(&self.topic, ev).await {
            tracing::warn!(run_id = %self.run_id, error = %e, "chat event not published");
        }
    }

    /// Starts and ends of runs go to `chats` too, for boards that list every chat.
    async fn publish_lifecycle(&self, kind: &str, data: Value) {
        let ev = run_event(kind, &self.org_id, &self.session_id, &self.run_id, self.n, data);
        if let Err(e) = self.svc.broker.publish(topics::CHATS, ev).await {
            tracing::warn!(run_id = %self.run_id, error = %e, "chat lifecycle event not published");
        }
    }
}
