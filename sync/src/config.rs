//! Sinks built from the `[sync]` configuration.

use crate::error::SyncError;
use crate::firestore_sink::FirestoreSink;
use crate::object_sink::ObjectStoreSink;
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
        let s = &config.sync;
        let firestore = match s.documents {
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
        };
        let documents: Arc<dyn Sink> = match &firestore {
            Some(f) => f.clone(),
            None => Arc::new(NoneSink(SinkRole::Documents)),
        };
        let object_store = if s.object_store_url.is_empty() {
            None
        } else {
            Some(Arc::new(ObjectStoreSink::from_url(
                &s.object_store_url,
                &config.agent.data_dir,
                &config.agent.agent_id,
            )?))
        };
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
