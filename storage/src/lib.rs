//! Athena's local store (redb): the codec, the tables, tiered agent memory with pruning and
//! recall, positions/ledger/intents/risk/journal/checkpoint records, the outbox, dead letters
//! and the LLM cache; and the workspace's seeded random number generator ([`Rng`]).
//!
//! Invariants (see ARCHITECTURE.md):
//! - one write path, [`Store::write`]: a change that must reach the cloud appends its outbox row
//!   in the same redb write transaction;
//! - every stored record carries a format version and a checksum ([`codec`]);
//! - the store knows nothing of the cloud, HTTP or LLMs;
//! - calls block on disk: async callers use a writer thread or `spawn_blocking`.

pub mod codec;
pub mod dictionary;
mod error;
pub mod memory;
pub mod outbox;
mod overlay;
pub mod rng;
pub mod scrub;
mod store;
pub mod tables;
mod verify;

pub use codec::{Codec, CodecError, Compression, RecordKind};
pub use error::{Result, StoreError};
pub use memory::cold::{ArchivedMemory, ColdEntry, ColdRecall, SegmentFetcher, SegmentInfo};
pub use memory::prune::PruneReport;
pub use memory::recall::{RecallQuery, RecallStats};
pub use memory::stats::{MemoryStats, TierCounts};
pub use memory::{Category, Memory, MemoryType, Metadata, Source, Tier};
pub use outbox::{
    DeadLetter, OutboxOp, OutboxRow, StoredRecord, has_document, observation_pack_path,
};
pub use rng::Rng;
pub use scrub::{ScrubCursor, ScrubSlice};
pub use store::{
    ALREADY_OPEN, CloudChanges, NEEDS_REPAIR, OpenReport, ReadTx, STORE_FILE, Store, TableStat,
    WriteTx,
};
pub use tables::{KeyedTable, SeqTable};
pub use verify::{CorruptRecord, VerifyReport, hex};
