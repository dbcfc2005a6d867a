//! Outbox compaction while the cloud is unreachable: the outbox stays at one row per document
//! above the fence, the cloud ends in the state of every row applied in order, and rows a sink
//! applied without confirming are never counted twice (proptest, with the worker and the
//! fault-injecting sink).

mod common;

use athena_config::MemoryConfig;
use athena_storage::{OutboxOp, OutboxRow, Store};
use athena_sync::coalesce::single;
use athena_sync::{MemorySink, State, Worker, compact_outbox};
use common::sinks;
use proptest::prelude::*;
use std::collections::HashSet;
use std::sync::Arc;

/// Ops on three documents and two objects, with increments on two fields.
fn op() -> impl Strategy<Value = OutboxOp> {
    let doc = || (0u8..3).prop_map(|d| format!("d{d}"));
    prop_oneof![
        3 => (doc(), 0i64..100).prop_map(|(doc, v)| OutboxOp::Upsert {
            collection: "positions".into(),
            doc,
            body: serde_json::json!({ "v": v, "usd": 1.5 }).to_string(),
        }),
        4 => (doc(), prop_oneof![Just("usd"), Just("trades")], -40i32..40)
            .prop_map(|(doc, f, d)| OutboxOp::increment("positions", doc, f, f64::from(d) / 8.0)),
        1 => doc().prop_map(|doc| OutboxOp::Delete { collection: "positions".into(), doc }),
        1 => ((0u8..2), proptest::collection::vec(any::<u8>(), 0..6))
            .prop_map(|(p, bytes)| OutboxOp::PutBlob { path: format!("segments/{p}.seg"), bytes }),
        1 => (0u8..2).prop_map(|p| OutboxOp::DeleteBlob { path: format!("segments/{p}.seg") }),
    ]
}

fn open() -> (tempfile::TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
    (dir, store)
}

fn append(store: &Store, ops: &[OutboxOp]) {
    store
        .write(|w| {
            for (i, op) in ops.iter().enumerate() {
                w.outbox_append(op.clone(), i as u64)?;
            }
            Ok(())
        })
        .unwrap();
}

/// The sink state of every op applied in order, one by one.
fn in_order(ops: &[OutboxOp]) -> State {
    let mut s = State::default();
    for (i, op) in ops.iter().enumerate() {
        s.apply(&single(op.clone(), i as u64 + 1).unwrap());
    }
    s
}

fn waiting(store: &Store) -> Vec<(u64, OutboxRow)> {
    store.outbox_peek(0, usize::MAX).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn cloud(docs: &MemorySink, objects: &MemorySink) -> State {
    let mut s = docs.state();
    s.blobs = objects.state().blobs;
    s
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn compaction_keeps_one_row_per_key_and_the_meaning(ops in proptest::collection::vec(op(), 0..80), chunk in 1usize..20) {
        let (_dir, store) = open();
        append(&store, &ops);
        let report = compact_outbox(&store, 0, chunk).unwrap();
        let rows = waiting(&store);
        let keys: HashSet<String> = ops.iter().map(OutboxOp::remote_key).collect();
        prop_assert_eq!(rows.len(), keys.len());
        prop_assert_eq!(report.folded, ops.len() - keys.len());
        // Each remaining row is the newest of its key, and the rows mean what they meant.
        let mut compacted = State::default();
        for (seq, row) in &rows {
            compacted.apply(&single(row.op.clone(), *seq).unwrap());
        }
        prop_assert_eq!(compacted, in_order(&ops));
        // Compacting again changes nothing.
        prop_assert_eq!(compact_outbox(&store, 0, chunk).unwrap().folded, 0);
        prop_assert_eq!(waiting(&store), rows);
    }

    #[test]
    fn an_outage_with_lost_confirmations_and_compaction_converges_without_double_counting(
        before in proptest::collection::vec(op(), 1..40),
        during in proptest::collection::vec(op(), 0..60),
        first_pass in 1usize..40,
    ) {
        runtime().block_on(async {
            let (_dir, store) = open();
            let (docs, objects) = sinks();
            let mut worker = Worker::new(store.clone(), docs.clone(), objects.clone(), &common::unpaced(), 3, Arc::new(|| 0))
                .with_max_rows(first_pass);
            // The worker starts on an empty outbox (rows waiting at its start count as sent).
            worker.drain_once().await.unwrap();
            append(&store, &before);
            // A pass lands its writes but every confirmation is lost (the worst case for
            // increments), then the cloud goes away while the agent keeps writing.
            docs.set_lose_confirmations(true);
            objects.set_lose_confirmations(true);
            worker.drain_once().await.unwrap();
            docs.set_lose_confirmations(false);
            objects.set_lose_confirmations(false);
            docs.set_down(true);
            objects.set_down(true);
            worker.drain_once().await.unwrap();
            worker.compact().await.unwrap();
            for op in &during {
                store.write(|w| w.outbox_append(op.clone(), 9).map(|_| ())).unwrap();
                worker.drain_once().await.unwrap();
                worker.compact().await.unwrap();
            }
            // Bounded by the rows one pass reads (they may have been sent) plus one row per key
            // above them, however many changes the outage saw.
            let keys: HashSet<String> = before.iter().chain(&during).map(OutboxOp::remote_key).collect();
            prop_assert!(waiting(&store).len() <= first_pass + keys.len());
            // The cloud returns: the backlog drains and the cloud equals every row in order.
            docs.set_down(false);
            objects.set_down(false);
            let mut worker = worker.with_max_rows(1000);
            worker.drain().await.unwrap();
            prop_assert_eq!(store.outbox_len().unwrap(), 0);
            let all: Vec<OutboxOp> = before.iter().chain(&during).cloned().collect();
            prop_assert_eq!(cloud(&docs, &objects), in_order(&all));
            Ok(())
        })?;
    }

    #[test]
    fn a_restarted_worker_never_folds_rows_a_previous_process_may_have_sent(
        ops in proptest::collection::vec(op(), 1..40),
        more in proptest::collection::vec(op(), 0..40),
    ) {
        runtime().block_on(async {
            let (_dir, store) = open();
            let (docs, objects) = sinks();
            append(&store, &ops);
            {
                // The first process sends everything, every confirmation is lost, it dies.
                docs.set_lose_confirmations(true);
                objects.set_lose_confirmations(true);
                let mut first = Worker::new(store.clone(), docs.clone(), objects.clone(), &common::unpaced(), 3, Arc::new(|| 0));
                first.drain_once().await.unwrap();
                docs.set_lose_confirmations(false);
                objects.set_lose_confirmations(false);
            }
            // A new process, still offline, compacts before its first pass.
            let mut second = Worker::new(store.clone(), docs.clone(), objects.clone(), &common::unpaced(), 4, Arc::new(|| 0));
            store.write(|w| { for op in &more { w.outbox_append(op.clone(), 9)?; } Ok(()) }).unwrap();
            second.compact().await.unwrap();
            second.drain().await.unwrap();
            let all: Vec<OutboxOp> = ops.iter().chain(&more).cloned().collect();
            prop_assert_eq!(cloud(&docs, &objects), in_order(&all));
            Ok(())
        })?;
    }
}
