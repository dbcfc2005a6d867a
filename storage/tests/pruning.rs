//! Pruning invariants (proptest) and the behaviour of each step.

mod common;
use athena_config::MemoryConfig;
use athena_storage::memory::prune::{compact, retention_ms};
use athena_storage::{
    Category, Memory, MemoryType, OutboxOp, RecallQuery, SegmentFetcher, Store, Tier,
};
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A small config so quotas bind with few memories.
fn small_cfg() -> MemoryConfig {
    let mut cfg = MemoryConfig::default();
    cfg.quotas = [("observation", 12), ("pattern", 8), ("pool_behavior", 6)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    cfg.dictionary_min_samples = 1_000_000; // no training in these tests
    cfg
}

fn arb_memory() -> impl Strategy<Value = (u64, u8, u8, u64, u8, u8)> {
    // (n, kind, category, age in hours, confidence tenths, content variant)
    (
        0u64..100_000,
        0u8..2,
        0u8..4,
        0u64..(40 * 24),
        0u8..=10,
        0u8..3,
    )
}

fn build(spec: &(u64, u8, u8, u64, u8, u8), now: u64) -> Memory {
    let (n, kind, cat, age_h, conf, variant) = *spec;
    let kind = [MemoryType::Observation, MemoryType::Pattern][kind as usize];
    let mut m = memory(
        n,
        kind,
        Category::ALL[cat as usize],
        now - age_h * HOUR,
        f64::from(conf) / 10.0,
    );
    if kind == MemoryType::Pattern {
        // Few distinct contents per key so that merges happen.
        m.content = [
            "apr rises when volume spikes",
            "apr rises when volume spikes hard",
            "tvl drains after emissions end",
        ][variant as usize]
            .to_string();
    }
    m
}

fn snapshot(store: &Store) -> (Vec<Memory>, Vec<(String, String)>) {
    let mems = store.read(|r| r.all_memories()).unwrap();
    let cold = store
        .read(|r| {
            let mut out = Vec::new();
            for (seq, row) in r.outbox_peek(0, usize::MAX)? {
                let _ = seq;
                if let OutboxOp::Upsert {
                    collection,
                    doc,
                    body,
                } = row.op
                    && collection == "cold_index"
                {
                    out.push((doc, body));
                }
            }
            Ok(out)
        })
        .unwrap();
    (mems, cold)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn pruning_invariants(specs in proptest::collection::vec(arb_memory(), 1..120)) {
        let now = T0 + 60 * DAY;
        let cfg = small_cfg();
        let dir = tempfile::tempdir().unwrap();
        let store = open_with(dir.path(), &cfg);
        let mut originals: BTreeMap<ulid::Ulid, Memory> = BTreeMap::new();
        for s in &specs {
            let m = build(s, now);
            originals.insert(m.id, m);
        }
        let all: Vec<Memory> = originals.values().cloned().collect();
        store.insert_memories(&all, now).unwrap();
        let report = store.prune(now).unwrap();
        let after: BTreeMap<ulid::Ulid, Memory> = store.read(|r| r.all_memories()).unwrap().into_iter().map(|m| (m.id, m)).collect();
        let cold: BTreeMap<ulid::Ulid, Option<String>> = snapshot(&store)
            .1
            .into_iter()
            .map(|(d, body)| {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                (d.parse().unwrap(), body["pattern_key"].as_str().map(str::to_string))
            })
            .collect();

        let archived: Vec<athena_storage::ArchivedMemory> = store
            .outbox_peek(0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|(_, row)| match row.op {
                OutboxOp::PutBlob { path, bytes } if path.starts_with("archive/") => serde_json::from_slice::<Vec<_>>(&bytes).ok(),
                _ => None,
            })
            .flatten()
            .collect();
        prop_assert_eq!(archived.len(), report.archived);

        // Quotas hold.
        for (name, quota) in &cfg.quotas {
            let n = after.values().filter(|m| m.kind.as_str() == name || m.category.as_str() == name).count();
            prop_assert!(n as u64 <= *quota, "{name}: {n} > {quota}");
        }
        // Nothing younger than its retention disappears, except by low confidence, merge or quota.
        let min_age = cfg.low_confidence_min_age.as_millis() as u64;
        for m in originals.values() {
            let young = m.age_ms(now) <= retention_ms(&cfg, m.kind, m.category);
            let low = m.confidence < cfg.min_confidence && m.age_ms(now) > min_age;
            if !young || low || after.contains_key(&m.id) || cold.contains_key(&m.id) {
                continue;
            }
            // Merged into an older survivor with the same key, which may itself have gone cold
            // or (past its retention) into the archive.
            let merged = m.kind == MemoryType::Pattern
                && (after.values().any(|s| s.id < m.id && s.metadata.pattern_key == m.metadata.pattern_key)
                    || cold.iter().any(|(id, key)| *id < m.id && *key == m.metadata.pattern_key)
                    || archived.iter().any(|a| a.id < m.id && a.pattern_key == m.metadata.pattern_key));
            let quota_full = cfg.quotas.iter().any(|(name, q)| {
                (m.kind.as_str() == name || m.category.as_str() == name)
                    && after.values().filter(|x| x.kind.as_str() == name || x.category.as_str() == name).count() as u64 == *q
            });
            prop_assert!(merged || quota_full, "memory {} ({:?}, {:?}) vanished", m.id, m.kind, m.category);
        }
        // Structured metadata is never emptied; tiers match ages.
        for m in after.values() {
            let o = &originals[&m.id];
            prop_assert_eq!(&m.metadata.pool, &o.metadata.pool);
            prop_assert_eq!(&m.metadata.pattern_key, &o.metadata.pattern_key);
            prop_assert!(m.metadata.apr.is_some() && m.metadata.tvl.is_some());
            let expect = if m.age_ms(now) > cfg.hot_max_age.as_millis() as u64 { Tier::Warm } else { Tier::Hot };
            prop_assert_eq!(m.tier, expect);
        }
        prop_assert!(store.verify_records().unwrap().is_clean());
        // Every memory is accounted for exactly once
        // (a single pass over a fresh store: every archived memory was local).
        let accounted = report.removed_low_confidence + report.merged + report.expired
            + report.migrated_cold + report.archived + report.evicted + after.len();
        prop_assert_eq!(accounted, originals.len(), "report does not add up: {:?}", report);
    }

    #[test]
    fn pruning_is_deterministic_and_order_independent(specs in proptest::collection::vec(arb_memory(), 1..80), seed in any::<u64>()) {
        let now = T0 + 60 * DAY;
        let cfg = small_cfg();
        let mut ms: Vec<Memory> = specs.iter().map(|s| build(s, now)).collect();
        ms.sort_by_key(|m| m.id);
        ms.dedup_by_key(|m| m.id);
        let mut shuffled = ms.clone();
        // Deterministic shuffle from the seed.
        let mut x = seed | 1;
        for i in (1..shuffled.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            shuffled.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let run = |input: &[Memory]| {
            let dir = tempfile::tempdir().unwrap();
            let store = open_with(dir.path(), &cfg);
            for m in input {
                store.insert_memory(m, now).unwrap();
            }
            let report = store.prune(now).unwrap();
            let (mems, cold) = snapshot(&store);
            let mut cold: Vec<String> = cold.into_iter().map(|(d, _)| d).collect();
            cold.sort();
            (PruneCounts::from(&report), mems, cold)
        };
        let a = run(&ms);
        let b = run(&shuffled);
        prop_assert_eq!(&a, &b);
    }

    /// Pruning keeps the memories it decoded for its next pass (memory::decoded): a store kept
    /// open across passes, with memories rewritten, recalled, recompressed and inserted between
    /// them, must end exactly like one reopened (nothing cached) before every pass.
    #[test]
    fn repeated_passes_end_the_same_with_or_without_the_decoded_memories(
        specs in proptest::collection::vec(arb_memory(), 1..60),
        rounds in proptest::collection::vec(
            (1u64..72, proptest::collection::vec(arb_memory(), 0..10), proptest::collection::vec((any::<prop::sample::Index>(), 0u8..=10), 0..6)),
            1..5,
        ),
    ) {
        let start = T0 + 60 * DAY;
        let mut cfg = small_cfg();
        cfg.dictionary_min_samples = 8; // dictionaries train and recompress between passes
        let run = |reopen_each_pass: bool| {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Some(open_with(dir.path(), &cfg));
            let mut now = start;
            let first: Vec<Memory> = specs.iter().map(|s| build(s, now)).collect();
            store.as_ref().unwrap().insert_memories(&first, now).unwrap();
            let mut reports = Vec::new();
            for (hours, inserts, rewrites) in &rounds {
                now += hours * HOUR;
                if reopen_each_pass {
                    // Before the round's recall: buffered access counts do not survive a reopen.
                    drop(store.take());
                    store = Some(open_with(dir.path(), &cfg));
                }
                let s = store.as_ref().unwrap();
                let stored = s.read(|r| r.all_memories()).unwrap();
                for (pick, conf) in rewrites {
                    if stored.is_empty() { break; }
                    let mut m = pick.get(&stored).clone();
                    m.confidence = f64::from(*conf) / 10.0;
                    m.content.push_str(" revised");
                    s.insert_memory(&m, now).unwrap();
                }
                let fresh: Vec<Memory> = inserts.iter().map(|x| build(x, now)).collect();
                s.insert_memories(&fresh, now).unwrap();
                s.recall(&RecallQuery { category: Some(Category::ALL[(now / HOUR % 4) as usize]), limit: 5, ..Default::default() }, now).unwrap();
                reports.push(PruneCounts::from(&s.prune(now).unwrap()));
            }
            let s = store.unwrap();
            prop_assert!(s.verify_records().unwrap().is_clean());
            Ok((reports, snapshot(&s)))
        };
        let kept_open = run(false)?;
        let reopened = run(true)?;
        prop_assert_eq!(kept_open, reopened);
    }
}

#[derive(Debug, PartialEq)]
struct PruneCounts([usize; 8]);

impl From<&athena_storage::PruneReport> for PruneCounts {
    fn from(r: &athena_storage::PruneReport) -> Self {
        Self([
            r.removed_low_confidence,
            r.merged,
            r.compacted,
            r.migrated_cold,
            r.segments_written,
            r.archived,
            r.expired,
            r.evicted,
        ])
    }
}

#[test]
fn merge_sums_occurrences_and_weights_confidence() {
    let now = T0 + 2 * HOUR;
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &small_cfg());
    let mut a = memory(1, MemoryType::Pattern, Category::AprAnomaly, T0, 0.9);
    let mut b = memory(2, MemoryType::Pattern, Category::AprAnomaly, T0 + 1000, 0.5);
    b.metadata.pool = a.metadata.pool.clone();
    b.metadata.pattern_key = a.metadata.pattern_key.clone();
    a.content = "apr spikes after volume".into();
    b.content = "APR spikes after volume!".into();
    a.occurrences = 3;
    b.occurrences = 1;
    b.metadata.extra.insert("seen_by".into(), "rule-7".into());
    store.insert_memories(&[a.clone(), b.clone()], now).unwrap();
    let report = store.prune(now).unwrap();
    assert_eq!(report.merged, 1);
    let all = store.read(|r| r.all_memories()).unwrap();
    assert_eq!(all.len(), 1);
    let m = &all[0];
    assert_eq!(m.id, a.id, "the oldest survives");
    assert_eq!(m.occurrences, 4);
    assert!((m.confidence - (0.9 * 3.0 + 0.5) / 4.0).abs() < 1e-12);
    assert_eq!(
        m.metadata.extra.get("seen_by").map(String::as_str),
        Some("rule-7")
    );
}

#[test]
fn compaction_never_empties_metadata() {
    let mut m = memory(5, MemoryType::Observation, Category::PoolBehavior, T0, 0.7);
    for i in 0..20 {
        m.metadata.extra.insert(format!("k{i:02}"), "v".repeat(200));
    }
    m.content = "x".repeat(5000);
    compact(&mut m, 280);
    assert_eq!(m.tier, Tier::Warm);
    assert_eq!(m.content.chars().count(), 280);
    assert!(
        m.metadata.pool.is_some()
            && m.metadata.apr.is_some()
            && m.metadata.tvl.is_some()
            && m.metadata.volume.is_some()
    );
    assert_eq!(m.metadata.extra.len(), 8);
    assert!(m.metadata.extra.values().all(|v| v.chars().count() == 64));
}

/// Fetches segments from the outbox rows, as the object store would after a sync.
struct OutboxFetcher(BTreeMap<String, Vec<u8>>);

impl SegmentFetcher for OutboxFetcher {
    fn fetch(&self, path: &str) -> Result<Vec<u8>, String> {
        self.0
            .get(path)
            .cloned()
            .ok_or_else(|| format!("no object {path}"))
    }
}

fn uploaded(store: &Store) -> OutboxFetcher {
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    let mut objects = BTreeMap::new();
    for (_, row) in rows {
        match row.op {
            OutboxOp::PutBlob { path, bytes } => {
                objects.insert(path, bytes);
            }
            OutboxOp::DeleteBlob { path } => {
                objects.remove(&path);
            }
            _ => {}
        }
    }
    OutboxFetcher(objects)
}

#[test]
fn cold_tier_round_trip_with_bloom_filters_and_archive() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &small_cfg());
    let created = T0;
    let pattern = memory(
        10,
        MemoryType::Pattern,
        Category::PoolBehavior,
        created,
        0.8,
    );
    let obs = memory(
        11,
        MemoryType::Observation,
        Category::StrategyPerformance,
        created,
        0.8,
    );
    store
        .insert_memories(&[pattern.clone(), obs.clone()], created)
        .unwrap();

    // Day 10: both past the warm tier and within retention (pattern 30 d, strategy_performance 90 d
    // but observation 7 d: the observation is past its type's retention and dropped).
    let r = store.prune(created + 10 * DAY).unwrap();
    assert_eq!((r.migrated_cold, r.expired), (1, 1), "{r:?}");
    assert!(store.get_memory(pattern.id).unwrap().is_none());
    let fetcher = uploaded(&store);
    let hit = store
        .recall_cold(
            &RecallQuery {
                pattern_key: pattern.metadata.pattern_key.clone(),
                limit: 10,
                ..Default::default()
            },
            &fetcher,
        )
        .unwrap();
    assert_eq!(hit.memories.len(), 1);
    assert_eq!(hit.memories[0].id, pattern.id);
    assert_eq!(hit.segments_fetched, 1);
    let miss = store
        .recall_cold(
            &RecallQuery {
                pattern_key: Some("no-such-key".into()),
                limit: 10,
                ..Default::default()
            },
            &fetcher,
        )
        .unwrap();
    assert_eq!(
        (miss.segments_fetched, miss.segments_skipped),
        (0, 1),
        "the Bloom filter should spare the fetch"
    );

    // Day 31: the pattern is past retention: archived as a summary that points at its segment,
    // which is kept as the archive's full record.
    let r = store.prune(created + 31 * DAY).unwrap();
    assert_eq!(r.archived, 1, "{r:?}");
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    let archive = rows
        .iter()
        .find_map(|(_, row)| match &row.op {
            OutboxOp::PutBlob { path, bytes } if path.starts_with("archive/") => {
                Some(bytes.clone())
            }
            _ => None,
        })
        .expect("an archive object");
    let summaries: Vec<athena_storage::ArchivedMemory> = serde_json::from_slice(&archive).unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].id, pattern.id);
    let segment = summaries[0].segment.clone().expect("points at its segment");
    assert!(
        !rows
            .iter()
            .any(|(_, row)| matches!(&row.op, OutboxOp::DeleteBlob { path } if path.starts_with("segments/"))),
        "an archived segment was deleted"
    );
    assert!(uploaded(&store).0.contains_key(&segment));
    assert!(store.verify_records().unwrap().is_clean());
}

#[test]
fn a_segment_with_nothing_archived_is_deleted_when_its_last_entry_expires() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &small_cfg());
    // A decision about strategy performance: cold after 7 days, dropped after 90.
    let decision = memory(
        20,
        MemoryType::Decision,
        Category::StrategyPerformance,
        T0,
        0.8,
    );
    store.insert_memory(&decision, T0).unwrap();
    assert_eq!(store.prune(T0 + 10 * DAY).unwrap().migrated_cold, 1);
    let r = store.prune(T0 + 91 * DAY).unwrap();
    assert_eq!((r.expired, r.archived), (1, 0), "{r:?}");
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    assert!(rows.iter().any(
        |(_, row)| matches!(&row.op, OutboxOp::DeleteBlob { path } if path.starts_with("segments/"))
    ));
    assert!(
        uploaded(&store).0.is_empty(),
        "the segment object should be gone"
    );
    assert_eq!(store.memory_stats().unwrap().segments, 0);
}

#[test]
fn a_local_pattern_past_retention_is_archived_with_its_text() {
    let mut cfg = small_cfg();
    cfg.retention.insert(
        "apr_anomaly".into(),
        std::time::Duration::from_secs(2 * 86_400),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &cfg);
    let p = memory(30, MemoryType::Pattern, Category::AprAnomaly, T0, 0.9);
    store.insert_memory(&p, T0).unwrap();
    let r = store.prune(T0 + 3 * DAY).unwrap();
    assert_eq!(
        (r.archived, r.migrated_cold, r.segments_written),
        (1, 0, 0),
        "{r:?}"
    );
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    let summaries: Vec<athena_storage::ArchivedMemory> = rows
        .iter()
        .find_map(|(_, row)| match &row.op {
            OutboxOp::PutBlob { path, bytes } if path.starts_with("archive/") => {
                serde_json::from_slice(bytes).ok()
            }
            _ => None,
        })
        .expect("an archive object");
    assert_eq!(summaries[0].content.as_deref(), Some(p.content.as_str()));
    assert!(!rows.iter().any(|(_, row)| matches!(&row.op, OutboxOp::PutBlob { path, .. } if path.starts_with("segments/"))));
}

#[test]
fn dictionary_is_trained_and_warm_records_recompressed() {
    let mut cfg = MemoryConfig::default();
    cfg.dictionary_min_samples = 200;
    cfg.quotas.clear();
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &cfg);
    let now = T0 + 3 * DAY;
    let ms: Vec<Memory> = (0..600)
        .map(|n| {
            memory(
                n,
                MemoryType::Observation,
                Category::ALL[(n % 4) as usize],
                T0 + n * 60_000,
                0.8,
            )
        })
        .collect();
    store.insert_memories(&ms, T0).unwrap();
    let report = store.prune(now).unwrap();
    assert_eq!(report.compacted, 600);
    assert_eq!(report.recompressed, 600, "{report:?}");
    let dicts = athena_storage::dictionary::list(&store).unwrap();
    assert_eq!(dicts.len(), 1);
    drop(store);
    // Reopen: the dictionary is loaded and every record reads back.
    let store = open_with(dir.path(), &cfg);
    assert_eq!(store.read(|r| r.all_memories()).unwrap().len(), 600);
    assert!(store.verify_records().unwrap().is_clean());
}

#[test]
fn every_trained_kind_gets_its_own_dictionary() {
    use athena_storage::{Codec, RecordKind, SeqTable};
    let mut cfg = MemoryConfig::default();
    cfg.dictionary_min_samples = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), &cfg);
    let entry = |i: u64| serde_json::json!({ "kind": "decision", "pool": POOLS[(i % 6) as usize], "action": "open", "size_usd": 1000 + i, "verdict": "approved by risk gate" });
    store
        .write(|w| (0..400).try_for_each(|i| w.append(SeqTable::Journal, &entry(i)).map(|_| ())))
        .unwrap();
    store.prune(T0).unwrap();
    let dicts = athena_storage::dictionary::list(&store).unwrap();
    assert!(
        dicts.iter().any(|d| d.kind == RecordKind::Journal as u8),
        "no journal dictionary: {dicts:?}"
    );
    let seq = store
        .write(|w| w.append(SeqTable::Journal, &entry(1000)))
        .unwrap();
    let rows: Vec<(u64, serde_json::Value)> = store
        .read(|r| r.seq_after(SeqTable::Journal, seq - 1, 1))
        .unwrap();
    assert_eq!(rows[0].1, entry(1000));
    drop(store);
    let store = open_with(dir.path(), &cfg);
    assert!(store.verify_records().unwrap().is_clean());
    let current = store.codec().current_dictionary(RecordKind::Journal);
    assert_ne!(
        current, 0,
        "the current journal dictionary is reloaded at open"
    );
    let _ = Codec::verify; // the header names the dictionary; verify checks it exists
}

#[test]
fn observation_packs_past_retention_are_deleted_each_hour_once_at_most_48_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_cfg();
    let store = open_with(dir.path(), &cfg);
    let retention = MemoryConfig::default().retention["observation"].as_millis() as u64;
    // T0 is an agent hour's start; one observation in that hour.
    assert_eq!(T0 % HOUR, 0);
    let obs = memory(
        1,
        MemoryType::Observation,
        Category::PoolBehavior,
        T0 + 600_000,
        0.8,
    );
    store.insert_memory(&obs, T0 + 600_000).unwrap();
    // Its pack was sent (the row acknowledged), as a worker would have done.
    let sent: Vec<u64> = store
        .outbox_peek(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(seq, _)| seq)
        .collect();
    store.write(|w| w.outbox_ack(&sent)).unwrap();
    let deleted_packs = |store: &Store| -> Vec<String> {
        store
            .outbox_peek(0, usize::MAX)
            .unwrap()
            .into_iter()
            .filter_map(|(_, row)| match row.op {
                OutboxOp::DeleteBlob { path } if path.starts_with("observations/") => Some(path),
                _ => None,
            })
            .collect()
    };

    // The store's first pass, 100 hours before the observation's hour, starts at its own
    // hour: nothing older is deleted.
    assert_eq!(store.prune(T0 - 100 * HOUR).unwrap().packs_expired, 0);
    // Past the observation's retention (half an hour into the hour after it ended), the packs
    // from that first hour to the observation's go, 48 at most a pass.
    let now = T0 + retention + HOUR + HOUR / 2;
    let passes: Vec<usize> = (0..5)
        .map(|_| store.prune(now).unwrap().packs_expired)
        .collect();
    assert_eq!(passes, [48, 48, 5, 0, 0], "T0 − 100 h to T0, both included");
    let deleted = deleted_packs(&store);
    let unique: std::collections::BTreeSet<&String> = deleted.iter().collect();
    assert_eq!(unique.len(), deleted.len(), "each hour deleted once");
    let path = |hour: u64| athena_storage::observation_pack_path(hour);
    assert!(deleted.contains(&path(T0)), "the observation's own hour");
    assert!(
        !deleted.contains(&path(T0 + HOUR)),
        "an hour that ended less than the retention ago stays"
    );
    assert!(store.read(|r| r.all_memories()).unwrap().is_empty());
    // A pass in the next hour deletes that one hour.
    assert_eq!(store.prune(now + HOUR).unwrap().packs_expired, 1);
    assert!(deleted_packs(&store).contains(&path(T0 + HOUR)));
}
