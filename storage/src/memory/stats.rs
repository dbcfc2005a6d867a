//! Memory statistics: counts by category and tier, by type, and the cold tier's segments.

use super::cold::{ColdEntry, SegmentInfo};
use super::model::{Memory, Tier};
use crate::error::Result;
use crate::store::{Store, corrupt};
use crate::tables::{COLD_INDEX, COLD_SEGMENTS, MEMORIES};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Memories of one category by tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TierCounts {
    /// Hot (full records, local).
    pub hot: u64,
    /// Warm (compacted, local).
    pub warm: u64,
    /// Cold (segments in the object store, local index entry).
    pub cold: u64,
}

/// What the memory holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MemoryStats {
    /// By category.
    pub by_category: BTreeMap<String, TierCounts>,
    /// By type, all tiers.
    pub by_type: BTreeMap<String, u64>,
    /// Totals by tier.
    pub total: TierCounts,
    /// Encoded bytes of local records.
    pub local_bytes: u64,
    /// Cold segments.
    pub segments: u64,
    /// Encoded bytes of cold segments (in the object store).
    pub segment_bytes: u64,
}

impl Store {
    /// Counts memories by category, tier and type.
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        self.read(|r| {
            let mut s = MemoryStats::default();
            for row in r.tx.open_table(MEMORIES)?.iter()? {
                let (k, v) = row?;
                let m: Memory = r
                    .codec
                    .decode(v.value())
                    .map_err(|e| corrupt("memories", ulid::Ulid(k.value()), e))?;
                s.local_bytes += v.value().len() as u64;
                let c = s
                    .by_category
                    .entry(m.category.as_str().to_string())
                    .or_default();
                if m.tier == Tier::Hot {
                    c.hot += 1;
                    s.total.hot += 1;
                } else {
                    c.warm += 1;
                    s.total.warm += 1;
                }
                *s.by_type.entry(m.kind.as_str().to_string()).or_default() += 1;
            }
            for row in r.tx.open_table(COLD_INDEX)?.iter()? {
                let (k, v) = row?;
                let e: ColdEntry = r
                    .codec
                    .decode(v.value())
                    .map_err(|x| corrupt("cold_index", ulid::Ulid(k.value()), x))?;
                s.by_category
                    .entry(e.category.as_str().to_string())
                    .or_default()
                    .cold += 1;
                s.total.cold += 1;
                *s.by_type.entry(e.kind.as_str().to_string()).or_default() += 1;
            }
            for row in r.tx.open_table(COLD_SEGMENTS)?.iter()? {
                let (k, v) = row?;
                let info: SegmentInfo = r
                    .codec
                    .decode(v.value())
                    .map_err(|x| corrupt("cold_segments", k.value(), x))?;
                s.segments += 1;
                s.segment_bytes += info.bytes;
            }
            Ok(s)
        })
    }
}
