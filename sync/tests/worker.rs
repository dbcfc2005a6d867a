//! The worker against the in-memory sink (fault injection beside the real sinks).

mod common;

use athena_config::MemoryConfig;
use athena_storage::{MemoryType, OutboxOp, SeqTable, Store};
use athena_sync::{MemorySink, State, Worker, coalesce::single};
use std::sync::Arc;

use common::{T0, memory, sinks};

fn store(dir: &std::path::Path) -> Arc<Store> {
    Arc::new(Store::open(dir, &MemoryConfig::default()).unwrap())
}

fn worker(store: &Arc<Store>, docs: &Arc<MemorySink>, objects: &Arc<MemorySink>) -> Worker {
    let cfg = common::unpaced();
    Worker::new(
        store.clone(),
        docs.clone(),
        objects.clone(),
        &cfg,
        7,
        Arc::new(|| T0),
    )
}

/// Writes a realistic mix: memories, a document updated many times, increments, a delete, blobs.
fn write_mix(store: &Store, round: u64) {
    store
        .insert_memories(
            &(0..50)
                .map(|i| memory(round * 1000 + i))
                .collect::<Vec<_>>(),
            T0,
        )
        .unwrap();
    store
        .write(|w| {
            for v in 0..20 {
                let body =
                    serde_json::json!({ "pool": "WETH/USDC", "usd": 1000 + v, "round": round })
                        .to_string();
                w.outbox_append(
                    OutboxOp::Upsert {
                        collection: "positions".into(),
                        doc: "p1".into(),
                        body,
                    },
                    T0,
                )?;
                w.outbox_append(OutboxOp::increment("stats", "day", "trades", 1.0), T0)?;
            }
            w.outbox_append(
                OutboxOp::Delete {
                    collection: "memories".into(),
                    doc: memory(round * 1000).id.to_string(),
                },
                T0,
            )?;
            w.outbox_append(
                OutboxOp::PutBlob {
                    path: format!("segments/{round}.seg"),
                    bytes: vec![round as u8; 100],
                },
                T0,
            )?;
            Ok(())
        })
        .unwrap();
}

/// The state every outbox row applied in order produces, split by role.
fn expected(store: &Store, into: &mut State) {
    for (seq, row) in store.outbox_peek(0, usize::MAX).unwrap() {
        into.apply(&single(row.op, seq).unwrap());
    }
}

fn docs_only(s: &State) -> State {
    State {
        docs: s.docs.clone(),
        blobs: Default::default(),
    }
}

#[tokio::test]
async fn drains_everything_coalesced_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (docs, objects) = sinks();
    write_mix(&store, 1);
    let mut want = State::default();
    expected(&store, &mut want);
    let rows = store.outbox_len().unwrap();
    let mut w = worker(&store, &docs, &objects);
    let r = w.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0, "{r:?}");
    assert!(
        docs.state() == docs_only(&want),
        "sink state differs from the rows applied in order"
    );
    assert_eq!(objects.state().blobs, want.blobs);
    assert_eq!(
        docs.state().docs[&("stats".to_string(), "day".to_string())]["trades"],
        serde_json::json!(20.0)
    );
    // 50 memories (one deleted), one position, one stats doc, one blob: far fewer writes than rows.
    let c = w.counters();
    let sent = c.writes_sent.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(sent, 53, "writes sent for {rows} rows");
    assert_eq!(
        c.rows_coalesced.load(std::sync::atomic::Ordering::Relaxed),
        rows - 53
    );
}

#[tokio::test]
async fn an_oversized_document_is_dead_lettered_and_the_rest_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (docs, objects) = sinks();
    let big = serde_json::json!({ "blob": "x".repeat(1_100_000) }).to_string();
    store
        .write(|w| {
            w.outbox_append(
                OutboxOp::Upsert {
                    collection: "positions".into(),
                    doc: "small1".into(),
                    body: "{\"a\":1}".into(),
                },
                T0,
            )?;
            w.outbox_append(
                OutboxOp::Upsert {
                    collection: "positions".into(),
                    doc: "huge".into(),
                    body: big,
                },
                T0,
            )?;
            w.outbox_append(
                OutboxOp::Upsert {
                    collection: "positions".into(),
                    doc: "small2".into(),
                    body: "{\"a\":2}".into(),
                },
                T0,
            )?;
            w.outbox_append(
                OutboxOp::Upsert {
                    collection: "positions".into(),
                    doc: "broken".into(),
                    body: "[1]".into(),
                },
                T0,
            )?;
            Ok(())
        })
        .unwrap();
    let r = worker(&store, &docs, &objects).drain_once().await.unwrap();
    assert_eq!((r.delivered, r.dead_lettered), (2, 2), "{r:?}");
    assert_eq!(docs.state().docs.len(), 2);
    assert_eq!(store.outbox_len().unwrap(), 0);
    let dead: Vec<(u64, athena_storage::DeadLetter)> = store
        .read(|t| t.seq_after(SeqTable::DeadLetters, 0, 10))
        .unwrap();
    let reasons: Vec<&str> = dead.iter().map(|(_, d)| d.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.contains("exceeds 1 MiB")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("not a JSON object")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_outage_keeps_rows_and_the_backlog_drains_when_the_cloud_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (docs, objects) = sinks();
    let mut w = worker(&store, &docs, &objects);
    docs.set_down(true);
    objects.set_down(true);
    for round in 1..=5 {
        write_mix(&store, round);
        let r = w.drain_once().await.unwrap();
        assert_eq!(r.delivered, 0);
        assert!(r.retry > 0 && r.last_error.is_some());
    }
    let mut want = State::default();
    expected(&store, &mut want);
    docs.set_down(false);
    objects.set_down(false);
    w.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert!(
        docs.state() == docs_only(&want),
        "sink state differs from the rows applied in order"
    );
    assert_eq!(objects.state().blobs, want.blobs);
}

#[tokio::test]
async fn confirmations_lost_after_the_write_landed_are_resent_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (docs, objects) = sinks();
    write_mix(&store, 1);
    let mut want = State::default();
    expected(&store, &mut want);
    let mut w = worker(&store, &docs, &objects);
    docs.set_lose_confirmations(true);
    let r = w.drain_once().await.unwrap();
    assert!(r.retry > 0);
    assert!(docs.state() == docs_only(&want), "the writes landed");
    // The "crash": no ack. A fresh worker re-sends the same idempotent writes.
    docs.set_lose_confirmations(false);
    let mut again = worker(&store, &docs, &objects);
    again.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert!(
        docs.state() == docs_only(&want),
        "same documents, nothing counted twice"
    );
}

#[tokio::test]
async fn a_sink_failing_after_n_calls_leaves_the_rest_for_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let (docs, objects) = sinks();
    store
        .insert_memories(&(0..1200).map(memory).collect::<Vec<_>>(), T0)
        .unwrap();
    let mut w = worker(&store, &docs, &objects);
    docs.fail_after(1);
    let r = w.drain_once().await.unwrap();
    assert_eq!(r.delivered, 500, "one batch of 500 went through: {r:?}");
    assert_eq!(store.outbox_len().unwrap(), 700);
    docs.fail_after(u64::MAX / 2);
    w.drain().await.unwrap();
    assert_eq!(docs.state().docs.len(), 1200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_segments_reach_the_local_directory_and_recall_reads_them_back() {
    use athena_storage::RecallQuery;
    use athena_sync::{BlockingFetcher, ObjectStoreSink};
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let mut p = memory(7);
    p.kind = MemoryType::Pattern;
    p.metadata.pattern_key = Some("pool_behavior:POOL1".into());
    store.insert_memory(&p, T0).unwrap();
    store.prune(T0 + 10 * 86_400_000).unwrap(); // past the warm tier: exported to a segment
    let objects = Arc::new(ObjectStoreSink::from_url("file://sync", dir.path(), "agent").unwrap());
    let (docs, _) = sinks();
    let cfg = common::unpaced();
    let mut w = Worker::new(
        store.clone(),
        docs.clone(),
        objects.clone(),
        &cfg,
        1,
        Arc::new(|| T0),
    );
    w.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    let fetcher = BlockingFetcher::new(objects.clone());
    let q = RecallQuery {
        pattern_key: p.metadata.pattern_key.clone(),
        limit: 5,
        ..RecallQuery::default()
    };
    let s = store.clone();
    let found = tokio::task::spawn_blocking(move || s.recall_cold(&q, &fetcher))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.memories.len(), 1);
    assert_eq!(found.memories[0].id, p.id);
    assert_eq!(found.segments_fetched, 1);
}
