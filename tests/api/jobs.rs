//! Durable jobs through the public API: handlers registered on the running app, jobs enqueued
//! through `Jobs::enqueue` or the admin routes, outcomes read from the store. Two instances
//! share one database (a Postgres schema, or one SQLite file) to show claims never overlap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchboard::jobs::{EnqueueOptions, JobContext, JobKind};
use switchboard::store::{ClaimJobs, JobRow, NewJob};

use crate::helpers::*;

/// Quick polling and retries so the suite stays fast.
fn fast(s: &mut switchboard::config::Settings) {
    s.jobs.poll = Duration::from_millis(20);
    s.jobs.backoff_base = Duration::from_millis(100);
    s.jobs.lease = Duration::from_secs(5);
}

async fn job(app: &TestApp, id: &str) -> JobRow {
    app.state.store.get_job(id).await.unwrap().expect("the job exists")
}

/// Waits (up to `within`) until the job's status is `status`.
async fn wait_status(app: &TestApp, id: &str, status: &str, within: Duration) -> JobRow {
    let deadline = Instant::now() + within;
    loop {
        let j = job(app, id).await;
        if j.status == status {
            return j;
        }
        assert!(Instant::now() < deadline, "job {id} is {} (attempt {}), not {status}", j.status, j.attempts);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn enqueue(app: &TestApp, kind: &str, payload: Value) -> String {
    app.state.jobs.enqueue(kind, payload, EnqueueOptions::default()).await.unwrap().job.id
}

/// Two instances on one database, both fast.
async fn pair(adjust: impl Fn(&mut switchboard::config::Settings)) -> (TestApp, TestApp) {
    let a = spawn_with(|s| {
        fast(s);
        adjust(s);
    })
    .await;
    let db = a.state.settings.database_url.clone();
    let b = spawn_with(|s| {
        fast(s);
        adjust(s);
        s.database_url = db;
    })
    .await;
    (a, b)
}

/// Counts runs per job id (or per any key the handler picks).
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, usize>>>);

impl Runs {
    fn add(&self, key: &str) {
        *self.0.lock().unwrap().entry(key.to_string()).or_default() += 1;
    }
    fn snapshot(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_failing_job_is_retried_with_growing_delays_then_dead_and_an_admin_retry_brings_it_back() {
    let app = spawn_with(fast).await;
    let times = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (t, h) = (times.clone(), healthy.clone());
    app.state.jobs.register(
        JobKind::new("flaky", move |_payload: Value, _ctx: JobContext| {
            let (t, h) = (t.clone(), h.clone());
            async move {
                t.lock().unwrap().push(Instant::now());
                if h.load(std::sync::atomic::Ordering::SeqCst) { Ok(()) } else { Err("upstream said no".to_string()) }
            }
        })
        .max_attempts(4),
    );
    let id = enqueue(&app, "flaky", json!({ "n": 1 })).await;
    let dead = wait_status(&app, &id, "dead", Duration::from_secs(10)).await;
    assert_eq!((dead.attempts, dead.max_attempts), (4, 4));
    assert_eq!(dead.last_error.as_deref(), Some("upstream said no"));
    assert!(dead.finished_at.is_some());
    let runs = times.lock().unwrap().clone();
    assert_eq!(runs.len(), 4, "one run per attempt, none after the last");
    let gaps: Vec<Duration> = runs.windows(2).map(|w| w[1] - w[0]).collect();
    // base 100 ms doubling, less at most a quarter of jitter: at least 75, 150, 300 ms.
    for (n, gap) in gaps.iter().enumerate() {
        let floor = Duration::from_millis(75 << n);
        assert!(*gap >= floor, "gap {n} was {gap:?}, below {floor:?}: {gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "delays grow: {gaps:?}");

    // Dead stays dead until someone retries it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(times.lock().unwrap().len(), 4);
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let admin = app.token("admin", &["*"]).await;
    let r = app.http.post(app.url(&format!("/api/admin/jobs/{id}/retry"))).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["attempts"].as_i64()), (Some("queued"), Some(0)));
    let done = wait_status(&app, &id, "done", Duration::from_secs(5)).await;
    assert_eq!(done.attempts, 1, "a retry starts a fresh set of attempts");
    assert_eq!(times.lock().unwrap().len(), 5);
    app.shutdown().await;
}

#[tokio::test]
async fn a_job_whose_worker_vanished_runs_again_once_its_lease_passes_and_the_vanished_worker_cannot_finish_it() {
    let app = spawn_with(fast).await;
    let store = &app.state.store;
    let now = switchboard::clock::now_ms();
    // A worker that claims the job and then says nothing more: a crashed instance.
    store
        .enqueue_job(NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: "orphan".into(),
            payload: "{}".into(),
            max_attempts: 3,
            run_at: now,
            dedup_key: None,
            now,
        })
        .await
        .unwrap();
    let ghost = ClaimJobs { kind: "orphan".into(), worker: "ghost".into(), max: 1, kind_limit: None, now, lease_until: now + 400 };
    let claimed = store.claim_jobs(ghost.clone()).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let orphan = claimed[0].clone();
    assert_eq!((orphan.status.as_str(), orphan.attempts, orphan.locked_by.as_deref()), ("running", 1, Some("ghost")));
    assert!(store.claim_jobs(ClaimJobs { worker: "other".into(), ..ghost }).await.unwrap().is_empty(), "a held job is not claimed twice");

    let runs = Runs::default();
    let r = runs.clone();
    app.state.jobs.register(JobKind::new("orphan", move |_p: Value, ctx: JobContext| {
        let r = r.clone();
        async move {
            r.add(&ctx.id);
            Ok(())
        }
    }));
    let done = wait_status(&app, &orphan.id, "done", Duration::from_secs(5)).await;
    assert_eq!(done.attempts, 2, "the vanished worker's claim counted as an attempt");
    assert_ne!(done.locked_by.as_deref(), Some("ghost"));
    assert_eq!(runs.snapshot().get(&orphan.id), Some(&1));
    assert!(!store.complete_job(orphan.lease(), switchboard::clock::now_ms()).await.unwrap(), "a lost lease records nothing");
    app.shutdown().await;
}

#[tokio::test]
async fn a_kind_never_runs_more_jobs_at_once_than_its_limit_across_instances() {
    let (a, b) = pair(|s| s.jobs.concurrency = 8).await;
    let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for app in [&a, &b] {
        let (running, peak) = (running.clone(), peak.clone());
        app.state.jobs.register(
            JobKind::new("limited", move |_p: Value, _c: JobContext| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    peak.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(())
                }
            })
            .limit(2),
        );
    }
    let mut ids = Vec::new();
    for n in 0..10 {
        ids.push(enqueue(&a, "limited", json!({ "n": n })).await);
    }
    for id in &ids {
        wait_status(&a, id, "done", Duration::from_secs(15)).await;
    }
    assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 2, "the limit was reached and never passed");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn two_instances_on_one_database_never_run_the_same_job() {
    let (a, b) = pair(|s| s.jobs.concurrency = 4).await;
    let runs = Runs::default();
    let by_instance = [Runs::default(), Runs::default()];
    for (n, app) in [&a, &b].into_iter().enumerate() {
        let (runs, mine) = (runs.clone(), by_instance[n].clone());
        app.state.jobs.register(JobKind::new("count", move |_p: Value, ctx: JobContext| {
            let (runs, mine) = (runs.clone(), mine.clone());
            async move {
                runs.add(&ctx.id);
                mine.add("runs");
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
        }));
    }
    let mut ids = Vec::new();
    for n in 0..60 {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.push(enqueue(via, "count", json!({ "n": n })).await);
    }
    for id in &ids {
        wait_status(&a, id, "done", Duration::from_secs(20)).await;
    }
    let seen = runs.snapshot();
    assert_eq!(seen.len(), ids.len());
    assert!(seen.values().all(|&n| n == 1), "a job ran twice: {seen:?}");
    for id in &ids {
        assert_eq!(job(&a, id).await.attempts, 1);
    }
    let split: Vec<usize> = by_instance.iter().map(|r| r.snapshot().get("runs").copied().unwrap_or(0)).collect();
    assert_eq!(split.iter().sum::<usize>(), 60, "{split:?}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn a_scheduled_kind_runs_once_per_slot_across_two_instances() {
    let (a, b) = pair(|_| {}).await;
    let runs = Runs::default();
    for app in [&a, &b] {
        let runs = runs.clone();
        app.state.jobs.register(
            JobKind::new("tick", move |p: Value, _c: JobContext| {
                let runs = runs.clone();
                async move {
                    runs.add(&p["scheduled_for"].to_string());
                    Ok(())
                }
            })
            .every(Duration::from_millis(250)),
        );
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    a.shutdown().await;
    b.shutdown().await;
    let seen = runs.snapshot();
    assert!(seen.len() >= 3, "a run per slot: {seen:?}");
    assert!(seen.values().all(|&n| n == 1), "a slot ran twice: {seen:?}");
}

#[tokio::test]
async fn the_admin_jobs_api_is_for_admin_tokens_only() {
    let app = spawn_with(|s| {
        fast(s);
        s.jobs.demo_kinds = true;
    })
    .await;
    let supervisor = app.token("supervisor", &["*"]).await;
    let admin = app.token("admin", &["*"]).await;
    for (method, path) in [("GET", "/api/admin/jobs"), ("POST", "/api/admin/jobs/run/noop"), ("POST", "/api/admin/jobs/x/retry")] {
        let m: reqwest::Method = method.parse().unwrap();
        let none = app.http.request(m.clone(), app.url(path)).send().await.unwrap();
        assert_eq!(none.status(), 401, "{method} {path} without a token");
        let sup = app.http.request(m.clone(), app.url(path)).bearer_auth(&supervisor).send().await.unwrap();
        assert_eq!(sup.status(), 403, "{method} {path} as a supervisor");
        let body: Value = sup.json().await.unwrap();
        assert_eq!(body["error"]["code"], "forbidden");
    }
    // The only job of a fresh hub is the scheduled retention cleanup.
    let (status, body) = app.get_json("/api/admin/jobs?kind=noop", &admin).await;
    assert_eq!((status, body["jobs"].as_array().map(Vec::len)), (200, Some(0)));
    app.shutdown().await;
}

#[tokio::test]
async fn run_now_enqueues_a_job_of_a_known_kind_and_the_list_pages_through_jobs_by_status() {
    let app = spawn_with(|s| {
        fast(s);
        s.jobs.demo_kinds = true;
    })
    .await;
    let admin = app.token("admin", &["*"]).await;
    let post = |path: &str| app.http.post(app.url(path)).bearer_auth(&admin);

    let r = post("/api/admin/jobs/run/nothing-like-this").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = post("/api/admin/jobs/run/noop").send().await.unwrap();
    assert_eq!(r.status(), 202);
    let first: Value = r.json().await.unwrap();
    assert_eq!((first["kind"].as_str(), first["payload"].clone()), (Some("noop"), json!({})));
    let r = post("/api/admin/jobs/run/sleep").json(&json!({ "ms": 10, "fail": "no luck" })).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let failing: Value = r.json().await.unwrap();
    assert_eq!(failing["payload"]["fail"], "no luck");
    let r = post("/api/admin/jobs/run/noop").header("content-type", "application/json").body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);

    let done = wait_status(&app, first["id"].as_str().unwrap(), "done", Duration::from_secs(5)).await;
    assert_eq!(done.attempts, 1);
    let r = post(&format!("/api/admin/jobs/{}/retry", done.id)).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["code"], "not_retryable");
    assert_eq!(post("/api/admin/jobs/no-such-job/retry").send().await.unwrap().status(), 404);
    // A job waiting for its next attempt can be retried now.
    let failed_id = failing["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while job(&app, failed_id).await.last_error.is_none() {
        assert!(Instant::now() < deadline, "the failing job never failed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post(&format!("/api/admin/jobs/{failed_id}/retry")).send().await.unwrap().status(), 200);

    for _ in 0..3 {
        post("/api/admin/jobs/run/noop").send().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body) = app.get_json("/api/admin/jobs?status=done&kind=noop", &admin).await;
        if body["jobs"].as_array().unwrap().len() == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, page) = app.get_json("/api/admin/jobs?status=done&kind=noop&limit=3", &admin).await;
    assert_eq!((status, page["jobs"].as_array().unwrap().len()), (200, 3));
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = app.get_json(&format!("/api/admin/jobs?status=done&kind=noop&limit=3&cursor={cursor}"), &admin).await;
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_eq!(rest["jobs"][0]["id"], first["id"], "newest first, so the first job comes last");
    assert_eq!(app.get_json("/api/admin/jobs?status=bogus", &admin).await.0, 422);
    assert_eq!(app.get_json("/api/admin/jobs?limit=0", &admin).await.0, 422);
    app.shutdown().await;
}

#[tokio::test]
async fn enqueueing_with_a_used_dedup_key_returns_the_first_job() {
    let app = spawn_with(|s| {
        fast(s);
        s.jobs.demo_kinds = true;
    })
    .await;
    let opts = EnqueueOptions { run_at: None, dedup_key: Some("once".into()) };
    let first = app.state.jobs.enqueue("noop", json!({ "n": 1 }), opts.clone()).await.unwrap();
    let second = app.state.jobs.enqueue("noop", json!({ "n": 2 }), opts).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.job.id, second.job.id);
    assert!(app.state.jobs.enqueue("unregistered", json!({}), EnqueueOptions::default()).await.is_err());
    app.shutdown().await;
}

#[tokio::test]
async fn concurrent_claims_from_two_instances_hand_out_every_job_exactly_once() {
    let (a, b) = pair(|s| s.database_max_connections = 8).await;
    let now = switchboard::clock::now_ms();
    for n in 0..200 {
        let job = NewJob {
            id: uuid::Uuid::now_v7().to_string(),
            kind: "race".into(),
            payload: json!({ "n": n }).to_string(),
            max_attempts: 3,
            run_at: now,
            dedup_key: None,
            now,
        };
        a.state.store.enqueue_job(job).await.unwrap();
    }
    // Sixteen claimers, eight per instance, as fast as they can: no handler, so no worker is involved.
    let mut claimers = Vec::new();
    for n in 0..16 {
        let store = if n % 2 == 0 { a.state.store.clone() } else { b.state.store.clone() };
        claimers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let now = switchboard::clock::now_ms();
                let claim =
                    ClaimJobs { kind: "race".into(), worker: format!("w{n}"), max: 2, kind_limit: None, now, lease_until: now + 60_000 };
                let jobs = store.claim_jobs(claim).await.unwrap();
                if jobs.is_empty() {
                    return got;
                }
                got.extend(jobs.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (200, 200), "every job claimed, none twice");
    a.shutdown().await;
    b.shutdown().await;
}

/// Postgres only: a row another instance is claiming (locked, not yet committed) is passed over
/// at once rather than waited for and then claimed a second time.
#[tokio::test]
async fn on_postgres_a_claim_skips_a_job_another_instance_is_claiming() {
    if std::env::var("SWITCHBOARD_TEST_DATABASE_URL").map_or(true, |u| u.is_empty()) {
        return;
    }
    use sqlx::Connection;
    let app = spawn_with(fast).await;
    let now = switchboard::clock::now_ms();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let id = uuid::Uuid::now_v7().to_string();
        let job = NewJob { id: id.clone(), kind: "held".into(), payload: "{}".into(), max_attempts: 3, run_at: now, dedup_key: None, now };
        app.state.store.enqueue_job(job).await.unwrap();
        ids.push(id);
    }
    // The other instance, mid-claim: its transaction holds the first job's row.
    let mut other = sqlx::PgConnection::connect(&app.state.settings.database_url).await.unwrap();
    let mut tx = other.begin().await.unwrap();
    sqlx::query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE").bind(&ids[0]).execute(&mut *tx).await.unwrap();
    let claim = ClaimJobs { kind: "held".into(), worker: "w".into(), max: 2, kind_limit: None, now, lease_until: now + 60_000 };
    let claimed = tokio::time::timeout(Duration::from_secs(3), app.state.store.claim_jobs(claim)).await.expect("no waiting").unwrap();
    assert_eq!(claimed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(), vec![ids[1].clone()]);
    tx.rollback().await.unwrap();
    app.shutdown().await;
}
