//! Every redb table of the store, with its key layout. Record tables hold codec-encoded values
//! (header + checksum); index tables hold only keys.
//!
//! Memory ids are ULIDs stored as `u128`, so id order is creation-time order.

use redb::TableDefinition;

/// Schema version of this build. A store of an older version this build knows is upgraded
/// when it is opened ([`UPGRADABLE_FROM`]); any other version refuses to open.
///
/// - 1: outbox rows carry JSON copies of the records they mirror.
/// - 2: an outbox row for a memory refers to the stored record
///   ([`crate::outbox::OutboxOp::Stored`]); rows of version 1 still read as they are,
///   so the upgrade only marks the store (an older build would not read the new rows).
pub const SCHEMA_VERSION: u32 = 2;
/// The older schema versions a store is upgraded from on open.
pub const UPGRADABLE_FROM: &[u32] = &[1];
/// Value of the `format` meta key that marks a redb file as an Athena store.
pub const FORMAT_MARK: &[u8] = b"athena-store";

/// Memories (hot and warm): id → record.
pub const MEMORIES: TableDefinition<u128, &[u8]> = TableDefinition::new("memories");
/// Index: (category, created ms, id).
pub const MEM_BY_CATEGORY: TableDefinition<(u8, u64, u128), ()> =
    TableDefinition::new("idx_memory_category_time");
/// Index: (pool, created ms, id).
pub const MEM_BY_POOL: TableDefinition<(&str, u64, u128), ()> =
    TableDefinition::new("idx_memory_pool_time");
/// Index: (pattern key, id).
pub const MEM_BY_PATTERN: TableDefinition<(&str, u128), ()> =
    TableDefinition::new("idx_memory_pattern");
/// Cold-tier index entries: id → entry (the record lives in an object-store segment).
pub const COLD_INDEX: TableDefinition<u128, &[u8]> = TableDefinition::new("cold_index");
/// Cold segments: segment id → segment info (Bloom filter, time range, object path).
pub const COLD_SEGMENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("cold_segments");
/// Positions: position id → record.
pub const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");
/// Ledger: seq → entry.
pub const LEDGER: TableDefinition<u64, &[u8]> = TableDefinition::new("ledger");
/// Pending intents (chain transactions written before broadcast): intent id → record.
pub const INTENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("intents");
/// Risk, breaker and trading state: name → record.
pub const RISK: TableDefinition<&str, &[u8]> = TableDefinition::new("risk_state");
/// Journal (append-only audit): seq → entry.
pub const JOURNAL: TableDefinition<u64, &[u8]> = TableDefinition::new("journal");
/// The agent's own state (cash, tick, observation start, learning): name → record.
pub const AGENT: TableDefinition<&str, &[u8]> = TableDefinition::new("agent_state");
/// The Firestore collection of checkpoint entries (the record of [`CHECKPOINTS`] as a
/// document), written by the agent's checkpoints and compared by `athena sync verify`.
pub const CHECKPOINT_COLLECTION: &str = "checkpoints";
/// The object-store directory of checkpoint files (`checkpoints/<file>`).
pub const CHECKPOINT_OBJECT_DIR: &str = "checkpoints";
/// Checkpoints: checkpoint id → record.
pub const CHECKPOINTS: TableDefinition<&str, &[u8]> = TableDefinition::new("checkpoints");
/// Outbox: seq → row to push to the cloud.
pub const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox");
/// Dead letters: seq → row the cloud rejected for good.
pub const DEAD_LETTERS: TableDefinition<u64, &[u8]> = TableDefinition::new("dead_letters");
/// LLM answer cache: key digest → entry.
pub const LLM_CACHE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("llm_cache");
/// Meta: schema version, format mark, dictionaries, counters, marks.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// Record tables keyed by a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedTable {
    /// [`POSITIONS`]
    Positions,
    /// [`INTENTS`]
    Intents,
    /// [`RISK`]
    Risk,
    /// [`CHECKPOINTS`]
    Checkpoints,
    /// [`AGENT`]
    Agent,
}

impl KeyedTable {
    /// Every string-keyed record table.
    pub const ALL: [Self; 5] = [
        Self::Positions,
        Self::Intents,
        Self::Risk,
        Self::Checkpoints,
        Self::Agent,
    ];

    pub(crate) fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Self::Positions => POSITIONS,
            Self::Intents => INTENTS,
            Self::Risk => RISK,
            Self::Checkpoints => CHECKPOINTS,
            Self::Agent => AGENT,
        }
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Positions => "positions",
            Self::Intents => "intents",
            Self::Risk => "risk_state",
            Self::Checkpoints => "checkpoints",
            Self::Agent => "agent_state",
        }
    }

    /// How records are compressed: the agent's and the risk engine's state and the open
    /// positions are rewritten every tick, so they are stored plain (compressing them was
    /// most of a tick's CPU); the rest with zstd and the kind's dictionary once trained.
    pub(crate) fn compression(self) -> crate::codec::Compression {
        match self {
            Self::Risk | Self::Agent | Self::Positions => crate::codec::Compression::None,
            Self::Intents | Self::Checkpoints => crate::codec::Compression::ZstdDict,
        }
    }

    pub(crate) fn kind(self) -> crate::codec::RecordKind {
        use crate::codec::RecordKind as K;
        match self {
            Self::Positions => K::Position,
            Self::Intents => K::Intent,
            Self::Risk => K::Risk,
            Self::Checkpoints => K::Checkpoint,
            Self::Agent => K::Agent,
        }
    }
}

/// Append-only record tables keyed by a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqTable {
    /// [`LEDGER`]
    Ledger,
    /// [`JOURNAL`]
    Journal,
    /// [`DEAD_LETTERS`]
    DeadLetters,
    /// [`OUTBOX`]
    Outbox,
}

impl SeqTable {
    /// Every sequence table.
    pub const ALL: [Self; 4] = [Self::Ledger, Self::Journal, Self::DeadLetters, Self::Outbox];

    pub(crate) fn def(self) -> TableDefinition<'static, u64, &'static [u8]> {
        match self {
            Self::Ledger => LEDGER,
            Self::Journal => JOURNAL,
            Self::DeadLetters => DEAD_LETTERS,
            Self::Outbox => OUTBOX,
        }
    }

    /// The table's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ledger => "ledger",
            Self::Journal => "journal",
            Self::DeadLetters => "dead_letters",
            Self::Outbox => "outbox",
        }
    }

    pub(crate) fn kind(self) -> crate::codec::RecordKind {
        use crate::codec::RecordKind as K;
        match self {
            Self::Ledger => K::Ledger,
            Self::Journal => K::Journal,
            Self::DeadLetters => K::DeadLetter,
            Self::Outbox => K::Outbox,
        }
    }

    /// How rows are compressed: outbox rows are transient (and blobs are compressed already),
    /// so they are stored plain; the rest with zstd and the kind's dictionary once trained.
    pub(crate) fn compression(self) -> crate::codec::Compression {
        match self {
            Self::Outbox => crate::codec::Compression::None,
            _ => crate::codec::Compression::ZstdDict,
        }
    }

    /// Meta key of this table's next sequence number (never reused, even after deletes).
    pub fn counter_key(self) -> &'static str {
        match self {
            Self::Ledger => "seq/ledger",
            Self::Journal => "seq/journal",
            Self::DeadLetters => "seq/dead_letters",
            Self::Outbox => "seq/outbox",
        }
    }
}
