//! Retention: a scheduled job (`retention`, hourly by default) that removes what is older than
//! its configured age — raw webhook payloads, transcripts of ended calls, idle chats, recording
//! files, finished jobs, outgoing webhook delivery logs — in small batches, and reports what it removed. Admins can run it at
//! once with `POST /api/admin/retention/run`, which answers with that summary (the seeds' cron
//! endpoints do the same).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use crate::app::AppState;
use crate::auth::Principal;
use crate::config::RetentionSettings;
use crate::http::ApiError;
use crate::jobs::{JobContext, JobKind, Jobs};
use crate::store::{DynStore, StoreError};

pub const KIND: &str = "retention";
/// Rows one statement deletes: short transactions, so live traffic never waits long.
const BATCH: i64 = 500;

#[derive(Clone)]
pub struct RetentionDeps {
    pub settings: RetentionSettings,
    pub store: DynStore,
    /// Where recording files are removed from (the folder or the bucket).
    pub recordings: Arc<crate::recordings::Storage>,
}

/// What one cleanup removed.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub raw_events: u64,
    pub transcript_segments: u64,
    pub chat_sessions: u64,
    pub chat_messages: u64,
    pub recordings: u64,
    pub recording_bytes: u64,
    pub finished_jobs: u64,
    pub webhook_deliveries: u64,
}

pub fn register(jobs: &Jobs, deps: RetentionDeps) {
    let deps = Arc::new(deps);
    jobs.register(
        JobKind::new(KIND, move |_payload: Value, ctx: JobContext| {
            let deps = deps.clone();
            async move {
                let s = run(&deps, Some(&ctx)).await.map_err(|e| e.to_string())?;
                tracing::info!(?s, "retention cleanup done");
                Ok(())
            }
        })
        .every(Duration::from_secs(3600))
        .limit(1),
    );
}

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/api/admin/retention/run", post(run_now))
}

async fn run_now(State(app): State<Arc<AppState>>, who: Principal) -> Result<Json<Summary>, ApiError> {
    who.hub_admin()?;
    let deps = RetentionDeps { settings: app.settings.retention.clone(), store: app.store.clone(), recordings: app.recordings.clone() };
    Ok(Json(run(&deps, None).await?))
}

/// One cleanup: each kind of data in batches until nothing older than its age is left (or the
/// job is asked to stop; the next slot finishes the work).
pub async fn run(deps: &RetentionDeps, ctx: Option<&JobContext>) -> Result<Summary, StoreError> {
    let now = crate::clock::now_ms();
    let cutoff = |age: Option<Duration>| age.map(|a| now - a.as_millis() as i64);
    let stopping = || ctx.is_some_and(|c| c.stop.is_cancelled());
    let store = &deps.store;
    let s = &deps.settings;
    let mut sum = Summary::default();
    if let Some(c) = cutoff(s.raw_events) {
        sum.raw_events = drain(|| store.prune_raw_events(c, BATCH), &stopping).await?;
    }
    if let Some(c) = cutoff(s.transcripts) {
        sum.transcript_segments = drain(|| store.prune_transcripts(c, BATCH), &stopping).await?;
    }
    if let Some(c) = cutoff(s.chats) {
        loop {
            let (sessions, messages) = store.prune_chats(c, BATCH).await?;
            sum.chat_sessions += sessions;
            sum.chat_messages += messages;
            if sessions < BATCH as u64 || stopping() {
                break;
            }
        }
    }
    if let Some(c) = cutoff(s.recordings) {
        loop {
            let rows = store.expired_recordings(c, BATCH).await?;
            for r in &rows {
                if let Some(rel) = &r.path {
                    // A file already gone counts as removed (object stores do not tell).
                    match deps.recordings.delete(rel).await {
                        Ok(()) => sum.recording_bytes += r.size_bytes.unwrap_or(0).max(0) as u64,
                        // Left for the next run rather than marked gone while the file stays.
                        Err(e) => {
                            tracing::warn!(error = %e, recording = r.id, "could not remove a recording file");
                            continue;
                        }
                    }
                }
                store.mark_recording_deleted(r.id).await?;
                sum.recordings += 1;
            }
            if (rows.len() as i64) < BATCH || stopping() {
                break;
            }
        }
    }
    if let Some(c) = cutoff(s.finished_jobs) {
        sum.finished_jobs = drain(|| store.prune_jobs(c, BATCH), &stopping).await?;
    }
    if let Some(c) = cutoff(s.webhook_deliveries) {
        sum.webhook_deliveries = drain(|| store.prune_webhook_deliveries(c, BATCH), &stopping).await?;
    }
    Ok(sum)
}

/// Repeats one batch delete until a batch comes back short.
async fn drain<F, Fut>(batch: F, stopping: &impl Fn() -> bool) -> Result<u64, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = batch().await?;
        total += n;
        if n < BATCH as u64 || stopping() {
            return Ok(total);
        }
    }
}
