//! Determinism across restart: a backtest killed (SIGKILL) five times mid-run, each time once
//! it reported a further share of its ticks committed, and continued from its store ends with
//! the same journal, ledger, memories and book as an uninterrupted run of the same seed. The
//! backtest makes its commits durable every 288 ticks (its default), so a kill loses the ticks
//! since the last durable one and the next run redoes them.

mod support;

use athena::agent::state::{AgentState, STATE_KEY};
use athena_storage::{KeyedTable, SeqTable, Store};
use std::io::BufRead;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Ticks of the 6-day run (one every 5 minutes).
const TICKS: u64 = 6 * 288;

/// `athena backtest` of the test's run in `dir`: with `--json` (the report on stdout), or
/// interactive (progress on stderr after each committed tick, which the killed runs wait on).
fn backtest(dir: &Path, json: bool) -> Command {
    let mut c = support::command();
    c.args(["backtest", "--days", "6", "--seed", "11", "--data-dir"])
        .arg(dir)
        .args(json.then_some("--json"))
        .env_remove("ATHENA_CONFIG")
        .stdout(if json { Stdio::piped() } else { Stdio::null() })
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

/// Ticks between durable commits (`athena backtest --durable-every`, default).
const DURABLE_EVERY: u64 = 288;

/// The next tick the store in `dir` holds (what a continued run starts from).
fn next_tick(dir: &Path) -> u64 {
    let store = Store::open(dir, &athena_config::MemoryConfig::default()).unwrap();
    let state: Option<AgentState> = store.read(|r| r.get(KeyedTable::Agent, STATE_KEY)).unwrap();
    state.map_or(0, |s| s.next_tick)
}

/// Reads the progress a backtest prints to stderr after each committed tick ("\r[###   ]
/// 12%  day ..."), until it reached `pct` percent of its ticks; panics, with what it printed,
/// if it stops before.
fn wait_for_progress(child: &mut Child, pct: u64) {
    let mut err = std::io::BufReader::new(child.stderr.as_mut().unwrap());
    let mut seen = Vec::new();
    loop {
        let mut chunk = Vec::new();
        let n = err.read_until(b'\r', &mut chunk).unwrap();
        assert!(
            n > 0,
            "the backtest stopped before {pct}%: {:?}\n{}",
            child.try_wait(),
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&chunk);
        let line = String::from_utf8_lossy(&chunk);
        let reached = line
            .split_once(']')
            .and_then(|(_, rest)| rest.trim_start().split_once('%'))
            .and_then(|(n, _)| n.parse::<u64>().ok());
        if reached.is_some_and(|r| r >= pct) {
            return;
        }
    }
}

#[test]
fn a_backtest_killed_and_continued_ends_like_an_uninterrupted_one() {
    let clean = tempfile::tempdir().unwrap();
    let o = backtest(clean.path(), true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let killed = tempfile::tempdir().unwrap();
    // Each run is killed once it reported (after the commit) that it reached the next of these
    // shares of the run, so every kill lands mid-run, whatever the machine's speed: the
    // closest one still has more than half of the run's ticks ahead of it.
    let mut redone = 0;
    for pct in [5u64, 15, 25, 35, 45] {
        let mut child = backtest(killed.path(), false).spawn().unwrap();
        wait_for_progress(&mut child, pct);
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "the kill at {pct}% did not land: {status}"
        );
        // The run had committed at least `pct`% of the ticks; what survives the kill is the
        // last durable commit, at most DURABLE_EVERY ticks earlier (and never a partial tick).
        let kept = next_tick(killed.path());
        let reached = TICKS * pct / 100;
        assert!(
            kept + DURABLE_EVERY > reached,
            "the kill at {pct}% kept only {kept} ticks"
        );
        redone += u64::from(kept < reached);
    }
    assert!(
        redone > 0,
        "no kill landed between two durable commits: the redo path was not exercised"
    );
    let o = backtest(killed.path(), true).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The last run continued from the killed ones' durable commits: at most 55% of the ticks
    // and one durable interval were left.
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ran = report["ticks_run"].as_u64().unwrap();
    assert!(
        ran > 0 && ran <= TICKS * 55 / 100 + DURABLE_EVERY,
        "the last run ran {ran} ticks"
    );

    let (a, b) = (fingerprint(clean.path()), fingerprint(killed.path()));
    assert_eq!(a.len(), b.len(), "different record counts");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x, y);
    }
}
