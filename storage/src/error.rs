//! The storage crate's one error enum. Variants are named by what the caller does about them.

use std::path::PathBuf;

/// What went wrong in the store, by what the caller should do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file is not an Athena store, or is of another schema version: refuse to start.
    #[error("refusing to open {path}: {reason}")]
    Refused {
        /// The store file.
        path: PathBuf,
        /// Why, in one sentence an operator can act on.
        reason: String,
    },
    /// A stored record failed its checksum or could not be decoded: quarantine, trip
    /// memory_corruption, name the key.
    #[error("corrupt record in table {table} at key {key}: {reason}")]
    Corrupt {
        /// Table name.
        table: &'static str,
        /// Key, rendered for an operator.
        key: String,
        /// What failed (checksum, header, decode, missing dictionary).
        reason: String,
    },
    /// Input the store refuses (unknown category, bad id, over-long value): reject it.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A requested record does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// redb failed (I/O, disk full, lock held by another process): retry or halt.
    #[error("storage failure: {0}")]
    Storage(#[from] redb::Error),
    /// A cold segment could not be fetched from the object store: retry later.
    #[error("cold segment {segment} unavailable: {reason}")]
    SegmentUnavailable {
        /// Segment id.
        segment: String,
        /// Why.
        reason: String,
    },
    /// The caller's closure inside a write transaction failed; nothing was committed.
    #[error("transaction aborted: {0}")]
    Aborted(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl StoreError {
    /// Whether the file could not be read or written (disk full, an I/O error, a file system
    /// remounted read-only). redb refuses every later write until the database is closed and
    /// opened again, so the caller stops writing, closes the store and reopens it with backoff;
    /// it is never a reason to quarantine the file.
    pub fn needs_reopen(&self) -> bool {
        matches!(
            self,
            StoreError::Storage(
                redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed
            )
        )
    }

    /// Whether redb read past the end of its file: its own page pointers lead outside it, so
    /// the file is damaged (overwritten pages, or cut short), not the disk failing. It comes
    /// as an I/O error (`UnexpectedEof`), yet reopening cannot help: a start treats it as a
    /// damaged store, quarantines the file and restores.
    pub fn read_past_end(&self) -> bool {
        matches!(
            self,
            StoreError::Storage(redb::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof
        )
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
