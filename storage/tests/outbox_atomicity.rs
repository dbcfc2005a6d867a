//! An outbox row exists if and only if its change committed: faults injected mid-transaction
//! (error, panic) and a writer process killed with SIGKILL at a random moment.

mod common;
use athena_storage::{KeyedTable, OutboxOp, Store, StoreError};
use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy)]
enum Fault {
    None,
    AfterChange,
    AfterOutbox,
    PanicAfterChange,
}

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        Just(Fault::None),
        Just(Fault::AfterChange),
        Just(Fault::AfterOutbox),
        Just(Fault::PanicAfterChange)
    ]
}

/// Writes position `key` and its outbox row, failing at `fault`.
fn change(store: &Store, key: &str, fault: Fault) -> Result<(), String> {
    let run = || {
        store.write(|w| {
            w.put(
                KeyedTable::Positions,
                key,
                &serde_json::json!({ "pool": key, "usd": 100 }),
            )?;
            if let Fault::AfterChange = fault {
                return Err(StoreError::Aborted("injected after change".into()));
            }
            if let Fault::PanicAfterChange = fault {
                panic!("injected panic after change");
            }
            w.outbox_append(
                OutboxOp::Upsert {
                    collection: "positions".into(),
                    doc: key.into(),
                    body: "{}".into(),
                },
                T0,
            )?;
            if let Fault::AfterOutbox = fault {
                return Err(StoreError::Aborted("injected after outbox".into()));
            }
            Ok(())
        })
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("panicked".into()),
    }
}

/// Every committed position has exactly one outbox row and every outbox row has its position.
fn assert_iff(store: &Store) -> (BTreeSet<String>, usize) {
    store
        .read(|r| {
            let positions: BTreeSet<String> = r
                .all::<serde_json::Value>(KeyedTable::Positions)?
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let rows = r.outbox_peek(0, usize::MAX)?;
            let docs: BTreeSet<String> = rows
                .iter()
                .filter_map(|(_, row)| match &row.op {
                    OutboxOp::Upsert { doc, .. } => Some(doc.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(positions, docs, "positions and outbox rows differ");
            Ok((positions, rows.len()))
        })
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn outbox_row_exists_iff_change_committed(ops in proptest::collection::vec((0u8..20, fault()), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut committed = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for (k, f) in ops {
            let key = format!("pos-{k}");
            if seen.contains(&key) {
                continue; // one change per key keeps "exactly one row" checkable
            }
            let ok = change(&store, &key, f).is_ok();
            prop_assert_eq!(ok, matches!(f, Fault::None));
            if ok {
                committed.insert(key.clone());
                seen.insert(key);
            }
            let (positions, rows) = assert_iff(&store);
            prop_assert_eq!(&positions, &committed);
            prop_assert_eq!(rows, committed.len());
        }
        // And across a reopen.
        drop(store);
        let store = open(dir.path());
        let (positions, _) = assert_iff(&store);
        prop_assert_eq!(positions, committed);
    }
}

#[test]
fn memory_insert_and_outbox_fail_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let m = memory(
        1,
        athena_storage::MemoryType::Observation,
        athena_storage::Category::PoolBehavior,
        T0,
        0.8,
    );
    let err = store
        .write(|w| {
            w.insert_memory(&m, T0)?;
            Err::<(), _>(StoreError::Aborted("injected".into()))
        })
        .unwrap_err();
    assert!(err.to_string().contains("injected"));
    assert!(store.get_memory(m.id).unwrap().is_none());
    assert_eq!(store.outbox_len().unwrap(), 0);
    store.insert_memory(&m, T0).unwrap();
    assert_eq!(store.outbox_len().unwrap(), 1);
}

/// Child side of the kill test: writes changes with their outbox rows until killed.
#[test]
fn child_writer_until_killed() {
    let Ok(dir) = std::env::var("ATHENA_TEST_CHILD_DIR") else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    for i in 0.. {
        change(&store, &format!("pos-{i}"), Fault::None).unwrap();
    }
}

#[test]
fn sigkill_mid_write_keeps_the_invariant() {
    let exe = std::env::current_exe().unwrap();
    for round in 0..5u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(&exe)
            .args([
                "--exact",
                "child_writer_until_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ATHENA_TEST_CHILD_DIR", dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300 + round * 137));
        // SIGKILL: no destructor, no flush.
        std::process::Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let store = open(dir.path());
        let (positions, _) = assert_iff(&store);
        assert!(
            !positions.is_empty(),
            "child wrote nothing in round {round}"
        );
        assert!(store.verify_records().unwrap().is_clean());
    }
}
