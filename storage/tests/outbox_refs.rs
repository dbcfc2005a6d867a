//! Outbox rows for memories refer to the stored record instead of copying it: they read as the
//! record's current state, they are small, and a store written before (schema 1, JSON copies)
//! is upgraded on open with its waiting rows intact.

mod common;
use athena_storage::{Category, MemoryType, OutboxOp, STORE_FILE, StoredRecord};
use common::*;
use redb::ReadableDatabase;

#[test]
fn a_row_reads_as_the_latest_state_and_a_gone_record_as_a_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut m = memory(1, MemoryType::Pattern, Category::AprAnomaly, T0, 0.5);
    store.insert_memory(&m, T0).unwrap();
    m.confidence = 0.9;
    store.insert_memory(&m, T0 + 1).unwrap();
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    assert_eq!(rows.len(), 2, "one row per change");
    for (_, row) in &rows {
        let OutboxOp::Upsert { body, .. } = &row.op else {
            panic!("not resolved: {row:?}")
        };
        let sent: athena_storage::Memory = serde_json::from_str(body).unwrap();
        assert_eq!(sent, m, "each row carries the record as it is now");
    }
    store.write(|w| w.delete_memory(m.id, T0 + 2)).unwrap();
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    assert_eq!(rows.len(), 3);
    for (_, row) in &rows {
        assert!(
            matches!(&row.op, OutboxOp::Delete { collection, doc } if collection == "memories" && *doc == m.id.to_string()),
            "{row:?}"
        );
    }
}

#[test]
fn a_reference_row_is_a_fraction_of_a_json_copy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let m = memory(7, MemoryType::Observation, Category::PoolBehavior, T0, 0.8);
    let encoded = |op: OutboxOp| {
        let row = athena_storage::OutboxRow { created_ms: T0, op };
        store
            .codec()
            .encode(
                athena_storage::RecordKind::Outbox,
                athena_storage::Compression::None,
                &row,
            )
            .unwrap()
    };
    let reference = encoded(OutboxOp::Stored(StoredRecord::Memory(u128::from(m.id))));
    let copy = encoded(OutboxOp::upsert("memories", m.id, &m).unwrap());
    assert!(
        reference.len() * 5 < copy.len(),
        "reference {} bytes, copy {} bytes",
        reference.len(),
        copy.len()
    );
}

#[test]
fn a_schema_1_store_is_upgraded_on_open_and_its_rows_drain_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let old = memory(2, MemoryType::Pattern, Category::PoolBehavior, T0, 0.8);
    {
        // What a schema-1 build left: a memory with a JSON copy in its outbox row.
        let store = open(dir.path());
        store
            .write(|w| {
                w.import_memories(std::slice::from_ref(&old))?;
                w.outbox_append(OutboxOp::upsert("memories", old.id, &old)?, T0)?;
                Ok(())
            })
            .unwrap();
    }
    set_schema_version(dir.path(), 1);
    drop(open(dir.path()));
    assert_eq!(
        schema_version(dir.path()),
        athena_storage::tables::SCHEMA_VERSION
    );
    let store = open(dir.path());
    let new = memory(3, MemoryType::Pattern, Category::PoolBehavior, T0, 0.8);
    store.insert_memory(&new, T0 + 1).unwrap();
    let docs: Vec<(String, athena_storage::Memory)> = store
        .outbox_peek(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(_, row)| match row.op {
            OutboxOp::Upsert { doc, body, .. } => (doc, serde_json::from_str(&body).unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        docs,
        vec![(old.id.to_string(), old), (new.id.to_string(), new)]
    );
}

fn schema_version(dir: &std::path::Path) -> u32 {
    let db = redb::Database::create(dir.join(STORE_FILE)).unwrap();
    let tx = db.begin_read().unwrap();
    let meta = tx.open_table(athena_storage::tables::META).unwrap();
    let v = meta.get("schema_version").unwrap().unwrap();
    u32::from_le_bytes(v.value().try_into().unwrap())
}

fn set_schema_version(dir: &std::path::Path, version: u32) {
    let db = redb::Database::create(dir.join(STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(athena_storage::tables::META)
        .unwrap()
        .insert("schema_version", version.to_le_bytes().as_slice())
        .unwrap();
    tx.commit().unwrap();
}

#[test]
fn observations_travel_in_one_pack_per_hour_and_their_deletes_stay_local() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hour = T0 - T0 % HOUR;
    let first: Vec<_> = (0..6)
        .map(|n| {
            memory(
                n,
                MemoryType::Observation,
                Category::PoolBehavior,
                hour + n,
                0.8,
            )
        })
        .collect();
    store.insert_memories(&first, hour).unwrap();
    let later = memory(
        9,
        MemoryType::Observation,
        Category::PoolBehavior,
        hour + HOUR,
        0.8,
    );
    store.insert_memory(&later, hour + HOUR).unwrap();
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    assert_eq!(rows.len(), 2, "one row per hour and batch: {rows:?}");
    let OutboxOp::PutBlob { path, bytes } = &rows[0].1.op else {
        panic!("{:?}", rows[0])
    };
    assert_eq!(*path, format!("observations/{hour}.json"));
    let pack: Vec<athena_storage::Memory> = serde_json::from_slice(bytes).unwrap();
    assert_eq!(pack, first);
    store
        .write(|w| w.delete_memory(first[0].id, hour + HOUR))
        .unwrap();
    assert_eq!(
        store.outbox_len().unwrap(),
        2,
        "deleting an observation writes no row"
    );
}
