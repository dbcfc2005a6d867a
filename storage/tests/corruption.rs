//! Corruption is found, and foreign files are refused.

mod common;
use athena_storage::{Category, MemoryType, STORE_FILE, Store, StoreError};
use common::*;

/// Flips one byte of the memory record holding `marker` in the store file of `dir`. Hot
/// records are plain msgpack, so the content is in the file verbatim; the memory record's
/// string is not preceded by a JSON quote, so the outbox row holding the same text as JSON is
/// left alone.
fn flip_in_memory_record(dir: &std::path::Path, marker: &[u8]) {
    let path = dir.join(STORE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let positions: Vec<usize> = bytes
        .windows(marker.len())
        .enumerate()
        .filter(|(i, w)| *w == marker && bytes[i - 1] != b'"')
        .map(|(i, _)| i)
        .collect();
    assert!(!positions.is_empty(), "marker not found in the file");
    for p in &positions {
        bytes[p + 7] ^= 0x20;
    }
    std::fs::write(&path, &bytes).unwrap();
}

fn refused(dir: &std::path::Path) -> String {
    match Store::open(dir, &athena_config::MemoryConfig::default()) {
        Err(e @ StoreError::Refused { .. }) => e.to_string(),
        Err(e) => panic!("expected a refusal, got {e}"),
        Ok(_) => panic!("expected a refusal, the store opened"),
    }
}

#[test]
fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(STORE_FILE),
        b"hello, I am a text file and not a database",
    )
    .unwrap();
    let msg = refused(dir.path());
    assert!(
        msg.contains("not an Athena store (not a redb database)"),
        "{msg}"
    );
    // The file was not touched.
    assert_eq!(
        std::fs::read(dir.path().join(STORE_FILE)).unwrap(),
        b"hello, I am a text file and not a database"
    );
}

#[test]
fn a_foreign_redb_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = redb::Database::create(dir.path().join(STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(redb::TableDefinition::<&str, &str>::new("something_else"))
            .unwrap()
            .insert("a", "b")
            .unwrap();
        tx.commit().unwrap();
    }
    let msg = refused(dir.path());
    assert!(
        msg.contains("not an Athena store (it has no meta table)"),
        "{msg}"
    );
}

#[test]
fn another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()));
    {
        let db = redb::Database::create(dir.path().join(STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(athena_storage::tables::META)
            .unwrap()
            .insert("schema_version", 99u32.to_le_bytes().as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let msg = refused(dir.path());
    assert!(
        msg.contains("store schema version 99, this build reads version 2"),
        "{msg}"
    );
}

#[test]
fn flipped_bytes_in_a_stored_record_are_found_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut victim = memory(
        424_242,
        MemoryType::Observation,
        Category::MarketAnalysis,
        T0,
        0.8,
    );
    victim.content = "UNIQUE-MARKER-CONTENT-0123456789".into();
    {
        let store = open(dir.path());
        let others: Vec<_> = (0..200)
            .map(|n| {
                memory(
                    n,
                    MemoryType::Observation,
                    Category::PoolBehavior,
                    T0 + n,
                    0.8,
                )
            })
            .collect();
        store.insert_memories(&others, T0).unwrap();
        store.insert_memory(&victim, T0).unwrap();
        assert!(store.verify_records().unwrap().is_clean());
    }
    flip_in_memory_record(dir.path(), b"UNIQUE-MARKER-CONTENT");

    let mut store = open(dir.path());
    let report = store.verify_records().unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].table, "memories");
    assert_eq!(report.corrupt[0].key, victim.id.to_string());
    assert!(
        report.corrupt[0].reason.contains("checksum mismatch"),
        "{report:?}"
    );
    // Reading it is an error naming the key, never a silently wrong memory.
    let err = store.get_memory(victim.id).unwrap_err().to_string();
    assert!(err.contains(&victim.id.to_string()), "{err}");
    // redb's page checksums see the damage too.
    assert!(!matches!(store.check_integrity(), Ok(true)));
}

#[test]
fn read_only_open_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .insert_memory(
                &memory(1, MemoryType::Observation, Category::PoolBehavior, T0, 0.5),
                T0,
            )
            .unwrap();
    }
    let before = std::fs::read(dir.path().join(STORE_FILE)).unwrap();
    let store = Store::open_read_only(dir.path(), &athena_config::MemoryConfig::default()).unwrap();
    assert!(store.is_read_only());
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), 1);
    let err = store
        .insert_memory(
            &memory(2, MemoryType::Observation, Category::PoolBehavior, T0, 0.5),
            T0,
        )
        .unwrap_err();
    assert!(err.to_string().contains("read-only"), "{err}");
    assert!(store.verify_records().unwrap().is_clean());
    drop(store);
    assert!(
        std::fs::read(dir.path().join(STORE_FILE)).unwrap() == before,
        "a read-only open changed the file"
    );
}

#[test]
fn pruning_skips_a_corrupt_record_names_it_and_prunes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut victim = memory(
        515_151,
        MemoryType::Observation,
        Category::MarketAnalysis,
        T0,
        0.8,
    );
    victim.content = "UNIQUE-PRUNE-VICTIM-0123456789".into();
    // Low-confidence memories older than 48 h by the time of the pass: step 1 removes them.
    let low: Vec<_> = (0..50)
        .map(|n| {
            memory(
                n,
                MemoryType::Observation,
                Category::PoolBehavior,
                T0 + n,
                0.1,
            )
        })
        .collect();
    {
        let store = open(dir.path());
        store.insert_memories(&low, T0).unwrap();
        store.insert_memory(&victim, T0).unwrap();
    }
    flip_in_memory_record(dir.path(), b"UNIQUE-PRUNE-VICTIM");

    let store = open(dir.path());
    let three_days = 3 * 86_400_000;
    let report = store.prune(T0 + three_days).unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].table, "memories");
    assert_eq!(report.corrupt[0].key, victim.id.to_string());
    assert_eq!(report.removed_low_confidence, low.len(), "{report:?}");
    // The corrupt record is left in place for an operator; every other memory was pruned.
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), 1);
    // The next pass skips it again and still succeeds.
    let again = store.prune(T0 + three_days + 3_600_000).unwrap();
    assert_eq!(again.corrupt.len(), 1);
}
