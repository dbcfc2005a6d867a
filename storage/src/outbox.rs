//! The outbox: changes that must reach the cloud, appended in the same write transaction as the
//! change itself, drained in sequence order by the sync worker, removed only after the sink
//! confirmed them.
//!
//! Rows carry idempotent remote keys (collection + document id, or an object path), so a replay
//! after a crash rewrites the same documents instead of adding new ones.
//!
//! A change to a record the store keeps (a memory) is a reference to it, not a copy: the row
//! names the record and is resolved to its current state when it is read for the worker
//! (`resolve`). Coalescing keeps the last state of a document anyway, and a reference row is
//! about 70 bytes where a JSON copy of a memory is about 540. A record gone by the time its row
//! is read resolves to a delete of its document, which is its latest state.
//!
//! Observations (the high-volume, low-value memories: one per pool per hour) get no document
//! each: they travel packed, one object per agent hour (`observations/<hour ms>.json`, a JSON
//! array of that hour's observations), written when the hour's row is drained. Their local
//! compaction and deletion (pruning) stay local: a pack is history.

use crate::error::Result;
use crate::memory::{MEMORY_COLLECTION, Memory, MemoryType, read_memory};
use crate::store::{ReadTx, Store, WriteTx};
use crate::tables::{MEMORIES, SeqTable};
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
    /// Mirror the current state of records the store keeps: resolved whenever the row is
    /// read (see [`StoredRecord`]), so the sync layer never sees one.
    Stored(StoredRecord),
}

/// Records of the store an outbox row refers to, and what each resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StoredRecord {
    /// The memory with this id (a ULID as `u128`): an upsert of document `memories/<id>`, or
    /// its delete when the memory is gone.
    Memory(u128),
    /// The observations created in the agent hour starting at this ms: a put of object
    /// `observations/<ms>.json` (a JSON array of them), or its delete when none is left.
    ObservationPack(u64),
}

/// Agent hour, ms.
const HOUR_MS: u64 = 3_600_000;
/// Object directory of observation packs.
pub const OBSERVATION_PACK_DIR: &str = "observations";

impl StoredRecord {
    /// The outbox row that mirrors memory `m`: its own document, or its hour's pack for an
    /// observation.
    pub fn of_memory(m: &Memory) -> Self {
        if m.kind == MemoryType::Observation {
            Self::ObservationPack(m.created_ms - m.created_ms % HOUR_MS)
        } else {
            Self::Memory(u128::from(m.id))
        }
    }

    /// The remote key it resolves to (`collection/doc` or `blob:path`).
    pub fn remote_key(self) -> String {
        match self {
            Self::Memory(id) => format!("{MEMORY_COLLECTION}/{}", ulid::Ulid(id)),
            Self::ObservationPack(hour) => format!("blob:{}", observation_pack_path(hour)),
        }
    }
}

/// Object path of the observation pack of the agent hour starting at `hour_ms`.
pub fn observation_pack_path(hour_ms: u64) -> String {
    format!("{OBSERVATION_PACK_DIR}/{hour_ms}.json")
}

/// Meta key: the first agent hour whose observation pack has not been expired yet.
const PACKS_EXPIRED_TO: &str = "observation_packs_expired_to";
/// Most observation packs one pruning pass deletes: after a long stop the hours catch up over a
/// few passes instead of one burst of deletes.
pub const MAX_PACK_EXPIRIES_PER_PASS: u64 = 48;

/// Whether a memory's cloud copy is its own document (everything but observations, which
/// travel in hourly packs).
pub fn has_document(m: &Memory) -> bool {
    m.kind != MemoryType::Observation
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
            Self::Stored(record) => record.remote_key(),
        }
    }
}

/// Resolves a reference row to the current state of its record, read from `memories` (the
/// memory table as the reading transaction sees it); other rows are returned as they are.
pub(crate) fn resolve(
    memories: &impl ReadableTable<u128, &'static [u8]>,
    codec: &crate::codec::Codec,
    row: OutboxRow,
) -> Result<OutboxRow> {
    let OutboxOp::Stored(record) = row.op else {
        return Ok(row);
    };
    let op = match record {
        StoredRecord::Memory(id) => {
            let doc = ulid::Ulid(id).to_string();
            match read_memory(codec, memories, ulid::Ulid(id))? {
                Some(m) => OutboxOp::upsert(MEMORY_COLLECTION, doc, &m)?,
                None => OutboxOp::Delete {
                    collection: MEMORY_COLLECTION.to_string(),
                    doc,
                },
            }
        }
        StoredRecord::ObservationPack(hour) => {
            let path = observation_pack_path(hour);
            let pack = observations_of_hour(memories, codec, hour)?;
            if pack.is_empty() {
                OutboxOp::DeleteBlob { path }
            } else {
                let bytes = serde_json::to_vec(&pack)
                    .map_err(|e| crate::StoreError::Invalid(format!("observation pack: {e}")))?;
                OutboxOp::PutBlob { path, bytes }
            }
        }
    };
    Ok(OutboxRow { op, ..row })
}

/// The observations created in the hour starting at `hour_ms`, oldest first (memory ids are
/// ULIDs, so the hour is one range of the memory table).
fn observations_of_hour(
    memories: &impl ReadableTable<u128, &'static [u8]>,
    codec: &crate::codec::Codec,
    hour_ms: u64,
) -> Result<Vec<Memory>> {
    let from = u128::from(ulid::Ulid::from_parts(hour_ms, 0));
    let to = u128::from(ulid::Ulid::from_parts(hour_ms + HOUR_MS, 0));
    let mut out = Vec::new();
    for row in memories.range(from..to)? {
        let (k, v) = row?;
        let m: Memory = codec
            .decode(v.value())
            .map_err(|r| crate::store::corrupt("memories", ulid::Ulid(k.value()), r))?;
        if m.kind == MemoryType::Observation {
            out.push(m);
        }
    }
    Ok(out)
}

/// Resolves every row of `rows` against one open memory table.
fn resolve_all(
    memories: &impl ReadableTable<u128, &'static [u8]>,
    codec: &crate::codec::Codec,
    rows: Vec<(u64, OutboxRow)>,
) -> Result<Vec<(u64, OutboxRow)>> {
    rows.into_iter()
        .map(|(seq, row)| Ok((seq, resolve(memories, codec, row)?)))
        .collect()
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
    /// Deletes the observation packs (objects) of the agent hours that ended `retention_ms` or
    /// more before `now_ms`, each hour once and in order, at most
    /// [`MAX_PACK_EXPIRIES_PER_PASS`] a call; returns how many deletes it appended. A store's
    /// first call starts at the current hour: packs of hours before it (written by a build
    /// without this step) are left, and a new store sends no deletes for hours before it
    /// existed. A missing object's delete succeeds, so an hour without a pack (the agent was
    /// stopped) costs one request and nothing else.
    pub(crate) fn expire_observation_packs(
        &mut self,
        retention_ms: u64,
        now_ms: u64,
    ) -> Result<usize> {
        let hour_of = |ms: u64| ms - ms % HOUR_MS;
        let boundary = hour_of(now_ms.saturating_sub(retention_ms));
        let Some(from) = self.meta_u64(PACKS_EXPIRED_TO)? else {
            return self
                .set_meta_u64(PACKS_EXPIRED_TO, hour_of(now_ms))
                .map(|()| 0);
        };
        let to = boundary.min(from.saturating_add(MAX_PACK_EXPIRIES_PER_PASS * HOUR_MS));
        let mut expired = 0;
        for hour in (from..to).step_by(HOUR_MS as usize) {
            let path = observation_pack_path(hour);
            self.outbox_append(OutboxOp::DeleteBlob { path }, now_ms)?;
            expired += 1;
        }
        if to > from {
            self.set_meta_u64(PACKS_EXPIRED_TO, to)?;
        }
        Ok(expired)
    }

    /// Appends a change to the outbox in this transaction; returns its sequence number.
    pub fn outbox_append(&mut self, op: OutboxOp, now_ms: u64) -> Result<u64> {
        match &op {
            // A pack's changes are counted per observation where they are made.
            OutboxOp::Stored(StoredRecord::ObservationPack(_)) => {}
            OutboxOp::PutBlob { .. } => self.changes.objects += 1,
            // Deleting an object is free at list prices: not a billed change.
            OutboxOp::DeleteBlob { .. } => {}
            _ => self.changes.documents += 1,
        }
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

    /// Rows with seq > `after`, in order, at most `limit`, as this transaction sees them,
    /// references resolved.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        let rows = self.seq_after(SeqTable::Outbox, after, limit)?;
        resolve_all(&self.tx.open_table(MEMORIES)?, self.codec, rows)
    }

    /// Replaces the waiting row `seq` (outbox compaction folds earlier rows of the same key
    /// into it); the sequence counter does not move.
    pub fn outbox_replace(&mut self, seq: u64, row: &OutboxRow) -> Result<()> {
        self.replace_seq(SeqTable::Outbox, seq, row)
    }

    /// The waiting row `seq`, if any, its reference resolved.
    pub fn outbox_row(&self, seq: u64) -> Result<Option<(u64, OutboxRow)>> {
        let row: Option<OutboxRow> = {
            let t = self.tx.open_table(SeqTable::Outbox.def())?;
            let v = t.get(seq)?;
            v.map(|v| {
                self.codec
                    .decode(v.value())
                    .map_err(|r| crate::store::corrupt("outbox", seq, r))
            })
            .transpose()?
        };
        let memories = self.tx.open_table(MEMORIES)?;
        row.map(|row| Ok((seq, resolve(&memories, self.codec, row)?)))
            .transpose()
    }
}

impl ReadTx<'_> {
    /// Rows with seq > `after`, in order, at most `limit`, references resolved.
    pub fn outbox_peek(&self, after: u64, limit: usize) -> Result<Vec<(u64, OutboxRow)>> {
        let rows = self.seq_after(SeqTable::Outbox, after, limit)?;
        resolve_all(&self.tx.open_table(MEMORIES)?, self.codec, rows)
    }
}

impl Store {
    /// Rows with seq > `after`, in order, at most `limit`, references resolved to the
    /// records' current state.
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
