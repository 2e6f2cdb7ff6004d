//! The SQLite writer's own connection, for the writes every webhook, tool call, chat answer and
//! job makes, and read connections for the reads that start a chat answer.
//!
//! Through sqlx every statement is a message to that connection's worker thread and a wake-up
//! back (sqlx has no synchronous SQLite API): a stored transcript line cost four such round
//! trips, and on two busy cores each wake-up waits for a core, so a batch of jobs took the sum
//! of all their waits. Here the writer's thread runs the statements itself, with rusqlite on a
//! connection of its own, and the round trips are gone. The rare writes stay on sqlx; the
//! writer never has a transaction open on both connections at once (see `sqlite::writer`).
//!
//! The statement text is `sql.rs`'s, the same sqlx runs on Postgres.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Row, Statement};

use super::StoreError;

mod calls;
mod chat;
mod jobs;

pub use calls::{claim_invocation, finish_invocation, ingest};
pub use chat::{
    active_chat_run, add_chat_usage, chat_messages, chat_usage, create_chat_session, finish_chat_run, get_chat_session, renew_chat_run,
    start_chat_run,
};
pub use jobs::{claim_jobs, complete_job, enqueue_job, fail_job, renew_job};

/// A job on this connection: runs inside the savepoint the writer opened, says whether it
/// succeeded and what to do once the commit's outcome is known.
pub type DirectJob = Box<dyn FnOnce(&Connection) -> (bool, super::sqlite::Finish) + Send>;

/// Opens the write connection with the settings of sqlx's connections to the same file.
pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    // No checkpoint inside a commit (see `sqlite::open_writer`); the WAL file is reused, not cut.
    // Each job runs in a savepoint, whose journal SQLite otherwise spills to a temporary file
    // once it passes 64 KiB: under load a file created, unlinked and written every few batches.
    // In memory it is bounded by the pages one batch changes.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 134217728; \
         PRAGMA temp_store = MEMORY;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Read connections used on the caller's thread, for the reads that start a chat answer: a
/// query by key takes microseconds, less than the two thread wake-ups of a read through sqlx.
/// WAL readers do not wait for the writer (only for a recovery after a crash, and then at most
/// the busy timeout), so this blocks the caller about as long as the query.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
}

impl Readers {
    pub fn new(path: &Path, max_idle: usize) -> Self {
        Self { path: path.to_owned(), idle: Mutex::new(Vec::new()), max_idle }
    }

    /// Runs `f` on an idle connection (opened if there is none) and keeps it for the next read.
    pub fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let taken = self.idle.lock().map(|mut idle| idle.pop()).unwrap_or(None);
        let conn = match taken {
            Some(conn) => conn,
            None => self.open().map_err(error)?,
        };
        let value = f(&conn).map_err(error)?;
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.max_idle
        {
            idle.push(conn);
        }
        Ok(value)
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // Bounded: a read is never worth stalling a runtime thread for long.
        conn.busy_timeout(Duration::from_millis(500))?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(conn)
    }
}

/// One transaction on the writer's connection: jobs run in it one by one, each in its own
/// savepoint so a failing one is undone alone; `commit` tells every job the outcome. Once the
/// transaction itself has failed (it could not begin, or a savepoint could not be closed), the
/// jobs still to come are dropped, which tells their callers the write did not happen.
pub struct Batch<'c> {
    conn: &'c Connection,
    finishers: Vec<super::sqlite::Finish>,
    broken: Option<String>,
    began: bool,
}

impl<'c> Batch<'c> {
    pub fn begin(conn: &'c Connection) -> Self {
        let began = exec(conn, "BEGIN IMMEDIATE");
        let broken = began.as_ref().err().map(|e| {
            tracing::error!(error = %e, "SQLite writer could not begin a transaction");
            let _ = exec(conn, "ROLLBACK");
            e.to_string()
        });
        Self { conn, finishers: Vec::new(), broken, began: began.is_ok() }
    }

    /// Jobs run so far.
    pub fn len(&self) -> usize {
        self.finishers.len()
    }

    /// Whether jobs can still join: not once the transaction itself has failed.
    pub fn is_open(&self) -> bool {
        self.broken.is_none()
    }

    pub fn run(&mut self, job: DirectJob) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = exec(self.conn, "SAVEPOINT job") {
            self.broken = Some(e.to_string());
            return;
        }
        let (ok, finish) = job(self.conn);
        self.finishers.push(finish);
        let end = if ok {
            exec(self.conn, "RELEASE job")
        } else {
            exec(self.conn, "ROLLBACK TO job").and_then(|_| exec(self.conn, "RELEASE job"))
        };
        if let Err(e) = end {
            self.broken = Some(e.to_string());
        }
    }

    /// Commits (or, once broken, rolls back) and answers every job that ran. A commit is
    /// counted in `commits` before anyone is answered, so whoever was answered sees it counted.
    pub fn commit(self, commits: &AtomicU64) {
        let commit = match self.broken {
            Some(e) => Err(e),
            None => exec(self.conn, "COMMIT").map(drop).map_err(|e| e.to_string()),
        };
        if self.began
            && let Err(e) = &commit
        {
            tracing::error!(error = %e, "SQLite batch failed; rolling back");
            let _ = exec(self.conn, "ROLLBACK");
        }
        if commit.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for finish in self.finishers {
            finish(commit.clone());
        }
    }
}

/// A passive checkpoint: (WAL frames, frames copied back).
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<(i64, i64)> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?)))
}

pub fn error(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if matches!(f.code, DatabaseBusy | DatabaseLocked) => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Internal(e.to_string()),
    }
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

/// Binds `values` to `$1`, `$2`, …: to SQLite those are names, numbered in order of first
/// appearance, which need not be their number.
fn bind(stmt: &mut Statement<'_>, values: &[&dyn ToSql]) -> rusqlite::Result<()> {
    const NAMES: [&str; 16] = ["$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16"];
    if values.len() != stmt.parameter_count() || values.len() > NAMES.len() {
        return Err(rusqlite::Error::InvalidParameterCount(values.len(), stmt.parameter_count()));
    }
    for (value, name) in values.iter().zip(NAMES) {
        let index = stmt.parameter_index(name)?.ok_or_else(|| rusqlite::Error::InvalidParameterName(name.into()))?;
        stmt.raw_bind_parameter(index, value)?;
    }
    Ok(())
}

/// Runs a statement that returns no rows; the number of rows it changed.
fn execute(conn: &Connection, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    stmt.raw_execute()
}

/// Runs a query and maps every row.
fn all<T>(
    conn: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    mut map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(map(row)?);
    }
    Ok(out)
}

/// Runs a statement and maps its first row, if any.
fn first<T>(
    conn: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    map: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, values)?;
    let mut rows = stmt.raw_query();
    rows.next()?.map(map).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_bound_by_their_number_whatever_order_they_first_appear_in() {
        let c = Connection::open_in_memory().unwrap();
        let got = first(&c, "SELECT $2 || '-' || $1 || '-' || $2", &[&"one", &"two"], |r| r.get::<_, String>(0)).unwrap();
        assert_eq!(got.as_deref(), Some("two-one-two"));
    }

    #[test]
    fn the_writers_connection_keeps_savepoint_journals_in_memory_and_commits_fully_synced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        Connection::open(&path).unwrap();
        let c = open(&path, Duration::from_secs(1)).unwrap();
        let number = |name: &str| c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0)).unwrap();
        // 2 = MEMORY, 2 = FULL.
        assert_eq!(number("temp_store"), 2);
        assert_eq!(number("synchronous"), 2);
        let mode = c.query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0)).unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_value_without_its_parameter_is_refused() {
        let c = Connection::open_in_memory().unwrap();
        let got = first(&c, "SELECT $1", &[&1, &2], |r| r.get::<_, i64>(0));
        assert!(matches!(got, Err(rusqlite::Error::InvalidParameterCount(2, 1))), "{got:?}");
    }
}
