//! Recordings: an end-of-call report's recording URLs are downloaded by a durable job
//! (`recording.download`) into a local folder or an S3-compatible bucket (see `storage`),
//! SSRF-safe (see `guard`), with size, SHA-256 and content type stored and `recording.ready`
//! published; supervisors fetch them with HTTP Range.

mod download;
pub mod guard;
mod job;
mod serve;
pub mod storage;

pub use job::{KIND, RecordingDeps, download_job, register};
pub use serve::router;
pub use storage::Storage;

/// Why a download did not produce a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Not allowed (scheme, host, address, redirect target, size): never retried.
    Refused(String),
    /// Went wrong on the way; `retry` when another attempt may succeed (network, 5xx, timeout).
    Failed { reason: String, retry: bool },
}

impl Failure {
    fn failed(reason: impl Into<String>) -> Self {
        Failure::Failed { reason: reason.into(), retry: true }
    }
}
