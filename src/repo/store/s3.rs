//! The repository in an S3 bucket (AWS, Ceph RGW, SeaweedFS, MinIO), through Apache
//! Arrow's `object_store`: path-style requests, so any endpoint works without DNS
//! names per bucket.
//!
//! The engine's threads are plain threads, not async tasks: each call is run on the
//! store's own small runtime and waited for on a channel, which works from any thread,
//! an async worker's included, as a local file read does.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore as _, ObjectStoreExt as _, PutPayload, RetryConfig, WriteMultipart,
};

use super::{ObjectInfo, ObjectStore};
use crate::faults::fault;
use crate::repo::RepoError;

/// Objects larger than this go up in parts, several at once.
const MULTIPART_MIN: usize = 32 << 20;
const PART_LEN: usize = 8 << 20;
const PARTS_IN_FLIGHT: usize = 4;
/// Requests kept in flight by a backup's pack uploads and a restore's reads.
const PARALLEL_PUTS: usize = 4;
const PACK_TARGET_LEN: u64 = 16 << 20;

/// A bucket and the prefix the repository lives under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
}

impl std::fmt::Display for S3Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// How to reach the bucket: the `s3_*` config keys. Credentials come from the config
/// file or the usual `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`; they are never
/// printed (`Debug` hides them).
#[derive(Clone, Default)]
pub struct S3Settings {
    /// `http://host:port`; `None` is AWS itself.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.access_key_id.as_ref().map(|_| "…"))
            .finish()
    }
}

pub struct S3Store {
    location: S3Location,
    endpoint: String,
    client: Arc<AmazonS3>,
    /// Always `Some` until dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for S3Store {
    /// The last repository handle may go inside the server's own runtime: dropping a
    /// runtime there would panic, shutting it down in the background does not.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store({} at {})", self.location, self.endpoint)
    }
}

impl S3Store {
    pub fn open(location: &S3Location, settings: &S3Settings) -> Result<S3Store, RepoError> {
        // reqwest's rustls needs a process-wide crypto provider: ring, as tonic uses.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key_id = settings
            .access_key_id
            .clone()
            .or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret = settings
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let region = settings
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&location.bucket)
            .with_region(&region)
            .with_endpoint(&endpoint)
            .with_virtual_hosted_style_request(false)
            // The signature covers the headers, not a SHA-256 of every body: hashing each
            // pack on both sides costs CPU the backup needs, and every frame is verified
            // by its own blake3, every index and fingerprint object by its checksum.
            .with_unsigned_payload(true)
            // Transient errors (a gateway restarting, 500s while its volumes load) are
            // retried with backoff, but a dead endpoint fails the job within half a minute,
            // not after minutes.
            .with_retry(RetryConfig {
                max_retries: 10,
                retry_timeout: Duration::from_secs(30),
                ..Default::default()
            })
            .with_client_options(
                // In the client options, which replace the builder's own allow_http.
                ClientOptions::new()
                    .with_allow_http(endpoint.starts_with("http://"))
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(120)),
            );
        match (key_id, secret) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
            }
            // No credentials anywhere: anonymous requests (a bucket that allows them, or
            // a test server without identities), never a probe of the cloud's metadata.
            _ => builder = builder.with_skip_signature(true),
        }
        let client = builder.build().map_err(|e| RepoError::Remote {
            object: location.to_string(),
            endpoint: endpoint.clone(),
            reason: e.to_string(),
        })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("s3-client")
            .enable_all()
            .build()
            .map_err(|e| RepoError::io("s3 client runtime", e))?;
        Ok(S3Store {
            location: location.clone(),
            endpoint,
            client: Arc::new(client),
            runtime: Some(runtime),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        if self.location.prefix.is_empty() {
            ObjectPath::from(key)
        } else {
            ObjectPath::from(format!("{}/{key}", self.location.prefix))
        }
    }

    /// The key relative to the repository of a listed object.
    fn key_of(&self, path: &ObjectPath) -> String {
        let full = path.as_ref();
        match self.location.prefix.as_str() {
            "" => full.to_string(),
            prefix => full
                .strip_prefix(prefix)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(full)
                .to_string(),
        }
    }

    /// Runs `call` on the store's runtime and waits for it on this thread.
    fn run<T: Send + 'static>(
        &self,
        call: impl std::future::Future<Output = T> + Send + 'static,
    ) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if let Some(runtime) = &self.runtime {
            runtime.spawn(async move {
                // The caller may have gone (its job panicked): nobody to tell.
                let _ = tx.send(call.await);
            });
        }
        rx.recv().expect("the S3 client runtime dropped a call")
    }

    fn error(&self, key: &str, e: object_store::Error) -> RepoError {
        match e {
            object_store::Error::NotFound { .. } => RepoError::NotFound {
                object: self.describe(key),
            },
            other => RepoError::Remote {
                object: self.describe(key),
                endpoint: self.endpoint.clone(),
                reason: other.to_string(),
            },
        }
    }
}

impl ObjectStore for S3Store {
    fn put(&self, key: &str, payload: bytes::Bytes) -> Result<(), RepoError> {
        fault!("repo.s3.put", |e| RepoError::io(self.describe(key), e));
        let (client, path) = (self.client.clone(), self.path(key));
        let outcome = if payload.len() < MULTIPART_MIN {
            self.run(async move {
                client
                    .put(&path, PutPayload::from_bytes(payload))
                    .await
                    .map(drop)
            })
        } else {
            self.run(async move {
                let upload = client.put_multipart(&path).await?;
                let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_LEN);
                for chunk in payload.chunks(PART_LEN) {
                    parts.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                    parts.put(payload.slice_ref(chunk));
                }
                parts.finish().await.map(drop)
            })
        };
        outcome.map_err(|e| self.error(key, e))
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, RepoError> {
        let (client, path) = (self.client.clone(), self.path(key));
        self.run(async move { client.get(&path).await?.bytes().await })
            .map(|b| b.to_vec())
            .map_err(|e| self.error(key, e))
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, RepoError> {
        let want = range.end - range.start;
        let (client, path) = (self.client.clone(), self.path(key));
        let bytes = self
            .run(async move { client.get_range(&path, range).await })
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => self.error(key, e),
                // A range past the end: the object is shorter than an index says.
                e if e.to_string().contains("Range") || e.to_string().contains("range") => {
                    RepoError::corrupt(
                        self.describe(key),
                        format!("shorter than its index says: {e}"),
                    )
                }
                e => self.error(key, e),
            })?;
        if bytes.len() as u64 != want {
            return Err(RepoError::corrupt(
                self.describe(key),
                "shorter than its index says",
            ));
        }
        Ok(bytes.to_vec())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, RepoError> {
        let client = self.client.clone();
        let path = self.path(prefix.trim_end_matches('/'));
        let listed: Vec<_> = self
            .run(async move {
                client
                    .list(Some(&path))
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(|e| self.error(prefix, e))?;
        let mut out: Vec<ObjectInfo> = listed
            .into_iter()
            .map(|meta| ObjectInfo {
                key: self.key_of(&meta.location),
                size: meta.size,
                modified: Some(SystemTime::from(meta.last_modified)),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), RepoError> {
        fault!("repo.s3.delete", |e| RepoError::io(self.describe(key), e));
        let (client, path) = (self.client.clone(), self.path(key));
        match self.run(async move { client.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn append_log(&self, key: &str, line: &str) -> Result<(), RepoError> {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let entry = format!("{key}.d/{nanos:020}-{:08x}", rand::random::<u32>());
        self.put(&entry, bytes::Bytes::from(format!("{line}\n")))
    }

    fn read_log(&self, key: &str) -> Result<String, RepoError> {
        let mut text = String::new();
        for entry in self.list(&format!("{key}.d/"))? {
            text.push_str(&String::from_utf8_lossy(&self.get(&entry.key)?));
        }
        Ok(text)
    }

    fn describe(&self, key: &str) -> String {
        format!("{}/{key}", self.location)
    }

    fn location(&self) -> String {
        self.location.to_string()
    }

    fn requests_in_flight(&self) -> usize {
        PARALLEL_PUTS
    }

    fn coalesce_gap(&self) -> u64 {
        1 << 20
    }

    fn pack_target_len(&self) -> u64 {
        PACK_TARGET_LEN
    }
}
