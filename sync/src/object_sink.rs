//! The object-store sink: checkpoints and cold memory segments as objects under
//! `{prefix}/{agent_id}/…`, through `object_store` (GCS in production; a local directory as the
//! embedded default; S3 and Azure by URL scheme). It also serves cold-tier recall as the
//! storage crate's [`SegmentFetcher`].
//!
//! Puts are idempotent (same path, same bytes); deleting an object that is already gone counts
//! as already applied. After each batch the [`Manifest`] is updated with a conditional write;
//! the batch's writes are confirmed only once the manifest lists them, so a failed manifest
//! update sends them (idempotently) again.

use crate::coalesce::Write;
use crate::error::SyncError;
use crate::manifest::{MANIFEST_PATH, Manifest, ManifestChange, ManifestEntry};
use crate::sink::{ErrorKind, Sink, SinkError, SinkRole, WriteResult};
use athena_storage::SegmentFetcher;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use std::path::Path;
use std::sync::Arc;

/// Writes sent at once.
const CONCURRENCY: usize = 8;

/// Conditional manifest updates tried before the batch is left for a retry (the worker then
/// retries the batch with its own backoff).
const MANIFEST_ATTEMPTS: u64 = 16;

/// Retries inside `object_store` for cloud backends: few and short, because the worker retries
/// with its own backoff and must notice an outage quickly.
fn cloud_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: std::time::Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

/// A sink over any `object_store` backend.
pub struct ObjectStoreSink {
    name: String,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// Draws how long a manifest update that lost a race steps aside. Seeded by the process
    /// and the prefix: two writers of one manifest must not step aside in lockstep, and the
    /// wait changes only how often a racer retries, never what is written.
    step_aside: std::sync::Mutex<athena_storage::Rng>,
}

impl ObjectStoreSink {
    /// A sink over `store`, writing under `prefix`.
    pub fn new(name: &str, store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            name: name.to_string(),
            store,
            prefix: ObjectPath::from(prefix),
            step_aside: std::sync::Mutex::new(athena_storage::Rng::stream(
                u64::from(std::process::id()),
                prefix,
            )),
        }
    }

    /// Builds the sink the `sync.object_store_url` names: `file://DIR` (a relative DIR resolves
    /// against `data_dir`), `gs://BUCKET[/PREFIX]`, `s3://…`, `az://…` (credentials from the
    /// standard environment variables of each cloud). Objects go under `PREFIX/agent_id`.
    pub fn from_url(url: &str, data_dir: &Path, agent_id: &str) -> Result<Self, SyncError> {
        let bad = |why: String| SyncError::Config(format!("sync.object_store_url {url:?}: {why}"));
        if let Some(dir) = url.strip_prefix("file://") {
            let dir = if Path::new(dir).is_absolute() {
                Path::new(dir).to_path_buf()
            } else {
                data_dir.join(dir)
            };
            std::fs::create_dir_all(&dir)
                .map_err(|e| bad(format!("cannot create {}: {e}", dir.display())))?;
            let local = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Self::new("local", Arc::new(local), agent_id));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected SCHEME://".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket is missing".into()));
        }
        let base = format!("{scheme}://{bucket}");
        let store: Arc<dyn ObjectStore> = match scheme {
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(&base)
                    .with_retry(cloud_retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "s3" => Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_url(&base)
                    .with_retry(cloud_retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(&base)
                    .with_retry(cloud_retry())
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => return Err(bad(format!("unsupported scheme {other}"))),
        };
        let prefix = [prefix.trim_matches('/'), agent_id]
            .iter()
            .filter(|p| !p.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self::new(scheme, store, &prefix))
    }

    fn location(&self, path: &str) -> ObjectPath {
        ObjectPath::from(format!("{}/{}", self.prefix, path.trim_start_matches('/')))
    }

    /// Reads the object at `path` under the agent's prefix.
    pub async fn get(&self, path: &str) -> Result<bytes::Bytes, SinkError> {
        let got = self
            .store
            .get(&self.location(path))
            .await
            .map_err(classify)?;
        got.bytes().await.map_err(classify)
    }

    /// The manifest as stored (an empty one when none exists yet).
    pub async fn manifest(&self) -> Result<Manifest, SinkError> {
        match self.store.get(&self.location(MANIFEST_PATH)).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(classify)?;
                Manifest::decode(&bytes)
                    .map_err(|e| SinkError::new(ErrorKind::Permanent, e.to_string()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Manifest::default()),
            Err(e) => Err(classify(e)),
        }
    }

    /// Rebuilds the manifest from the objects under the prefix (when the stored one is
    /// unreadable): lists them and hashes each.
    async fn rebuild_manifest(&self) -> Result<Manifest, SinkError> {
        let mut manifest = Manifest::default();
        let mut listing = self.store.list(Some(&self.prefix));
        let prefix_len = self.prefix.as_ref().len() + 1;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(classify)?;
            let path =
                meta.location.as_ref()[prefix_len.min(meta.location.as_ref().len())..].to_string();
            if path == MANIFEST_PATH {
                continue;
            }
            let bytes = self.get(&path).await?;
            manifest.objects.insert(path, ManifestEntry::of(&bytes));
        }
        Ok(manifest)
    }

    /// Uniform in [0, n): how many milliseconds (per attempt) a racer steps aside.
    fn step_aside_draw(&self, n: u64) -> u64 {
        let mut rng = self.step_aside.lock().unwrap_or_else(|p| p.into_inner());
        rng.below(n)
    }

    /// Applies `changes` to the stored manifest with a conditional write, retrying when
    /// another writer changed it in between.
    async fn update_manifest(&self, changes: &[ManifestChange]) -> Result<(), SinkError> {
        use object_store::Error as E;
        let location = self.location(MANIFEST_PATH);
        for attempt in 0..MANIFEST_ATTEMPTS {
            if attempt > 0 {
                // Another writer won the race: step aside for a random, growing moment.
                let ms = (1 + self.step_aside_draw(20)) * attempt;
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            let (mut manifest, mode) = match self.store.get(&location).await {
                Ok(got) => {
                    let version = UpdateVersion {
                        e_tag: got.meta.e_tag.clone(),
                        version: got.meta.version.clone(),
                    };
                    let bytes = got.bytes().await.map_err(classify)?;
                    let manifest = match Manifest::decode(&bytes) {
                        Ok(m) => m,
                        Err(why) => {
                            tracing::error!(sink = %self.name, %why, "the manifest is unreadable; rebuilding it from the objects");
                            self.rebuild_manifest().await?
                        }
                    };
                    (manifest, PutMode::Update(version))
                }
                Err(E::NotFound { .. }) => (Manifest::default(), PutMode::Create),
                Err(e) => return Err(classify(e)),
            };
            manifest.apply(changes);
            let payload = PutPayload::from(manifest.encode());
            let conditional = PutOptions::from(mode.clone());
            match self
                .store
                .put_opts(&location, payload.clone(), conditional)
                .await
            {
                Ok(_) => return Ok(()),
                // Someone else changed it since we read it: read again.
                Err(E::Precondition { .. } | E::AlreadyExists { .. }) => continue,
                // A backend without conditional updates (the local directory, one writer).
                Err(E::NotImplemented { .. }) if matches!(mode, PutMode::Update(_)) => {
                    return self
                        .store
                        .put(&location, payload)
                        .await
                        .map(|_| ())
                        .map_err(classify);
                }
                Err(e) => return Err(classify(e)),
            }
        }
        Err(SinkError::new(
            ErrorKind::Transient,
            format!("the manifest kept changing under us ({MANIFEST_ATTEMPTS} attempts)"),
        ))
    }

    async fn apply(&self, w: &Write) -> WriteResult {
        match w {
            Write::PutBlob { path, bytes } => self
                .store
                .put(&self.location(path), PutPayload::from(bytes.clone()))
                .await
                .map(|_| ())
                .map_err(classify),
            Write::DeleteBlob { path } => match self.store.delete(&self.location(path)).await {
                Err(object_store::Error::NotFound { .. }) => Ok(()),
                other => other.map_err(classify),
            },
            other => Err(SinkError::new(
                ErrorKind::Invalid,
                format!("object sink got a document write for {}", other.key_hint()),
            )),
        }
    }
}

/// Maps an `object_store` error to what the worker should do.
fn classify(e: object_store::Error) -> SinkError {
    use object_store::Error as E;
    let kind = match &e {
        E::AlreadyExists { .. } | E::NotModified { .. } => ErrorKind::AlreadyApplied,
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => ErrorKind::Unauthorized,
        E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::UnknownConfigurationKey { .. } => ErrorKind::Invalid,
        E::NotFound { .. } | E::Precondition { .. } => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    SinkError::new(kind, e.to_string())
}

#[async_trait::async_trait]
impl Sink for ObjectStoreSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn role(&self) -> SinkRole {
        SinkRole::Objects
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        // Concurrent, with results kept in write order.
        let pending: Vec<_> = writes.iter().map(|w| self.apply(w)).collect();
        let mut results: Vec<WriteResult> = futures::stream::iter(pending)
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let changes: Vec<ManifestChange> = writes
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_ok())
            .filter_map(|(w, _)| match w {
                Write::PutBlob { path, bytes } => {
                    Some(ManifestChange::Put(path.clone(), ManifestEntry::of(bytes)))
                }
                Write::DeleteBlob { path } => Some(ManifestChange::Delete(path.clone())),
                _ => None,
            })
            .collect();
        if changes.is_empty() {
            return results;
        }
        if let Err(e) = self.update_manifest(&changes).await {
            // Not confirmed until the manifest lists them: the worker sends them again.
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(SinkError::new(
                    e.kind,
                    format!(
                        "object written but the manifest update failed: {}",
                        e.detail
                    ),
                ));
            }
        }
        results
    }
}

/// Cold-tier recall reads segments through this. It blocks on the runtime it was made on, so
/// call it from a blocking thread (`spawn_blocking`), never from an async task.
pub struct BlockingFetcher {
    sink: Arc<ObjectStoreSink>,
    runtime: tokio::runtime::Handle,
}

impl BlockingFetcher {
    /// A fetcher reading through `sink` on the current runtime.
    pub fn new(sink: Arc<ObjectStoreSink>) -> Self {
        Self {
            sink,
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl SegmentFetcher for BlockingFetcher {
    fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        self.runtime
            .block_on(self.sink.get(path))
            .map(|b| b.to_vec())
            .map_err(|e| e.to_string())
    }
}
