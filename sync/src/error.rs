//! The sync crate's one error enum, named by what the caller does.

/// What went wrong in the sync layer (sink failures are per-write values, not errors).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The local store failed: retry the pass later, or halt if it persists.
    #[error("store: {0}")]
    Store(#[from] athena_storage::StoreError),
    /// A blocking task panicked or was cancelled: a bug; restart the worker.
    #[error("worker task failed: {0}")]
    Task(String),
    /// A sink could not be built from the configuration: fix the configuration.
    #[error("sink configuration: {0}")]
    Config(String),
}
