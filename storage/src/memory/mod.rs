//! Agent memory: the model, its storage with secondary indexes, recall, tiers and pruning.
//!
//! Invariants:
//! - a memory record and its index entries (category+time, pool+time, pattern key) change in
//!   the same transaction, so the indexes never point at nothing;
//! - every stored change to a memory appends its outbox row in that transaction;
//! - hot records are plain msgpack (fastest reads), warm records are compacted and compressed
//!   with the warm dictionary once one is trained.

pub mod cold;
pub(crate) mod decoded;
pub mod model;
pub mod prune;
pub mod recall;
pub mod stats;

pub use model::{Category, Memory, MemoryType, Metadata, Source, Tier};

use crate::codec::{Codec, Compression, RecordKind};
use crate::error::Result;
use crate::outbox::{OutboxOp, OutboxRow, StoredRecord};
use crate::store::{ReadTx, WriteTx, corrupt};
use crate::tables::{MEM_BY_CATEGORY, MEM_BY_PATTERN, MEM_BY_POOL, MEMORIES, OUTBOX, SeqTable};
use redb::{ReadableTable, ReadableTableMetadata};
use ulid::Ulid;

/// Firestore collection of live memories.
pub const MEMORY_COLLECTION: &str = "memories";

/// The memory table and its three indexes, open together for one transaction, so that a batch
/// opens each table once and a record never changes without its index entries.
struct MemoryTables<'t> {
    records: redb::Table<'t, u128, &'static [u8]>,
    by_category: redb::Table<'t, (u8, u64, u128), ()>,
    by_pool: redb::Table<'t, (&'static str, u64, u128), ()>,
    by_pattern: redb::Table<'t, (&'static str, u128), ()>,
    /// Categories changed (bit = category index), for recall-cache invalidation.
    touched: u64,
}

impl<'t> MemoryTables<'t> {
    fn open(tx: &'t redb::WriteTransaction) -> Result<Self> {
        Ok(Self {
            records: tx.open_table(MEMORIES)?,
            by_category: tx.open_table(MEM_BY_CATEGORY)?,
            by_pool: tx.open_table(MEM_BY_POOL)?,
            by_pattern: tx.open_table(MEM_BY_PATTERN)?,
            touched: 0,
        })
    }

    /// Stores the record (replacing one with the same id) and its index entries; returns the
    /// encoded size.
    fn put(&mut self, codec: &Codec, m: &Memory) -> Result<usize> {
        let bytes = encode_memory(codec, m)?;
        let old = self
            .records
            .insert(u128::from(m.id), bytes.as_slice())?
            .map(|v| v.value().to_vec());
        if let Some(old) = old {
            let old: Memory = codec
                .decode(&old)
                .map_err(|r| corrupt("memories", m.id, r))?;
            self.unindex(&old)?;
        }
        self.index(m)?;
        Ok(bytes.len())
    }

    /// Replaces the record of `stored`, its version in the store (already decoded by the caller,
    /// so not decoded again), with `m` (same id); returns the encoded size.
    fn replace_decoded(&mut self, codec: &Codec, stored: &Memory, m: &Memory) -> Result<usize> {
        debug_assert_eq!(stored.id, m.id);
        let bytes = encode_memory(codec, m)?;
        self.records.insert(u128::from(m.id), bytes.as_slice())?;
        self.unindex(stored)?;
        self.index(m)?;
        Ok(bytes.len())
    }

    /// Removes the record of `stored`, its version in the store (already decoded by the
    /// caller), and its index entries.
    fn remove_decoded(&mut self, stored: &Memory) -> Result<()> {
        self.records.remove(u128::from(stored.id))?;
        self.unindex(stored)
    }

    /// Removes the record and its index entries; returns it and its encoded size.
    fn remove(&mut self, codec: &Codec, id: Ulid) -> Result<Option<(Memory, usize)>> {
        let old = self
            .records
            .remove(u128::from(id))?
            .map(|v| v.value().to_vec());
        let Some(bytes) = old else { return Ok(None) };
        let m: Memory = codec
            .decode(&bytes)
            .map_err(|r| corrupt("memories", id, r))?;
        self.unindex(&m)?;
        Ok(Some((m, bytes.len())))
    }

    fn index(&mut self, m: &Memory) -> Result<()> {
        let id = u128::from(m.id);
        self.by_category
            .insert((m.category.index(), m.created_ms, id), ())?;
        if let Some(pool) = &m.metadata.pool {
            self.by_pool.insert((pool.as_str(), m.created_ms, id), ())?;
        }
        if let Some(key) = &m.metadata.pattern_key {
            self.by_pattern.insert((key.as_str(), id), ())?;
        }
        self.touched |= 1 << m.category.index();
        Ok(())
    }

    fn unindex(&mut self, m: &Memory) -> Result<()> {
        let id = u128::from(m.id);
        self.by_category
            .remove((m.category.index(), m.created_ms, id))?;
        if let Some(pool) = &m.metadata.pool {
            self.by_pool.remove((pool.as_str(), m.created_ms, id))?;
        }
        if let Some(key) = &m.metadata.pattern_key {
            self.by_pattern.remove((key.as_str(), id))?;
        }
        self.touched |= 1 << m.category.index();
        Ok(())
    }
}

/// A memory's record: hot records plain, warm ones with the warm dictionary.
fn encode_memory(codec: &Codec, m: &Memory) -> Result<Vec<u8>> {
    m.validate()?;
    let (kind, compression) = match m.tier {
        Tier::Hot => (RecordKind::Memory, Compression::None),
        _ => (RecordKind::MemoryWarm, Compression::ZstdDict),
    };
    codec.encode(kind, compression, m)
}

impl WriteTx<'_> {
    /// Stores a memory (new or replacing the one with the same id) with its indexes and its
    /// outbox row.
    pub fn insert_memory(&mut self, m: &Memory, now_ms: u64) -> Result<()> {
        self.insert_memories(std::slice::from_ref(m), now_ms)
    }

    /// Stores memories with their indexes and outbox rows, opening each table once.
    pub fn insert_memories(&mut self, ms: &[Memory], now_ms: u64) -> Result<()> {
        let counter = SeqTable::Outbox.counter_key();
        let mut seq = self.meta_u64(counter)?.unwrap_or(1);
        {
            let mut tables = MemoryTables::open(&self.tx)?;
            let mut outbox = self.tx.open_table(OUTBOX)?;
            // In id order, B-tree inserts walk the tree's pages in order instead of at random;
            // the sort is stable, so a memory given twice still ends as its last version.
            let mut ordered: Vec<&Memory> = ms.iter().collect();
            ordered.sort_by_key(|m| m.id);
            let mut rows: Vec<StoredRecord> = Vec::with_capacity(ms.len());
            self.changes.documents += ms.len() as u64;
            for m in ordered {
                tables.put(self.codec, m)?;
                let record = StoredRecord::of_memory(m);
                // One row per pack and batch: the pack resolves to all of its hour anyway.
                if matches!(record, StoredRecord::ObservationPack(_)) && rows.contains(&record) {
                    continue;
                }
                rows.push(record);
            }
            for record in rows {
                let row = OutboxRow {
                    created_ms: now_ms,
                    op: OutboxOp::Stored(record),
                };
                let bytes =
                    self.codec
                        .encode(RecordKind::Outbox, SeqTable::Outbox.compression(), &row)?;
                outbox.insert(seq, bytes.as_slice())?;
                seq += 1;
            }
            self.touched |= tables.touched;
        }
        self.set_meta_u64(counter, seq)
    }

    /// Stores memories restored from elsewhere (a quarantined store, the cloud) with their
    /// indexes and no outbox rows: where they came from already has them.
    pub fn import_memories(&mut self, ms: &[Memory]) -> Result<()> {
        let mut tables = MemoryTables::open(&self.tx)?;
        for m in ms {
            tables.put(self.codec, m)?;
        }
        self.touched |= tables.touched;
        Ok(())
    }

    /// Applies a pruning pass's decisions to records it has decoded, opening the memory tables
    /// once: deletes `deleted` (each as [`Self::delete_memory`] does) and replaces each
    /// `(stored, new)` of `rewritten` without an outbox row. Every memory given as stored must
    /// be the version in the store now. Returns the encoded size of each rewritten record.
    pub(crate) fn apply_decoded_memory_changes(
        &mut self,
        deleted: &[&Memory],
        rewritten: &[(&Memory, &Memory)],
        now_ms: u64,
    ) -> Result<Vec<usize>> {
        let sizes = {
            let mut tables = MemoryTables::open(&self.tx)?;
            for m in deleted {
                tables.remove_decoded(m)?;
            }
            let sizes = rewritten
                .iter()
                .map(|(stored, m)| tables.replace_decoded(self.codec, stored, m))
                .collect::<Result<Vec<usize>>>()?;
            self.touched |= tables.touched;
            sizes
        };
        for m in deleted {
            self.record_memory_deletion(m, now_ms)?;
        }
        Ok(sizes)
    }

    /// Deletes a memory with its indexes and appends the delete of its document to the outbox
    /// (an observation has none: its hour's pack is history and stays).
    pub fn delete_memory(&mut self, id: Ulid, now_ms: u64) -> Result<Option<Memory>> {
        let removed = self.remove_memory_record(id)?;
        if let Some((m, _)) = &removed {
            self.record_memory_deletion(m, now_ms)?;
        }
        Ok(removed.map(|(m, _)| m))
    }

    /// The cloud's side of deleting `m`: the delete of its document, or for an observation a
    /// counted change only.
    fn record_memory_deletion(&mut self, m: &Memory, now_ms: u64) -> Result<()> {
        if !crate::outbox::has_document(m) {
            self.changes.documents += 1;
            return Ok(());
        }
        self.outbox_append(
            OutboxOp::Delete {
                collection: MEMORY_COLLECTION.into(),
                doc: m.id.to_string(),
            },
            now_ms,
        )?;
        Ok(())
    }

    /// Removes the record and its indexes without an outbox row; returns it and its size.
    pub(crate) fn remove_memory_record(&mut self, id: Ulid) -> Result<Option<(Memory, usize)>> {
        let mut tables = MemoryTables::open(&self.tx)?;
        let removed = tables.remove(self.codec, id)?;
        self.touched |= tables.touched;
        Ok(removed)
    }

    /// Reads a memory inside this transaction.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        read_memory(self.codec, &self.tx.open_table(MEMORIES)?, id)
    }
}

impl ReadTx<'_> {
    /// Reads one memory.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        read_memory(self.codec, &self.tx.open_table(MEMORIES)?, id)
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

    /// Every local memory that still decodes, and the keys of those that do not: what can be
    /// salvaged from a store that failed verification.
    pub fn salvage_memories(&self) -> Result<(Vec<Memory>, Vec<String>)> {
        let t = self.tx.open_table(MEMORIES)?;
        let (mut good, mut bad) = (Vec::new(), Vec::new());
        for row in t.iter()? {
            let (k, v) = row?;
            match self.codec.decode::<Memory>(v.value()) {
                Ok(m) if u128::from(m.id) == k.value() => good.push(m),
                _ => bad.push(Ulid(k.value()).to_string()),
            }
        }
        Ok((good, bad))
    }

    /// Every local memory's id with its category, read from the category index alone (no
    /// record is decoded): what a checkpoint's memory summary needs, fast at a million.
    pub fn memory_ids_by_category(&self) -> Result<Vec<(Category, Ulid)>> {
        let t = self.tx.open_table(MEM_BY_CATEGORY)?;
        let mut out = Vec::with_capacity(usize::try_from(t.len()?).unwrap_or(0));
        for row in t.iter()? {
            let (category, _, id) = row?.0.value();
            let category = Category::ALL
                .get(usize::from(category))
                .copied()
                .ok_or_else(|| {
                    corrupt(
                        "idx_memory_category_time",
                        Ulid(id),
                        format!("unknown category index {category}"),
                    )
                })?;
            out.push((category, Ulid(id)));
        }
        Ok(out)
    }

    /// Number of local memories.
    pub fn memory_count(&self) -> Result<u64> {
        Ok(self.tx.open_table(MEMORIES)?.len()?)
    }
}

pub(crate) fn read_memory(
    codec: &Codec,
    records: &impl ReadableTable<u128, &'static [u8]>,
    id: Ulid,
) -> Result<Option<Memory>> {
    let v = records.get(u128::from(id))?;
    v.map(|v| {
        codec
            .decode(v.value())
            .map_err(|r| corrupt("memories", id, r))
    })
    .transpose()
}

impl crate::Store {
    /// Stores one memory in its own durable transaction.
    pub fn insert_memory(&self, m: &Memory, now_ms: u64) -> Result<()> {
        self.write(|w| w.insert_memory(m, now_ms))
    }

    /// Stores many memories in one durable transaction.
    pub fn insert_memories(&self, ms: &[Memory], now_ms: u64) -> Result<()> {
        self.write(|w| w.insert_memories(ms, now_ms))
    }

    /// Reads one memory.
    pub fn get_memory(&self, id: Ulid) -> Result<Option<Memory>> {
        self.read(|r| r.get_memory(id))
    }
}
