//! The cold tier: memories older than the warm tier leave the local store for compressed
//! segments in the object store (through the outbox), leaving a small index entry locally and a
//! Bloom filter per segment over pattern keys, so a recall fetches a segment only when it may
//! hit. Past their retention, patterns and learnings are archived as summaries (a cold one's
//! segment is kept as the archive's full record) and the rest dropped; a segment none of whose
//! memories was archived is deleted once its last entry leaves.

use super::model::{Category, Memory, MemoryType};
use super::recall::RecallQuery;
use crate::codec::{Compression, RecordKind};
use crate::error::{Result, StoreError};
use crate::outbox::OutboxOp;
use crate::store::{Store, WriteTx, corrupt};
use crate::tables::{COLD_INDEX, COLD_SEGMENTS};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

/// Firestore collection of cold index entries.
pub const COLD_INDEX_COLLECTION: &str = "cold_index";

/// The local entry of a cold memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdEntry {
    /// Memory id.
    pub id: Ulid,
    /// Type.
    pub kind: MemoryType,
    /// Category.
    pub category: Category,
    /// Pattern key, if any.
    pub pattern_key: Option<String>,
    /// Pool, if any.
    pub pool: Option<String>,
    /// Confidence when it went cold.
    pub confidence: f64,
    /// Creation time, ms.
    pub created_ms: u64,
    /// Segment holding the full record.
    pub segment: String,
}

/// What the store keeps locally about a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    /// Segment id (a ULID string).
    pub id: String,
    /// Object path under the agent's prefix.
    pub path: String,
    /// Oldest and newest memory creation times, ms.
    pub min_ms: u64,
    /// Newest memory creation time, ms.
    pub max_ms: u64,
    /// Memories written into it.
    pub records: u32,
    /// Memories still indexed locally.
    pub live: u32,
    /// Memories archived from it: at `live` 0 the object is kept when this is not 0 (it holds
    /// the archived records) and deleted otherwise.
    #[serde(default)]
    pub archived: u32,
    /// Encoded size, bytes.
    pub bytes: u64,
    /// Pattern keys it holds.
    pub bloom: BloomFilter,
}

/// The summary of a pattern or learning past its retention, kept in the object store's
/// archive (`archive/*.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchivedMemory {
    /// Memory id.
    pub id: Ulid,
    /// Type (pattern or learning).
    pub kind: MemoryType,
    /// Category.
    pub category: Category,
    /// Pattern key, if any.
    pub pattern_key: Option<String>,
    /// Pool, if any.
    pub pool: Option<String>,
    /// Confidence when archived.
    pub confidence: f64,
    /// Creation time, ms.
    pub created_ms: u64,
    /// The text, for memories archived straight from the local store.
    pub content: Option<String>,
    /// Object path of the segment holding the full record, for memories archived from cold.
    pub segment: Option<String>,
}

impl ArchivedMemory {
    /// The summary of a local memory (its text included).
    pub fn from_live(m: &Memory) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            category: m.category,
            pattern_key: m.metadata.pattern_key.clone(),
            pool: m.metadata.pool.clone(),
            confidence: m.confidence,
            created_ms: m.created_ms,
            content: Some(m.content.clone()),
            segment: None,
        }
    }

    /// The summary of a cold entry whose full record stays in the segment at `segment`.
    pub fn from_cold(e: &ColdEntry, segment: Option<String>) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            category: e.category,
            pattern_key: e.pattern_key.clone(),
            pool: e.pool.clone(),
            confidence: e.confidence,
            created_ms: e.created_ms,
            content: None,
            segment,
        }
    }
}

/// A segment's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// Segment id.
    pub id: String,
    /// The memories, full records.
    pub memories: Vec<Memory>,
}

/// A Bloom filter over strings (FNV-1a double hashing). Its layout is part of the stored
/// format: changing the hash needs a new record format version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BloomFilter {
    bits: Vec<u64>,
    hashes: u32,
}

impl BloomFilter {
    /// A filter sized for `items` with a false-positive rate near 1%.
    pub fn with_capacity(items: usize) -> Self {
        let bits = (items.max(1) as f64 * 9.6).ceil() as usize; // -ln(0.01)/ln(2)^2 ≈ 9.6
        Self {
            bits: vec![0; bits.div_ceil(64)],
            hashes: 7,
        }
    }

    fn positions(&self, item: &str) -> impl Iterator<Item = usize> + '_ {
        let h1 = fnv1a(item.as_bytes(), 0xcbf2_9ce4_8422_2325);
        let h2 = fnv1a(item.as_bytes(), 0x8422_2325_cbf2_9ce4) | 1;
        let m = (self.bits.len() * 64) as u64;
        (0..u64::from(self.hashes)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % m) as usize)
    }

    /// Adds `item`.
    pub fn insert(&mut self, item: &str) {
        let positions: Vec<usize> = self.positions(item).collect();
        for p in positions {
            self.bits[p / 64] |= 1 << (p % 64);
        }
    }

    /// False means `item` was never inserted; true means it may have been.
    pub fn may_contain(&self, item: &str) -> bool {
        self.positions(item)
            .all(|p| self.bits[p / 64] & (1 << (p % 64)) != 0)
    }
}

fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    bytes.iter().fold(seed, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Fetches cold segment objects; the sync layer implements it over the object store.
pub trait SegmentFetcher: Send + Sync {
    /// The object at `path` under the agent's prefix.
    fn fetch(&self, path: &str) -> std::result::Result<Vec<u8>, String>;
}

/// What a cold recall found and what it cost.
#[derive(Debug, Clone, Default)]
pub struct ColdRecall {
    /// Matching memories, newest first.
    pub memories: Vec<Memory>,
    /// Segments fetched from the object store.
    pub segments_fetched: u32,
    /// Segments skipped because their Bloom filter excluded the pattern key.
    pub segments_skipped: u32,
}

impl WriteTx<'_> {
    /// Moves `memories` (already removed from nothing) into new segments; returns
    /// (segments written, bytes of local records removed).
    pub(crate) fn export_cold(
        &mut self,
        memories: &[Memory],
        now_ms: u64,
        per_segment: usize,
    ) -> Result<(usize, u64)> {
        let mut segments = 0;
        let mut freed = 0u64;
        for chunk in memories.chunks(per_segment.max(1)) {
            let first = u128::from(chunk[0].id);
            let id = Ulid::from_parts(now_ms, first).to_string();
            let path = format!("segments/{id}.seg");
            let segment = Segment {
                id: id.clone(),
                memories: chunk.to_vec(),
            };
            let bytes = self
                .codec
                .encode(RecordKind::Segment, Compression::Zstd, &segment)?;
            let info = SegmentInfo::of(&id, &path, chunk, chunk.len(), bytes.len());
            self.put_segment_info(&info)?;
            self.outbox_append(OutboxOp::PutBlob { path, bytes }, now_ms)?;
            for m in chunk {
                if let Some((_, size)) = self.remove_memory_record(m.id)? {
                    freed += size as u64;
                }
                let entry = ColdEntry::of(m, &id);
                let e = self
                    .codec
                    .encode(RecordKind::ColdEntry, Compression::None, &entry)?;
                self.tx
                    .open_table(COLD_INDEX)?
                    .insert(u128::from(m.id), e.as_slice())?;
                if !crate::outbox::has_document(m) {
                    self.changes.documents += 1;
                } else {
                    self.outbox_append(
                        OutboxOp::Delete {
                            collection: super::MEMORY_COLLECTION.into(),
                            doc: m.id.to_string(),
                        },
                        now_ms,
                    )?;
                }
                self.outbox_append(
                    OutboxOp::upsert(COLD_INDEX_COLLECTION, m.id, &entry)?,
                    now_ms,
                )?;
            }
            segments += 1;
        }
        Ok((segments, freed))
    }

    /// Removes cold entries past their retention. Patterns and learnings become archive
    /// summaries (their segment is kept as the archive's content); the rest are dropped.
    /// Returns (summaries, dropped).
    pub(crate) fn expire_cold(
        &mut self,
        now_ms: u64,
        retention_ms: impl Fn(MemoryType, Category) -> u64,
    ) -> Result<(Vec<ArchivedMemory>, usize)> {
        let expired: Vec<ColdEntry> = {
            let t = self.tx.open_table(COLD_INDEX)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                let e: ColdEntry = self
                    .codec
                    .decode(v.value())
                    .map_err(|r| corrupt("cold_index", Ulid(k.value()), r))?;
                if now_ms.saturating_sub(e.created_ms) > retention_ms(e.kind, e.category) {
                    out.push(e);
                }
            }
            out
        };
        let mut summaries = Vec::new();
        for e in &expired {
            self.tx.open_table(COLD_INDEX)?.remove(u128::from(e.id))?;
            self.outbox_append(
                OutboxOp::Delete {
                    collection: COLD_INDEX_COLLECTION.into(),
                    doc: e.id.to_string(),
                },
                now_ms,
            )?;
            let archive = matches!(e.kind, MemoryType::Pattern | MemoryType::Learning);
            let path = self.release_segment_entry(&e.segment, archive, now_ms)?;
            if archive {
                summaries.push(ArchivedMemory::from_cold(e, path));
            }
        }
        let dropped = expired.len() - summaries.len();
        Ok((summaries, dropped))
    }

    /// Writes one archive object holding `summaries` (nothing when empty).
    pub(crate) fn write_archive(
        &mut self,
        summaries: &[ArchivedMemory],
        now_ms: u64,
    ) -> Result<()> {
        let Some(first) = summaries.first() else {
            return Ok(());
        };
        let path = format!(
            "archive/{}.json",
            Ulid::from_parts(now_ms, u128::from(first.id))
        );
        let bytes =
            serde_json::to_vec(summaries).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.outbox_append(OutboxOp::PutBlob { path, bytes }, now_ms)?;
        Ok(())
    }

    /// One entry of `segment` leaves the cold index. When none is left the segment's info goes;
    /// its object is deleted unless archived entries still point at it. Returns the object path.
    fn release_segment_entry(
        &mut self,
        segment: &str,
        archived: bool,
        now_ms: u64,
    ) -> Result<Option<String>> {
        let info = {
            let t = self.tx.open_table(COLD_SEGMENTS)?;
            let v = t.get(segment)?;
            v.map(|v| self.codec.decode::<SegmentInfo>(v.value()))
                .transpose()
                .map_err(|r| corrupt("cold_segments", segment, r))?
        };
        let Some(mut info) = info else {
            return Ok(None);
        };
        info.live = info.live.saturating_sub(1);
        info.archived += u32::from(archived);
        if info.live == 0 {
            self.tx.open_table(COLD_SEGMENTS)?.remove(segment)?;
            if info.archived == 0 {
                self.outbox_append(
                    OutboxOp::DeleteBlob {
                        path: info.path.clone(),
                    },
                    now_ms,
                )?;
            }
        } else {
            let bytes = self
                .codec
                .encode(RecordKind::Segment, Compression::Zstd, &info)?;
            self.tx
                .open_table(COLD_SEGMENTS)?
                .insert(segment, bytes.as_slice())?;
        }
        Ok(Some(info.path))
    }
}

impl ColdEntry {
    /// The local entry of memory `m`, held in segment `segment`.
    pub fn of(m: &Memory, segment: &str) -> Self {
        Self {
            id: m.id,
            kind: m.kind,
            category: m.category,
            pattern_key: m.metadata.pattern_key.clone(),
            pool: m.metadata.pool.clone(),
            confidence: m.confidence,
            created_ms: m.created_ms,
            segment: segment.to_string(),
        }
    }
}

impl SegmentInfo {
    /// The info of segment `id` at `path` holding `memories` (`live` of them still indexed),
    /// `bytes` long: time range and a Bloom filter over their pattern keys.
    pub fn of(id: &str, path: &str, memories: &[Memory], live: usize, bytes: usize) -> Self {
        let mut bloom = BloomFilter::with_capacity(memories.len());
        for m in memories {
            if let Some(k) = &m.metadata.pattern_key {
                bloom.insert(k);
            }
        }
        Self {
            id: id.to_string(),
            path: path.to_string(),
            min_ms: memories.iter().map(|m| m.created_ms).min().unwrap_or(0),
            max_ms: memories.iter().map(|m| m.created_ms).max().unwrap_or(0),
            records: memories.len() as u32,
            live: live as u32,
            archived: 0,
            bytes: bytes as u64,
            bloom,
        }
    }
}

impl WriteTx<'_> {
    fn put_segment_info(&mut self, info: &SegmentInfo) -> Result<()> {
        let bytes = self
            .codec
            .encode(RecordKind::Segment, Compression::Zstd, info)?;
        self.tx
            .open_table(COLD_SEGMENTS)?
            .insert(info.id.as_str(), bytes.as_slice())?;
        Ok(())
    }

    /// Restores a cold segment fetched from the object store at `path`: its local info and an
    /// index entry for each memory in it (only those in `live` when the cloud's cold index is
    /// known), without outbox rows. Returns the entries indexed.
    pub fn import_cold_segment(
        &mut self,
        path: &str,
        bytes: &[u8],
        live: Option<&std::collections::HashSet<Ulid>>,
    ) -> Result<usize> {
        let segment: Segment = self
            .codec
            .decode(bytes)
            .map_err(|r| corrupt("cold_segments", path, r))?;
        let kept: Vec<&Memory> = segment
            .memories
            .iter()
            .filter(|m| live.is_none_or(|l| l.contains(&m.id)))
            .collect();
        let info = SegmentInfo::of(
            &segment.id,
            path,
            &segment.memories,
            kept.len(),
            bytes.len(),
        );
        self.put_segment_info(&info)?;
        let mut index = self.tx.open_table(COLD_INDEX)?;
        for m in &kept {
            let entry = ColdEntry::of(m, &segment.id);
            let e = self
                .codec
                .encode(RecordKind::ColdEntry, Compression::None, &entry)?;
            index.insert(u128::from(m.id), e.as_slice())?;
        }
        Ok(kept.len())
    }
}

impl crate::store::ReadTx<'_> {
    /// Every cold index entry, in id order.
    pub fn cold_entries(&self) -> Result<Vec<ColdEntry>> {
        let mut out = Vec::new();
        for row in self.tx.open_table(COLD_INDEX)?.iter()? {
            let (k, v) = row?;
            out.push(
                self.codec
                    .decode(v.value())
                    .map_err(|r| corrupt("cold_index", Ulid(k.value()), r))?,
            );
        }
        Ok(out)
    }

    /// Every cold segment's local info.
    pub fn cold_segments(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for row in self.tx.open_table(COLD_SEGMENTS)?.iter()? {
            let (k, v) = row?;
            out.push(
                self.codec
                    .decode(v.value())
                    .map_err(|r| corrupt("cold_segments", k.value(), r))?,
            );
        }
        Ok(out)
    }
}

impl Store {
    /// Recalls cold memories matching `q`: the Bloom filters and local entries pick the
    /// segments; only those are fetched.
    pub fn recall_cold(&self, q: &RecallQuery, fetcher: &dyn SegmentFetcher) -> Result<ColdRecall> {
        let (segments, entries, skipped) = self.read(|r| {
            let mut wanted = Vec::new();
            let mut skipped = 0u32;
            for info in r.cold_segments()? {
                let overlaps = q.since_ms.is_none_or(|s| info.max_ms >= s)
                    && q.until_ms.is_none_or(|u| info.min_ms <= u);
                if !overlaps {
                    continue;
                }
                if q.pattern_key
                    .as_ref()
                    .is_some_and(|p| !info.bloom.may_contain(p))
                {
                    skipped += 1;
                    continue;
                }
                wanted.push(info);
            }
            let entries: std::collections::HashSet<u128> =
                r.cold_entries()?.iter().map(|e| u128::from(e.id)).collect();
            Ok((wanted, entries, skipped))
        })?;
        let mut out = ColdRecall {
            segments_skipped: skipped,
            ..ColdRecall::default()
        };
        for info in segments {
            let bytes =
                fetcher
                    .fetch(&info.path)
                    .map_err(|reason| StoreError::SegmentUnavailable {
                        segment: info.id.clone(),
                        reason,
                    })?;
            out.segments_fetched += 1;
            let segment: Segment =
                self.codec
                    .decode(&bytes)
                    .map_err(|reason| StoreError::SegmentUnavailable {
                        segment: info.id.clone(),
                        reason: reason.to_string(),
                    })?;
            out.memories.extend(
                segment
                    .memories
                    .into_iter()
                    .filter(|m| entries.contains(&u128::from(m.id)) && q.matches_memory(m)),
            );
        }
        out.memories.sort_by_key(|m| std::cmp::Reverse(m.id));
        out.memories
            .truncate(q.limit.clamp(1, super::recall::MAX_RECALL_LIMIT));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut b = BloomFilter::with_capacity(1000);
        for i in 0..1000 {
            b.insert(&format!("key-{i}"));
        }
        assert!((0..1000).all(|i| b.may_contain(&format!("key-{i}"))));
        let fp = (0..10_000)
            .filter(|i| b.may_contain(&format!("other-{i}")))
            .count();
        assert!(fp < 300, "false positives {fp} / 10000");
    }
}
