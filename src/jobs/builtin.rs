//! Harmless kinds for demos and tests, registered only with `jobs.demo_kinds`: `noop` succeeds
//! at once; `sleep` waits `{"ms": N}` (at most an hour) and then succeeds, or fails with
//! `{"fail": "message"}`, standing in for slow or flaky work.

use std::time::Duration;

use serde_json::Value;

use super::{JobContext, JobKind};

const MAX_SLEEP_MS: u64 = 3_600_000;

pub fn demo_kinds() -> Vec<JobKind> {
    vec![JobKind::new("noop", noop), JobKind::new("sleep", sleep)]
}

async fn noop(_payload: Value, _ctx: JobContext) -> Result<(), String> {
    Ok(())
}

async fn sleep(payload: Value, _ctx: JobContext) -> Result<(), String> {
    let ms = payload.get("ms").and_then(Value::as_u64).unwrap_or(0).min(MAX_SLEEP_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    match payload.get("fail").and_then(Value::as_str) {
        Some(message) => Err(message.to_string()),
        None => Ok(()),
    }
}
