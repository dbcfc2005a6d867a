//! What `athena sync status` shows: the outbox (depth, oldest unsynced change, cursor and lag
//! per sink role), dead letters, and counters the worker keeps in the store's meta table in the
//! same transaction as its acknowledgements (so they survive restarts and are readable from
//! another process).

use crate::worker::PassReport;
use athena_storage::{KeyedTable, SeqTable, Store, StoreError, WriteTx};
use serde::{Deserialize, Serialize};

/// Firestore list price per document write, USD (used for the cost estimate).
pub const FIRESTORE_WRITE_USD: f64 = 0.18 / 100_000.0;
/// GCS list price per class A operation (object write), USD.
pub const GCS_WRITE_USD: f64 = 0.005 / 1_000.0;

const K_DELIVERED: &str = "sync/rows_delivered";
const K_COALESCED: &str = "sync/rows_coalesced";
const K_DEAD: &str = "sync/rows_dead_lettered";
const K_DOC_WRITES: &str = "sync/document_writes";
const K_OBJ_WRITES: &str = "sync/object_writes";
const K_COMPACTED: &str = "sync/rows_compacted";
const K_LAST_PASS: &str = "sync/last_pass_ms";

/// Adds a pass's counts to the persisted counters (inside the pass's ack transaction).
pub(crate) fn record_pass(
    w: &mut WriteTx<'_>,
    r: &PassReport,
    now_ms: u64,
) -> Result<(), StoreError> {
    w.add_meta_u64(K_DELIVERED, r.delivered as u64)?;
    w.add_meta_u64(K_COALESCED, r.coalesced as u64)?;
    w.add_meta_u64(K_DEAD, r.dead_lettered as u64)?;
    w.add_meta_u64(K_DOC_WRITES, r.document_writes as u64)?;
    w.add_meta_u64(K_OBJ_WRITES, r.object_writes as u64)?;
    w.set_meta_u64(K_LAST_PASS, now_ms)
}

/// Where the worker keeps its [`SyncHealth`] (the agent table, beside the agent's state).
const HEALTH_KEY: &str = "sync_health";

/// Whether the sinks are taking writes: consecutive failed passes, since when, and the last
/// error in one line. All zero and empty while sync works.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncHealth {
    /// Passes in a row that left rows for a retry because a sink failed (0: sync works).
    pub consecutive_failures: u64,
    /// When the first of them ran, agent time ms (0: not failing).
    pub failing_since_ms: u64,
    /// The last failure, one line (kept after a recovery, for the record).
    pub last_error: String,
    /// When it happened, agent time ms.
    pub last_error_ms: u64,
}

impl SyncHealth {
    /// A failed pass at `now_ms` with `error`.
    pub fn failed(&mut self, error: String, now_ms: u64) {
        if self.consecutive_failures == 0 {
            self.failing_since_ms = now_ms;
        }
        self.consecutive_failures += 1;
        self.last_error = error;
        self.last_error_ms = now_ms;
    }

    /// A pass that delivered, or found nothing to do. Returns whether this ended a failure.
    pub fn recovered(&mut self) -> bool {
        let was_failing = self.consecutive_failures > 0;
        self.consecutive_failures = 0;
        self.failing_since_ms = 0;
        was_failing
    }

    /// The health kept in `store` (the default when none was written yet).
    pub fn load(store: &Store) -> Result<Self, StoreError> {
        store
            .read(|r| r.get(KeyedTable::Agent, HEALTH_KEY))
            .map(Option::unwrap_or_default)
    }

    /// Writes it (in its own transaction).
    pub(crate) fn save(&self, store: &Store) -> Result<(), StoreError> {
        store.write(|w| w.put(KeyedTable::Agent, HEALTH_KEY, self))
    }
}

/// Adds rows folded by outbox compaction (inside the compaction's transaction).
pub(crate) fn record_compaction(w: &mut WriteTx<'_>, folded: u64) -> Result<(), StoreError> {
    w.add_meta_u64(K_COMPACTED, folded)
}

/// The outbox rows of one sink role.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RoleStatus {
    /// Rows waiting.
    pub pending: u64,
    /// Every row up to this sequence number has been delivered.
    pub cursor: u64,
    /// Age of the oldest waiting change, ms (0 when none waits).
    pub lag_ms: u64,
}

/// The sync state as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    /// Rows in the outbox.
    pub queue_depth: u64,
    /// Age of the oldest unsynced change, ms (0 when the outbox is empty).
    pub oldest_unsynced_ms: u64,
    /// Documents (Firestore).
    pub documents: RoleStatus,
    /// Objects (object store).
    pub objects: RoleStatus,
    /// Rows in the dead-letter table.
    pub dead_letters: u64,
    /// Rows delivered since the store was created.
    pub rows_delivered: u64,
    /// Rows folded into another row's write by coalescing.
    pub rows_coalesced: u64,
    /// Rows folded into a newer row of the same key while the cloud was unreachable.
    pub rows_compacted: u64,
    /// Rows moved to dead letters.
    pub rows_dead_lettered: u64,
    /// Document writes sent.
    pub document_writes: u64,
    /// Object writes sent.
    pub object_writes: u64,
    /// Estimated cost of the writes sent, USD, at Firestore's and GCS's list prices.
    pub estimated_cost_usd: f64,
    /// When the last pass that delivered something ran, ms (0: never).
    pub last_pass_ms: u64,
    /// Consecutive failures, since when, and the last error.
    pub health: SyncHealth,
}

/// Reads the sync status of `store` at `now_ms` (scans the outbox).
pub fn status(store: &Store, now_ms: u64) -> Result<SyncStatus, StoreError> {
    store.read(|r| {
        let rows = r.outbox_peek(0, usize::MAX)?;
        let next_seq = r.meta_u64(SeqTable::Outbox.counter_key())?.unwrap_or(1);
        let mut s = SyncStatus {
            queue_depth: rows.len() as u64,
            dead_letters: r.seq_len(SeqTable::DeadLetters)?,
            ..SyncStatus::default()
        };
        for role in [&mut s.documents, &mut s.objects] {
            role.cursor = next_seq.saturating_sub(1);
        }
        for (seq, row) in &rows {
            let age = now_ms.saturating_sub(row.created_ms);
            s.oldest_unsynced_ms = s.oldest_unsynced_ms.max(age);
            let role = if row.op.is_blob() {
                &mut s.objects
            } else {
                &mut s.documents
            };
            if role.pending == 0 {
                role.cursor = seq - 1;
            }
            role.pending += 1;
            role.lag_ms = role.lag_ms.max(age);
        }
        let get = |k: &str| r.meta_u64(k).map(|v| v.unwrap_or(0));
        s.rows_delivered = get(K_DELIVERED)?;
        s.rows_coalesced = get(K_COALESCED)?;
        s.rows_compacted = get(K_COMPACTED)?;
        s.rows_dead_lettered = get(K_DEAD)?;
        s.document_writes = get(K_DOC_WRITES)?;
        s.object_writes = get(K_OBJ_WRITES)?;
        s.last_pass_ms = get(K_LAST_PASS)?;
        s.health = r.get(KeyedTable::Agent, HEALTH_KEY)?.unwrap_or_default();
        s.estimated_cost_usd =
            s.document_writes as f64 * FIRESTORE_WRITE_USD + s.object_writes as f64 * GCS_WRITE_USD;
        Ok(s)
    })
}
