//! An outbox row exists if and only if its change committed: faults injected mid-transaction
//! (error, panic) and a writer process killed with SIGKILL at a random moment.

mod common;
use athena_storage::{KeyedTable, OutboxOp, Store, StoreError};
use common::*;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::io::Write;

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

/// Name of the child role below, passed to `--exact` by the parent: renamed without updating
/// this, the child runs nothing and the parent fails (it sees no writes), never passes.
const CHILD_TEST: &str = "child_writer_until_killed";
/// The environment variable that gives the child role its store directory.
const CHILD_DIR_VAR: &str = "ATHENA_TEST_CHILD_DIR";
/// What the child prints after each commit, followed by the committed key and a newline
/// (the first one shares its line with libtest's "test child_writer_until_killed ... ").
const COMMITTED: &str = "committed ";

/// The key a line of the child reports committed, if it reports one.
fn committed_key(line: &str) -> Option<String> {
    line.rsplit_once(COMMITTED).map(|(_, key)| key.to_string())
}

/// Child role of [`sigkill_mid_write_keeps_the_invariant`], not a test of its own: without
/// `ATHENA_TEST_CHILD_DIR` it does nothing. With it, it writes changes with their outbox rows,
/// reporting each key on stdout after its commit, until killed.
#[test]
fn child_writer_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else {
        return;
    };
    let store = open(std::path::Path::new(&dir));
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let key = format!("pos-{i}");
        change(&store, &key, Fault::None).unwrap();
        writeln!(out, "{COMMITTED}{key}").unwrap();
        out.flush().unwrap();
    }
}

/// Starts this test binary as the child writer on `dir`, its stdout piped.
fn spawn_child_writer(dir: &std::path::Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_VAR, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's commit reports until `n` arrived (panicking, with its exit status, if it
/// stops before), SIGKILLs it, and returns every key it reported, the ones still in the pipe
/// included, once it is dead.
fn kill_after_commits(mut child: std::process::Child, n: usize) -> Vec<String> {
    use std::io::BufRead;
    use std::os::unix::process::ExitStatusExt;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut reported, mut printed) = (Vec::new(), String::new());
    while reported.len() < n {
        match lines.next() {
            Some(line) => {
                let line = line.unwrap();
                reported.extend(committed_key(&line));
                printed.push_str(&line);
                printed.push('\n');
            }
            None => panic!(
                "the child writer stopped after {} commits: {:?}\n{printed}",
                reported.len(),
                child.wait()
            ),
        }
    }
    // SIGKILL: no destructor, no flush; the child is mid-write or between two writes.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9), "the kill did not land: {status}");
    reported.extend(
        lines
            .map_while(Result::ok)
            .filter_map(|l| committed_key(&l)),
    );
    reported
}

#[test]
fn sigkill_mid_write_keeps_the_invariant() {
    for round in 0..5usize {
        let dir = tempfile::tempdir().unwrap();
        let reported = kill_after_commits(spawn_child_writer(dir.path()), 1 + round * 37);
        let store = open(dir.path());
        let (positions, _) = assert_iff(&store);
        // Every reported commit survived, and at most the one in flight was added to them.
        let n = reported.len();
        assert!(
            positions.len() == n || positions.len() == n + 1,
            "round {round}: {n} commits reported, {} positions",
            positions.len()
        );
        let expected: BTreeSet<String> = (0..positions.len()).map(|i| format!("pos-{i}")).collect();
        assert_eq!(
            positions, expected,
            "round {round}: not a prefix of the writes"
        );
        let in_order: Vec<String> = (0..n).map(|i| format!("pos-{i}")).collect();
        assert_eq!(reported, in_order, "round {round}: the child's reports");
        assert!(store.verify_records().unwrap().is_clean());
    }
}
