//! The sink seam: where coalesced writes go (Firestore, an object store, nowhere).
//!
//! A push returns one result per write, each failure with an [`ErrorKind`] the worker decides
//! on; never by the text of a message. Remote keys are idempotent: re-sending a write after a
//! crash rewrites the same document or object.

use crate::coalesce::Write;
use std::fmt;

/// What kind of failure a write met, which decides what the worker does with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Network trouble, timeouts, server errors: retry with backoff.
    Transient,
    /// The service asked to slow down: retry with backoff, and lower the write rate.
    RateLimited,
    /// A conflict meaning the write was already applied (e.g. the object exists with this
    /// content): count it as delivered.
    AlreadyApplied,
    /// Credentials missing or refused: retry with backoff and alert (an operator must act).
    Unauthorized,
    /// The service will never accept this write (e.g. a document over 1 MiB): dead-letter it.
    Permanent,
    /// The write is malformed (a bug on our side): dead-letter it.
    Invalid,
}

impl ErrorKind {
    /// Whether the write should be sent again later.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::Transient | Self::RateLimited | Self::Unauthorized
        )
    }
}

/// A failed write: its kind and a detail for the log and the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkError {
    /// What the worker does about it.
    pub kind: ErrorKind,
    /// What happened, for operators.
    pub detail: String,
}

impl SinkError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.detail)
    }
}

impl std::error::Error for SinkError {}

/// The result of one write of a push.
pub type WriteResult = Result<(), SinkError>;

/// Which writes a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkRole {
    /// Documents (upserts, increments, deletes).
    Documents,
    /// Objects (blobs).
    Objects,
}

/// A destination for coalesced writes.
#[async_trait::async_trait]
pub trait Sink: Send + Sync {
    /// A short name for logs, metrics and cursors (`firestore`, `gcs`, `local`, `none`).
    fn name(&self) -> &str;

    /// Which writes it takes.
    fn role(&self) -> SinkRole;

    /// Pushes a batch; returns one result per write, in order. A whole-batch failure (the
    /// service unreachable) is reported as the same error for every write.
    async fn push(&self, writes: &[Write]) -> Vec<WriteResult>;
}

/// The `none` sink: accepts every write and sends nothing (sync switched off for that role).
pub struct NoneSink(pub SinkRole);

#[async_trait::async_trait]
impl Sink for NoneSink {
    fn name(&self) -> &str {
        "none"
    }

    fn role(&self) -> SinkRole {
        self.0
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        writes.iter().map(|_| Ok(())).collect()
    }
}
