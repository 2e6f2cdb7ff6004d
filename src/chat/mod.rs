//! Chat: a browser's message is stored and answered by a *run* the hub owns. The run streams
//! the model's answer onto `chat:<session>` through the same broker as calls; the HTTP request
//! that started it (and any later `GET …/stream`, on any instance) only follows that topic, so a
//! dropped connection loses nothing and a stop really stops.
//!
//! `upstream` talks to the model (`sse_reader` and `chunk` read its stream), `run` produces an
//! answer, `follow` reads a run back from the broker, `events` names what a run says (and
//! encodes it as SSE), `context` builds the prompt, `routes` is HTTP.

mod allowance;
mod budget;
mod chunk;
mod compat;
mod context;
pub mod events;
mod follow;
mod guard;
mod limits;
mod routes;
mod run;
mod safety;
mod sse_body;
mod sse_reader;
mod stop;
mod streams;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use follow::{Followed, Follower};
pub use guard::{PageOrigin, Visitor};
pub use routes::{router, session_view};

use crate::config::{ChatSettings, FunctionSpec};
use crate::functions::Registry;
use crate::hub::{DynBroker, topics};
use crate::metrics::Metrics;
use crate::store::{
    ChatSessionRow, ChatUsage, DynStore, FollowUps, NewChatMessage, NewChatSession, NewJob, RunStart, StartRun, StoreError,
};

/// How long a stop request waits to see the run end before answering `202`.
const STOP_WAIT: Duration = Duration::from_secs(5);

pub struct ChatService {
    pub settings: Arc<ChatSettings>,
    store: DynStore,
    broker: DynBroker,
    metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    upstream: upstream::Upstream,
    /// The functions offered to the model, in the API's `tools` shape.
    tools: Vec<Value>,
    /// Runs of this instance, to stop them without a broker round trip.
    runs: DashMap<String, CancellationToken>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Events a follower may need from history to resume (the broker's per-topic size).
    history_limit: usize,
    ip_limits: limits::Limiter,
    session_limits: limits::Limiter,
    token_limits: limits::Limiter,
    site_limits: limits::Limiter,
    /// Streams following each session now (`chat.max_streams_per_session`).
    streams: streams::StreamSlots,
    /// Names the asker of every model request (`safety_identifier`).
    safety: safety::SafetyIds,
    /// Stored messages (the visitor's and the answers) go to webhook endpoints as `chat.message`.
    webhooks: Arc<crate::webhooks::Webhooks>,
    /// The UTC day (`ChatUsage::day`) the spend breaker was last found spent on: the count only
    /// grows within a day, so until midnight a refusal needs no read.
    spent_day: std::sync::atomic::AtomicI64,
}

/// Why a chat request was refused, mapped to HTTP by `routes`.
#[derive(Debug)]
pub enum ChatError {
    NotFound,
    Invalid {
        code: &'static str,
        message: String,
    },
    Busy {
        run_id: String,
    },
    Full,
    NoActiveRun,
    /// Over a rate limit; retry after this long.
    RateLimited(Duration),
    /// A daily token budget is spent (`session`, `site`, or `all`: the spend breaker); it
    /// renews after this long.
    OverBudget {
        scope: &'static str,
        renews: Duration,
    },
    /// The session has its maximum of streams open.
    TooManyStreams,
    /// The hub is shutting down and starts no new answers.
    ShuttingDown,
    Store(StoreError),
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Store(e)
    }
}

/// A session's messages and its running answer, if any.
pub struct SessionState {
    history: Vec<crate::store::ChatMessageRow>,
    active_run: Option<String>,
    /// Today's tokens, when a budget is set.
    usage: Option<ChatUsage>,
}

/// What a stop request achieved.
#[derive(Debug)]
pub struct Stopped {
    pub run_id: String,
    /// The run's status when the answer was sent: `stopped`, `done`/`failed` if it ended on its
    /// own first, `running` if it had not ended within the wait (it will).
    pub status: String,
}

pub struct ChatDeps {
    pub store: DynStore,
    pub broker: DynBroker,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub functions: Vec<FunctionSpec>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
    pub history_limit: usize,
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

impl ChatService {
    pub fn new(settings: ChatSettings, d: ChatDeps) -> Self {
        let tools = d
            .functions
            .iter()
            .filter(|f| settings.tools.contains(&f.name))
            .map(|f| json!({"type": "function", "function": {"name": f.name, "description": f.description, "parameters": f.parameters}}))
            .collect();
        if settings.widgets.is_empty() {
            tracing::warn!("no [[widgets]] are configured: the chat API serves only the hub's own pages and non-browser clients");
        }
        let ip_limits = limits::Limiter::new(settings.ip_rate);
        let session_limits = limits::Limiter::new(settings.session_rate);
        let token_limits = limits::Limiter::new(settings.token_rate);
        let site_limits = limits::Limiter::new(settings.site_rate);
        let streams = streams::StreamSlots::new(settings.max_streams_per_session);
        let safety = safety::SafetyIds::new(settings.safety_secret.as_ref().map(|k| k.expose()), settings.safety_identifier);
        Self {
            upstream: upstream::Upstream::new(&settings),
            settings: Arc::new(settings),
            store: d.store,
            broker: d.broker,
            metrics: d.metrics,
            registry: d.registry,
            tools,
            runs: DashMap::new(),
            tasks: d.tasks,
            shutdown: d.shutdown,
            history_limit: d.history_limit,
            webhooks: d.webhooks,
            ip_limits,
            session_limits,
            token_limits,
            site_limits,
            streams,
            safety,
            spent_day: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    pub async fn create_session(&self, org_id: &str, site_key: Option<String>) -> Result<ChatSessionRow, ChatError> {
        // Random, not time-ordered: the id is what lets a browser read its session back.
        let id = uuid::Uuid::new_v4().to_string();
        let now = crate::clock::now_ms();
        self.store
            .create_chat_session(NewChatSession { id: id.clone(), org_id: org_id.into(), site_key, created_at: now, metadata: None })
            .await?;
        self.store.get_chat_session(&id).await?.ok_or(ChatError::NotFound)
    }

    pub async fn session(&self, id: &str) -> Result<ChatSessionRow, ChatError> {
        if id.len() > 64 {
            return Err(ChatError::NotFound);
        }
        self.metrics.time_store("get_chat_session", self.store.get_chat_session(id)).await?.ok_or(ChatError::NotFound)
    }

    /// What a new message needs of its session besides the session itself: read while the
    /// session is read and checked (see `routes::send_message`). On Postgres the reads overlap;
    /// SQLite runs them on this thread, one after the other, in microseconds.
    pub async fn state(&self, session_id: &str) -> Result<SessionState, ChatError> {
        let now = crate::clock::now_ms();
        let usage = async {
            if !self.settings.budgets.any() {
                return Ok(None);
            }
            self.metrics.time_store("chat_usage", self.store.chat_usage(ChatUsage::day(now), session_id)).await.map(Some)
        };
        let (history, active, usage) = tokio::join!(
            self.metrics.time_store("chat_messages", self.store.chat_messages(session_id)),
            self.metrics.time_store("active_chat_run", self.store.active_chat_run(session_id, now)),
            usage
        );
        Ok(SessionState { history: history?, active_run: active?.map(|r| r.id), usage: usage? })
    }

    /// Stores the user's message and starts a run to answer it; the returned follower sees the
    /// run from its first event. `state` is the session's, read just before.
    pub async fn send(self: &Arc<Self>, session: &ChatSessionRow, content: &str, state: SessionState) -> Result<Follower, ChatError> {
        if self.shutdown.is_cancelled() {
            return Err(ChatError::ShuttingDown);
        }
        let text = content.trim();
        if text.is_empty() {
            return Err(ChatError::Invalid { code: "invalid_content", message: "content must not be empty.".into() });
        }
        let chars = text.chars().count();
        if chars > self.settings.max_message_chars {
            return Err(ChatError::Invalid {
                code: "message_too_long",
                message: format!("content has {chars} characters; at most {} are accepted.", self.settings.max_message_chars),
            });
        }
        let run_id = uuid::Uuid::now_v7().to_string();
        let now = crate::clock::now_ms();
        let message = NewChatMessage::from_user(uuid::Uuid::now_v7().to_string(), text.to_string(), Some(run_id.clone()), now);
        // Everything the run needs is ready before the run row commits, so nothing between the
        // commit and the spawn can fail or be dropped with the request, leaving a run with no
        // task behind it.
        let SessionState { mut history, active_run, .. } = state;
        // The answer's own stream is one of the session's: taken before anything is stored.
        let slot = self.streams.take(&session.id).ok_or(ChatError::TooManyStreams)?;
        // The store decides (one running run per session); this read only keeps a message that
        // would be refused from reaching the model early.
        if let Some(run_id) = active_run {
            return Err(ChatError::Busy { run_id });
        }
        let fits = history.len() as i64 + 2 <= self.settings.max_messages_per_session as i64;
        let provisional_seq = history.last().map_or(1, |m| m.seq + 1);
        history.push(message.clone().into_row(&session.id, provisional_seq));
        let s = &self.settings;
        let context = context::build(&s.system_prompt, &history, s.context_chars, s.history_messages);
        // The model's first request goes out now, while the message commits: the write and the
        // model's time to first token overlap instead of adding up. A refused message (another
        // run won the race, the session filled up, the write failed) drops it unanswered.
        let early = fits.then(|| run::EarlyOpen::start(self, run::request_body(self, &session.id, &context, s.max_tool_rounds > 0)));
        let topic = topics::chat(&session.id);
        let follower = Follower::new(self.broker.clone(), topic.clone(), run_id.clone(), 0, self.history_limit).holding(slot);
        let stops = self.broker.subscribe(&topic);
        let cancel = CancellationToken::new();
        self.runs.insert(run_id.clone(), cancel.clone());
        let start = StartRun {
            session_id: session.id.clone(),
            run_id: run_id.clone(),
            message: message.clone(),
            now,
            lease_until: now + self.settings.run_lease.as_millis() as i64,
            max_messages: self.settings.max_messages_per_session as i64,
            follow_ups: self.visitor_message_deliveries(session, &message),
        };
        let announced = start.follow_ups.is_some();
        // The commit and the launch run on the service's own task: a client that leaves while
        // the run's row commits drops this request, not the run (a committed run with no task
        // would hold its session busy until its lease ran out, its message unanswered).
        let (svc, session) = (self.clone(), session.clone());
        let launched = self.tasks.spawn(async move {
            let started = svc.metrics.time_store("start_chat_run", svc.store.start_chat_run(start)).await;
            let user_seq = match started {
                Ok(RunStart::Started { message_seq }) => message_seq,
                other => {
                    svc.runs.remove(&run_id);
                    return Err(match other {
                        Ok(RunStart::Busy { run_id }) => ChatError::Busy { run_id },
                        Ok(RunStart::Full) => ChatError::Full,
                        Ok(_) => ChatError::NotFound,
                        Err(e) => ChatError::Store(e),
                    });
                }
            };
            if announced {
                svc.webhooks.committed();
            }
            svc.metrics.chat_active_runs.inc();
            let run = run::Run::new(svc.clone(), &session, run_id);
            let launch = run::Launch { context, early, cancel, stops, session, user_message: message, user_seq };
            svc.tasks.spawn(run.execute(launch));
            Ok(())
        });
        match launched.await {
            Ok(result) => result.map(|()| follower),
            // Only a panic (a bug) or the runtime shutting down.
            Err(e) => Err(ChatError::Store(StoreError::Internal(format!("starting an answer failed: {e}")))),
        }
    }

    /// A follower of the session's active run, from after `last_event_id` when it names that
    /// run, else from its start; `None` when no run is active.
    pub async fn resume(&self, session_id: &str, last_event_id: Option<&str>) -> Result<Option<(Follower, bool)>, ChatError> {
        let Some(run) = self.store.active_chat_run(session_id, crate::clock::now_ms()).await? else { return Ok(None) };
        let slot = self.streams.take(session_id).ok_or(ChatError::TooManyStreams)?;
        let after = match last_event_id.and_then(events::parse_last_event_id) {
            Some((id, n)) if id == run.id => n,
            _ => 0,
        };
        let mut follower = Follower::new(self.broker.clone(), topics::chat(session_id), run.id, after, self.history_limit).holding(slot);
        let complete = follower.backfill().await;
        Ok(Some((follower, complete)))
    }

    /// Stops the session's active run wherever it runs; waits a little to report how it ended.
    pub async fn stop(&self, session: &ChatSessionRow, actor: &str) -> Result<Stopped, ChatError> {
        let run = self.store.active_chat_run(&session.id, crate::clock::now_ms()).await?.ok_or(ChatError::NoActiveRun)?;
        let topic = topics::chat(&session.id);
        let mut rx = self.broker.subscribe(&topic);
        if let Some(cancel) = self.runs.get(&run.id).map(|c| c.clone()) {
            cancel.cancel();
        }
        let request = crate::hub::Event {
            kind: events::STOP_REQUESTED.into(),
            at: crate::clock::iso(crate::clock::now_ms()),
            org_id: session.org_id.clone(),
            data: json!({"session_id": session.id, "run_id": run.id, "by": actor}),
        };
        if let Err(e) = self.broker.publish(&topic, request).await {
            tracing::warn!(run_id = %run.id, error = %e, "stop request not published");
        }
        // The run's last event, or its row leaving `running` (the event may have gone by already).
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        let mut status = "running".to_string();
        while tokio::time::Instant::now() < deadline {
            let heard = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
            if let Ok(Ok(p)) = &heard
                && !events::RunEvent::from_published(p).is_some_and(|ev| ev.run_id() == run.id && ev.is_terminal())
            {
                continue;
            }
            if let Some(r) = self.store.chat_run(&run.id).await? {
                status = r.status;
            }
            if status != "running" {
                break;
            }
        }
        if status == "running" {
            tracing::warn!(run_id = %run.id, "a stopped run had not ended after {STOP_WAIT:?}");
        }
        Ok(Stopped { run_id: run.id, status })
    }

    /// Takes a token from the client's bucket (and the session's, when given).
    pub fn limit(&self, ip: Option<&str>, session_id: Option<&str>) -> Result<(), ChatError> {
        if let Some(ip) = ip {
            self.ip_limits.check(ip).map_err(ChatError::RateLimited)?;
        }
        if let Some(id) = session_id {
            self.session_limits.check(id).map_err(ChatError::RateLimited)?;
        }
        Ok(())
    }

    /// Messages and new sessions per widget site key; sessions of no widget (the hub's own
    /// pages, non-browser clients) share one bucket, so leaving the key out does not escape it.
    pub fn limit_site(&self, site_key: Option<&str>) -> Result<(), ChatError> {
        self.site_limits.check(site_key.unwrap_or("")).map_err(ChatError::RateLimited)
    }

    /// Adds `safety_identifier` to a model request, unless switched off. A caller of the
    /// pass-through that names its own end user keeps its name (checked by the route).
    pub(super) fn name_asker(&self, body: &mut Value, who: safety::Asker<'_>) {
        let Some(obj) = body.as_object_mut() else { return };
        if obj.contains_key("safety_identifier") {
            return;
        }
        if let Some(id) = self.safety.of(who) {
            obj.insert("safety_identifier".into(), Value::String(id));
        }
    }

    /// Requests per API token on the pass-through.
    pub fn limit_token(&self, token_id: &str) -> Result<(), ChatError> {
        self.token_limits.check(token_id).map_err(ChatError::RateLimited)
    }

    /// `chat.message` deliveries of a stored message, to write with it; `message` builds its
    /// JSON form, only when some endpoint wants it.
    pub(super) fn message_deliveries(
        &self,
        org: &str,
        session_id: &str,
        m: &NewChatMessage,
        message: impl FnOnce(&NewChatMessage) -> Value,
    ) -> Vec<NewJob> {
        let Some(outbox) = self.webhooks.outbox(&[crate::webhooks::events::CHAT_MESSAGE]) else { return Vec::new() };
        outbox.deliveries(&crate::webhooks::events::chat_message(org, session_id, &m.id, m.created_at, message(m)))
    }

    /// The same for a visitor's message, whose position the transaction that stores it takes.
    fn visitor_message_deliveries(&self, session: &ChatSessionRow, m: &NewChatMessage) -> Option<FollowUps<i64>> {
        let outbox = self.webhooks.outbox(&[crate::webhooks::events::CHAT_MESSAGE])?;
        let (org, session_id, m) = (session.org_id.clone(), session.id.clone(), m.clone());
        Some(FollowUps(Arc::new(move |seq: &i64| {
            outbox.deliveries(&crate::webhooks::events::chat_message(&org, &session_id, &m.id, m.created_at, visitor_json(&m, *seq)))
        })))
    }

    fn forget_run(&self, run_id: &str) {
        if self.runs.remove(run_id).is_some() {
            self.metrics.chat_active_runs.dec();
        }
    }

    /// A stored user message, for supervisors (`chat:<id>` and `chats`) and webhook endpoints.
    pub(super) async fn announce_message(&self, session: &ChatSessionRow, m: &NewChatMessage, seq: i64) {
        let data = json!({ "session_id": session.id, "message": visitor_json(m, seq) });
        for topic in [topics::chat(&session.id), topics::CHATS.to_string()] {
            let ev = crate::hub::Event {
                kind: events::MESSAGE.into(),
                at: crate::clock::iso(m.created_at),
                org_id: session.org_id.clone(),
                data: data.clone(),
            };
            if let Err(e) = self.broker.publish(&topic, ev).await {
                tracing::warn!(session_id = %session.id, error = %e, "chat message event not published");
            }
        }
    }
}

/// A visitor's stored message as supervisors and webhook endpoints see it.
fn visitor_json(m: &NewChatMessage, seq: i64) -> Value {
    json!({"id": m.id, "seq": seq, "role": m.role, "content": m.content, "run_id": m.run_id, "created_at": crate::clock::iso(m.created_at)})
}
