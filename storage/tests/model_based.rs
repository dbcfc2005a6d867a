//! Model-based test: random sequences of inserts, replacements, deletes, recalls and reopens
//! against an in-memory model; every recall must equal the model's answer, and the indexes
//! must stay consistent; the outbox, folded per document, must mirror the store.

mod common;
use athena_storage::{Category, Memory, MemoryType, OutboxOp, RecallQuery};
use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        n: u64,
        kind: u8,
        cat: u8,
        minute: u64,
        conf: u8,
    },
    /// Re-insert an existing memory with another category, pool and confidence.
    Replace {
        pick: usize,
        cat: u8,
        pool_n: u64,
        conf: u8,
    },
    Delete {
        pick: usize,
    },
    Recall {
        cat: Option<u8>,
        pool: Option<u8>,
        pattern: bool,
        from: u64,
        span: u64,
        conf: u8,
        limit: usize,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u64..10_000, 0u8..2, 0u8..4, 0u64..600, 0u8..=10).prop_map(|(n, kind, cat, minute, conf)| Op::Insert { n, kind, cat, minute, conf }),
        1 => (any::<usize>(), 0u8..4, 0u64..6, 0u8..=10).prop_map(|(pick, cat, pool_n, conf)| Op::Replace { pick, cat, pool_n, conf }),
        1 => any::<usize>().prop_map(|pick| Op::Delete { pick }),
        3 => (proptest::option::of(0u8..4), proptest::option::of(0u8..6), any::<bool>(), 0u64..600, 1u64..600, 0u8..=10, 1usize..30)
            .prop_map(|(cat, pool, pattern, from, span, conf, limit)| Op::Recall { cat, pool, pattern, from, span, conf, limit }),
        1 => Just(Op::Reopen),
    ]
}

fn model_recall(model: &BTreeMap<ulid::Ulid, Memory>, q: &RecallQuery) -> Vec<Memory> {
    model
        .values()
        .rev()
        .filter(|m| q.matches_memory(m))
        .take(q.limit)
        .cloned()
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]
    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let mut model: BTreeMap<ulid::Ulid, Memory> = BTreeMap::new();
        let now = T0 + 700 * 60_000;
        for op in ops {
            match op {
                Op::Insert { n, kind, cat, minute, conf } => {
                    let kind = [MemoryType::Observation, MemoryType::Pattern][kind as usize];
                    let m = memory(n, kind, Category::ALL[cat as usize], T0 + minute * 60_000, f64::from(conf) / 10.0);
                    store.insert_memory(&m, now).unwrap();
                    model.insert(m.id, m);
                }
                Op::Replace { pick, cat, pool_n, conf } => {
                    if model.is_empty() { continue; }
                    let id = *model.keys().nth(pick % model.len()).unwrap();
                    let mut m = model[&id].clone();
                    m.category = Category::ALL[cat as usize];
                    m.metadata.pool = Some(POOLS[pool_n as usize].to_string());
                    m.confidence = f64::from(conf) / 10.0;
                    store.insert_memory(&m, now).unwrap();
                    model.insert(id, m);
                }
                Op::Delete { pick } => {
                    if model.is_empty() { continue; }
                    let id = *model.keys().nth(pick % model.len()).unwrap();
                    let removed = store.write(|w| w.delete_memory(id, now)).unwrap();
                    prop_assert_eq!(removed.as_ref(), model.get(&id));
                    model.remove(&id);
                }
                Op::Recall { cat, pool, pattern, from, span, conf, limit } => {
                    let category = cat.map(|c| Category::ALL[c as usize]);
                    let pool = pool.map(|p| POOLS[p as usize].to_string());
                    let pattern_key = (pattern && category.is_some() && pool.is_some())
                        .then(|| format!("{}:{}", category.unwrap().as_str(), pool.as_ref().unwrap()));
                    let q = RecallQuery {
                        category,
                        pool,
                        pattern_key,
                        since_ms: Some(T0 + from * 60_000),
                        until_ms: Some(T0 + (from + span) * 60_000),
                        min_confidence: Some(f64::from(conf) / 10.0),
                        limit,
                        ..RecallQuery::default()
                    };
                    let got = store.recall(&q, now).unwrap();
                    let want = model_recall(&model, &q);
                    prop_assert_eq!(got.as_slice(), want.as_slice(), "query {:?}", q);
                }
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path());
                }
            }
        }
        let all = store.read(|r| r.all_memories()).unwrap();
        prop_assert_eq!(all, model.values().cloned().collect::<Vec<_>>());
        // The outbox, read as the worker reads it (references resolved) and folded to the last
        // state per remote key, is the store: each live memory's document holds it, each
        // deleted one's is deleted, and each hour's observation pack holds that hour's
        // observations (observations have no document of their own).
        let mut mirror: BTreeMap<String, OutboxOp> = BTreeMap::new();
        for (_, row) in store.outbox_peek(0, usize::MAX).unwrap() {
            mirror.insert(row.op.remote_key(), row.op);
        }
        let mut packs: BTreeMap<String, Vec<Memory>> = BTreeMap::new();
        for m in model.values().filter(|m| m.kind == MemoryType::Observation) {
            let path = athena_storage::observation_pack_path(m.created_ms - m.created_ms % HOUR);
            packs.entry(format!("blob:{path}")).or_default().push(m.clone());
        }
        for (key, op) in mirror {
            if let Some(id) = key.strip_prefix("memories/") {
                let id: ulid::Ulid = id.parse().unwrap();
                match (op, model.get(&id)) {
                    (OutboxOp::Upsert { body, .. }, Some(m)) => {
                        prop_assert_eq!(serde_json::from_str::<Memory>(&body).unwrap(), m.clone());
                        prop_assert!(m.kind != MemoryType::Observation, "{key} has a document");
                    }
                    (OutboxOp::Delete { .. }, None) => {}
                    (op, m) => prop_assert!(false, "{key}: outbox says {op:?}, store has {m:?}"),
                }
                continue;
            }
            let want = packs.remove(&key);
            match (op, want) {
                (OutboxOp::PutBlob { bytes, .. }, Some(want)) => {
                    prop_assert_eq!(serde_json::from_slice::<Vec<Memory>>(&bytes).unwrap(), want);
                }
                (OutboxOp::DeleteBlob { .. }, None) => {}
                (op, want) => prop_assert!(false, "{key}: outbox says {op:?}, store has {want:?}"),
            }
        }
        prop_assert!(packs.is_empty(), "observations without a pack row: {:?}", packs.keys());
        let report = store.verify_records().unwrap();
        prop_assert!(report.is_clean(), "{:?}", report);
    }
}

#[test]
fn recall_cache_is_invalidated_by_writes_to_the_category() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let q = RecallQuery {
        category: Some(Category::PoolBehavior),
        limit: 10,
        ..RecallQuery::default()
    };
    assert!(store.recall(&q, T0).unwrap().is_empty());
    assert!(store.recall(&q, T0).unwrap().is_empty());
    assert_eq!(store.recall_stats().cache_hits, 1);
    let m = memory(1, MemoryType::Observation, Category::PoolBehavior, T0, 0.9);
    store.insert_memory(&m, T0).unwrap();
    assert_eq!(
        store.recall(&q, T0).unwrap().len(),
        1,
        "a stale cached answer was served"
    );
    // A write to another category leaves this category's cached answer valid.
    let other = memory(2, MemoryType::Observation, Category::AprAnomaly, T0, 0.9);
    store.insert_memory(&other, T0).unwrap();
    let hits = store.recall_stats().cache_hits;
    assert_eq!(store.recall(&q, T0).unwrap().len(), 1);
    assert_eq!(store.recall_stats().cache_hits, hits + 1);
    let stats = store.recall_stats();
    assert_eq!(stats.count, 4);
    assert!(
        stats.p50_us <= stats.p95_us
            && stats.p95_us <= stats.p99_us
            && stats.p99_us <= stats.max_us
    );
}

#[test]
fn invalid_memories_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut m = memory(1, MemoryType::Observation, Category::PoolBehavior, T0, 0.5);
    m.confidence = 1.5;
    let err = store.insert_memory(&m, T0).unwrap_err().to_string();
    assert!(err.contains("confidence must be in [0, 1]"), "{err}");
    assert_eq!(store.outbox_len().unwrap(), 0);
}
