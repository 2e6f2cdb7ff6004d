//! Durable jobs' SQL for both engines, instantiated next to `shared_queries`. The engines differ
//! only in how claims exclude each other: SQLite's writes already go one at a time through the
//! single writer (and `BEGIN IMMEDIATE` across processes), while Postgres claims rows with
//! `FOR UPDATE SKIP LOCKED` (`$skip_locked`) so workers on many instances pass over each other's
//! rows instead of waiting, and serialises claims of a kind that has a limit with a
//! transaction-scoped advisory lock (`$kind_lock`), so two instances cannot both see room.

macro_rules! job_queries {
    ($db:ty, $conn:ty, $skip_locked:literal, $kind_lock:expr) => {
        use crate::store::sql::JOB_COLUMNS;

        pub async fn enqueue_job(c: &mut $conn, j: &NewJob) -> sqlx::Result<Enqueued> {
            let inserted = sqlx::query_as::<_, JobRow>(sql::ENQUEUE_JOB)
                .bind(&j.id)
                .bind(&j.kind)
                .bind(sanitize_text(&j.payload))
                .bind(j.max_attempts)
                .bind(j.run_at)
                .bind(clean(&j.dedup_key))
                .bind(j.now)
                .fetch_optional(&mut *c)
                .await?;
            if let Some(job) = inserted {
                return Ok(Enqueued { job, created: true });
            }
            let existing = sqlx::query_as::<_, JobRow>(sql::JOB_BY_DEDUP_KEY).bind(clean(&j.dedup_key)).fetch_optional(&mut *c).await?;
            existing.map(|job| Enqueued { job, created: false }).ok_or(sqlx::Error::RowNotFound)
        }

        /// Jobs written by another write's transaction (its follow-ups): the kinds of those
        /// created. A job that is neither written nor found by its dedup key (its id taken)
        /// fails the write, as `enqueue_job` does, rather than being dropped unseen.
        pub async fn enqueue_all(c: &mut $conn, jobs: &[NewJob]) -> sqlx::Result<Vec<String>> {
            let mut created = Vec::new();
            for j in jobs {
                if enqueue_job(c, j).await?.created {
                    created.push(j.kind.clone());
                }
            }
            Ok(created)
        }

        pub async fn claim_jobs(c: &mut $conn, k: &ClaimJobs) -> sqlx::Result<Vec<JobRow>> {
            let lock: Option<&str> = $kind_lock;
            if let (Some(lock), Some(_)) = (lock, k.kind_limit) {
                sqlx::query(lock).bind(&k.kind).execute(&mut *c).await?;
            }
            sqlx::query(sql::BURY_ABANDONED_JOBS).bind(&k.kind).bind(k.now).execute(&mut *c).await?;
            let mut max = k.max;
            if let Some(limit) = k.kind_limit {
                let running: i64 = sqlx::query_scalar(sql::COUNT_RUNNING_JOBS).bind(&k.kind).bind(k.now).fetch_one(&mut *c).await?;
                max = max.min(limit - running);
            }
            if max <= 0 {
                return Ok(Vec::new());
            }
            let mut jobs = sqlx::query_as::<_, JobRow>(sql::claim_jobs_sql!($skip_locked))
                .bind(&k.kind)
                .bind(k.now)
                .bind(max)
                .bind(k.lease_until)
                .bind(&k.worker)
                .fetch_all(&mut *c)
                .await?;
            jobs.sort_by(|a, b| (a.run_at, &a.id).cmp(&(b.run_at, &b.id)));
            Ok(jobs)
        }

        pub async fn complete_job(c: &mut $conn, l: &JobLease, now: i64) -> sqlx::Result<bool> {
            let r = sqlx::query(sql::COMPLETE_JOB).bind(&l.id).bind(&l.worker).bind(l.attempt).bind(now).execute(&mut *c).await?;
            Ok(r.rows_affected() == 1)
        }

        pub async fn fail_job(c: &mut $conn, f: &JobFailure) -> sqlx::Result<Option<String>> {
            sqlx::query_scalar(sql::FAIL_JOB)
                .bind(&f.lease.id)
                .bind(&f.lease.worker)
                .bind(f.lease.attempt)
                .bind(sanitize_text(&f.error))
                .bind(f.retry_at)
                .bind(f.now)
                .fetch_optional(&mut *c)
                .await
        }

        pub async fn renew_job(c: &mut $conn, l: &JobLease, lease_until: i64, now: i64) -> sqlx::Result<bool> {
            let r = sqlx::query(sql::RENEW_JOB)
                .bind(&l.id)
                .bind(&l.worker)
                .bind(l.attempt)
                .bind(lease_until)
                .bind(now)
                .execute(&mut *c)
                .await?;
            Ok(r.rows_affected() == 1)
        }

        pub async fn get_job(c: &mut $conn, id: &str) -> sqlx::Result<Option<JobRow>> {
            sqlx::query_as::<_, JobRow>(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")).bind(id).fetch_optional(&mut *c).await
        }

        pub async fn list_jobs(c: &mut $conn, f: &JobFilter) -> sqlx::Result<Vec<JobRow>> {
            let mut qb = QueryBuilder::<$db>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1"));
            if let Some(status) = &f.status {
                qb.push(" AND status = ").push_bind(status.clone());
            }
            if let Some(kind) = &f.kind {
                qb.push(" AND kind = ").push_bind(kind.clone());
            }
            if let Some(before) = &f.before {
                qb.push(" AND id < ").push_bind(before.clone());
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
            qb.build_query_as::<JobRow>().fetch_all(&mut *c).await
        }

        /// A dead job, or a queued one that failed and waits for its retry, runs now with a
        /// fresh set of attempts.
        pub async fn retry_job(c: &mut $conn, id: &str, now: i64) -> sqlx::Result<JobRetry> {
            let retried = sqlx::query_as::<_, JobRow>(&format!(
                "UPDATE jobs SET status = 'queued', attempts = 0, run_at = $2, lease_until = NULL, finished_at = NULL, \
                 updated_at = $2 WHERE id = $1 AND (status = 'dead' OR (status = 'queued' AND last_error IS NOT NULL)) \
                 RETURNING {JOB_COLUMNS}"
            ))
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *c)
            .await?;
            if let Some(job) = retried {
                return Ok(JobRetry::Retried(Box::new(job)));
            }
            Ok(match get_job(c, id).await? {
                Some(job) => JobRetry::NotRetryable(job.status),
                None => JobRetry::NotFound,
            })
        }
    };
}

pub(crate) use job_queries;
