//! Where recording files live: the local folder or an S3-compatible bucket, both through
//! `object_store` (`LocalFileSystem` under the folder, `AmazonS3` under the bucket's prefix), so
//! downloads, the Range route and retention run the same code for both. A file is named by its
//! path relative to the storage root (`<org>/<call>/<kind>.<ext>`, what the database stores).
//!
//! Writes stream: an upload is a multipart upload fed chunk by chunk with at most
//! `IN_FLIGHT` parts on the way, so memory stays bounded whatever the file's size. Nothing is
//! visible until the upload completes (the folder writes a staging file renamed into place; S3
//! publishes the object on `CompleteMultipartUpload`), and an upload that is dropped or refused
//! is aborted (staging file removed, S3 parts discarded).

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, TryStreamExt};
use object_store::StaticCredentialProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use tokio::sync::OnceCell;

use crate::config::RecordingsSettings;

/// Parts being uploaded at once by one download (besides the one being filled).
const IN_FLIGHT: usize = 2;
/// S3's smallest part (all parts but the last must be at least this).
const S3_PART: usize = 5 * 1024 * 1024;
/// The folder's "parts" are writes into the staging file: small ones keep memory low.
const LOCAL_PART: usize = 256 * 1024;

/// The recordings storage, shared by the download job, the Range route and retention.
pub struct Storage {
    backend: Backend,
    /// S3 key prefix the relative paths are put under (empty for the folder).
    prefix: Key,
    part_size: usize,
    location: String,
}

enum Backend {
    /// Opened on first use: `LocalFileSystem` needs the folder to exist, and a hub that never
    /// downloads a recording should not create one at start-up.
    Local {
        dir: PathBuf,
        store: OnceCell<Arc<dyn ObjectStore>>,
    },
    S3(Arc<dyn ObjectStore>),
}

/// What went wrong, without secrets (object_store's messages name the bucket and key only).
#[derive(Debug)]
pub enum StorageError {
    NotFound,
    Other(String),
}

impl std::fmt::Display for StorageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageError::NotFound => f.write_str("not found"),
            StorageError::Other(e) => f.write_str(e),
        }
    }
}

impl From<object_store::Error> for StorageError {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound,
            other => StorageError::Other(other.to_string()),
        }
    }
}

/// A readable object (or part of one): its total size and the requested bytes.
pub struct Object {
    pub size: u64,
    pub body: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>,
}

impl Storage {
    /// The storage `cfg` names. Builds the S3 client (no request is made yet); credentials not
    /// in the settings come from the `AWS_*` environment.
    pub fn open(cfg: &RecordingsSettings) -> Result<Storage, String> {
        let Some(s3) = &cfg.s3 else {
            return Ok(Storage {
                backend: Backend::Local { dir: cfg.dir.clone(), store: OnceCell::new() },
                prefix: Key::default(),
                part_size: LOCAL_PART,
                location: cfg.dir.display().to_string(),
            });
        };
        let mut b = AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_allow_http(s3.allow_http);
        if let Some(region) = &s3.region {
            b = b.with_region(region);
        } else if b.get_config_value(&object_store::aws::AmazonS3ConfigKey::Region).is_none() {
            b = b.with_region("us-east-1");
        }
        if let Some(endpoint) = &s3.endpoint {
            // MinIO, R2 and test servers want the bucket in the path, not in the host name.
            b = b.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            // The file's keys replace the environment's whole: an AWS_SESSION_TOKEN left in
            // the environment is not mixed with them.
            let credential = AwsCredential {
                key_id: id.clone(),
                secret_key: secret.expose().to_string(),
                token: s3.session_token.as_ref().map(|t| t.expose().to_string()),
            };
            b = b.with_credentials(Arc::new(StaticCredentialProvider::new(credential)));
        }
        let store = b.build().map_err(|e| format!("recordings.dir ({}): {e}", s3.location()))?;
        let prefix = Key::parse(&s3.prefix).map_err(|e| format!("recordings.dir ({}): {e}", s3.location()))?;
        Ok(Storage { backend: Backend::S3(Arc::new(store)), prefix, part_size: S3_PART, location: s3.location() })
    }

    /// The folder or `s3://bucket/prefix`, for logs.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn store(&self) -> Result<&Arc<dyn ObjectStore>, StorageError> {
        match &self.backend {
            Backend::S3(s) => Ok(s),
            Backend::Local { dir, store } => {
                store
                    .get_or_try_init(|| async {
                        tokio::fs::create_dir_all(dir)
                            .await
                            .map_err(|e| StorageError::Other(format!("cannot create the recordings folder {} ({e})", dir.display())))?;
                        // fsync before the rename, as the download did before it went through
                        // object_store: a `ready` recording survives a power cut.
                        let fs = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
                        Ok(Arc::new(fs) as Arc<dyn ObjectStore>)
                    })
                    .await
            }
        }
    }

    /// The object's key: the relative path under the prefix. A path that is not plainly
    /// relative (`..`, empty parts) is refused rather than normalised.
    fn key(&self, rel: &str) -> Result<Key, StorageError> {
        let rel = Key::parse(rel).map_err(|e| StorageError::Other(format!("not a recording path ({e})")))?;
        if rel.parts_count() == 0 {
            return Err(StorageError::Other("an empty recording path".into()));
        }
        Ok(self.prefix.parts().chain(rel.parts()).collect())
    }

    /// Starts writing `rel`; nothing is visible there until [`Upload::finish`].
    pub async fn upload(&self, rel: &str, content_type: &str) -> Result<Upload, StorageError> {
        let key = self.key(rel)?;
        let mut opts = PutMultipartOptions::default();
        if matches!(self.backend, Backend::S3(_)) {
            // Stored with the object (the folder has nowhere to keep it; the database has it).
            let mut attributes = Attributes::new();
            attributes.insert(Attribute::ContentType, content_type.to_string().into());
            opts.attributes = attributes;
        }
        let upload = self.store().await?.put_multipart_opts(&key, opts).await?;
        Ok(Upload { writer: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)) })
    }

    /// `rel`'s size, or `NotFound`.
    pub async fn size(&self, rel: &str) -> Result<u64, StorageError> {
        let key = self.key(rel)?;
        Ok(self.store().await?.head(&key).await?.size)
    }

    /// `rel`, whole or the byte `range` of it, as a stream.
    pub async fn read(&self, rel: &str, range: Option<Range<u64>>) -> Result<Object, StorageError> {
        let key = self.key(rel)?;
        let got = self.store().await?.get_opts(&key, GetOptions::new().with_range(range)).await?;
        let size = got.meta.size;
        let body = got.into_stream().map_err(std::io::Error::other);
        Ok(Object { size, body: Box::pin(body) })
    }

    /// Removes `rel`; one that is already gone counts as removed.
    pub async fn delete(&self, rel: &str) -> Result<(), StorageError> {
        let key = self.key(rel)?;
        match self.store().await?.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// One file being written. Dropped unfinished (a timeout, an error), it is aborted in the
/// background so no staging file or S3 parts stay behind.
pub struct Upload {
    writer: Option<WriteMultipart>,
}

impl Upload {
    /// Adds a chunk, first waiting while `IN_FLIGHT` parts are still being sent (backpressure:
    /// the download reads no faster than the storage writes).
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        let w = self.writer.as_mut().ok_or_else(|| StorageError::Other("the upload is over".into()))?;
        w.wait_for_capacity(IN_FLIGHT).await?;
        w.put(chunk);
        Ok(())
    }

    /// Sends what is left and publishes the object.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        let w = self.writer.take().ok_or_else(|| StorageError::Other("the upload is over".into()))?;
        w.finish().await?;
        Ok(())
    }

    /// Discards what was written.
    pub async fn abort(mut self) {
        if let Some(w) = self.writer.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "could not abort an unfinished recording upload");
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = w.abort().await {
                    tracing::warn!(error = %e, "could not abort an unfinished recording upload");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> Storage {
        Storage::open(&RecordingsSettings { dir: dir.to_path_buf(), ..RecordingsSettings::defaults() }).unwrap()
    }

    #[tokio::test]
    async fn a_finished_upload_is_readable_whole_and_by_range_and_deletable() {
        let dir = tempfile::tempdir().unwrap();
        let s = local(&dir.path().join("rec"));
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        let mut up = s.upload("org/call/mono.wav", "audio/wav").await.unwrap();
        for c in body.chunks(10_000) {
            up.write(Bytes::copy_from_slice(c)).await.unwrap();
        }
        assert!(matches!(s.size("org/call/mono.wav").await, Err(StorageError::NotFound)), "invisible before finish");
        up.finish().await.unwrap();
        assert_eq!(std::fs::read(dir.path().join("rec/org/call/mono.wav")).unwrap(), body, "the folder layout is unchanged");
        assert_eq!(s.size("org/call/mono.wav").await.unwrap(), body.len() as u64);
        let part = s.read("org/call/mono.wav", Some(100..200)).await.unwrap();
        assert_eq!(part.size, body.len() as u64);
        let got: Vec<Bytes> = part.body.try_collect().await.unwrap();
        assert_eq!(got.concat(), &body[100..200]);
        s.delete("org/call/mono.wav").await.unwrap();
        s.delete("org/call/mono.wav").await.unwrap();
        assert!(matches!(s.read("org/call/mono.wav", None).await, Err(StorageError::NotFound)));
    }

    #[tokio::test]
    async fn an_aborted_or_dropped_upload_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let s = local(dir.path());
        let mut up = s.upload("o/c/mono.wav", "audio/wav").await.unwrap();
        up.write(Bytes::from_static(b"half a file")).await.unwrap();
        up.abort().await;
        let mut up = s.upload("o/c/stereo.wav", "audio/wav").await.unwrap();
        up.write(Bytes::from_static(b"half a file")).await.unwrap();
        drop(up);
        for _ in 0..50 {
            if std::fs::read_dir(dir.path().join("o/c")).unwrap().next().is_none() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("left behind: {:?}", std::fs::read_dir(dir.path().join("o/c")).unwrap().collect::<Vec<_>>());
    }

    #[test]
    fn s3_keys_are_the_relative_path_under_the_prefix() {
        let s3 = crate::config::S3Settings {
            bucket: "calls-audio".into(),
            prefix: "prod/rec".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: None,
            allow_http: true,
            access_key_id: Some("AKIAEXAMPLE".into()),
            secret_access_key: Some(crate::config::Secret::new("very-secret")),
            session_token: None,
        };
        let s = Storage::open(&RecordingsSettings { s3: Some(s3), ..RecordingsSettings::defaults() }).unwrap();
        assert_eq!(s.location(), "s3://calls-audio/prod/rec");
        assert_eq!(s.key("o/c/mono.wav").unwrap().as_ref(), "prod/rec/o/c/mono.wav");
        assert!(s.key("../x").is_err());
    }

    #[test]
    fn paths_that_are_not_plainly_relative_are_refused() {
        let s = local(std::path::Path::new("/nonexistent"));
        for bad in ["../etc/passwd", "a/../b", "", "a//b", "/"] {
            assert!(s.key(bad).is_err(), "{bad:?}");
        }
        assert_eq!(s.key("o/c/mono.wav").unwrap().as_ref(), "o/c/mono.wav");
    }
}
