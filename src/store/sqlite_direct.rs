//! The SQLite writer's own connection, for the writes every webhook and tool call makes.
//!
//! Through sqlx every statement is a message to that connection's worker thread and a wake-up
//! back (sqlx has no synchronous SQLite API): a stored transcript line cost four such round
//! trips, and on two busy cores each wake-up waits for a core, so a batch of jobs took the sum
//! of all their waits. Here the writer's thread runs the statements itself, with rusqlite on a
//! connection of its own, and the round trips are gone. The rare writes stay on sqlx; the
//! writer never has a transaction open on both connections at once (see `sqlite::writer`).
//!
//! The statement text is `sql.rs`'s, the same sqlx runs on Postgres.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, OpenFlags, Row, Statement};

use super::StoreError;
use super::sanitize::{clean, sanitize_text};
use super::sql;
use super::types::*;
use super::{TERMINAL_RANK, status_rank};

/// A job on this connection: runs inside the savepoint the writer opened, says whether it
/// succeeded and what to do once the commit's outcome is known.
pub type DirectJob = Box<dyn FnOnce(&Connection) -> (bool, super::sqlite::Finish) + Send>;

/// Opens the write connection with the settings of sqlx's connections to the same file.
pub fn open(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    // No checkpoint inside a commit (see `sqlite::open_writer`); the WAL file is reused, not cut.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 134217728;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Runs `jobs` as one transaction, each in its own savepoint so a failing one is undone alone,
/// then tells every job the commit's outcome. On a failure of the transaction itself the jobs
/// not yet run are dropped, which tells their callers the write did not happen.
pub fn run_batch(conn: &Connection, jobs: Vec<DirectJob>) {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        tracing::error!(error = %e, "SQLite writer could not begin a transaction");
        let _ = exec(conn, "ROLLBACK");
        return;
    }
    let mut finishers = Vec::with_capacity(jobs.len());
    let mut broken: Option<String> = None;
    for job in jobs {
        if let Err(e) = exec(conn, "SAVEPOINT job") {
            broken = Some(e.to_string());
            break;
        }
        let (ok, finish) = job(conn);
        finishers.push(finish);
        let end = if ok { exec(conn, "RELEASE job") } else { exec(conn, "ROLLBACK TO job").and_then(|_| exec(conn, "RELEASE job")) };
        if let Err(e) = end {
            broken = Some(e.to_string());
            break;
        }
    }
    let commit = match broken {
        Some(e) => Err(e),
        None => exec(conn, "COMMIT").map(drop).map_err(|e| e.to_string()),
    };
    if let Err(e) = &commit {
        tracing::error!(error = %e, "SQLite batch failed; rolling back");
        let _ = exec(conn, "ROLLBACK");
    }
    for finish in finishers {
        finish(commit.clone());
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

/// The whole of one message, inside the writer's transaction: `queries::ingest` for this driver.
pub fn ingest(c: &Connection, i: &Ingest, now: i64) -> rusqlite::Result<IngestOutcome> {
    let r = &i.raw;
    let payload = sanitize_text(&r.payload);
    let Some(call) = &i.call else {
        let values: [&dyn ToSql; 7] = [&r.call_id, &r.org_id, &r.kind, &r.received_at, &r.message_ts, &r.dedup_key, &payload];
        let logged = execute(c, sql::INSERT_RAW, &values)? == 1;
        return Ok(if logged { IngestOutcome::Applied(Box::default()) } else { IngestOutcome::Duplicate });
    };
    let metadata = clean(&call.metadata);
    let values: [&dyn ToSql; 16] = [
        &r.call_id,
        &r.org_id,
        &r.kind,
        &r.received_at,
        &r.message_ts,
        &r.dedup_key,
        &payload,
        &call.id,
        &call.assistant_id,
        &call.call_type,
        &call.customer_number,
        &call.phone_number,
        &call.control_url,
        &call.listen_url,
        &metadata,
        &call.assistant_name,
    ];
    let known = first(c, sql::LOG_AND_CHECK_CALL, &values, |row| Ok((row.get::<_, Option<String>>(0)?, row.get::<_, Option<i64>>(1)?)))?;
    let Some((owner, stale)) = known else { return Ok(IngestOutcome::Duplicate) };
    if owner.as_ref().is_some_and(|o| *o != call.org_id) {
        // A call belongs to the org that first named it; another org's message is only logged.
        return Ok(IngestOutcome::Applied(Box::default()));
    }
    let existed = owner.is_some();
    if !existed || stale == Some(1) {
        upsert_call(c, call, metadata.as_ref())?;
    }
    let mut applied = Applied { call_created: !existed, ..Applied::default() };
    match &i.change {
        CallChange::Nothing => {}
        CallChange::Status(ch) => applied.status_changed = apply_status(c, &call.id, ch, now)?,
        CallChange::Transcript(seg) => applied.segment = Some(insert_segment(c, &call.id, seg, now)?),
        CallChange::Ended(report) => applied.status_changed = apply_end_report(c, &call.id, report, now)?,
    }
    // The row is read back only when an event will show it (created, status, end).
    if applied.call_created || applied.status_changed || matches!(i.change, CallChange::Ended(_)) {
        applied.call = first(c, sql::GET_CALL, &[&call.id], call_row)?;
    }
    Ok(IngestOutcome::Applied(Box::new(applied)))
}

fn upsert_call(c: &Connection, s: &CallSeen, metadata: Option<&String>) -> rusqlite::Result<()> {
    let status = s.initial_status.as_deref().unwrap_or("unknown");
    let rank = status_rank(status);
    let values: [&dyn ToSql; 14] = [
        &s.id,
        &s.org_id,
        &s.assistant_id,
        &s.call_type,
        &s.customer_number,
        &s.phone_number,
        &status,
        &rank,
        &s.created_at,
        &s.control_url,
        &s.listen_url,
        &metadata,
        &s.seen_at,
        &s.assistant_name,
    ];
    execute(c, sql::UPSERT_CALL, &values).map(drop)
}

fn apply_status(c: &Connection, call_id: &str, ch: &StatusChange, now: i64) -> rusqlite::Result<bool> {
    let rank = status_rank(&ch.status);
    if rank < 0 {
        return Ok(false);
    }
    let values: [&dyn ToSql; 7] = [&call_id, &ch.status, &rank, &ch.at, &ch.ended_reason, &TERMINAL_RANK, &now];
    if execute(c, sql::APPLY_STATUS, &values)? == 1 {
        return Ok(true);
    }
    execute(c, sql::TOUCH_STATUS_AT, &[&call_id, &ch.status, &ch.at])?;
    Ok(false)
}

fn apply_end_report(c: &Connection, call_id: &str, r: &EndReport, now: i64) -> rusqlite::Result<bool> {
    let (breakdown, summary, analysis) = (clean(&r.cost_breakdown), clean(&r.summary), clean(&r.analysis));
    let values: [&dyn ToSql; 10] =
        [&call_id, &TERMINAL_RANK, &r.ended_at, &r.ended_reason, &r.started_at, &r.cost, &breakdown, &summary, &analysis, &now];
    let changed = execute(c, sql::APPLY_END_REPORT, &values)?;
    for rec in &r.recordings {
        execute(c, sql::INSERT_RECORDING, &[&call_id, &rec.kind, &rec.source_url, &now])?;
    }
    Ok(changed == 1)
}

fn insert_segment(c: &Connection, call_id: &str, s: &NewSegment, now: i64) -> rusqlite::Result<SegmentRow> {
    let text = sanitize_text(&s.text).into_owned();
    let id = first(c, sql::INSERT_SEGMENT, &[&call_id, &s.role, &text, &s.spoken_at, &now], |row| row.get::<_, i64>(0))?
        .ok_or(rusqlite::Error::QueryReturnedNoRows)?;
    Ok(SegmentRow { id, call_id: call_id.to_string(), role: s.role.clone(), text, spoken_at: s.spoken_at })
}

/// `queries::claim_invocation` for this driver.
pub fn claim_invocation(c: &Connection, n: &NewInvocation) -> rusqlite::Result<Claim> {
    let arguments = sanitize_text(&n.arguments);
    let values: [&dyn ToSql; 7] = [&n.tool_call_id, &n.call_id, &n.org_id, &n.name, &arguments, &n.started_at, &n.lease_until];
    if execute(c, sql::CLAIM_INVOCATION, &values)? == 1 {
        return Ok(Claim::Claimed);
    }
    if execute(c, sql::TAKE_OVER_INVOCATION, &[&n.tool_call_id, &n.started_at, &n.lease_until])? == 1 {
        return Ok(Claim::Claimed);
    }
    first(c, sql::GET_INVOCATION, &[&n.tool_call_id], invocation_row)?
        .map(|row| Claim::Existing(Box::new(row)))
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// `queries::finish_invocation` for this driver.
pub fn finish_invocation(c: &Connection, d: &Finished) -> rusqlite::Result<()> {
    let status = if d.ok { "ok" } else { "error" };
    let (result, error) = (clean(&d.result), clean(&d.error));
    let values: [&dyn ToSql; 7] = [&d.tool_call_id, &status, &result, &error, &d.latency_ms, &d.finished_at, &d.claimed_at];
    execute(c, sql::FINISH_INVOCATION, &values).map(drop)
}

/// A `calls` row in `sql::CALL_COLUMNS` order.
fn call_row(r: &Row<'_>) -> rusqlite::Result<CallRow> {
    Ok(CallRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        assistant_id: r.get(2)?,
        call_type: r.get(3)?,
        customer_number: r.get(4)?,
        phone_number: r.get(5)?,
        status: r.get(6)?,
        status_rank: r.get(7)?,
        status_at: r.get(8)?,
        created_at: r.get(9)?,
        started_at: r.get(10)?,
        ended_at: r.get(11)?,
        ended_reason: r.get(12)?,
        cost: r.get(13)?,
        cost_breakdown: r.get(14)?,
        summary: r.get(15)?,
        analysis: r.get(16)?,
        metadata: r.get(17)?,
        control_url: r.get(18)?,
        listen_url: r.get(19)?,
        last_event_at: r.get(20)?,
        updated_at: r.get(21)?,
        assistant_name: r.get(22)?,
    })
}

/// A `function_invocations` row in `sql::INVOCATION_COLUMNS` order.
fn invocation_row(r: &Row<'_>) -> rusqlite::Result<InvocationRow> {
    Ok(InvocationRow {
        tool_call_id: r.get(0)?,
        call_id: r.get(1)?,
        org_id: r.get(2)?,
        name: r.get(3)?,
        arguments: r.get(4)?,
        status: r.get(5)?,
        result: r.get(6)?,
        error: r.get(7)?,
        latency_ms: r.get(8)?,
        started_at: r.get(9)?,
        finished_at: r.get(10)?,
        lease_until: r.get(11)?,
    })
}
