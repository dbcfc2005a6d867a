//! Checkpoints of a real agent run: consistent contents, verified by digest, stored as a file,
//! a store entry, and an object and a document queued for the cloud; a flipped byte or a
//! truncated file is rejected, by the library and by `athena checkpoint verify`.

mod support;

use athena::backtest;
use athena::checkpoint::{self, CheckpointError, DIR};
use athena_storage::{OutboxOp, Store};

/// Runs `athena ARGS --data-dir DIR` on the embedded defaults.
fn athena_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    support::command()
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("ATHENA_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn a_checkpoint_holds_the_run_and_a_flipped_byte_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = 5;
    let store = Store::open(dir.path(), &config.memory).unwrap();
    backtest::run(&config, &store, 4, |_, _| {}).unwrap();
    let state = athena::agent::state::AgentState::clone(
        &store
            .read(|r| {
                r.get::<athena::agent::state::AgentState>(
                    athena_storage::KeyedTable::Agent,
                    "state",
                )
            })
            .unwrap()
            .unwrap(),
    );
    let outbox_before = store.outbox_len().unwrap();
    let entry = checkpoint::create(&store, dir.path(), &config, state.last_tick_ms).unwrap();

    // The contents are the run's state, consistent with each other.
    let path = dir.path().join(DIR).join(&entry.file);
    let c = checkpoint::verify_file(&path).unwrap();
    assert_eq!(c.id, entry.id);
    assert_eq!(c.agent.as_ref().unwrap(), &state);
    assert!(
        state.totals.trades > 0 && c.ledger.len() as u64 == state.totals.trades,
        "{} ledger entries, {} trades",
        c.ledger.len(),
        state.totals.trades
    );
    assert!(c.risk.is_some() && !c.memories.is_empty());
    assert_eq!(checkpoint::list(&store).unwrap(), vec![entry.clone()]);
    // The object and the metadata document are queued for the cloud in the same transaction.
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    assert_eq!(store.outbox_len().unwrap(), outbox_before + 2);
    assert!(rows.iter().any(
        |(_, r)| matches!(&r.op, OutboxOp::PutBlob { path, .. } if path.ends_with(&entry.file))
    ));
    assert!(rows.iter().any(|(_, r)| matches!(&r.op, OutboxOp::Upsert { collection, doc, .. } if collection == "checkpoints" && doc == &entry.id)));
    drop(store);

    let cli = |args: &[&str]| athena_cli(dir.path(), args);
    let o = cli(&["checkpoint", "verify"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("valid"));

    // One flipped byte in the payload.
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    std::fs::write(&path, &bad).unwrap();
    match checkpoint::verify_file(&path) {
        Err(CheckpointError::Invalid(m)) => assert!(m.contains("digest mismatch"), "{m}"),
        other => panic!("a flipped byte was accepted: {:?}", other.map(|c| c.id)),
    }
    let o = cli(&["checkpoint", "verify", &entry.id]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("digest mismatch"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Truncated, and not a checkpoint at all.
    std::fs::write(&path, &good[..good.len() - 10]).unwrap();
    assert!(checkpoint::verify_file(&path).is_err());
    std::fs::write(&path, b"hello").unwrap();
    assert!(
        matches!(checkpoint::verify_file(&path), Err(CheckpointError::Invalid(m)) if m.contains("bad magic"))
    );
}

#[test]
fn checkpoint_restore_quarantines_the_store_and_restores_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    let (state, memories) = {
        let store = Store::open(dir.path(), &config.memory).unwrap();
        backtest::run(&config, &store, 4, |_, _| {}).unwrap();
        let state: athena::agent::state::AgentState = store
            .read(|r| r.get(athena_storage::KeyedTable::Agent, "state"))
            .unwrap()
            .unwrap();
        checkpoint::create(&store, dir.path(), &config, state.last_tick_ms).unwrap();
        (state, store.read(|r| r.memory_count()).unwrap())
    };
    let cli = |args: &[&str]| athena_cli(dir.path(), args);
    let o = cli(&["checkpoint", "restore", "latest", "--from", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("expected local, gcs or firestore"));
    let o = cli(&["checkpoint", "restore", "ckpt-1-1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing to restore from"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        dir.path().join(athena_storage::STORE_FILE).exists(),
        "a failed restore leaves the store where it was"
    );
    let o = cli(&["checkpoint", "restore", "latest", "--from", "local"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("quarantined the previous store"), "{out}");
    let quarantined = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".quarantined-")
        })
        .count();
    assert_eq!(
        quarantined, 1,
        "the failed restore left the store in place; the good one quarantined it"
    );
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let restored: athena::agent::state::AgentState = store
        .read(|r| r.get(athena_storage::KeyedTable::Agent, "state"))
        .unwrap()
        .unwrap();
    assert_eq!(restored, state);
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), memories);
}

/// One damaged checkpoint entry does not switch checkpoints off: it is skipped by the list,
/// the next checkpoint and the thinning go on.
#[test]
fn a_corrupt_checkpoint_entry_is_skipped_and_checkpoints_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    let store = Store::open(dir.path(), &config.memory).unwrap();
    backtest::run(&config, &store, 1, |_, _| {}).unwrap();
    let hour = 3_600_000;
    let first = checkpoint::create(&store, dir.path(), &config, 10 * hour).unwrap();
    let second = checkpoint::create(&store, dir.path(), &config, 11 * hour).unwrap();
    drop(store);
    {
        let db = redb::Database::open(dir.path().join(athena_storage::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(athena_storage::tables::CHECKPOINTS)
            .unwrap()
            .insert(first.id.as_str(), b"not a record".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let ids = |s: &Store| -> Vec<String> {
        checkpoint::list(s)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect()
    };
    assert_eq!(ids(&store), vec![second.id.clone()]);
    let third = checkpoint::create(&store, dir.path(), &config, 12 * hour).unwrap();
    assert_eq!(ids(&store), vec![second.id.clone(), third.id.clone()]);
    // Past the hourly window the first of the day (the second checkpoint) is kept.
    let removed = checkpoint::thin(&store, dir.path(), hour, 40 * hour).unwrap();
    assert_eq!(removed, vec![third.id]);
    assert_eq!(ids(&store), vec![second.id]);
}
