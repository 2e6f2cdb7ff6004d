//! A call's writes on the writer's own connection: `queries::ingest`, `claim_invocation` and
//! `finish_invocation` for this driver.

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::{execute, first};
use crate::store::sanitize::{clean, sanitize_text};
use crate::store::sql;
use crate::store::types::*;
use crate::store::{TERMINAL_RANK, status_rank};

/// The whole of one message, inside the writer's transaction: `queries::ingest` for this driver.
pub fn ingest(c: &Connection, i: &Ingest, now: i64) -> rusqlite::Result<IngestOutcome> {
    let r = &i.raw;
    let payload = sanitize_text(&r.payload);
    let Some(call) = &i.call else {
        let values: [&dyn ToSql; 7] = [&r.call_id, &r.org_id, &r.kind, &r.received_at, &r.message_ts, &r.dedup_key, &payload];
        let logged = execute(c, sql::INSERT_RAW, &values)? == 1;
        return if logged { applied(c, i, Applied::default()) } else { Ok(IngestOutcome::Duplicate) };
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
        return applied(c, i, Applied::default());
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
        CallChange::Ended(report) => (applied.status_changed, applied.recordings) = apply_end_report(c, &call.id, report, now)?,
    }
    // The row is read back only when an event will show it (created, status, end).
    if applied.call_created || applied.status_changed || matches!(i.change, CallChange::Ended(_)) {
        applied.call = first(c, sql::GET_CALL, &[&call.id], call_row)?;
    }
    self::applied(c, i, applied)
}

/// Enqueues the message's follow-ups in its transaction, then reports what it changed.
fn applied(c: &Connection, i: &Ingest, mut applied: Applied) -> rusqlite::Result<IngestOutcome> {
    if let Some(follow_ups) = &i.follow_ups {
        applied.jobs_created = super::jobs::enqueue_all(c, &follow_ups.jobs(&applied))?;
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

/// Whether the report moved the status, and the recordings it added.
fn apply_end_report(c: &Connection, call_id: &str, r: &EndReport, now: i64) -> rusqlite::Result<(bool, Vec<i64>)> {
    let (breakdown, summary, analysis) = (clean(&r.cost_breakdown), clean(&r.summary), clean(&r.analysis));
    let values: [&dyn ToSql; 10] =
        [&call_id, &TERMINAL_RANK, &r.ended_at, &r.ended_reason, &r.started_at, &r.cost, &breakdown, &summary, &analysis, &now];
    let changed = execute(c, sql::APPLY_END_REPORT, &values)?;
    let mut added = Vec::new();
    for rec in &r.recordings {
        added.extend(first(c, sql::INSERT_RECORDING, &[&call_id, &rec.kind, &rec.source_url, &now], |row| row.get::<_, i64>(0))?);
    }
    Ok((changed == 1, added))
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
pub fn finish_invocation(c: &Connection, d: &Finished) -> rusqlite::Result<bool> {
    let n = &d.claim;
    let status = if d.ok { "ok" } else { "error" };
    let (arguments, result, error) = (sanitize_text(&n.arguments), clean(&d.result), clean(&d.error));
    let values: [&dyn ToSql; 12] = [
        &n.tool_call_id,
        &n.call_id,
        &n.org_id,
        &n.name,
        &arguments,
        &status,
        &result,
        &error,
        &d.latency_ms,
        &n.started_at,
        &d.finished_at,
        &n.lease_until,
    ];
    let stored = execute(c, sql::FINISH_INVOCATION, &values)? == 1;
    if stored {
        super::jobs::enqueue_all(c, &d.announce)?;
    }
    Ok(stored)
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
