//! The outbox: changes that must reach the cloud, appended in the same write transaction as the
//! change itself, drained in sequence order by the sync worker, removed only after the sink
//! confirmed them.
//!
//! Rows carry idempotent remote keys (collection + document id, or an object path), so a replay
//! after a crash rewrites the same documents instead of adding new ones.

use crate::error::Result;
use crate::store::{ReadTx, Store, WriteTx};
use crate::tables::SeqTable;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One change for the cloud.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OutboxOp {
    /// Set a whole document (last state wins when coalesced).
    Upsert {
        /// Collection under the agent, e.g. `memories`.
        collection: String,
        /// Document id.
        doc: String,
        /// Document body, JSON text.
        body: String,
    },
    /// Add amounts to numeric fields (summed when coalesced).
    Increment {
        /// Collection.
        collection: String,
        /// Document id.
        doc: String,
        /// Amount added, by field name.
        fields: BTreeMap<String, f64>,
    },
    /// Delete a document.
    Delete {
        /// Collection.
        collection: String,
        /// Document id.
        doc: String,
    },
    /// Delete an object at `path` under the agent's prefix.
    DeleteBlob {
        /// Object path.
        path: String,
    },
    /// Put an object (checkpoint, cold segment) at `path` under the agent's prefix.
    PutBlob {
        /// Object path, e.g. `segments/01H….seg`.
        path: String,
        /// Object bytes.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
}

impl OutboxOp {
    /// Whether an object sink (rather than a document sink) takes it.
    pub fn is_blob(&self) -> bool {
        matches!(self, Self::PutBlob { .. } | Self::DeleteBlob { .. })
    }

    /// An upsert of `value` serialized as JSON.
    pub fn upsert<T: Serialize>(collection: &str, doc: impl ToString, value: &T) -> Result<Self> {
        let body = serde_json::to_string(value)
            .map_err(|e| crate::StoreError::Invalid(format!("document body: {e}")))?;
        Ok(Self::Upsert {
            collection: collection.to_string(),
            doc: doc.to_string(),
            body,
        })
    }

    /// An increment of one field.
    pub fn increment(collection: &str, doc: impl ToString, field: &str, delta: f64) -> Self {
        Self::Increment {
            collection: collection.to_string(),
            doc: doc.to_string(),
            fields: BTreeMap::from([(field.to_string(), delta)]),
        }
    }

    /// The remote key this op writes: `collection/doc` or `blob:path`.
    pub fn remote_key(&self) -> String {
        match self {
            Self::Upsert {
                collection, doc, ..
            }
            | Self::Increment {
                collection, doc, ..
            }
            | Self::Delete { collection, doc } => format!("{collection}/{doc}"),
            Self::PutBlob { path, .. } | Self::DeleteBlob { path } => format!("blob:{path}"),
        }
    }
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxRow {
    /// When the change was made (agent clock, ms since the epoch).
    pub created_ms: u64,
    /// The change.
    pub op: OutboxOp,
}

/// A row the cloud rejected for good, kept for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The outbox sequence number it had.
    pub seq: u64,
    /// The row.
    pub row: OutboxRow,
    /// Why it was rejected.
    pub reason: String,
    /// When it was moved here.
    pub at_ms: u64,
}

impl WriteTx<'_> {
    /// Appends a change to the outbox in this transaction; returns its sequence number.
    pub fn outbox_append(&mut self, op: OutboxOp, now_ms: u64) -> Result<u64> {
        self.append(
            SeqTable::Outbox,
            &OutboxRow {
                created_ms: now_ms,
                op,
            },
        )
    }

    /// Removes confirmed rows.
    pub fn outbox_ack(&mut self, seqs: &[u64]) -> Result<usize> {
        self.remove_seq(SeqTable::Outbox, seqs)
    }

    /// Moves row `seq` from the outbox to the dead-letter table (same transaction: never
    /// lost); returns the dead letter's sequence number, `None` when no such row is waiting.
    pub fn outbox_dead_letter(
        &mut self,
        seq: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<Option<u64>> {
        let Some((_, row)) = self.outbox_row(seq)? else {
            return Ok(None);
        };
        self.remove_seq(SeqTable::Outbox, &[seq])?;
        let letter = DeadLetter {
            seq,
            row,
            reason: reason.to_string(),
            at_ms: now_ms,
        };
        self.append(SeqTable::DeadLetters, &letter).map(Some)
    }

    /// Rows with seq > `after`, in order, at most `limit`, as this transaction sees them.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        self.seq_after(SeqTable::Outbox, after, limit)
    }

    /// Replaces the waiting row `seq` (outbox compaction folds earlier rows of the same key
    /// into it); the sequence counter does not move.
    pub fn outbox_replace(&mut self, seq: u64, row: &OutboxRow) -> Result<()> {
        self.replace_seq(SeqTable::Outbox, seq, row)
    }

    /// The waiting row `seq`, if any.
    pub fn outbox_row(&self, seq: u64) -> Result<Option<(u64, OutboxRow)>> {
        let t = self.tx.open_table(SeqTable::Outbox.def())?;
        let v = t.get(seq)?;
        v.map(|v| {
            self.codec
                .decode(v.value())
                .map(|row| (seq, row))
                .map_err(|r| crate::store::corrupt("outbox", seq, r))
        })
        .transpose()
    }
}

impl ReadTx<'_> {
    /// Rows with seq > `after`, in order, at most `limit`.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        self.seq_after(SeqTable::Outbox, after, limit)
    }
}

impl Store {
    /// Rows with seq > `after`, in order, at most `limit`.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        self.read(|r| r.outbox_peek(after, limit))
    }

    /// Removes confirmed rows in one transaction.
    pub fn outbox_ack(&self, seqs: &[u64]) -> Result<usize> {
        self.write(|w| w.outbox_ack(seqs))
    }

    /// The highest sequence number the outbox ever assigned (0 when none): every waiting row
    /// is at or below it.
    pub fn outbox_high_water(&self) -> Result<u64> {
        self.read(|r| {
            Ok(r.meta_u64(SeqTable::Outbox.counter_key())?
                .map_or(0, |next| next.saturating_sub(1)))
        })
    }

    /// Rows waiting in the outbox.
    pub fn outbox_len(&self) -> Result<u64> {
        self.read(|r| r.seq_len(SeqTable::Outbox))
    }
}
