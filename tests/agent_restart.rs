//! Determinism across restart: a backtest killed (SIGKILL) at random moments and continued
//! from its store ends with the same journal, ledger, memories and book as an uninterrupted
//! run of the same seed.

use athena::agent::state::{AgentState, STATE_KEY};
use athena_storage::{KeyedTable, SeqTable, Store};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_athena");

fn backtest(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "backtest",
        "--days",
        "6",
        "--seed",
        "11",
        "--json",
        "--data-dir",
    ])
    .arg(dir)
    .env_remove("ATHENA_CONFIG")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Everything a run leaves that must not depend on restarts, as JSON text.
fn fingerprint(dir: &Path) -> Vec<String> {
    let store = Store::open(dir, &athena_config::MemoryConfig::default()).unwrap();
    let (journal, ledger, state, memories) = store
        .read(|r| {
            let journal = r.seq_after::<serde_json::Value>(SeqTable::Journal, 0, usize::MAX)?;
            let ledger = r.seq_after::<serde_json::Value>(SeqTable::Ledger, 0, usize::MAX)?;
            let state: Option<AgentState> = r.get(KeyedTable::Agent, STATE_KEY)?;
            let mut memories: Vec<String> = r
                .all_memories()?
                .into_iter()
                .map(|m| serde_json::to_string(&m).unwrap())
                .collect();
            memories.sort();
            Ok((journal, ledger, state, memories))
        })
        .unwrap();
    let mut out = vec![serde_json::to_string(&state.expect("a finished run has a state")).unwrap()];
    out.extend(journal.iter().map(|(s, v)| format!("journal {s} {v}")));
    out.extend(ledger.iter().map(|(s, v)| format!("ledger {s} {v}")));
    out.extend(memories);
    out
}

#[test]
fn a_backtest_killed_and_continued_ends_like_an_uninterrupted_one() {
    let clean = tempfile::tempdir().unwrap();
    let o = backtest(clean.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let killed = tempfile::tempdir().unwrap();
    // Kill moments spread over the run (a debug build runs it in a few seconds).
    let mut kills = 0;
    for wait_ms in [400u64, 900, 650, 1_300, 500] {
        let mut child = backtest(killed.path()).spawn().unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(wait_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(
        kills >= 3,
        "only {kills} kills landed before the run finished"
    );
    let o = backtest(killed.path()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let (a, b) = (fingerprint(clean.path()), fingerprint(killed.path()));
    assert_eq!(a.len(), b.len(), "different record counts");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
}
