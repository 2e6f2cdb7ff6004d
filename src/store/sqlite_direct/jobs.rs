//! A durable job's writes on the writer's own connection: `job_queries`' functions of the same
//! names for this driver. (Recording downloads and outgoing webhooks claim and settle a job
//! each; through sqlx their round trips made the webhooks' writes wait behind them.)

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row};

use super::{all, execute, first};
use crate::store::sanitize::{clean, sanitize_text};
use crate::store::sql;
use crate::store::types::*;

pub fn enqueue_job(c: &Connection, j: &NewJob) -> rusqlite::Result<Enqueued> {
    let (payload, dedup_key) = (sanitize_text(&j.payload), clean(&j.dedup_key));
    let values: [&dyn ToSql; 7] = [&j.id, &j.kind, &payload, &j.max_attempts, &j.run_at, &dedup_key, &j.now];
    if let Some(job) = first(c, sql::ENQUEUE_JOB, &values, job_row)? {
        return Ok(Enqueued { job, created: true });
    }
    first(c, sql::JOB_BY_DEDUP_KEY, &[&dedup_key], job_row)?
        .map(|job| Enqueued { job, created: false })
        .ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// Jobs written by another write's transaction (its follow-ups): the kinds of those created.
/// A job that is neither written nor found by its dedup key (its id taken) fails the write, as
/// `enqueue_job` does, rather than being dropped unseen.
pub fn enqueue_all(c: &Connection, jobs: &[NewJob]) -> rusqlite::Result<Vec<String>> {
    let mut created = Vec::new();
    for j in jobs {
        if enqueue_job(c, j)?.created {
            created.push(j.kind.clone());
        }
    }
    Ok(created)
}

/// No other claim can run meanwhile: the writer runs one job at a time.
pub fn claim_jobs(c: &Connection, k: &ClaimJobs) -> rusqlite::Result<Vec<JobRow>> {
    execute(c, sql::BURY_ABANDONED_JOBS, &[&k.kind, &k.now])?;
    let mut max = k.max;
    if let Some(limit) = k.kind_limit {
        let running: i64 = first(c, sql::COUNT_RUNNING_JOBS, &[&k.kind, &k.now], |r| r.get(0))?.unwrap_or(0);
        max = max.min(limit - running);
    }
    if max <= 0 {
        return Ok(Vec::new());
    }
    let mut jobs = all(c, sql::CLAIM_JOBS, &[&k.kind, &k.now, &max, &k.lease_until, &k.worker], job_row)?;
    jobs.sort_by(|a, b| (a.run_at, &a.id).cmp(&(b.run_at, &b.id)));
    Ok(jobs)
}

pub fn complete_job(c: &Connection, l: &JobLease, now: i64) -> rusqlite::Result<bool> {
    Ok(execute(c, sql::COMPLETE_JOB, &[&l.id, &l.worker, &l.attempt, &now])? == 1)
}

pub fn fail_job(c: &Connection, f: &JobFailure) -> rusqlite::Result<Option<String>> {
    let error = sanitize_text(&f.error);
    let values: [&dyn ToSql; 6] = [&f.lease.id, &f.lease.worker, &f.lease.attempt, &error, &f.retry_at, &f.now];
    first(c, sql::FAIL_JOB, &values, |r| r.get(0))
}

pub fn renew_job(c: &Connection, l: &JobLease, lease_until: i64, now: i64) -> rusqlite::Result<bool> {
    Ok(execute(c, sql::RENEW_JOB, &[&l.id, &l.worker, &l.attempt, &lease_until, &now])? == 1)
}

/// A `jobs` row in `sql::JOB_COLUMNS` order.
fn job_row(r: &Row<'_>) -> rusqlite::Result<JobRow> {
    Ok(JobRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        payload: r.get(2)?,
        status: r.get(3)?,
        attempts: r.get(4)?,
        max_attempts: r.get(5)?,
        run_at: r.get(6)?,
        lease_until: r.get(7)?,
        locked_by: r.get(8)?,
        last_error: r.get(9)?,
        dedup_key: r.get(10)?,
        created_at: r.get(11)?,
        updated_at: r.get(12)?,
        finished_at: r.get(13)?,
    })
}
