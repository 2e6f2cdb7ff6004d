//! One instance's worker: a loop that enqueues due schedule slots and claims due jobs while it
//! has free slots, and a task per claimed job that runs the handler, renews the lease every
//! third of it, and records the outcome.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::backoff::{delay, random_jitter};
use super::{EnqueueOptions, JobContext, JobKind, Jobs};
use crate::clock::now_ms;
use crate::store::{ClaimJobs, JobFailure, JobRow};

pub(super) async fn run(jobs: Arc<Jobs>, stop: CancellationToken, tasks: TaskTracker) {
    let slots = Arc::new(Semaphore::new(jobs.settings.concurrency));
    // The last slot this instance enqueued per scheduled kind, so it tries each slot once.
    let mut scheduled: HashMap<String, i64> = HashMap::new();
    let mut turn = 0usize;
    let mut look = Look::All;
    tracing::debug!(worker = %jobs.worker_id, "job worker started");
    while !stop.is_cancelled() {
        let kinds = jobs.kinds();
        schedule(&jobs, &kinds, &mut scheduled).await;
        let chosen: Vec<JobKind> = kinds.into_iter().filter(|k| look.includes(&k.name)).collect();
        let claimed = claim_round(&jobs, &chosen, turn, &slots, &stop, &tasks).await;
        turn = turn.wrapping_add(1);
        if slots.available_permits() == 0 {
            jobs.starved.store(true, Ordering::Release);
        }
        // A full round may have left due jobs behind: look again at once while there is room.
        if claimed > 0 && slots.available_permits() > 0 {
            look.add(jobs.take_hint());
            continue;
        }
        look = tokio::select! {
            _ = stop.cancelled() => break,
            _ = jobs.wake.notified() => jobs.take_hint(),
            // Jobs due later, retries, other instances' enqueues: only the poll finds those.
            _ = tokio::time::sleep(jobs.settings.poll) => {
                jobs.take_hint();
                Look::All
            }
        };
    }
    tracing::debug!(worker = %jobs.worker_id, "job worker stopped claiming");
}

/// Which kinds a claim round looks at. Each claim is a write; at thousands of webhooks a second
/// most wake-ups are one kind's enqueue here, and claiming every kind for each of them took a
/// noticeable share of the SQLite writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Look {
    All,
    Kinds(HashSet<String>),
}

impl Look {
    pub(super) fn nothing() -> Self {
        Look::Kinds(HashSet::new())
    }

    pub(super) fn kind(name: &str) -> Self {
        Look::Kinds(HashSet::from([name.to_string()]))
    }

    pub(super) fn add(&mut self, other: Look) {
        match (&mut *self, other) {
            (Look::All, _) => {}
            (_, Look::All) => *self = Look::All,
            (Look::Kinds(mine), Look::Kinds(theirs)) => mine.extend(theirs),
        }
    }

    fn includes(&self, kind: &str) -> bool {
        match self {
            Look::All => true,
            Look::Kinds(names) => names.contains(kind),
        }
    }
}

/// Enqueues the current slot of each scheduled kind. Every instance tries; the slot's dedup key
/// lets exactly one job in. A slot missed while no instance ran is not caught up.
async fn schedule(jobs: &Jobs, kinds: &[JobKind], last: &mut HashMap<String, i64>) {
    let now = now_ms();
    for kind in kinds {
        let Some(every) = kind.every else { continue };
        let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
        let slot = now / every_ms;
        if last.get(&kind.name) == Some(&slot) {
            continue;
        }
        let at = slot.saturating_mul(every_ms);
        let opts = EnqueueOptions { run_at: Some(at), dedup_key: Some(format!("schedule:{}:{slot}", kind.name)) };
        match jobs.enqueue(&kind.name, json!({ "scheduled_for": at }), opts).await {
            Ok(_) => {
                last.insert(kind.name.clone(), slot);
            }
            Err(e) => tracing::warn!(kind = %kind.name, error = %e, "could not enqueue a scheduled job"),
        }
    }
}

/// Claims what fits in the free slots, kind by kind (starting with a different kind each round
/// so a busy kind cannot starve the others), and starts each job. Returns how many it started.
async fn claim_round(
    jobs: &Arc<Jobs>,
    kinds: &[JobKind],
    turn: usize,
    slots: &Arc<Semaphore>,
    stop: &CancellationToken,
    tasks: &TaskTracker,
) -> usize {
    let mut started = 0;
    for i in 0..kinds.len() {
        let kind = &kinds[(turn + i) % kinds.len()];
        let free = slots.available_permits();
        if free == 0 || stop.is_cancelled() {
            break;
        }
        let now = now_ms();
        let claim = ClaimJobs {
            kind: kind.name.clone(),
            worker: jobs.worker_id.clone(),
            max: i64::try_from(free).unwrap_or(i64::MAX),
            kind_limit: kind.limit.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            now,
            lease_until: now + lease_ms(jobs),
        };
        let claimed = match jobs.store.claim_jobs(claim).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(kind = %kind.name, error = %e, "could not claim jobs");
                continue;
            }
        };
        for job in claimed {
            // Only this loop takes permits, and it claimed no more than were free.
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::error!(job = %job.id, "claimed a job without a free slot; its lease will pass and it will run again");
                continue;
            };
            started += 1;
            tasks.spawn(run_job(jobs.clone(), kind.clone(), job, permit, stop.clone()));
        }
    }
    started
}

fn lease_ms(jobs: &Jobs) -> i64 {
    i64::try_from(jobs.settings.lease.as_millis()).unwrap_or(i64::MAX)
}

/// Runs one claimed job to its outcome. The lease is renewed while the handler runs; if a renewal
/// finds the lease lost (another worker took the job after this one failed to renew in time),
/// the handler is dropped and nothing is recorded.
async fn run_job(jobs: Arc<Jobs>, kind: JobKind, job: JobRow, _slot: OwnedSemaphorePermit, stop: CancellationToken) {
    let lease = job.lease();
    let outcome = match serde_json::from_str::<Value>(&job.payload) {
        Err(e) => Some(Err(format!("the payload is not JSON: {e}"))),
        Ok(payload) => {
            let ctx = JobContext {
                id: job.id.clone(),
                kind: job.kind.clone(),
                attempt: job.attempts,
                max_attempts: job.max_attempts,
                store: jobs.store.clone(),
                stop,
            };
            // A panicking handler is a failed attempt, not a job stuck until its lease passes.
            let work = AssertUnwindSafe(kind.handler.run(payload, ctx)).catch_unwind();
            tokio::pin!(work);
            let every = (jobs.settings.lease / 3).max(Duration::from_millis(50));
            let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    result = &mut work => break Some(result.unwrap_or_else(|_| Err("the handler panicked".into()))),
                    _ = renew.tick() => {
                        let now = now_ms();
                        match jobs.store.renew_job(lease.clone(), now + lease_ms(&jobs), now).await {
                            Ok(true) => {}
                            Ok(false) => break None,
                            // The store is down: keep running; if it stays down past the lease,
                            // another worker will take the job and this run's outcome is refused.
                            Err(e) => tracing::warn!(job = %job.id, error = %e, "could not renew a job's lease"),
                        }
                    }
                }
            }
        }
    };
    let now = now_ms();
    let recorded = match outcome {
        None => {
            tracing::warn!(job = %job.id, kind = %job.kind, "lost the lease of a running job; stopped it");
            Ok(true)
        }
        Some(Ok(())) => jobs.store.complete_job(lease, now).await,
        Some(Err(error)) => {
            let wait = delay(job.attempts, jobs.settings.backoff_base, jobs.settings.backoff_max, random_jitter());
            let retry_at = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            let status = jobs.store.fail_job(JobFailure { lease, error: error.clone(), retry_at, now }).await;
            if let Ok(Some(status)) = &status {
                tracing::info!(job = %job.id, kind = %job.kind, attempt = job.attempts, status = %status, error = %error, "a job attempt failed");
            }
            status.map(|s| s.is_some())
        }
    };
    match recorded {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(job = %job.id, kind = %job.kind, "a job finished after its lease was lost; its outcome was not recorded")
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e, "could not record a job's outcome; it will run again once its lease passes"),
    }
    // A freed slot matters only if a round stopped for want of one; then any kind may be waiting.
    if jobs.starved.swap(false, Ordering::AcqRel) {
        jobs.nudge(Look::All);
    }
}

#[cfg(test)]
mod tests {
    use super::Look;

    #[test]
    fn wake_ups_for_single_kinds_look_at_those_kinds_only() {
        let mut look = Look::nothing();
        look.add(Look::kind("recording.download"));
        look.add(Look::kind("webhook.deliver"));
        assert!(look.includes("recording.download") && look.includes("webhook.deliver"));
        assert!(!look.includes("retention"));
        assert!(!Look::nothing().includes("retention"));
    }

    #[test]
    fn one_wake_up_for_every_kind_outweighs_the_rest() {
        let mut look = Look::kind("recording.download");
        look.add(Look::All);
        look.add(Look::kind("webhook.deliver"));
        assert_eq!(look, Look::All);
        assert!(look.includes("retention"));
    }
}
