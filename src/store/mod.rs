//! Persistence behind one trait: SQLite (the embedded default, WAL, group commit) and
//! Postgres. SQL lives only in this module; `queries` holds the statements both engines share.

mod chat_queries;
mod delegate;
mod error;
mod job_queries;
mod job_types;
mod postgres;
mod queries;
mod retention_queries;
mod sanitize;
mod sql;
mod sqlite;
mod sqlite_direct;
pub mod types;
mod webhook_queries;
mod webhook_types;

use std::sync::Arc;

use async_trait::async_trait;

pub use error::StoreError;
pub use postgres::PgStore;
pub use sanitize::{sanitize_json, sanitize_text};
pub use sqlite::SqliteStore;
pub use types::*;

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`, for logs and metrics.
    fn backend(&self) -> &'static str;
    /// A cheap round trip, for `/readyz`.
    async fn ping(&self) -> Result<()>;
    async fn migrate(&self) -> Result<()>;

    /// Applies one VAPI message atomically; a repeated dedup key changes nothing.
    async fn ingest(&self, ingest: Ingest) -> Result<IngestOutcome>;

    /// Claims a tool call for execution, or returns the row of whoever has it.
    async fn claim_invocation(&self, inv: NewInvocation) -> Result<Claim>;
    /// Stores a claimed call's result; `false` when the claim is no longer this caller's (its
    /// lease ran out and another delivery took it over). A claim lost altogether (rolled back
    /// with a failed batch after later writes saw it) is written whole with the result.
    async fn finish_invocation(&self, done: Finished) -> Result<bool>;
    async fn get_invocation(&self, tool_call_id: &str) -> Result<Option<InvocationRow>>;

    async fn list_calls(&self, scope: &OrgScope, filter: &CallFilter) -> Result<Vec<CallRow>>;
    async fn get_call(&self, id: &str) -> Result<Option<CallRow>>;
    /// Calls not over, created since `since`, silent since `before` (reconciliation).
    async fn stale_calls(&self, since: i64, before: i64, limit: i64) -> Result<Vec<CallRow>>;
    async fn transcript(&self, call_id: &str) -> Result<Vec<SegmentRow>>;
    /// The newest final segment of each of these calls (calls without one are left out).
    async fn last_segments(&self, call_ids: &[String]) -> Result<Vec<SegmentRow>>;
    async fn invocations(&self, call_id: &str) -> Result<Vec<InvocationRow>>;
    async fn recordings(&self, call_id: &str) -> Result<Vec<RecordingRow>>;
    async fn recording(&self, id: i64) -> Result<Option<RecordingRow>>;
    /// Records a download's outcome (`ready`, `failed` or `refused`).
    async fn finish_recording(&self, done: RecordingDone) -> Result<()>;
    async fn count_raw_events(&self, call_id: Option<&str>) -> Result<i64>;

    async fn insert_token(&self, id: &str, hash: &str, role: &str, orgs: &str, label: Option<&str>, now: i64) -> Result<()>;
    async fn find_token(&self, hash: &str) -> Result<Option<TokenRow>>;

    /// The audit trail of live call control: recorded before the request, completed after.
    async fn insert_control_action(&self, action: NewControlAction) -> Result<()>;
    async fn finish_control_action(&self, done: ControlFinished) -> Result<()>;
    /// A call's control actions, oldest first.
    async fn control_actions(&self, call_id: &str) -> Result<Vec<ControlActionRow>>;

    async fn create_chat_session(&self, s: NewChatSession) -> Result<()>;
    async fn get_chat_session(&self, id: &str) -> Result<Option<ChatSessionRow>>;
    /// Sessions with activity since `since` (ms), newest first, for the `chats` snapshot.
    async fn recent_chat_sessions(&self, scope: &OrgScope, since: i64, limit: i64) -> Result<Vec<ChatSessionRow>>;
    /// A session's messages in order.
    async fn chat_messages(&self, session_id: &str) -> Result<Vec<ChatMessageRow>>;
    /// Stores the user's message and opens a run, unless one is running (or the session is full).
    async fn start_chat_run(&self, r: StartRun) -> Result<RunStart>;
    /// Closes a run with what it produced; `false` when it was no longer running.
    async fn finish_chat_run(&self, f: FinishRun) -> Result<bool>;
    async fn chat_run(&self, run_id: &str) -> Result<Option<ChatRunRow>>;
    /// Extends a running run's lease; `false` when it is no longer running.
    async fn renew_chat_run(&self, run_id: &str, lease_until: i64) -> Result<bool>;
    /// The newest message (not a tool result) of each of these sessions.
    async fn last_chat_messages(&self, session_ids: &[String]) -> Result<Vec<ChatMessageRow>>;
    /// The session's running run whose lease has not run out.
    async fn active_chat_run(&self, session_id: &str, now: i64) -> Result<Option<ChatRunRow>>;
    /// Tokens used on `day` (`ChatUsage::day`) by the session, its site key and all chat.
    async fn chat_usage(&self, day: i64, session_id: &str) -> Result<ChatUsage>;
    /// Adds tokens spent outside a session (`/api/ai/chat`, the pass-through) to all chat's count.
    async fn add_chat_usage(&self, day: i64, tokens: i64) -> Result<()>;

    /// Adds a job; with a dedup key already used, returns that job instead.
    async fn enqueue_job(&self, job: NewJob) -> Result<Enqueued>;
    /// Leases up to `max` due jobs of one kind (queued, or running with an expired lease) to a
    /// worker, within the kind's limit. Atomic: no two workers, on any instance, get one job.
    async fn claim_jobs(&self, claim: ClaimJobs) -> Result<Vec<JobRow>>;
    /// `false` when the lease was lost (nothing changed).
    async fn complete_job(&self, lease: JobLease, now: i64) -> Result<bool>;
    /// Reschedules the job, or makes it `dead` after its last attempt; the new status, or
    /// `None` when the lease was lost.
    async fn fail_job(&self, failure: JobFailure) -> Result<Option<String>>;
    /// Extends a running job's lease; `false` when it was lost.
    async fn renew_job(&self, lease: JobLease, lease_until: i64, now: i64) -> Result<bool>;
    async fn get_job(&self, id: &str) -> Result<Option<JobRow>>;
    /// Newest first.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>>;
    /// A dead job, or one waiting to retry after a failure, queued to run now.
    async fn retry_job(&self, id: &str, now: i64) -> Result<JobRetry>;

    /// Outgoing webhook endpoints (see `webhook_queries`).
    async fn create_webhook(&self, w: NewWebhook) -> Result<WebhookRow>;
    /// Oldest first; `enabled_only` leaves disabled endpoints out.
    async fn list_webhooks(&self, enabled_only: bool) -> Result<Vec<WebhookRow>>;
    async fn get_webhook(&self, id: &str) -> Result<Option<WebhookRow>>;
    /// `false` when there was none; its delivery log goes with it.
    async fn delete_webhook(&self, id: &str) -> Result<bool>;
    /// Clears a disable and the failure count; `None` when there is no such endpoint.
    async fn enable_webhook(&self, id: &str, now: i64) -> Result<Option<WebhookRow>>;
    /// A new signing secret, the old one still signing until the rotation's `previous_until`;
    /// `None` when there is no such endpoint.
    async fn rotate_webhook_secret(&self, r: SecretRotation) -> Result<Option<WebhookRow>>;
    /// Logs an attempt and counts it against its endpoint (disabling it when that is due), in
    /// one transaction; `None` (nothing logged) when the endpoint no longer exists.
    async fn record_webhook_attempt(&self, a: WebhookAttempt) -> Result<Option<EndpointAfter>>;
    /// An endpoint's attempts, newest first, ids below `before`.
    async fn webhook_deliveries(&self, endpoint_id: &str, before: Option<i64>, limit: i64) -> Result<Vec<DeliveryRow>>;

    /// Demo tables behind the built-in functions.
    // Retention: each call deletes one batch of at most `batch` rows in its own transaction.
    async fn prune_raw_events(&self, cutoff: i64, batch: i64) -> Result<u64>;
    async fn prune_transcripts(&self, cutoff: i64, batch: i64) -> Result<u64>;
    /// Returns (sessions, messages) removed.
    async fn prune_chats(&self, cutoff: i64, batch: i64) -> Result<(u64, u64)>;
    async fn expired_recordings(&self, cutoff: i64, batch: i64) -> Result<Vec<RecordingRow>>;
    async fn mark_recording_deleted(&self, id: i64) -> Result<()>;
    async fn prune_jobs(&self, cutoff: i64, batch: i64) -> Result<u64>;
    async fn prune_webhook_deliveries(&self, cutoff: i64, batch: i64) -> Result<u64>;

    async fn find_customer(&self, phone: Option<&str>, name: Option<&str>) -> Result<Option<CustomerRow>>;
    async fn booked_slots(&self, date: &str) -> Result<Vec<String>>;
    async fn book_appointment(&self, phone: &str, starts_at: &str, service: &str, now: i64) -> Result<Booking>;
    async fn find_department(&self, name: &str) -> Result<Option<DepartmentRow>>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store named by a `sqlite:` or `postgres://` URL.
pub async fn connect(url: &str, max_connections: u32) -> Result<DynStore> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url, max_connections).await?))
    } else {
        Ok(Arc::new(SqliteStore::connect(url, max_connections).await?))
    }
}

/// Status order: a call never moves back down this list (see `queries::apply_status`).
pub fn status_rank(status: &str) -> i64 {
    match status {
        "scheduled" => 0,
        "queued" => 1,
        "ringing" => 2,
        "in-progress" => 3,
        "forwarding" => 4,
        "ended" | "not-found" => 5,
        _ => -1,
    }
}

/// The rank at and above which a call is over.
pub const TERMINAL_RANK: i64 = 5;
