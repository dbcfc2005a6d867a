//! `athena run` on a replay, through the binary: it runs on the replay's time (the observation
//! end it prints, pruning and the clean-shutdown marker), and a bad line or the end of the
//! file stops it in order with that one error on stderr and exit 1, instead of retrying for
//! ever.

mod support;

use athena::backtest::BACKTEST_START_MS;
use athena::market::MarketTick;
use athena::market::sim::Sim;
use athena_storage::Store;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Stdio};

const TICK_MS: u64 = 300_000;
/// 2026-01-04T00:00:00Z: the replay's start plus the 3-day observation period.
const OBSERVATION_END: &str = "2026-01-04T00:00:00Z";

/// Writes `ticks` simulator ticks (from 2026-01-01) to `dir/market.jsonl`, `spoil` applied.
fn write_replay(dir: &Path, ticks: u64, spoil: impl Fn(&mut MarketTick)) {
    let mut sim = Sim::new(5, BACKTEST_START_MS, TICK_MS);
    let mut text = String::new();
    for i in 0..ticks {
        let mut t = athena::market::MarketSource::tick(&mut sim, i).unwrap();
        spoil(&mut t);
        text.push_str(&serde_json::to_string(&t).unwrap());
        text.push('\n');
    }
    std::fs::write(dir.join("market.jsonl"), text).unwrap();
}

fn start(dir: &Path) -> Child {
    std::fs::write(
        dir.join("replay.toml"),
        "[agent]\ntime_scale = 100000.0\n[market]\nsource = \"replay\"\nreplay_path = \"market.jsonl\"\n",
    )
    .unwrap();
    support::command()
        .args(["run", "--config", "replay.toml"])
        .current_dir(dir)
        .env_remove("ATHENA_CONFIG")
        .env_remove("ATHENA_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the agent to stop by itself; one that never does (the bug: retrying the bad
/// line for ever) is killed after a generous bound and fails the test.
fn wait(mut child: Child) -> (std::process::ExitStatus, String, String) {
    let bound = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > bound {
            child.kill().unwrap();
            child.wait().unwrap();
            let mut out = String::new();
            child.stdout.take().unwrap().read_to_string(&mut out).ok();
            panic!("the agent never stopped on its own:\n{out}");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status, out, err)
}

fn store(dir: &Path) -> Store {
    Store::open(&dir.join("data"), &athena_config::MemoryConfig::default()).unwrap()
}

#[test]
fn a_bad_replay_line_stops_the_run_in_order_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write_replay(dir.path(), 200, |t| {
        if t.index == 100 {
            t.pools[0].tvl_usd = -5.0;
        }
    });
    let (status, out, err) = wait(start(dir.path()));
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("market.jsonl:101: tick 100, pool WETH/USDC: tvl_usd is -5"),
        "{err}"
    );
    assert!(out.contains("athena: stopped cleanly"), "{out}");
    assert!(
        !out.contains("tick failed"),
        "no retry of a final error: {out}"
    );
    // Ticks 0..=99 ran; the clean-shutdown marker holds the replay time of the last one.
    let store = store(dir.path());
    let state: athena::agent::state::AgentState = store
        .read(|r| {
            r.get(
                athena_storage::KeyedTable::Agent,
                athena::agent::state::STATE_KEY,
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(state.next_tick, 100);
    assert_eq!(
        store
            .read(|r| r.meta_u64(athena::app::CLEAN_SHUTDOWN_KEY))
            .unwrap(),
        Some(BACKTEST_START_MS + 99 * TICK_MS)
    );
}

#[test]
fn the_end_of_the_replay_stops_the_run_which_lived_on_replay_time() {
    let dir = tempfile::tempdir().unwrap();
    let ticks = 2 * 288;
    write_replay(dir.path(), ticks, |_| {});
    let (status, out, err) = wait(start(dir.path()));
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {err}");
    assert!(
        lines[0].contains("market.jsonl:576: the replay ends before tick 576"),
        "{err}"
    );
    assert!(
        out.contains(&format!("observing until {OBSERVATION_END} of agent time")),
        "the observation end on the replay's time: {out}"
    );
    assert!(out.contains("athena: stopped cleanly"), "{out}");
    let store = store(dir.path());
    assert_eq!(
        store
            .read(|r| r.meta_u64(athena::app::CLEAN_SHUTDOWN_KEY))
            .unwrap(),
        Some(BACKTEST_START_MS + (ticks - 1) * TICK_MS),
        "stopped at the replay time of its last tick"
    );
    // Pruning ran on the replay's time: the two days of memories are still local, not
    // archived as months old.
    let stats = store.memory_stats().unwrap();
    assert!(stats.total.hot > 0, "{stats:?}");
    assert_eq!(stats.total.cold, 0, "{stats:?}");
    // A second start on the finished replay stops at once with the same error.
    drop(store);
    let (status, out, err) = wait(start(dir.path()));
    assert_eq!(status.code(), Some(1), "{out}\n{err}");
    assert!(
        err.contains("market.jsonl:576: the replay ends before tick 576"),
        "{err}"
    );
}
