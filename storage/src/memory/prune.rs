//! The pruning service: the six steps of SPEC.md §2, in one write transaction, deterministic
//! (every pass iterates in id order; ties break by id), returning a report.
//!
//! 1. remove memories below `min_confidence` older than `low_confidence_min_age`;
//! 2. merge near-duplicate patterns (same pattern key, content similarity ≥ `merge_similarity`):
//!    the oldest survives with metadata united, occurrences summed and confidence weighted by
//!    evidence; the result depends only on the set of memories, not on their insertion order;
//! 3. compact memories past the hot tier (content cut, numbers rounded, free-form metadata
//!    bounded; pool, pattern key, APR, TVL and volume are kept: metadata is never emptied) and
//!    recompress them with the warm dictionary;
//! 4. move memories across tiers by age: warm → cold segments (through the outbox); past their
//!    retention, patterns and learnings are archived as summaries (one archive object per pass)
//!    and the rest dropped; the hourly observation packs whose observations are all past
//!    retention are deleted from the object store;
//! 5. enforce quotas (per type and per category) by evicting the lowest value
//!    (confidence × recency decay × access), preferring memories that relieve several exceeded
//!    quotas at once, so no more are evicted than needed;
//! 6. report what was done.
//!
//! Retention of a memory is the stricter of its type's and its category's entries, or
//! `cold_max_age` when neither has one. Quotas bind local (hot + warm) memories.

use super::cold::ArchivedMemory;
use super::decoded::Pass;
use super::model::{Category, Memory, MemoryType, Source, Tier};
use crate::error::Result;
use crate::store::{Store, WriteTx};
use crate::tables::MEMORIES;
use athena_config::MemoryConfig;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use ulid::Ulid;

/// What one pruning pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PruneReport {
    /// Step 1: low-confidence memories removed.
    pub removed_low_confidence: usize,
    /// Step 2: memories merged into a survivor.
    pub merged: usize,
    /// Step 3: hot memories compacted into the warm tier.
    pub compacted: usize,
    /// Step 4: memories moved to cold segments.
    pub migrated_cold: usize,
    /// Step 4: cold segments written.
    pub segments_written: usize,
    /// Step 4: memories past retention archived as summaries (local and cold).
    pub archived: usize,
    /// Step 4: memories past retention dropped.
    pub expired: usize,
    /// Step 4: hourly observation packs (objects) deleted once all their observations were
    /// past retention.
    #[serde(default)]
    pub packs_expired: usize,
    /// Step 5: memories evicted by quota.
    pub evicted: usize,
    /// Warm records recompressed with a newer dictionary.
    pub recompressed: usize,
    /// Encoded bytes of local records removed or shrunk.
    pub bytes_reclaimed: u64,
    /// Wall time, ms.
    pub duration_ms: u64,
    /// Records that failed their checksum or did not decode: skipped (left in place for an
    /// operator), never a reason to stop pruning the rest.
    pub corrupt: Vec<crate::verify::CorruptRecord>,
}

/// Retention of a memory of `kind` and `category`, ms.
pub fn retention_ms(cfg: &MemoryConfig, kind: MemoryType, category: Category) -> u64 {
    let by = |name: &str| cfg.retention.get(name).map(|d| d.as_millis() as u64);
    match (by(kind.as_str()), by(category.as_str())) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => cfg.cold_max_age.as_millis() as u64,
    }
}

/// Content similarity in [0, 1]: Jaccard index of the lower-cased word sets.
pub fn similarity(a: &str, b: &str) -> f64 {
    jaccard(&words(a), &words(b))
}

/// The lower-cased words of a text.
fn words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Jaccard index of two word sets (1 for two empty sets).
fn jaccard(a: &BTreeSet<String>, b: &BTreeSet<String>) -> f64 {
    let union = a.union(b).count();
    if union == 0 {
        return 1.0;
    }
    a.intersection(b).count() as f64 / union as f64
}

/// Eviction value: confidence × recency decay × access weight. Lowest goes first.
pub fn eviction_value(m: &Memory, now_ms: u64, half_life_ms: u64) -> f64 {
    let age = m.age_ms(now_ms) as f64;
    let decay = 0.5f64.powf(age / half_life_ms.max(1) as f64);
    m.confidence * decay * (1.0 + f64::from(m.access_count).ln_1p())
}

/// Compacts a memory for the warm tier. Never empties structured metadata.
pub fn compact(m: &mut Memory, max_chars: usize) {
    if let Some((cut, _)) = m.content.char_indices().nth(max_chars) {
        m.content.truncate(cut);
    }
    let md = &mut m.metadata;
    md.apr = md.apr.map(|v| (v * 100.0).round() / 100.0);
    md.tvl = md.tvl.map(f64::round);
    md.volume = md.volume.map(f64::round);
    const KEEP_EXTRA: usize = 8;
    const EXTRA_VALUE_CHARS: usize = 64;
    md.extra = std::mem::take(&mut md.extra)
        .into_iter()
        .take(KEEP_EXTRA)
        .map(|(k, mut v)| {
            if let Some((cut, _)) = v.char_indices().nth(EXTRA_VALUE_CHARS) {
                v.truncate(cut);
            }
            (k, v)
        })
        .collect();
    m.tier = Tier::Warm;
}

/// Merges a cluster (sorted by id, first = survivor) into one memory.
pub fn merge_cluster<M: Borrow<Memory>>(cluster: &[M]) -> Memory {
    let cluster: Vec<&Memory> = cluster.iter().map(Borrow::borrow).collect();
    let mut out = cluster[0].clone();
    let total: u64 = cluster
        .iter()
        .map(|m| u64::from(m.occurrences.max(1)))
        .sum();
    let weighted: f64 = cluster
        .iter()
        .map(|m| m.confidence * f64::from(m.occurrences.max(1)))
        .sum();
    out.confidence = (weighted / total as f64).clamp(0.0, 1.0);
    out.occurrences = u32::try_from(total).unwrap_or(u32::MAX);
    out.accessed_ms = cluster
        .iter()
        .map(|m| m.accessed_ms)
        .max()
        .unwrap_or(out.accessed_ms);
    out.access_count = cluster
        .iter()
        .map(|m| m.access_count)
        .fold(0u32, u32::saturating_add);
    // The least trusted writer of any member: merging must not launder LLM content.
    out.source = cluster
        .iter()
        .map(|m| m.source)
        .min_by(|a, b| a.trust().total_cmp(&b.trust()).then(a.cmp(b)))
        .unwrap_or(Source::Rule);
    // Metadata union: structured fields from the first member that has them; free-form keys
    // from the member with the highest confidence (ties: the older).
    let md = &mut out.metadata;
    for m in &cluster[1..] {
        md.pool = md.pool.take().or_else(|| m.metadata.pool.clone());
        md.apr = md.apr.or(m.metadata.apr);
        md.tvl = md.tvl.or(m.metadata.tvl);
        md.volume = md.volume.or(m.metadata.volume);
    }
    let mut by_rank = cluster.clone();
    by_rank.sort_by(|a, b| b.confidence.total_cmp(&a.confidence).then(a.id.cmp(&b.id)));
    let mut extra = BTreeMap::new();
    for m in by_rank.iter().rev() {
        extra.extend(m.metadata.extra.clone());
    }
    let mut extra: Vec<(String, String)> = extra.into_iter().collect();
    extra.truncate(super::model::MAX_EXTRA_ENTRIES);
    md.extra = extra.into_iter().collect();
    out
}

/// Clusters patterns of one key (sorted by id): each joins the first cluster whose survivor it
/// resembles enough ([`similarity`], with each member's words taken once).
fn clusters(members: &[Arc<Memory>], threshold: f64) -> Vec<Vec<Arc<Memory>>> {
    let mut out: Vec<(BTreeSet<String>, Vec<Arc<Memory>>)> = Vec::new();
    for m in members {
        let words = words(&m.content);
        match out
            .iter_mut()
            .find(|(survivor, _)| jaccard(survivor, &words) >= threshold)
        {
            Some((_, c)) => c.push(Arc::clone(m)),
            None => out.push((words, vec![Arc::clone(m)])),
        }
    }
    out.into_iter().map(|(_, c)| c).collect()
}

/// The memories to evict so every quota holds. Each step evicts, among the memories of the
/// quotas still exceeded, one that relieves the most of them, the lowest value first (ties by
/// id): a memory counted by both an exceeded type quota and an exceeded category quota goes
/// before one that relieves only one, so no more memories are evicted than needed.
fn quota_evictions(
    cfg: &MemoryConfig,
    live: &BTreeMap<Ulid, Arc<Memory>>,
    now_ms: u64,
) -> Vec<Ulid> {
    let quotas: Vec<(&str, usize)> = cfg
        .quotas
        .iter()
        .map(|(k, v)| (k.as_str(), usize::try_from(*v).unwrap_or(usize::MAX)))
        .collect();
    let half_life = cfg.recency_half_life.as_millis() as u64;
    // Memories grouped by the set of quotas they count in (a bitmask), each group sorted so its
    // next eviction candidate comes first.
    let mut groups: BTreeMap<u64, Vec<(f64, Ulid)>> = BTreeMap::new();
    let mut counts = vec![0usize; quotas.len()];
    for m in live.values() {
        let mask = quotas
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| m.kind.as_str() == *name || m.category.as_str() == *name)
            .fold(0u64, |acc, (i, _)| acc | (1 << i));
        if mask == 0 {
            continue;
        }
        for (i, c) in counts.iter_mut().enumerate() {
            *c += usize::from(mask & (1 << i) != 0);
        }
        groups
            .entry(mask)
            .or_default()
            .push((eviction_value(m, now_ms, half_life), m.id));
    }
    for g in groups.values_mut() {
        // Descending, so the candidate is popped from the end.
        g.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    }
    let mut evicted = Vec::new();
    loop {
        let exceeded = counts
            .iter()
            .zip(&quotas)
            .enumerate()
            .filter(|(_, (c, (_, q)))| *c > q)
            .fold(0u64, |acc, (i, _)| acc | (1 << i));
        if exceeded == 0 {
            return evicted;
        }
        let best = groups
            .iter()
            .filter(|(mask, g)| *mask & exceeded != 0 && !g.is_empty())
            .map(|(mask, g)| {
                (
                    *mask,
                    (*mask & exceeded).count_ones(),
                    *g.last().expect("non-empty"),
                )
            })
            .max_by(|a, b| {
                a.1.cmp(&b.1)
                    .then(b.2.0.total_cmp(&a.2.0))
                    .then(b.2.1.cmp(&a.2.1))
            });
        let Some((mask, _, (_, id))) = best else {
            return evicted;
        };
        groups.get_mut(&mask).expect("present").pop();
        for (i, c) in counts.iter_mut().enumerate() {
            *c -= usize::from(mask & (1 << i) != 0);
        }
        evicted.push(id);
    }
}

impl Store {
    /// Runs one pruning pass at agent time `now_ms`, then trains or refreshes compression
    /// dictionaries when enough records exist.
    pub fn prune(&self, now_ms: u64) -> Result<PruneReport> {
        let started = Instant::now();
        let cfg = self.memory.clone();
        let access = self.recall.take_access();
        let mut decoded = self.decoded.lock().expect("decoded memories lock");
        let mut pass = decoded.begin();
        let report = self.write(|w| prune_in(w, &cfg, now_ms, &access, &mut pass));
        decoded.finish(pass);
        drop(decoded);
        let mut report = report?;
        let (_, recompressed) = crate::dictionary::train_and_recompress(self, now_ms)?;
        report.recompressed = recompressed;
        report.duration_ms = started.elapsed().as_millis() as u64;
        tracing::info!(?report, "pruning pass done");
        Ok(report)
    }
}

fn prune_in(
    w: &mut WriteTx<'_>,
    cfg: &MemoryConfig,
    now_ms: u64,
    access: &HashMap<u128, (u32, u64)>,
    decoded: &mut Pass,
) -> Result<PruneReport> {
    let mut r = PruneReport::default();
    // Every record as stored when the pass began, with its encoded size; `live` starts as the
    // same memories (shared, and with the decoded-memories cache: one this pass changes is
    // copied first) and ends as what the store should hold.
    let mut stored: HashMap<Ulid, (Arc<Memory>, usize)> = HashMap::new();
    let mut live: BTreeMap<Ulid, Arc<Memory>> = BTreeMap::new();
    {
        let t = w.tx.open_table(MEMORIES)?;
        for row in t.iter()? {
            let (k, v) = row?;
            let id = Ulid(k.value());
            let m = match decoded.get(id, v.value(), |bytes| w.codec.decode::<Memory>(bytes)) {
                Ok(m) => m,
                Err(e) => {
                    // Skipped, not fatal: one bad record must not switch pruning off.
                    r.corrupt.push(crate::verify::CorruptRecord {
                        table: "memories".into(),
                        key: Ulid(k.value()).to_string(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            stored.insert(id, (Arc::clone(&m), v.value().len()));
            live.insert(id, m);
        }
    }
    // dirty: rewrite locally; changed: also send to the cloud (access counts stay local).
    let mut dirty: BTreeSet<Ulid> = BTreeSet::new();
    let mut changed: BTreeSet<Ulid> = BTreeSet::new();
    for m in live.values_mut() {
        if let Some((n, at)) = access.get(&u128::from(m.id)) {
            let m = Arc::make_mut(m);
            m.access_count = m.access_count.saturating_add(*n);
            m.accessed_ms = m.accessed_ms.max(*at);
            dirty.insert(m.id);
        }
    }
    // Deleted at the end, with the rewrites, from their stored versions.
    let mut deleted: Vec<Ulid> = Vec::new();

    // 1. low confidence
    let min_age = cfg.low_confidence_min_age.as_millis() as u64;
    let low: Vec<Ulid> = live
        .values()
        .filter(|m| m.confidence < cfg.min_confidence && m.age_ms(now_ms) > min_age)
        .map(|m| m.id)
        .collect();
    for id in low {
        live.remove(&id);
        deleted.push(id);
        r.removed_low_confidence += 1;
    }

    // 2. merge near-duplicate patterns with the same key
    let mut groups: BTreeMap<String, Vec<Arc<Memory>>> = BTreeMap::new();
    for m in live.values().filter(|m| m.kind == MemoryType::Pattern) {
        if let Some(k) = &m.metadata.pattern_key {
            groups.entry(k.clone()).or_default().push(Arc::clone(m));
        }
    }
    for members in groups.values().filter(|g| g.len() > 1) {
        for cluster in clusters(members, cfg.merge_similarity)
            .into_iter()
            .filter(|c| c.len() > 1)
        {
            let merged = merge_cluster(&cluster);
            for gone in &cluster[1..] {
                live.remove(&gone.id);
                deleted.push(gone.id);
                r.merged += 1;
            }
            dirty.insert(merged.id);
            changed.insert(merged.id);
            live.insert(merged.id, Arc::new(merged));
        }
    }

    // 3 and 4. tiers by age
    let hot_age = cfg.hot_max_age.as_millis() as u64;
    let warm_age = cfg.warm_max_age.as_millis() as u64;
    let mut to_cold = Vec::new();
    let mut archive = Vec::new();
    let ids: Vec<Ulid> = live.keys().copied().collect();
    for id in ids {
        let m = &live[&id];
        let age = m.age_ms(now_ms);
        if age > retention_ms(cfg, m.kind, m.category) {
            if matches!(m.kind, MemoryType::Pattern | MemoryType::Learning) {
                archive.push(ArchivedMemory::from_live(m));
                r.archived += 1;
            } else {
                r.expired += 1;
            }
            live.remove(&id);
            deleted.push(id);
        } else if age > warm_age {
            to_cold.push(Arc::unwrap_or_clone(live.remove(&id).expect("present")));
        } else if age > hot_age && m.tier == Tier::Hot {
            let m = Arc::make_mut(live.get_mut(&id).expect("present"));
            compact(m, cfg.warm_content_max_chars as usize);
            dirty.insert(id);
            changed.insert(id);
            r.compacted += 1;
        }
    }
    if !to_cold.is_empty() {
        let (segments, freed) =
            w.export_cold(&to_cold, now_ms, cfg.cold_segment_max_records as usize)?;
        r.segments_written = segments;
        r.migrated_cold = to_cold.len();
        r.bytes_reclaimed += freed;
    }
    let (cold_archive, dropped) = w.expire_cold(now_ms, |k, c| retention_ms(cfg, k, c))?;
    r.archived += cold_archive.len();
    r.expired += dropped;
    archive.extend(cold_archive);
    w.write_archive(&archive, now_ms)?;
    let pack_retention = Category::ALL
        .iter()
        .map(|c| retention_ms(cfg, MemoryType::Observation, *c))
        .max()
        .unwrap_or(0);
    r.packs_expired = w.expire_observation_packs(pack_retention, now_ms)?;

    // 5. quotas
    for id in quota_evictions(cfg, &live, now_ms) {
        live.remove(&id);
        dirty.remove(&id);
        deleted.push(id);
        r.evicted += 1;
    }

    // Deletions, then rewrites of what changed (merged survivors, compacted records, access
    // counts), from the versions decoded at the start: nothing is decoded again.
    let stored_version = |id: &Ulid| -> &Memory { &stored[id].0 };
    let rewritten: Vec<(&Memory, &Memory)> = dirty
        .iter()
        .filter_map(|id| Some((stored_version(id), &**live.get(id)?)))
        .collect();
    let removed: Vec<&Memory> = deleted.iter().map(stored_version).collect();
    let sizes = w.apply_decoded_memory_changes(&removed, &rewritten, now_ms)?;
    r.bytes_reclaimed += deleted.iter().map(|id| stored[id].1 as u64).sum::<u64>();
    for ((_, m), after) in rewritten.iter().zip(sizes) {
        r.bytes_reclaimed += stored[&m.id].1.saturating_sub(after) as u64;
        // An observation's compaction stays local: its hour's pack is history.
        if !changed.contains(&m.id) {
            continue;
        }
        if !crate::outbox::has_document(m) {
            w.changes.documents += 1;
            continue;
        }
        w.outbox_append(
            crate::outbox::OutboxOp::Stored(crate::outbox::StoredRecord::Memory(u128::from(m.id))),
            now_ms,
        )?;
    }
    Ok(r)
}
