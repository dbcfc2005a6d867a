//! Recall: memories by category, pool, pattern key, time range and minimum confidence, through
//! the secondary indexes, fronted by a query cache, with latency statistics.
//!
//! Cache invalidation: each category has a generation number, bumped after every committed
//! write to that category (and a global one bumped by any memory write). A cached answer is
//! keyed by the generation it was computed at, so a write makes the category's old answers
//! unreachable at once; moka's TTL and size bound then evict them.
//!
//! Access tracking (recency and access count for quota eviction) is buffered in memory, bounded,
//! and flushed by the pruning service, so a recall never writes to disk.

use super::model::{Category, Memory, MemoryType};
use crate::error::Result;
use crate::store::{ReadTx, Store};
use crate::tables::{MEM_BY_CATEGORY, MEM_BY_PATTERN, MEM_BY_POOL, MEMORIES};
use athena_config::MemoryConfig;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use ulid::Ulid;

/// Most memories one recall returns.
pub const MAX_RECALL_LIMIT: usize = 1000;
/// Most distinct memories whose accesses are buffered between flushes; beyond it further
/// accesses are counted in `access_overflow` and not recorded (recall must not write).
const ACCESS_BUFFER_MAX: usize = 100_000;

/// What to recall. Every given filter must match; results are newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecallQuery {
    /// Only this category.
    pub category: Option<Category>,
    /// Only this type.
    pub kind: Option<MemoryType>,
    /// Only this pool.
    pub pool: Option<String>,
    /// Only this pattern key.
    pub pattern_key: Option<String>,
    /// Created at or after, ms.
    pub since_ms: Option<u64>,
    /// Created at or before, ms.
    pub until_ms: Option<u64>,
    /// Confidence at least this.
    pub min_confidence: Option<f64>,
    /// At most this many (capped at [`MAX_RECALL_LIMIT`]).
    pub limit: usize,
}

impl RecallQuery {
    /// Whether `m` passes every filter of the query.
    pub fn matches_memory(&self, m: &Memory) -> bool {
        self.category.is_none_or(|c| c == m.category)
            && self.kind.is_none_or(|k| k == m.kind)
            && self
                .pool
                .as_ref()
                .is_none_or(|p| m.metadata.pool.as_ref() == Some(p))
            && self
                .pattern_key
                .as_ref()
                .is_none_or(|p| m.metadata.pattern_key.as_ref() == Some(p))
            && self.since_ms.is_none_or(|s| m.created_ms >= s)
            && self.until_ms.is_none_or(|u| m.created_ms <= u)
            && self.min_confidence.is_none_or(|c| m.confidence >= c)
    }

    fn limit(&self) -> usize {
        self.limit.clamp(1, MAX_RECALL_LIMIT)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    generation: u64,
    category: Option<Category>,
    kind: Option<MemoryType>,
    pool: Option<String>,
    pattern_key: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    min_confidence_bits: Option<u64>,
    limit: usize,
}

/// Recall latency and cache statistics since the store was opened.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RecallStats {
    /// Recalls served.
    pub count: u64,
    /// Served from the cache.
    pub cache_hits: u64,
    /// Served from the indexes.
    pub cache_misses: u64,
    /// Median latency, µs.
    pub p50_us: u64,
    /// 95th percentile latency, µs.
    pub p95_us: u64,
    /// 99th percentile latency, µs.
    pub p99_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
    /// Accesses not recorded because the access buffer was full.
    pub access_overflow: u64,
}

pub(crate) struct RecallState {
    cache: moka::sync::Cache<CacheKey, Arc<Vec<Memory>>>,
    generations: [AtomicU64; 64],
    global: AtomicU64,
    latency: Mutex<Histogram<u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    access: Mutex<HashMap<u128, (u32, u64)>>,
    access_overflow: AtomicU64,
}

impl RecallState {
    pub(crate) fn new(cfg: &MemoryConfig) -> Self {
        Self {
            cache: moka::sync::Cache::builder()
                .max_capacity(cfg.query_cache_entries)
                .time_to_live(cfg.query_cache_ttl)
                .build(),
            generations: std::array::from_fn(|_| AtomicU64::new(0)),
            global: AtomicU64::new(0),
            latency: Mutex::new(
                Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            ),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            access: Mutex::new(HashMap::new()),
            access_overflow: AtomicU64::new(0),
        }
    }

    /// Called after a commit that touched the categories in the `touched` bitset.
    pub(crate) fn invalidate(&self, touched: u64) {
        if touched == 0 {
            return;
        }
        for (i, g) in self.generations.iter().enumerate() {
            if touched & (1 << i) != 0 {
                g.fetch_add(1, Ordering::AcqRel);
            }
        }
        self.global.fetch_add(1, Ordering::AcqRel);
    }

    fn key(&self, q: &RecallQuery) -> CacheKey {
        let generation = match q.category {
            Some(c) => self.generations[usize::from(c.index())].load(Ordering::Acquire),
            None => self.global.load(Ordering::Acquire),
        };
        CacheKey {
            generation,
            category: q.category,
            kind: q.kind,
            pool: q.pool.clone(),
            pattern_key: q.pattern_key.clone(),
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            min_confidence_bits: q.min_confidence.map(f64::to_bits),
            limit: q.limit(),
        }
    }

    fn record_access(&self, found: &[Memory], now_ms: u64) {
        let mut access = self.access.lock().expect("access lock");
        for m in found {
            let id = u128::from(m.id);
            if access.len() >= ACCESS_BUFFER_MAX && !access.contains_key(&id) {
                self.access_overflow.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let e = access.entry(id).or_insert((0, now_ms));
            e.0 = e.0.saturating_add(1);
            e.1 = e.1.max(now_ms);
        }
    }

    /// Takes the buffered accesses (id → (count, last ms)).
    pub(crate) fn take_access(&self) -> HashMap<u128, (u32, u64)> {
        std::mem::take(&mut *self.access.lock().expect("access lock"))
    }
}

impl Store {
    /// Recalls memories matching `q`, newest first, through the cache.
    pub fn recall(&self, q: &RecallQuery, now_ms: u64) -> Result<Arc<Vec<Memory>>> {
        let started = Instant::now();
        let state = &self.recall;
        let key = state.key(q);
        let result = match state.cache.get(&key) {
            Some(hit) => {
                state.hits.fetch_add(1, Ordering::Relaxed);
                hit
            }
            None => {
                state.misses.fetch_add(1, Ordering::Relaxed);
                let found = Arc::new(self.read(|r| r.recall_uncached(q))?);
                state.cache.insert(key, found.clone());
                found
            }
        };
        state.record_access(&result, now_ms);
        let micros = u64::try_from(started.elapsed().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        state
            .latency
            .lock()
            .expect("latency lock")
            .saturating_record(micros);
        Ok(result)
    }

    /// Recall statistics since open.
    pub fn recall_stats(&self) -> RecallStats {
        let s = &self.recall;
        let h = s.latency.lock().expect("latency lock");
        RecallStats {
            count: h.len(),
            cache_hits: s.hits.load(Ordering::Relaxed),
            cache_misses: s.misses.load(Ordering::Relaxed),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            access_overflow: s.access_overflow.load(Ordering::Relaxed),
        }
    }
}

impl ReadTx<'_> {
    /// Recalls without the cache, through the most selective index the query allows.
    pub fn recall_uncached(&self, q: &RecallQuery) -> Result<Vec<Memory>> {
        let (lo, hi) = (q.since_ms.unwrap_or(0), q.until_ms.unwrap_or(u64::MAX));
        let limit = q.limit();
        let mut out = Vec::new();
        let mems = self.tx.open_table(MEMORIES)?;
        let mut consider = |id: u128| -> Result<bool> {
            if let Some(v) = mems.get(id)? {
                let m: Memory = self
                    .codec
                    .decode(v.value())
                    .map_err(|r| crate::store::corrupt("memories", Ulid(id), r))?;
                if q.matches_memory(&m) {
                    out.push(m);
                }
            }
            Ok(out.len() >= limit)
        };
        if let Some(key) = &q.pattern_key {
            let t = self.tx.open_table(MEM_BY_PATTERN)?;
            for row in t
                .range((key.as_str(), 0u128)..=(key.as_str(), u128::MAX))?
                .rev()
            {
                if consider(row?.0.value().1)? {
                    break;
                }
            }
        } else if let Some(pool) = &q.pool {
            let t = self.tx.open_table(MEM_BY_POOL)?;
            for row in t
                .range((pool.as_str(), lo, 0u128)..=(pool.as_str(), hi, u128::MAX))?
                .rev()
            {
                if consider(row?.0.value().2)? {
                    break;
                }
            }
        } else if let Some(c) = q.category {
            let t = self.tx.open_table(MEM_BY_CATEGORY)?;
            for row in t
                .range((c.index(), lo, 0u128)..=(c.index(), hi, u128::MAX))?
                .rev()
            {
                if consider(row?.0.value().2)? {
                    break;
                }
            }
        } else {
            // Ids are ULIDs whose time part is created_ms: the id range is the time range.
            const MAX_ULID_MS: u64 = (1 << 48) - 1;
            let from = u128::from(Ulid::from_parts(lo.min(MAX_ULID_MS), 0));
            let to = u128::from(Ulid::from_parts(hi.min(MAX_ULID_MS), u128::MAX));
            for row in mems.range(from..=to)?.rev() {
                if consider(row?.0.value())? {
                    break;
                }
            }
        }
        Ok(out)
    }
}
