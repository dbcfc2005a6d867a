//! The Firestore sink against Google's Firestore emulator (started by `scripts/test.sh`).
//! Without `FIRESTORE_EMULATOR_HOST` these tests fail with a clear message: never a silent skip.

mod common;

use athena_config::MemoryConfig;
use athena_storage::{OutboxOp, Store};
use athena_sync::coalesce::{SEQ_FIELD, single};
use athena_sync::{ErrorKind, FirestoreSink, MemorySink, Sink, SinkRole, State, Worker, Write};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

const PROJECT: &str = "athena-test";

async fn sink() -> (FirestoreSink, String) {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with scripts/test.sh, which starts the Firestore emulator"
    );
    let agent = format!("t-{}", ulid::Ulid::new().to_string().to_lowercase());
    (
        FirestoreSink::connect(PROJECT, "(default)", &agent)
            .await
            .expect("connect to the emulator"),
        agent,
    )
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

fn inc(seq: u64, field: &str, d: f64) -> Write {
    Write::Increment {
        collection: "stats".into(),
        doc: "day".into(),
        parts: BTreeMap::from([(seq, BTreeMap::from([(field.to_string(), d)]))]),
    }
}

#[tokio::test]
async fn document_sink_contract() {
    let (sink, _) = sink().await;
    assert_eq!(sink.role(), SinkRole::Documents);
    let set = Write::Set {
        collection: "positions".into(),
        doc: "p1".into(),
        body: obj(json!({ "pool": "WETH/USDC", "usd": 1000 })),
        increments: Default::default(),
        seq: 3,
    };
    let r = sink.push(std::slice::from_ref(&set)).await;
    assert!(r[0].is_ok(), "{r:?}");
    let got = sink.get("positions", "p1").await.unwrap().unwrap();
    assert_eq!(got["usd"], json!(1000));
    assert_eq!(got[SEQ_FIELD], json!(3));
    // Replayed set: same document.
    assert!(sink.push(&[set]).await[0].is_ok());

    // Increments: applied once, re-sent after a lost confirmation without counting twice,
    // and a newer part on top applies alone.
    assert!(sink.push(&[inc(5, "trades", 2.0)]).await[0].is_ok());
    assert!(sink.push(&[inc(5, "trades", 2.0)]).await[0].is_ok());
    let mut both = inc(5, "trades", 2.0);
    if let Write::Increment { parts, .. } = &mut both {
        parts.insert(6, BTreeMap::from([("trades".to_string(), 0.5)]));
    }
    assert!(sink.push(&[both]).await[0].is_ok());
    let day = sink.get("stats", "day").await.unwrap().unwrap();
    assert_eq!(day["trades"].as_f64(), Some(2.5));
    assert_eq!(day[SEQ_FIELD], json!(6));

    // Deletes, and a replayed delete.
    let del = Write::Delete {
        collection: "positions".into(),
        doc: "p1".into(),
    };
    assert!(sink.push(std::slice::from_ref(&del)).await[0].is_ok());
    assert!(sink.push(&[del]).await[0].is_ok());
    assert!(sink.get("positions", "p1").await.unwrap().is_none());

    // One write over 1 MiB is rejected for good; the rest of the batch lands.
    let big = Write::Set {
        collection: "positions".into(),
        doc: "big".into(),
        body: obj(json!({ "x": "y".repeat(1_100_000) })),
        increments: Default::default(),
        seq: 7,
    };
    let small = Write::Set {
        collection: "positions".into(),
        doc: "small".into(),
        body: obj(json!({ "a": 1 })),
        increments: Default::default(),
        seq: 8,
    };
    let r = sink.push(&[big, small]).await;
    assert_eq!(
        r[0].as_ref().unwrap_err().kind,
        ErrorKind::Permanent,
        "{r:?}"
    );
    assert!(r[1].is_ok(), "{r:?}");
    assert!(sink.get("positions", "small").await.unwrap().is_some());

    // An object write is not a document write.
    let r = sink.push(&[Write::DeleteBlob { path: "x".into() }]).await;
    assert_eq!(r[0].as_ref().unwrap_err().kind, ErrorKind::Invalid);
}

#[tokio::test]
async fn the_worker_drains_to_firestore_and_firestore_matches_the_rows_applied_in_order() {
    let (sink, _) = sink().await;
    let sink = Arc::new(sink);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
    store
        .write(|w| {
            for v in 0..30u64 {
                let body = json!({ "usd": 1000 + v }).to_string();
                w.outbox_append(
                    OutboxOp::Upsert {
                        collection: "positions".into(),
                        doc: format!("p{}", v % 4),
                        body,
                    },
                    0,
                )?;
                w.outbox_append(OutboxOp::increment("stats", "day", "trades", 1.0), 0)?;
            }
            w.outbox_append(
                OutboxOp::Delete {
                    collection: "positions".into(),
                    doc: "p3".into(),
                },
                0,
            )?;
            Ok(())
        })
        .unwrap();
    let mut want = State::default();
    for (seq, row) in store.outbox_peek(0, usize::MAX).unwrap() {
        want.apply(&single(row.op, seq).unwrap());
    }
    let objects = Arc::new(MemorySink::new("objects", SinkRole::Objects));
    let cfg = common::unpaced();
    let mut w = Worker::new(
        store.clone(),
        sink.clone(),
        objects,
        &cfg,
        3,
        Arc::new(|| 0),
    );
    w.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0);
    // 61 rows, 5 remote keys, one write request: p0–p2 set, p3 deleted and the counter
    // (read first) written in one BatchWrite.
    assert_eq!(
        sink.requests(),
        athena_sync::RequestCounts {
            reads: 1,
            commits: 1,
            documents_written: 5
        }
    );
    for ((collection, doc), body) in &want.docs {
        let got = sink
            .get(collection, doc)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{collection}/{doc} missing"));
        for (k, v) in body {
            assert_eq!(
                got[k].as_f64().or(got[k].as_u64().map(|u| u as f64)),
                v.as_f64(),
                "{collection}/{doc}.{k}"
            );
        }
    }
    assert!(sink.get("positions", "p3").await.unwrap().is_none());
}

#[tokio::test]
async fn reads_go_through_the_cache_and_our_writes_invalidate_it() {
    let (sink, _) = sink().await;
    let set = |usd: i64, seq: u64| Write::Set {
        collection: "positions".into(),
        doc: "c1".into(),
        body: obj(json!({ "usd": usd })),
        increments: Default::default(),
        seq,
    };
    assert!(sink.push(&[set(1, 1)]).await[0].is_ok());
    assert_eq!(
        sink.get("positions", "c1").await.unwrap().unwrap()["usd"],
        json!(1)
    );
    assert_eq!(
        sink.get("positions", "c1").await.unwrap().unwrap()["usd"],
        json!(1)
    );
    assert_eq!(sink.cache_counters(), (1, 1));
    assert!(sink.push(&[set(2, 2)]).await[0].is_ok());
    assert_eq!(
        sink.get("positions", "c1").await.unwrap().unwrap()["usd"],
        json!(2),
        "a stale cached read after our own write"
    );
    assert_eq!(
        sink.get_fresh("positions", "c1").await.unwrap().unwrap()["usd"],
        json!(2)
    );
}

#[tokio::test]
async fn verify_finds_documents_the_cloud_lost_or_changed() {
    let (sink, agent) = sink().await;
    let sink = Arc::new(sink);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
    let mk = |n: u64| {
        let md = athena_storage::Metadata {
            pool: Some("AERO/USDC".into()),
            apr: Some(12.5 + n as f64),
            ..Default::default()
        };
        // A pattern: one document of its own (observations travel in hourly packs).
        athena_storage::Memory::new(
            athena_storage::MemoryType::Pattern,
            athena_storage::Category::PoolBehavior,
            format!("obs {n}"),
            md,
            0.75,
            athena_storage::Source::MarketData,
            ulid::Ulid::from_parts(1_800_000_000_000 + n, u128::from(n) + 1),
        )
    };
    let ms: Vec<_> = (0..5).map(mk).collect();
    store.insert_memories(&ms, 0).unwrap();
    let objects = Arc::new(MemorySink::new("objects", SinkRole::Objects));
    let cfg = common::unpaced();
    Worker::new(
        store.clone(),
        sink.clone(),
        objects,
        &cfg,
        3,
        Arc::new(|| 0),
    )
    .drain()
    .await
    .unwrap();
    let report = athena_sync::verify(&store, Some(&sink), None)
        .await
        .unwrap();
    assert_eq!(
        (report.documents, report.differences.len()),
        (5, 0),
        "{report:?}"
    );

    // Somebody changes one document and deletes another, behind the agent's back.
    let other = FirestoreSink::connect(PROJECT, "(default)", &agent)
        .await
        .unwrap();
    let tampered = Write::Set {
        collection: "memories".into(),
        doc: ms[1].id.to_string(),
        body: obj(json!({ "content": "edited" })),
        increments: Default::default(),
        seq: 99,
    };
    let gone = Write::Delete {
        collection: "memories".into(),
        doc: ms[3].id.to_string(),
    };
    assert!(
        other
            .push(&[tampered, gone])
            .await
            .iter()
            .all(Result::is_ok)
    );
    // A change not yet synced is pending, not a difference.
    store.insert_memory(&mk(9), 0).unwrap();
    let report = athena_sync::verify(&store, Some(&sink), None)
        .await
        .unwrap();
    assert_eq!(report.pending, 1);
    let keys: Vec<&str> = report.differences.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(report.differences.len(), 2, "{report:?}");
    assert!(
        keys.contains(&format!("memories/{}", ms[1].id).as_str())
            && keys.contains(&format!("memories/{}", ms[3].id).as_str())
    );
    assert!(
        report
            .differences
            .iter()
            .any(|d| d.problem == "missing in Firestore")
    );
}

#[tokio::test]
async fn verify_compares_checkpoint_documents_and_every_uploaded_object() {
    use athena_storage::KeyedTable;
    let (sink, agent) = sink().await;
    let sink = Arc::new(sink);
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
    // Two checkpoints as the agent writes them: a store entry, its file as an object and the
    // entry as a document, in one transaction.
    for n in 1..=2u64 {
        let id = format!("ckpt-{n}");
        let file = format!("{id}.ckpt");
        let bytes = format!("checkpoint {n}").into_bytes();
        let entry = json!({ "id": id, "created_ms": n, "tick": n, "bytes": bytes.len(),
            "digest": "00", "file": file });
        store
            .write(|w| {
                w.put(KeyedTable::Checkpoints, &id, &entry)?;
                w.outbox_append(
                    OutboxOp::PutBlob {
                        path: format!("checkpoints/{file}"),
                        bytes: bytes.clone(),
                    },
                    0,
                )?;
                w.outbox_append(OutboxOp::upsert("checkpoints", &id, &entry)?, 0)?;
                Ok(())
            })
            .unwrap();
    }
    let objects = Arc::new(
        athena_sync::ObjectStoreSink::from_url("file://sync", dir.path(), &agent).unwrap(),
    );
    Worker::new(
        store.clone(),
        sink.clone(),
        objects.clone(),
        &common::unpaced(),
        3,
        Arc::new(|| 0),
    )
    .drain()
    .await
    .unwrap();
    let report = athena_sync::verify(&store, Some(&sink), Some(&objects))
        .await
        .unwrap();
    assert_eq!(
        (report.documents, report.objects, report.differences.len()),
        (2, 2, 0),
        "{report:?}"
    );

    // The bucket loses one checkpoint file, Firestore the other checkpoint's document.
    std::fs::remove_file(
        dir.path()
            .join("sync")
            .join(&agent)
            .join("checkpoints/ckpt-1.ckpt"),
    )
    .unwrap();
    let other = FirestoreSink::connect(PROJECT, "(default)", &agent)
        .await
        .unwrap();
    let gone = Write::Delete {
        collection: "checkpoints".into(),
        doc: "ckpt-2".into(),
    };
    assert!(other.push(&[gone]).await.iter().all(Result::is_ok));
    let report = athena_sync::verify(&store, Some(&sink), Some(&objects))
        .await
        .unwrap();
    let found: Vec<(&str, &str)> = report
        .differences
        .iter()
        .map(|d| (d.key.as_str(), d.problem.as_str()))
        .collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found.contains(&("checkpoints/ckpt-2", "missing in Firestore")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(k, p)| *k == "blob:checkpoints/ckpt-1.ckpt" && p.starts_with("missing")),
        "{found:?}"
    );
}
