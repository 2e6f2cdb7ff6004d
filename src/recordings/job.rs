//! The `recording.download` job kind: payload `{"recording_id": N}`. Safe to run again (at
//! least once delivery): a recording already `ready` or `refused` is left alone, and a repeated
//! download replaces the file (or object) atomically.

use std::sync::Arc;

use serde_json::{Value, json};

use super::storage::Storage;
use super::{Failure, download};
use crate::clock::{iso, now_ms};
use crate::config::RecordingsSettings;
use crate::hub::{DynBroker, Event, topics};
use crate::jobs::{EnqueueOptions, JobContext, JobKind, Jobs};
use crate::store::{DynStore, NewJob, RecordingDone, RecordingRow};

pub const KIND: &str = "recording.download";

pub struct RecordingDeps {
    pub settings: Arc<RecordingsSettings>,
    pub storage: Arc<Storage>,
    pub store: DynStore,
    pub broker: DynBroker,
    /// `recording.ready` goes to webhook endpoints too.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

pub fn register(jobs: &Jobs, deps: RecordingDeps) {
    let deps = Arc::new(deps);
    jobs.register(JobKind::new(KIND, move |payload: Value, ctx: JobContext| {
        let deps = deps.clone();
        async move { run(&deps, payload, ctx).await }
    }));
}

/// The download of a recording an end-of-call report added, as a job row for that report's own
/// transaction (`store::FollowUps`): a 2xx to VAPI means the download is on record, even if the
/// instance dies right after. One job per recording ever (the dedup key).
pub fn download_job(jobs: &Jobs, recording_id: i64) -> Option<NewJob> {
    let opts = EnqueueOptions { run_at: None, dedup_key: Some(format!("recording:{recording_id}")) };
    match jobs.new_job(KIND, &json!({ "recording_id": recording_id }), opts) {
        Ok(job) => Some(job),
        Err(e) => {
            tracing::warn!(error = %e, recording_id, "could not build a recording download");
            None
        }
    }
}

async fn run(deps: &RecordingDeps, payload: Value, ctx: JobContext) -> Result<(), String> {
    let id = payload["recording_id"].as_i64().ok_or("the payload has no recording_id")?;
    let Some(rec) = deps.store.recording(id).await.map_err(|e| e.to_string())? else {
        return Ok(()); // deleted with its call
    };
    if rec.state == "ready" || rec.state == "refused" {
        return Ok(());
    }
    let Some(call) = deps.store.get_call(&rec.call_id).await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let rel_dir = format!("{}/{}", path_part(&call.org_id), path_part(&call.id));
    let outcome = download::fetch(&rec.source_url, &deps.settings, &deps.storage, &rel_dir, &rec.kind).await;
    let now = now_ms();
    let mut done = RecordingDone {
        id,
        state: String::new(),
        size_bytes: None,
        sha256: None,
        content_type: None,
        path: None,
        reason: None,
        now,
        announce: Vec::new(),
    };
    let result = match outcome {
        Ok(s) => {
            done.state = "ready".into();
            done.size_bytes = Some(i64::try_from(s.size).unwrap_or(i64::MAX));
            done.sha256 = Some(s.sha256);
            done.content_type = Some(s.content_type);
            done.path = Some(s.path);
            Ok(())
        }
        Err(Failure::Refused(reason)) => {
            tracing::warn!(recording = id, attempt = ctx.attempt, %reason, "recording download refused");
            done.state = "refused".into();
            done.reason = Some(reason);
            Ok(())
        }
        Err(Failure::Failed { reason, retry }) => {
            tracing::warn!(recording = id, attempt = ctx.attempt, %reason, "recording download failed");
            done.state = "failed".into();
            done.reason = Some(reason.clone());
            // The job retries with backoff; the row shows the latest reason meanwhile.
            if retry { Err(reason) } else { Ok(()) }
        }
    };
    let ready = done.state == "ready";
    // The deliveries commit with the row that says ready: an instance that dies right after
    // leaves them on record (its rerun of this job finds the recording ready and does nothing).
    let outbox = if ready { deps.webhooks.outbox(&[crate::webhooks::events::RECORDING_READY]) } else { None };
    if let Some(outbox) = &outbox {
        done.announce =
            outbox.deliveries(&crate::webhooks::events::recording_ready(&call.org_id, rec.id, done.now, ready_data(&rec, &done)));
    }
    deps.store.finish_recording(done.clone()).await.map_err(|e| e.to_string())?;
    if outbox.is_some() {
        deps.webhooks.committed();
    }
    if ready {
        publish_ready(deps, &call.org_id, &rec, &done).await;
    }
    result
}

/// `recording.ready`'s data, for supervisors and webhook endpoints alike.
fn ready_data(rec: &RecordingRow, done: &RecordingDone) -> serde_json::Value {
    json!({
        "call_id": rec.call_id,
        "kind": rec.kind,
        "size_bytes": done.size_bytes,
        "sha256": done.sha256,
        "content_type": done.content_type,
    })
}

async fn publish_ready(deps: &RecordingDeps, org: &str, rec: &RecordingRow, done: &RecordingDone) {
    let event = Event { kind: "recording.ready".into(), at: iso(done.now), org_id: org.to_string(), data: ready_data(rec, done) };
    for topic in [topics::CALLS.to_string(), topics::call(&rec.call_id)] {
        if let Err(e) = deps.broker.publish(&topic, event.clone()).await {
            // Stored already: a supervisor that missed it sees it in the call's detail.
            tracing::warn!(error = %e, topic, "could not publish recording.ready");
        }
    }
}

/// Org and call ids come from webhook payloads: used as folder (key) parts only when they are
/// plainly safe, otherwise replaced by their hash (never `..`, a slash or an empty name).
fn path_part(id: &str) -> String {
    let safe = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if safe {
        id.to_string()
    } else {
        use sha2::Digest;
        hex::encode(&sha2::Sha256::digest(id.as_bytes())[..16])
    }
}

#[cfg(test)]
mod tests {
    use super::path_part;

    #[test]
    fn ids_that_could_escape_the_folder_become_hashes() {
        assert_eq!(path_part("7b1c9a3e-2f4d"), "7b1c9a3e-2f4d");
        for bad in ["..", "../etc", "a/b", "", ".hidden", "a\\b", "a\0b"] {
            let p = path_part(bad);
            assert_eq!(p.len(), 32, "{bad:?}");
            assert!(p.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }
}
