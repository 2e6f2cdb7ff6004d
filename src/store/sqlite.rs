//! SQLite, the embedded default: WAL for concurrent readers, `synchronous=FULL` because a 2xx
//! promises the write survives power loss, and one writer that group-commits: concurrent
//! writes share a transaction (one fsync), each inside its own savepoint.
//!
//! The writer runs on a thread of its own, with two connections to the database: its own
//! (`sqlite_direct`), on which it runs the writes of webhooks, tool calls, chat answers and jobs
//! without leaving its thread, and an sqlx one for the rest (admin, tokens, retention). Through sqlx every statement is a round
//! trip to SQLite's worker thread; on the shared runtime each of those wake-ups queued behind
//! request handlers, so under load a batch took many times its work.

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::sqlite_direct::{self as direct, DirectJob};
use super::types::*;
use super::{Result, StoreError};

// The writes the writer runs on its own connection (`sqlite_direct`) are in these macros for
// Postgres; SQLite leaves them unused.
#[allow(dead_code)]
mod q {
    crate::store::queries::shared_queries!(sqlx::Sqlite, sqlx::SqliteConnection);
    crate::store::chat_queries::chat_queries!(sqlx::Sqlite, sqlx::SqliteConnection);
    crate::store::webhook_queries::webhook_queries!(sqlx::Sqlite, sqlx::SqliteConnection);
    crate::store::job_queries::job_queries!(sqlx::Sqlite, sqlx::SqliteConnection, "", None);
    crate::store::retention_queries::retention_queries!(sqlx::Sqlite, sqlx::SqliteConnection);
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Most jobs one transaction takes; bounds the latency a batch adds to its first job.
const MAX_BATCH: usize = 256;
/// Queued writes before callers wait: backpressure instead of unbounded memory.
const QUEUE: usize = 4096;
/// How long a connection waits for a lock another holds: the other write connection's, should a
/// failed rollback ever leave it holding one, or another process's on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How the WAL is kept short.
#[derive(Debug, Clone, Copy)]
struct Tuning {
    /// How often the background pass copies the WAL back: often enough that the writer's own
    /// pass (see `restart_wal`) finds little left to copy.
    checkpoint_every: Duration,
    /// WAL frames past which the writer lets the WAL start over (16,384 × 4 KiB ≈ 64 MiB).
    wal_restart_frames: i64,
    /// Longest a transaction stays open for the result a claim announced (`Shape::ClaimThenResult`).
    linger: Duration,
}

const TUNING: Tuning =
    Tuning { checkpoint_every: Duration::from_millis(100), wal_restart_frames: 16_384, linger: Duration::from_millis(1) };

/// A write for the writer: on its own connection, or through sqlx.
enum Job {
    Direct(DirectJob, Shape),
    Sqlx(SqlxJob),
}

/// When a write on the writer's own connection is answered, and what it tells the writer of
/// the writes to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Once its transaction has committed.
    Committed,
    /// As soon as it has run: a claim whose only job is to keep a second caller out.
    Early,
    /// Early, and the claimant's result follows within microseconds (an in-process function):
    /// the writer keeps the transaction open for it, up to `Tuning::linger`, so the claim, the
    /// message's record and the result commit with one fsync instead of two or three in a row.
    /// A write the function itself waits for (a booking) goes through sqlx, which ends the wait
    /// at once; a direct one would join the open transaction and wait out the linger.
    ClaimThenResult,
    /// Committed; the result a `ClaimThenResult` announced.
    Result,
}

/// Runs a job's statements inside the savepoint the writer opened; says whether they all
/// succeeded and what to do once the batch's commit outcome is known.
type SqlxJob = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;
pub(super) type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

pub struct SqliteStore {
    reads: SqlitePool,
    /// Reads run on the caller's thread (`sqlite_direct::Readers`).
    readers: direct::Readers,
    /// The only path to the write connection; the writer task owns it.
    writer: mpsc::Sender<Job>,
    options: SqliteConnectOptions,
    /// Transactions the writer's own connection committed: tests read it to see which writes
    /// shared an fsync.
    #[cfg_attr(not(test), allow(dead_code))]
    commits: Arc<AtomicU64>,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect_tuned(url, max_connections, TUNING).await
    }

    async fn connect_tuned(url: &str, max_connections: u32, tuning: Tuning) -> Result<Self> {
        if url.contains(":memory:") {
            return Err(StoreError::Internal("an in-memory SQLite database cannot be shared by the pool; use a file path".into()));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .disable_statement_logging();
        let reads = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let wal_frames = Arc::new(AtomicI64::new(0));
        let commits = Arc::new(AtomicU64::new(0));
        let (frames, write_options, committed) = (wal_frames.clone(), options.clone(), commits.clone());
        let (started_tx, started) = oneshot::channel();
        // Timers for `Tuning::linger`.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| StoreError::Internal(format!("cannot start the SQLite writer: {e}")))?;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Opened here so SQLite's worker thread is started from (and like) this one.
                    let opened = match open_writer(&write_options).await {
                        Ok(conn) => direct::open(write_options.get_filename(), BUSY_TIMEOUT).map(|own| (own, conn)).map_err(direct::error),
                        Err(e) => Err(e),
                    };
                    match opened {
                        Ok((own, conn)) => {
                            let _ = started_tx.send(Ok(()));
                            let writer = Writer { own, conn, jobs: rx, wal_frames: frames, tuning, commits: committed };
                            writer.run().await;
                        }
                        Err(e) => drop(started_tx.send(Err(e))),
                    }
                })
            })
            .map_err(|e| StoreError::Internal(format!("cannot start the SQLite writer: {e}")))?;
        started.await.map_err(|_| StoreError::Internal("the SQLite writer stopped while starting".into()))??;
        tokio::spawn(checkpointer(options.connect().await?, tx.downgrade(), wal_frames, tuning.checkpoint_every));
        let readers = direct::Readers::new(options.get_filename(), max_connections as usize);
        Ok(Self { reads, readers, writer: tx, options, commits })
    }

    async fn run_migrations(&self) -> Result<()> {
        // A connection of its own: migrations manage their own transactions. (A one-connection
        // pool, because `Migrator::run(&mut conn)` is not `Send` inside an async trait.)
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(self.options.clone()).await?;
        let result = MIGRATOR.run(&pool).await;
        pool.close().await;
        Ok(result?)
    }

    /// Reads can work while writes cannot: readiness must see the writer too.
    fn writer_alive(&self) -> Result<()> {
        if self.writer.is_closed() { Err(StoreError::Unavailable("the SQLite writer has stopped".into())) } else { Ok(()) }
    }

    async fn conn(&self) -> Result<sqlx::pool::PoolConnection<sqlx::Sqlite>> {
        Ok(self.reads.acquire().await?)
    }

    /// Queues `f` for the writer; resolves once the transaction holding it has committed.
    async fn write<T: Send + 'static>(
        &self,
        f: impl for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, sqlx::Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let job: SqlxJob = Box::new(move |conn: &mut SqliteConnection| -> BoxFuture<'_, (bool, Finish)> {
            Box::pin(async move { settle(f(&mut *conn).await.map_err(StoreError::from), tx, false) })
        });
        self.submit(Job::Sqlx(job), rx).await
    }

    /// Like `write`, on the writer's own connection. An early write (`Shape::Early`,
    /// `ClaimThenResult`) resolves as soon as `f` has run inside the open transaction: every
    /// later write sees it (there is one writer), before its fsync. For claims whose only job is
    /// to keep a second caller out; whatever is promised to a client still waits for a committed
    /// write behind it (commits happen in queue order).
    async fn write_direct<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
        shape: Shape,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel::<Result<T>>();
        let early = matches!(shape, Shape::Early | Shape::ClaimThenResult);
        let job: DirectJob = Box::new(move |conn: &rusqlite::Connection| settle(f(conn).map_err(direct::error), tx, early));
        self.submit(Job::Direct(job, shape), rx).await
    }

    async fn submit<T>(&self, job: Job, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.writer.send(job).await.map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        // A dropped job (the batch could not even begin) reads as unavailable.
        rx.await.map_err(|_| StoreError::Unavailable("the write was not committed".into()))?
    }

    async fn ingest_write(&self, i: Ingest) -> Result<IngestOutcome> {
        self.write_direct(move |c| direct::ingest(c, &i, crate::clock::now_ms()), Shape::Committed).await
    }

    /// Seen by every later write is enough to keep a redelivery out; the result's commit, which
    /// the answer waits for, makes the claim durable with it.
    async fn claim_write(&self, n: NewInvocation) -> Result<Claim> {
        let shape = if n.result_soon { Shape::ClaimThenResult } else { Shape::Early };
        self.write_direct(move |c| direct::claim_invocation(c, &n), shape).await
    }

    async fn finish_invocation_write(&self, d: Finished) -> Result<bool> {
        self.write_direct(move |c| direct::finish_invocation(c, &d), Shape::Result).await
    }

    async fn create_chat_session_write(&self, s: NewChatSession) -> Result<()> {
        self.write_direct(move |c| direct::create_chat_session(c, &s), Shape::Committed).await
    }

    async fn start_chat_run_write(&self, r: StartRun) -> Result<RunStart> {
        self.write_direct(move |c| direct::start_chat_run(c, &r), Shape::Committed).await
    }

    async fn finish_chat_run_write(&self, f: FinishRun) -> Result<bool> {
        self.write_direct(move |c| direct::finish_chat_run(c, &f), Shape::Committed).await
    }

    async fn enqueue_job_write(&self, j: NewJob) -> Result<Enqueued> {
        self.write_direct(move |c| direct::enqueue_job(c, &j), Shape::Committed).await
    }

    async fn claim_jobs_write(&self, k: ClaimJobs) -> Result<Vec<JobRow>> {
        self.write_direct(move |c| direct::claim_jobs(c, &k), Shape::Committed).await
    }

    async fn complete_job_write(&self, l: JobLease, now: i64) -> Result<bool> {
        self.write_direct(move |c| direct::complete_job(c, &l, now), Shape::Committed).await
    }

    async fn fail_job_write(&self, f: JobFailure) -> Result<Option<String>> {
        self.write_direct(move |c| direct::fail_job(c, &f), Shape::Committed).await
    }

    async fn renew_job_write(&self, l: JobLease, lease_until: i64, now: i64) -> Result<bool> {
        self.write_direct(move |c| direct::renew_job(c, &l, lease_until, now), Shape::Committed).await
    }

    async fn get_chat_session_read(&self, id: &str) -> Result<Option<ChatSessionRow>> {
        self.readers.read(|c| direct::get_chat_session(c, id))
    }

    async fn chat_messages_read(&self, session_id: &str) -> Result<Vec<ChatMessageRow>> {
        self.readers.read(|c| direct::chat_messages(c, session_id))
    }

    async fn active_chat_run_read(&self, session_id: &str, now: i64) -> Result<Option<ChatRunRow>> {
        self.readers.read(|c| direct::active_chat_run(c, session_id, now))
    }

    async fn chat_usage_read(&self, day: i64, session_id: &str) -> Result<ChatUsage> {
        self.readers.read(|c| direct::chat_usage(c, day, session_id))
    }

    async fn renew_chat_run_write(&self, run_id: String, lease_until: i64) -> Result<bool> {
        self.write_direct(move |c| direct::renew_chat_run(c, &run_id, lease_until), Shape::Committed).await
    }

    async fn add_chat_usage_write(&self, day: i64, tokens: i64) -> Result<()> {
        self.write_direct(move |c| direct::add_chat_usage(c, day, tokens), Shape::Committed).await
    }
}

/// What a job's outcome means for its caller: a failed job (its savepoint rolled back) and a
/// successful one are answered once their batch is done, a successful one with the commit's
/// outcome; with `early`, a success is answered as soon as the job has run (a claim that only
/// has to be seen by later writes).
fn settle<T: Send + 'static>(outcome: Result<T>, tx: oneshot::Sender<Result<T>>, early: bool) -> (bool, Finish) {
    match outcome {
        Ok(value) if early => {
            drop(tx.send(Ok(value)));
            let finish = |commit: std::result::Result<(), String>| {
                if let Err(e) = commit {
                    tracing::warn!(error = %e, "a claim seen by later writes was rolled back");
                }
            };
            (true, Box::new(finish) as Finish)
        }
        Ok(value) => {
            let finish = move |commit: std::result::Result<(), String>| {
                drop(tx.send(commit.map(|()| value).map_err(StoreError::Unavailable)));
            };
            (true, Box::new(finish) as Finish)
        }
        Err(e) => (false, Box::new(move |_| drop(tx.send(Err(e)))) as Finish),
    }
}

/// The write connection. No checkpoint inside a commit (it would stall every request in the
/// batch): a background connection copies passively, the writer finishes between batches.
async fn open_writer(options: &SqliteConnectOptions) -> Result<SqliteConnection> {
    let mut conn = options.connect().await?;
    sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut conn).await?;
    // Above the length at which the WAL starts over: the file is reused, not cut and regrown.
    sqlx::query("PRAGMA journal_size_limit = 134217728").execute(&mut conn).await?;
    Ok(conn)
}

/// Copies the WAL back into the database ten times a second without blocking the writer
/// (PASSIVE), and tells the writer how long the WAL is. Under sustained writes a passive pass
/// never reaches the end of the WAL, so the WAL would grow without bound; the writer itself
/// finishes the copy between two batches once it is long (see `restart_wal`). Stops with the
/// store.
async fn checkpointer(mut conn: SqliteConnection, writer: mpsc::WeakSender<Job>, wal_frames: Arc<AtomicI64>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if writer.upgrade().is_none() {
            return;
        }
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut conn).await {
            Ok(row) => wal_frames.store(row.try_get::<i64, _>(1).unwrap_or(0), Ordering::Relaxed),
            Err(e) => tracing::debug!(error = %e, "WAL checkpoint did not run"),
        }
    }
}

/// The writer's thread: its two connections and its queue.
struct Writer {
    own: rusqlite::Connection,
    conn: SqliteConnection,
    jobs: mpsc::Receiver<Job>,
    wal_frames: Arc<AtomicI64>,
    tuning: Tuning,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Takes the queued writes in order. Consecutive jobs for the same connection share a
    /// transaction; where the queue switches connection the run so far commits first, so a
    /// write still commits after everything queued before it (and the two connections never
    /// hold a transaction at once: no lock waits between them).
    async fn run(mut self) {
        let mut queued: VecDeque<Job> = VecDeque::with_capacity(MAX_BATCH);
        let mut received = Vec::with_capacity(MAX_BATCH);
        loop {
            if queued.is_empty() {
                self.restart_wal();
                if self.jobs.recv_many(&mut received, MAX_BATCH).await == 0 {
                    return;
                }
                queued.extend(received.drain(..));
            }
            match queued.front() {
                Some(Job::Direct(..)) => self.run_direct(&mut queued, &mut received).await,
                Some(Job::Sqlx(_)) => {
                    let mut run = Vec::new();
                    while run.len() < MAX_BATCH
                        && let Some(Job::Sqlx(_)) = queued.front()
                        && let Some(Job::Sqlx(job)) = queued.pop_front()
                    {
                        run.push(job);
                    }
                    run_sqlx_batch(&mut self.conn, run).await;
                }
                None => {}
            }
        }
    }

    /// The direct jobs at the head of the queue as one transaction. While a claim's announced
    /// result has not arrived, and nothing else is queued, the transaction stays open up to
    /// `linger` and takes in what arrives meanwhile: the result and any other write, which then
    /// commit with the claim. Without that, the claim's commit would start first and the result
    /// would wait for it, then for its own.
    async fn run_direct(&mut self, queued: &mut VecDeque<Job>, received: &mut Vec<Job>) {
        let mut batch = direct::Batch::begin(&self.own);
        let mut awaited = 0usize;
        take_direct(queued, &mut batch, &mut awaited);
        let until = tokio::time::Instant::now() + self.tuning.linger;
        // A broken transaction takes nobody else in: what arrives now goes to a fresh one.
        while awaited > 0 && batch.is_open() && queued.is_empty() && batch.len() < MAX_BATCH {
            match tokio::time::timeout_at(until, self.jobs.recv_many(received, MAX_BATCH - batch.len())).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    queued.extend(received.drain(..));
                    take_direct(queued, &mut batch, &mut awaited);
                }
            }
        }
        batch.commit(&self.commits);
    }

    /// Between two batches nothing is being written, so a passive pass by the writer copies the
    /// last frames (the background pass did the rest) and the next transaction starts the WAL
    /// over. Done here rather than by a RESTART checkpoint elsewhere: that one waits for the
    /// write lock in SQLite's busy handler (sleeps of growing length), and the writer then waits
    /// for it the same way: pauses of hundreds of milliseconds. If a reader still holds old
    /// frames the WAL cannot start over yet; the next batch tries again.
    fn restart_wal(&self) {
        if self.wal_frames.load(Ordering::Relaxed) < self.tuning.wal_restart_frames {
            return;
        }
        match direct::checkpoint(&self.own) {
            Ok((log, copied)) => {
                if log == copied {
                    self.wal_frames.store(0, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::debug!(error = %e, "the writer's WAL checkpoint did not run"),
        }
    }
}

/// Runs the direct jobs at the head of `queued` in `batch`, counting the results still awaited.
fn take_direct(queued: &mut VecDeque<Job>, batch: &mut direct::Batch<'_>, awaited: &mut usize) {
    while batch.len() < MAX_BATCH
        && let Some(Job::Direct(..)) = queued.front()
        && let Some(Job::Direct(job, shape)) = queued.pop_front()
    {
        match shape {
            Shape::ClaimThenResult => *awaited += 1,
            Shape::Result => *awaited = awaited.saturating_sub(1),
            Shape::Committed | Shape::Early => {}
        }
        batch.run(job);
    }
}

/// A run of sqlx jobs as one transaction, each in a savepoint so a failing one is undone
/// alone. Every statement is a round trip to SQLite's thread, so the savepoint bookkeeping
/// rides along with its neighbours: `BEGIN; SAVEPOINT`, then `RELEASE; SAVEPOINT` between
/// jobs, then `RELEASE; COMMIT`.
async fn run_sqlx_batch(conn: &mut SqliteConnection, jobs: Vec<SqlxJob>) {
    if let Err(e) = sqlx::query("BEGIN IMMEDIATE; SAVEPOINT job").execute(&mut *conn).await {
        tracing::error!(error = %e, "SQLite writer could not begin a transaction");
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
        // Dropping the jobs tells their callers the write did not happen.
        return;
    }
    let mut finishers = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    let count = jobs.len();
    for (i, job) in jobs.into_iter().enumerate() {
        let (ok, finish) = job(&mut *conn).await;
        finishers.push(finish);
        let last = i + 1 == count;
        let step = match (ok, last) {
            (true, false) => "RELEASE job; SAVEPOINT job",
            (true, true) => "RELEASE job",
            (false, false) => "ROLLBACK TO job; RELEASE job; SAVEPOINT job",
            (false, true) => "ROLLBACK TO job; RELEASE job",
        };
        if let Err(e) = sqlx::query(step).execute(&mut *conn).await {
            // The transaction's state is unknown: give up the whole run. Breaking drops the
            // jobs not yet run, which tells their callers the write did not happen.
            broken = Some(e.to_string());
            break;
        }
    }
    let commit = match broken {
        Some(e) => Err(e),
        None => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()).map_err(|e| e.to_string()),
    };
    if let Err(e) = &commit {
        tracing::error!(error = %e, "SQLite batch failed; rolling back");
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    for finish in finishers {
        finish(commit.clone());
    }
}

super::delegate::impl_store!(SqliteStore, "sqlite");

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
