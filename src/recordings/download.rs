//! One download: check the URL, resolve and check the address, connect to that address only
//! (a client per download with the lookup pinned, no proxy), follow at most three redirects by
//! hand (each hop checked like the first), and stream the body into the recordings storage
//! while hashing it, refusing past the size cap. The storage publishes the file only when it is
//! complete (a staging file renamed into place, or an S3 multipart upload completed), so a
//! reader never sees half a recording; one refused or broken off on the way is aborted.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Url;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use sha2::{Digest, Sha256};

use super::Failure;
use super::guard;
use super::storage::{Storage, StorageError};
use crate::config::RecordingsSettings;

const MAX_REDIRECTS: usize = 3;

/// What was stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Relative to the storage root (the folder, or the bucket's prefix).
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
}

/// Downloads `raw` into `<rel_dir>/<kind>.<ext>` of the storage within the total timeout.
pub async fn fetch(raw: &str, cfg: &RecordingsSettings, storage: &Storage, rel_dir: &str, kind: &str) -> Result<Stored, Failure> {
    match tokio::time::timeout(cfg.timeout, fetch_within(raw, cfg, storage, rel_dir, kind)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::failed(format!("the download took longer than recordings.timeout_ms ({} ms)", cfg.timeout.as_millis()))),
    }
}

async fn fetch_within(raw: &str, cfg: &RecordingsSettings, storage: &Storage, rel_dir: &str, kind: &str) -> Result<Stored, Failure> {
    let mut url = guard::check_url(raw, cfg).map_err(Failure::Refused)?;
    let mut hops = 0;
    let resp = loop {
        let addr = guard::resolve(&url, cfg).await?;
        let resp = client_for(&url, addr, cfg)?
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Failure::failed(format!("the request failed ({})", e.without_url())))?;
        if !resp.status().is_redirection() {
            break resp;
        }
        hops += 1;
        if hops > MAX_REDIRECTS {
            return Err(Failure::Refused(format!("more than {MAX_REDIRECTS} redirects")));
        }
        let location = resp.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let next =
            url.join(location).map_err(|_| Failure::Failed { reason: "a redirect without a valid Location".into(), retry: false })?;
        url = guard::check_url(next.as_str(), cfg).map_err(|e| Failure::Refused(format!("redirected to a disallowed place: {e}")))?;
    };
    let status = resp.status();
    if !status.is_success() {
        // A 4xx will not change by asking again, except "too many" and "too slow".
        let retry = status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429;
        return Err(Failure::Failed { reason: format!("the server answered {status}"), retry });
    }
    let declared = resp.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cfg.max_bytes) {
        return Err(too_large(cfg));
    }
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().chars().take(200).collect::<String>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "application/octet-stream".into());
    let name = format!("{kind}.{}", extension(&content_type, &url));
    let path = format!("{rel_dir}/{name}");
    let mut upload = storage.upload(&path, &content_type).await.map_err(|e| storage_failure("start writing the file", &e))?;
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                upload.abort().await;
                return Err(Failure::failed(format!("the download broke off ({})", e.without_url())));
            }
        };
        size += chunk.len() as u64;
        if size > cfg.max_bytes {
            upload.abort().await;
            return Err(too_large(cfg));
        }
        hasher.update(&chunk);
        if let Err(e) = upload.write(chunk).await {
            upload.abort().await;
            return Err(storage_failure("write the file", &e));
        }
    }
    upload.finish().await.map_err(|e| storage_failure("store the file", &e))?;
    Ok(Stored { path, size, sha256: hex::encode(hasher.finalize()), content_type })
}

/// A client that can only reach `addr`: the host's lookup is pinned to the checked address, so
/// reqwest's own resolver (and a rebinding DNS answer) never gets a say.
fn client_for(url: &Url, addr: std::net::SocketAddr, cfg: &RecordingsSettings) -> Result<reqwest::Client, Failure> {
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(cfg.timeout);
    if guard::host_ip(url).is_none()
        && let Some(name) = url.host_str()
    {
        b = b.resolve(name, addr);
    }
    b.build().map_err(|e| Failure::failed(format!("cannot build the HTTP client ({e})")))
}

fn too_large(cfg: &RecordingsSettings) -> Failure {
    Failure::Refused(format!("the file is larger than recordings.max_bytes ({} bytes)", cfg.max_bytes))
}

fn storage_failure(what: &str, e: &StorageError) -> Failure {
    Failure::failed(format!("cannot {what} ({e})"))
}

/// From the content type, else the URL's own extension, else `bin`.
fn extension(content_type: &str, url: &Url) -> String {
    let mime = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let known = match mime.as_str() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => Some("wav"),
        "audio/mpeg" | "audio/mp3" => Some("mp3"),
        "audio/ogg" => Some("ogg"),
        "audio/webm" | "video/webm" => Some("webm"),
        "audio/mp4" | "video/mp4" => Some("mp4"),
        "audio/flac" => Some("flac"),
        _ => None,
    };
    if let Some(ext) = known {
        return ext.into();
    }
    let from_url = Path::new(url.path()).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    from_url.filter(|e| (1..=5).contains(&e.len()) && e.chars().all(|c| c.is_ascii_alphanumeric())).unwrap_or_else(|| "bin".into())
}
