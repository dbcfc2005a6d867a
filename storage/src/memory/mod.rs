//! Agent memory: the model, its storage with secondary indexes, recall, tiers and pruning.
//!
//! Invariants:
//! - a memory record and its index entries (category+time, pool+time, pattern key) change in
//!   the same transaction, so the indexes never point at nothing;
//! - every stored change to a memory appends its outbox row in that transaction;
//! - hot records are plain msgpack (fastest reads), warm records are compacted and compressed
//!   with the warm dictionary once one is trained.

pub mod cold;
pub mod model;
pub mod prune;
pub mod recall;
pub mod stats;

pub use model::{Category, Memory, MemoryType, Metadata, Source, Tier};

use crate::codec::{Compression, RecordKind};
use crate::error::Result;
use crate::outbox::OutboxOp;
use crate::store::{ReadTx, WriteTx, corrupt};
use crate::tables::{MEM_BY_CATEGORY, MEM_BY_PATTERN, MEM_BY_POOL, MEMORIES};
use redb::{ReadableTable, ReadableTableMetadata};
use ulid::Ulid;

/// Firestore collection of live memories.
pub const MEMORY_COLLECTION: &str = "memories";

impl WriteTx<'_> {
    /// Stores a memory (new or replacing the one with the same id) with its indexes and its
    /// outbox row.
    pub fn insert_memory(&mut self, m: &Memory, now_ms: u64) -> Result<()> {
        self.put_memory_record(m)?;
        let body =
            serde_json::to_value(m).map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
        self.outbox_append(
            OutboxOp::Upsert {
                collection: MEMORY_COLLECTION.into(),
                doc: m.id.to_string(),
                body,
            },
            now_ms,
        )?;
        Ok(())
    }

    /// Stores the record and its indexes, without an outbox row; returns the encoded size.
    pub(crate) fn put_memory_record(&mut self, m: &Memory) -> Result<usize> {
        m.validate()?;
        let (kind, compression) = match m.tier {
            Tier::Hot => (RecordKind::Memory, Compression::None),
            _ => (RecordKind::MemoryWarm, Compression::ZstdDict),
        };
        let bytes = self.codec.encode(kind, compression, m)?;
        let key = u128::from(m.id);
        let old = self
            .tx
            .open_table(MEMORIES)?
            .insert(key, bytes.as_slice())?
            .map(|v| v.value().to_vec());
        if let Some(old) = old {
            let old: Memory = self
                .codec
                .decode(&old)
                .map_err(|r| corrupt("memories", m.id, r))?;
            self.remove_indexes(&old)?;
        }
        self.add_indexes(m)?;
        Ok(bytes.len())
    }

    /// Deletes a memory with its indexes and appends the delete to the outbox.
    pub fn delete_memory(&mut self, id: Ulid, now_ms: u64) -> Result<Option<Memory>> {
        let removed = self.remove_memory_record(id)?;
        if removed.is_some() {
            self.outbox_append(
                OutboxOp::Delete {
                    collection: MEMORY_COLLECTION.into(),
                    doc: id.to_string(),
                },
                now_ms,
            )?;
        }
        Ok(removed.map(|(m, _)| m))
    }

    /// Removes the record and its indexes without an outbox row; returns it and its size.
    pub(crate) fn remove_memory_record(&mut self, id: Ulid) -> Result<Option<(Memory, usize)>> {
        let old = self
            .tx
            .open_table(MEMORIES)?
            .remove(u128::from(id))?
            .map(|v| v.value().to_vec());
        let Some(bytes) = old else { return Ok(None) };
        let m: Memory = self
            .codec
            .decode(&bytes)
            .map_err(|r| corrupt("memories", id, r))?;
        self.remove_indexes(&m)?;
        Ok(Some((m, bytes.len())))
    }

    /// Reads a memory inside this transaction.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        let t = self.tx.open_table(MEMORIES)?;
        let v = t.get(u128::from(id))?;
        v.map(|v| {
            self.codec
                .decode(v.value())
                .map_err(|r| corrupt("memories", id, r))
        })
        .transpose()
    }

    fn add_indexes(&mut self, m: &Memory) -> Result<()> {
        let id = u128::from(m.id);
        self.tx
            .open_table(MEM_BY_CATEGORY)?
            .insert((m.category.index(), m.created_ms, id), ())?;
        if let Some(pool) = &m.metadata.pool {
            self.tx
                .open_table(MEM_BY_POOL)?
                .insert((pool.as_str(), m.created_ms, id), ())?;
        }
        if let Some(key) = &m.metadata.pattern_key {
            self.tx
                .open_table(MEM_BY_PATTERN)?
                .insert((key.as_str(), id), ())?;
        }
        self.touched |= 1 << m.category.index();
        Ok(())
    }

    fn remove_indexes(&mut self, m: &Memory) -> Result<()> {
        let id = u128::from(m.id);
        self.tx
            .open_table(MEM_BY_CATEGORY)?
            .remove((m.category.index(), m.created_ms, id))?;
        if let Some(pool) = &m.metadata.pool {
            self.tx
                .open_table(MEM_BY_POOL)?
                .remove((pool.as_str(), m.created_ms, id))?;
        }
        if let Some(key) = &m.metadata.pattern_key {
            self.tx
                .open_table(MEM_BY_PATTERN)?
                .remove((key.as_str(), id))?;
        }
        self.touched |= 1 << m.category.index();
        Ok(())
    }
}

impl ReadTx<'_> {
    /// Reads one memory.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        let t = self.tx.open_table(MEMORIES)?;
        let v = t.get(u128::from(id))?;
        v.map(|v| {
            self.codec
                .decode(v.value())
                .map_err(|r| corrupt("memories", id, r))
        })
        .transpose()
    }

    /// Every local (hot and warm) memory, in id (= time) order.
    pub fn all_memories(&self) -> Result<Vec<Memory>> {
        let t = self.tx.open_table(MEMORIES)?;
        let mut out = Vec::with_capacity(usize::try_from(t.len()?).unwrap_or(0));
        for row in t.iter()? {
            let (k, v) = row?;
            out.push(
                self.codec
                    .decode(v.value())
                    .map_err(|r| corrupt("memories", Ulid(k.value()), r))?,
            );
        }
        Ok(out)
    }

    /// Number of local memories.
    pub fn memory_count(&self) -> Result<u64> {
        Ok(self.tx.open_table(MEMORIES)?.len()?)
    }
}

impl crate::Store {
    /// Stores one memory in its own durable transaction.
    pub fn insert_memory(&self, m: &Memory, now_ms: u64) -> Result<()> {
        self.write(|w| w.insert_memory(m, now_ms))
    }

    /// Stores many memories in one durable transaction.
    pub fn insert_memories(&self, ms: &[Memory], now_ms: u64) -> Result<()> {
        self.write(|w| ms.iter().try_for_each(|m| w.insert_memory(m, now_ms)))
    }

    /// Reads one memory.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        self.read(|r| r.get_memory(id))
    }
}
