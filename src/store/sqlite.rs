//! SQLite, the embedded default: WAL for concurrent readers, `synchronous=FULL` because a 2xx
//! promises the write survives power loss, and one writer task that group-commits: concurrent
//! writes share a transaction (one fsync), each inside its own savepoint.

use std::str::FromStr;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::types::*;
use super::{Result, StoreError};

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
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// About 256 MiB of WAL at 4 KiB pages: the disk it may take before writes pause to reset it.
const WAL_MAX_FRAMES: i64 = 65_536;

/// Runs a job's statements inside the savepoint the writer opened; says whether they all
/// succeeded and what to do once the batch's commit outcome is known.
type Job = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Finish)> + Send>;
type Finish = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

pub struct SqliteStore {
    reads: SqlitePool,
    /// The only path to the write connection; the writer task owns it.
    writer: mpsc::Sender<Job>,
    options: SqliteConnectOptions,
}

impl SqliteStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        if url.contains(":memory:") {
            return Err(StoreError::Internal("an in-memory SQLite database cannot be shared by the pool; use a file path".into()));
        }
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("bad SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .disable_statement_logging();
        // The writer never checkpoints (a checkpoint inside a commit stalls every request in
        // the batch); a background connection does it passively instead.
        let mut write_conn = options.connect().await?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0").execute(&mut write_conn).await?;
        sqlx::query("PRAGMA journal_size_limit = 67108864").execute(&mut write_conn).await?;
        let reads = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options.clone())
            .await?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(write_conn, rx));
        tokio::spawn(checkpointer(options.connect().await?, tx.downgrade()));
        Ok(Self { reads, writer: tx, options })
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
        let job: Job = Box::new(move |conn: &mut SqliteConnection| -> BoxFuture<'_, (bool, Finish)> {
            Box::pin(async move {
                match f(&mut *conn).await {
                    Ok(value) => {
                        let finish = move |commit: std::result::Result<(), String>| {
                            drop(tx.send(commit.map(|()| value).map_err(StoreError::Unavailable)));
                        };
                        (true, Box::new(finish) as Finish)
                    }
                    Err(e) => {
                        let e = StoreError::from(e);
                        (false, Box::new(move |_| drop(tx.send(Err(e)))) as Finish)
                    }
                }
            })
        });
        self.writer.send(job).await.map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        // A dropped job (the batch could not even begin) reads as unavailable.
        rx.await.map_err(|_| StoreError::Unavailable("the write was not committed".into()))?
    }
}

/// Copies the WAL back into the database every half second without blocking the writer
/// (PASSIVE). Under sustained writes a passive pass never reaches the end of the WAL, so it
/// would grow without bound: past `WAL_MAX_FRAMES` a RESTART pass pauses the writer briefly
/// (most frames are already copied) and lets the WAL start over; `journal_size_limit` then
/// trims the file. Stops with the store.
async fn checkpointer(mut conn: SqliteConnection, writer: mpsc::WeakSender<Job>) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if writer.upgrade().is_none() {
            return;
        }
        let frames = match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").fetch_one(&mut conn).await {
            Ok(row) => row.try_get::<i64, _>(1).unwrap_or(0),
            Err(e) => {
                tracing::debug!(error = %e, "WAL checkpoint did not run");
                continue;
            }
        };
        if frames > WAL_MAX_FRAMES
            && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)").execute(&mut conn).await
        {
            tracing::warn!(error = %e, frames, "the WAL could not be restarted");
        }
    }
}

/// Each job runs in a savepoint so a failing one is undone alone. Every statement is a round
/// trip to SQLite's thread, so the savepoint bookkeeping rides along with its neighbours:
/// `BEGIN; SAVEPOINT`, then `RELEASE; SAVEPOINT` between jobs, then `RELEASE; COMMIT`.
async fn writer(mut conn: SqliteConnection, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE; SAVEPOINT job").execute(&mut conn).await {
            tracing::error!(error = %e, "SQLite writer could not begin a transaction");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
            // Dropping the jobs tells their callers the write did not happen.
            batch.clear();
            continue;
        }
        let mut finishers = Vec::with_capacity(batch.len());
        let mut broken: Option<String> = None;
        let count = batch.len();
        for (i, job) in batch.drain(..).enumerate() {
            let (ok, finish) = job(&mut conn).await;
            finishers.push(finish);
            let last = i + 1 == count;
            let step = match (ok, last) {
                (true, false) => "RELEASE job; SAVEPOINT job",
                (true, true) => "RELEASE job",
                (false, false) => "ROLLBACK TO job; RELEASE job; SAVEPOINT job",
                (false, true) => "ROLLBACK TO job; RELEASE job",
            };
            if let Err(e) = sqlx::query(step).execute(&mut conn).await {
                // The transaction's state is unknown: give up the whole batch. Breaking drops the
                // jobs not yet run, which tells their callers the write did not happen.
                broken = Some(e.to_string());
                break;
            }
        }
        let commit = match broken {
            Some(e) => Err(e),
            None => sqlx::query("COMMIT").execute(&mut conn).await.map(|_| ()).map_err(|e| e.to_string()),
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "SQLite batch failed; rolling back");
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        for finish in finishers {
            finish(commit.clone());
        }
    }
}

super::delegate::impl_store!(SqliteStore, "sqlite");
