//! Durable jobs: background work kept in the store so it survives restarts and runs on any
//! instance. Code registers a `JobKind` (a name, a handler, optionally a schedule and a limit);
//! anything enqueues a job of that kind with a JSON payload; each instance's worker claims due
//! jobs under a lease, runs them, and retries failures with backoff until they are `dead`.
//! Delivery is at least once: a handler whose worker died mid-job runs again, so handlers must
//! be safe to repeat (or check what they already did).

mod backoff;
mod builtin;
pub mod routes;
mod worker;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::JobsSettings;
use crate::store::{DynStore, Enqueued, NewJob, StoreError};
use worker::Look;

pub use routes::router;

/// What a job's handler does with its payload. An `Err` is a failed attempt: the message is
/// stored as the job's `last_error` and the job is retried later (or is `dead`).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    async fn run(&self, payload: Value, ctx: JobContext) -> Result<(), String>;
}

/// Any `async fn(Value, JobContext) -> Result<(), String>` (or closure returning such a future)
/// is a handler.
#[async_trait]
impl<F, Fut> JobHandler for F
where
    F: Fn(Value, JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    async fn run(&self, payload: Value, ctx: JobContext) -> Result<(), String> {
        self(payload, ctx).await
    }
}

/// What a handler knows about the job it runs.
#[derive(Clone)]
pub struct JobContext {
    pub id: String,
    pub kind: String,
    /// This attempt's number, from 1.
    pub attempt: i64,
    pub max_attempts: i64,
    pub store: DynStore,
    /// Cancelled when the instance shuts down: a long handler may stop early and return an
    /// error (the job is retried), or carry on until the shutdown deadline.
    pub stop: CancellationToken,
}

/// A named kind of job and how it runs.
#[derive(Clone)]
pub struct JobKind {
    pub name: String,
    pub handler: Arc<dyn JobHandler>,
    /// Enqueue one job per interval ("slot") on whichever instance gets there first.
    pub every: Option<Duration>,
    /// Jobs of this kind running at once across every instance.
    pub limit: Option<usize>,
    pub max_attempts: Option<u32>,
}

impl JobKind {
    pub fn new(name: impl Into<String>, handler: impl JobHandler) -> Self {
        Self { name: name.into(), handler: Arc::new(handler), every: None, limit: None, max_attempts: None }
    }

    pub fn every(mut self, interval: Duration) -> Self {
        self.every = Some(interval);
        self
    }

    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    /// Not before this time (ms); now by default.
    pub run_at: Option<i64>,
    /// At most one job per key, ever: enqueueing it again returns the existing job.
    pub dedup_key: Option<String>,
}

#[derive(Debug)]
pub enum EnqueueError {
    UnknownKind,
    Store(StoreError),
}

impl std::fmt::Display for EnqueueError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnqueueError::UnknownKind => write!(f, "no job kind of that name is registered"),
            EnqueueError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for EnqueueError {}

/// The job service of one instance: the registry of kinds, enqueueing, and the worker.
pub struct Jobs {
    settings: JobsSettings,
    store: DynStore,
    kinds: DashMap<String, JobKind>,
    /// Names this instance's claims in `locked_by`.
    worker_id: String,
    /// Wakes the worker early: a job was enqueued here, or a slot freed up.
    wake: Notify,
    /// What woke it, so the next claim round looks only where there can be news.
    hint: Mutex<Look>,
    /// A round found every slot taken: the next job to finish wakes the worker for all kinds.
    starved: AtomicBool,
}

impl Jobs {
    pub fn new(settings: JobsSettings, store: DynStore) -> Self {
        let jobs = Self {
            settings,
            store,
            kinds: DashMap::new(),
            worker_id: worker_id(),
            wake: Notify::new(),
            hint: Mutex::new(Look::nothing()),
            starved: AtomicBool::new(false),
        };
        if jobs.settings.demo_kinds {
            for kind in builtin::demo_kinds() {
                jobs.register(kind);
            }
        }
        jobs
    }

    /// Adds (or replaces) a kind. Kinds may be registered while the worker runs; it picks them up
    /// on its next poll.
    pub fn register(&self, kind: JobKind) {
        if !crate::config::valid_job_kind(&kind.name) {
            // Still registered (it is code's choice), but `[jobs.kinds]` cannot name it.
            tracing::warn!(kind = %kind.name, "a job kind's name should be 1 to 64 of a-z 0-9 _ - .");
        }
        self.kinds.insert(kind.name.clone(), kind);
        self.nudge(Look::All);
    }

    /// Drops every kind's handler. Handlers hold the services that enqueue jobs (webhooks, the
    /// VAPI service), which hold this registry: a reference cycle that would keep a stopped app —
    /// and its database pool — alive. Shutdown calls this to break it.
    pub fn forget_kinds(&self) {
        self.kinds.clear();
    }

    pub fn is_registered(&self, kind: &str) -> bool {
        self.kinds.contains_key(kind)
    }

    /// The registered kinds, with `[jobs.kinds.NAME]` settings applied, in name order.
    pub fn kinds(&self) -> Vec<JobKind> {
        let mut kinds: Vec<JobKind> = self.kinds.iter().map(|k| self.effective(k.value())).collect();
        kinds.sort_by(|a, b| a.name.cmp(&b.name));
        kinds
    }

    fn effective(&self, kind: &JobKind) -> JobKind {
        let mut k = kind.clone();
        if let Some(s) = self.settings.kinds.get(&k.name) {
            k.limit = s.limit.or(k.limit);
            k.every = s.every.or(k.every);
            k.max_attempts = s.max_attempts.or(k.max_attempts);
        }
        k
    }

    fn kind(&self, name: &str) -> Option<JobKind> {
        self.kinds.get(name).map(|k| self.effective(k.value()))
    }

    /// Adds a job of a registered kind.
    pub async fn enqueue(&self, kind: &str, payload: Value, opts: EnqueueOptions) -> Result<Enqueued, EnqueueError> {
        let job = self.new_job(kind, &payload, opts)?;
        let enqueued = self.store.enqueue_job(job).await.map_err(EnqueueError::Store)?;
        if enqueued.created {
            self.nudge(Look::kind(&enqueued.job.kind));
        }
        Ok(enqueued)
    }

    /// The row `enqueue` would write, for a caller that writes it in a transaction of its own
    /// (then tells `created`).
    pub fn new_job(&self, kind: &str, payload: &Value, opts: EnqueueOptions) -> Result<NewJob, EnqueueError> {
        let k = self.kind(kind).ok_or(EnqueueError::UnknownKind)?;
        let now = crate::clock::now_ms();
        Ok(NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: k.name,
            payload: payload.to_string(),
            max_attempts: i64::from(k.max_attempts.unwrap_or(self.settings.max_attempts)),
            run_at: opts.run_at.unwrap_or(now),
            dedup_key: opts.dedup_key,
            now,
        })
    }

    /// Jobs of this kind were committed by another write: the worker looks at once instead of
    /// at its next poll.
    pub fn created(&self, kind: &str) {
        self.nudge(Look::kind(kind));
    }

    /// Wakes the worker and tells it where to look.
    fn nudge(&self, look: Look) {
        if let Ok(mut hint) = self.hint.lock() {
            hint.add(look);
        }
        self.wake.notify_one();
    }

    /// What the wake-ups since the last call asked for.
    fn take_hint(&self) -> Look {
        self.hint.lock().map(|mut h| std::mem::replace(&mut *h, Look::nothing())).unwrap_or(Look::All)
    }

    /// Starts this instance's worker: it claims and runs jobs until `stop` is cancelled, then
    /// claims nothing more; jobs already running finish on `tasks` (shutdown waits for them up
    /// to its deadline; one cut off there runs again elsewhere once its lease passes).
    pub fn start(self: &Arc<Self>, stop: CancellationToken, tasks: TaskTracker) {
        let jobs = self.clone();
        tasks.clone().spawn(worker::run(jobs, stop, tasks));
    }
}

/// Unique per process start: a restarted instance never mistakes its predecessor's claims for
/// its own.
fn worker_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "host".into());
    format!("{host}/{}/{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}
