//! Sinks built from the `[sync]` configuration.

use crate::error::SyncError;
use crate::firestore_sink::FirestoreSink;
use crate::object_sink::ObjectStoreSink;
use crate::reconnect::{Build, Reconnecting};
use crate::sink::{NoneSink, Sink, SinkRole};
use athena_config::{Config, DocumentSink};
use std::sync::Arc;

/// The document and object sinks the configuration names.
pub struct Sinks {
    /// Where documents go (Firestore or none).
    pub documents: Arc<dyn Sink>,
    /// Where objects go (an object store or none).
    pub objects: Arc<dyn Sink>,
    /// The object store, when one is configured (cold recall reads segments from it).
    pub object_store: Option<Arc<ObjectStoreSink>>,
    /// The Firestore sink, when documents go to Firestore (`sync verify` reads from it).
    pub firestore: Option<Arc<FirestoreSink>>,
}

impl Sinks {
    /// Builds the sinks of `config` (connecting to Firestore when it is configured).
    pub async fn from_config(config: &Config) -> Result<Self, SyncError> {
        let firestore = firestore_sink(config).await?;
        let documents: Arc<dyn Sink> = match &firestore {
            Some(f) => f.clone(),
            None => Arc::new(NoneSink(SinkRole::Documents)),
        };
        let object_store = object_store_sink(config)?;
        let objects: Arc<dyn Sink> = match &object_store {
            Some(o) => o.clone(),
            None => Arc::new(NoneSink(SinkRole::Objects)),
        };
        Ok(Self {
            documents,
            objects,
            object_store,
            firestore,
        })
    }
}

/// The Firestore sink, when documents go to Firestore.
async fn firestore_sink(config: &Config) -> Result<Option<Arc<FirestoreSink>>, SyncError> {
    let s = &config.sync;
    Ok(match s.documents {
        DocumentSink::None => None,
        DocumentSink::Firestore => Some(Arc::new(
            FirestoreSink::connect_with_cache(
                &s.firestore_project,
                &s.firestore_database,
                &config.agent.agent_id,
                s.read_cache_entries,
                s.read_cache_ttl,
            )
            .await?,
        )),
    })
}

/// The object-store sink, when `sync.object_store_url` names one.
fn object_store_sink(config: &Config) -> Result<Option<Arc<ObjectStoreSink>>, SyncError> {
    let s = &config.sync;
    if s.object_store_url.is_empty() {
        return Ok(None);
    }
    Ok(Some(Arc::new(ObjectStoreSink::from_url(
        &s.object_store_url,
        &config.agent.data_dir,
        &config.agent.agent_id,
    )?)))
}

/// The sinks of the running agent's worker: each one that cannot be built now (the cloud
/// unreachable at start) is built again in the background ([`Reconnecting`]).
pub struct WorkerSinks {
    /// Where documents go.
    pub documents: Arc<dyn Sink>,
    /// Where objects go.
    pub objects: Arc<dyn Sink>,
    /// Each sink not built yet, with why, in one line.
    pub not_connected: Vec<(String, String)>,
}

impl WorkerSinks {
    /// Builds the sinks of `config`; one that fails to build is retried by its first pushes.
    pub async fn connect(config: &Config) -> Self {
        let cfg = Arc::new(config.clone());
        let documents: Build = Arc::new({
            let cfg = cfg.clone();
            move || {
                let cfg = cfg.clone();
                Box::pin(async move { document_sink(&cfg).await })
            }
        });
        let objects: Build = Arc::new(move || {
            let cfg = cfg.clone();
            Box::pin(async move { object_sink(&cfg) })
        });
        let mut not_connected = Vec::new();
        let mut built = Vec::new();
        for (build, role) in [
            (documents, SinkRole::Documents),
            (objects, SinkRole::Objects),
        ] {
            let sink: Arc<dyn Sink> = match build().await {
                Ok(sink) => sink,
                Err(e) => {
                    let name = sink_name(config, role);
                    not_connected.push((name.to_string(), e.to_string()));
                    Arc::new(Reconnecting::new(name, role, build))
                }
            };
            built.push(sink);
        }
        let objects = built.pop().expect("two sinks");
        let documents = built.pop().expect("two sinks");
        Self {
            documents,
            objects,
            not_connected,
        }
    }
}

/// The name the sink of `role` will have (before it is built).
fn sink_name(config: &Config, role: SinkRole) -> &str {
    let s = &config.sync;
    match role {
        SinkRole::Documents => match s.documents {
            DocumentSink::None => "none",
            DocumentSink::Firestore => "firestore",
        },
        SinkRole::Objects => match s.object_store_url.split_once("://") {
            _ if s.object_store_url.is_empty() => "none",
            Some(("file", _)) => "local",
            Some((scheme, _)) => scheme,
            None => "objects",
        },
    }
}

async fn document_sink(config: &Config) -> Result<Arc<dyn Sink>, SyncError> {
    Ok(match firestore_sink(config).await? {
        Some(f) => f,
        None => Arc::new(NoneSink(SinkRole::Documents)),
    })
}

fn object_sink(config: &Config) -> Result<Arc<dyn Sink>, SyncError> {
    Ok(match object_store_sink(config)? {
        Some(o) => o,
        None => Arc::new(NoneSink(SinkRole::Objects)),
    })
}
