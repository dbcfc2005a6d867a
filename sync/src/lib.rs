//! Athena's sync layer: the outbox drained to the cloud in the background.
//!
//! Invariants (ARCHITECTURE.md): delivery is at-least-once with idempotent remote keys; outbox
//! rows are removed only after their sink confirmed them; rejected rows go to the dead-letter
//! table, never nowhere; sync never writes domain state.
//!

pub mod batch;
pub mod coalesce;
pub mod compact;
mod config;
pub mod counting_sink;
mod error;
pub mod firestore_sink;
pub mod manifest;
pub mod memory_sink;
pub mod object_sink;
pub mod pace;
pub mod read_cache;
pub mod reconnect;
pub mod sink;
pub mod status;
pub mod verify;
pub mod worker;

pub use coalesce::{Coalesced, Increments, State, Unsendable, Write, coalesce};
pub use compact::{CompactReport, compact_outbox};
pub use config::{Sinks, WorkerSinks};
pub use counting_sink::{CountingSink, Sent};
pub use error::{SyncError, one_line};
pub use firestore_sink::{FirestoreSink, RequestCounts};
pub use manifest::{MANIFEST_PATH, Manifest, ManifestChange, ManifestEntry, ManifestError};
pub use memory_sink::MemorySink;
pub use object_sink::{BlockingFetcher, ObjectStoreSink};
pub use sink::{ErrorKind, NoneSink, Sink, SinkError, SinkRole, WriteResult};
pub use status::{SyncStatus, status};
pub use verify::{Difference, VerifyReport, verify};
pub use worker::{PassReport, SyncCounters, Worker};
