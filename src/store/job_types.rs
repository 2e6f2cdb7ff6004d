//! Records of durable jobs (see `job_queries`). A claim hands a worker a lease; every later
//! write about the job names that lease, so a worker that lost it (it was too slow to renew and
//! another worker claimed the job) changes nothing.

use serde::Serialize;

/// A job to add to the queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub kind: String,
    /// JSON text.
    pub payload: String,
    pub max_attempts: i64,
    /// Not before this.
    pub run_at: i64,
    /// At most one job per key, ever: a second enqueue with the same key returns the first job.
    pub dedup_key: Option<String>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: JobRow,
    /// `false` when the dedup key already named a job (returned instead).
    pub created: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobRow {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// `queued`, `running`, `done`, `dead` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: i64,
    pub lease_until: Option<i64>,
    pub locked_by: Option<String>,
    pub last_error: Option<String>,
    pub dedup_key: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl JobRow {
    /// The lease this row was claimed under.
    pub fn lease(&self) -> JobLease {
        JobLease { id: self.id.clone(), worker: self.locked_by.clone().unwrap_or_default(), attempt: self.attempts }
    }
}

/// Claims up to `max` jobs of one kind for `worker`.
#[derive(Debug, Clone)]
pub struct ClaimJobs {
    pub kind: String,
    pub worker: String,
    pub max: i64,
    /// Jobs of this kind running at once across every instance, counted from running rows whose
    /// lease is still valid; `None` for no limit.
    pub kind_limit: Option<i64>,
    pub now: i64,
    pub lease_until: i64,
}

/// Who holds a running job: the worker and the attempt it claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobLease {
    pub id: String,
    pub worker: String,
    pub attempt: i64,
}

/// A failed attempt: the job runs again at `retry_at`, or is `dead` when it had its last attempt.
#[derive(Debug, Clone)]
pub struct JobFailure {
    pub lease: JobLease,
    pub error: String,
    pub retry_at: i64,
    pub now: i64,
}

#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Ids below this one (the previous page's last).
    pub before: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Clone)]
pub enum JobRetry {
    /// Queued to run now, with a fresh set of attempts.
    Retried(Box<JobRow>),
    NotFound,
    /// Neither dead nor waiting after a failure: its current status.
    NotRetryable(String),
}
