//! Crash recovery through the real binary and the real servers (the Firestore emulator and the
//! GCS server, started by scripts/test.sh):
//! - the crash loop: an accelerated `athena run` syncing to both, killed with SIGKILL 32
//!   times, each at a moment it reported reaching (its crash recovery printed, its first tick,
//!   a pseudo-random later tick in its status file), and restarted each time; every restart is
//!   a crash recovery; afterwards the store verifies, no trade is lost or duplicated,
//!   observation state and breaker trips survived, and `athena sync verify` passes once the
//!   backlog drained;
//! - disk loss: the data directory deleted, `athena run --restore-from gcs` brings back the
//!   state the cloud held (the final checkpoint, the synced memories and the observations of
//!   the hourly packs);
//! - the scrubber of a running agent finds a corrupt record and trips memory_corruption.

use athena::agent::state::{AgentState, LedgerEntry, STATE_KEY};
use athena::journal::JournalRecord;
use athena_storage::{KeyedTable, SeqTable, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::*;

/// A config file in `dir` syncing to the emulator and the GCS server under a fresh agent id,
/// flushing every second.
fn cloud_config(dir: &Path) -> PathBuf {
    std::env::var("FIRESTORE_EMULATOR_HOST").expect(
        "FIRESTORE_EMULATOR_HOST is not set: run the tests with scripts/test.sh, which starts the Firestore emulator",
    );
    let bucket = std::env::var("GCS_TEST_BUCKET").expect(
        "GCS_TEST_BUCKET is not set: run the tests with scripts/test.sh, which starts fake-gcs-server",
    );
    let agent = format!("loop-{}", ulid::Ulid::new().to_string().to_lowercase());
    let path = dir.join("athena.toml");
    std::fs::write(
        &path,
        format!(
            "[agent]\nagent_id = \"{agent}\"\ndata_dir = \"{}\"\n[sync]\ndocuments = \"firestore\"\nfirestore_project = \"athena-test\"\nobject_store_url = \"gs://{bucket}/crash-loop\"\nflush_interval = \"1s\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

fn athena(config: &Path) -> Command {
    let mut c = support::command();
    c.arg("--config").arg(config);
    c
}

/// Starts `athena --config CONFIG run EXTRA` with its output going to `log`.
fn spawn_run(config: &Path, log: &Path, extra: &[&str], env: &[(&str, &str)]) -> Running {
    let config = config.to_str().unwrap();
    let mut args = vec!["--config", config, "run"];
    args.extend_from_slice(extra);
    spawn(&args, env, log)
}

/// SIGTERM, then waits for a clean stop.
fn stop_cleanly(mut child: Running, log: &Path) {
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(log).unwrap();
    assert!(
        status.success() && out.contains("athena: stopped cleanly"),
        "{status}:\n{out}"
    );
}

fn check_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed: {text}");
    text
}

/// Where a crash-loop round kills its run, each a moment the run reported reaching.
#[derive(Debug, Clone, Copy)]
enum KillPoint {
    /// Right after start-up printed its crash recovery: the clean-shutdown marker, the agent
    /// opening, the first tick.
    Recovered,
    /// Right after the first tick committed: the next tick, a checkpoint, the first sync pass.
    FirstTick,
    /// Once the status file shows this tick run (or, when the run started past it, the one
    /// after its first): mid-tick, mid-checkpoint, mid-sync.
    Tick(u64),
}

/// Ticks the crash loop advances per round, on average: 32 rounds reach tick ~1300, well past
/// the three-day observation period (tick 864), so the last third of the kills land while
/// the agent trades.
const TICKS_PER_ROUND: u64 = 40;

impl KillPoint {
    /// The kill point of round `round` (from 1), drawing from `next`. The first run has no
    /// recovery to print: it waits for its first tick instead.
    fn of(round: u64, next: u64) -> Self {
        match (round, next % 4) {
            (1, _) | (_, 1) => Self::FirstTick,
            (_, 0) => Self::Recovered,
            _ => Self::Tick(round * TICKS_PER_ROUND + next / 4 % TICKS_PER_ROUND),
        }
    }
}

/// The line `athena run` prints after its first committed tick, and that tick's number.
fn first_tick(log: &Path) -> u64 {
    let line = wait_for(log, "athena: first tick #", Duration::from_secs(60));
    line.split('#')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tick number in {line:?}"))
}

/// Waits until the status file in `data` shows tick `tick` or a later one run.
fn wait_for_tick(data: &Path, tick: u64, log: &Path) {
    let started = Instant::now();
    loop {
        let last = std::fs::read(data.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|s| s["last_tick"].as_u64());
        if last.is_some_and(|t| t >= tick) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no tick {tick} in the status file after 120 s (last {last:?}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `point` in the run logging to `log`.
fn wait_for_kill_point(point: KillPoint, data: &Path, log: &Path) {
    match point {
        KillPoint::Recovered => {
            wait_for(log, "athena: recovered in", Duration::from_secs(60));
        }
        KillPoint::FirstTick => {
            first_tick(log);
        }
        KillPoint::Tick(n) => wait_for_tick(data, n.max(first_tick(log) + 1), log),
    }
}

/// The line a start after a crash prints first.
const CRASH_RECOVERY: &str = "athena: recovery: crash";

#[test]
fn killed_thirty_times_the_agent_loses_and_duplicates_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let config = cloud_config(dir.path());
    let data = dir.path().join("data");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        seed >> 33
    };
    const KILLS: u64 = 32;
    let mut observation_end: Option<u64> = None;
    let mut printed_trips: std::collections::BTreeMap<String, u32> = Default::default();
    let mut points = Vec::new();
    for round in 1..=KILLS {
        let log = dir.path().join(format!("run-{round}.log"));
        let mut child = spawn_run(&config, &log, &[], &[]);
        let point = KillPoint::of(round, next());
        points.push(point);
        wait_for_kill_point(point, &data, &log);
        signal(&child, "-KILL");
        let status = child.wait().unwrap();
        let out = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the kill at {point:?} did not land:\n{out}"
        );
        assert!(!out.contains("panicked"), "{out}");
        // Every start after a killed one is a crash recovery, printed before the point.
        let expected = usize::from(round > 1);
        assert_eq!(
            out.matches(CRASH_RECOVERY).count(),
            expected,
            "round {round}: {out}"
        );
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("athena: breaker ") {
                let name = rest.split_whitespace().next().unwrap().to_string();
                *printed_trips.entry(name).or_default() += 1;
            }
        }
        // The observation period is persisted: every run agrees on when it ends.
        let bytes = std::fs::read(data.join("status.json")).unwrap();
        let s: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let end = s["observation_end_ms"].as_u64().unwrap();
        assert_eq!(*observation_end.get_or_insert(end), end);
    }
    // A last run recovers from the last kill and, stopped cleanly after its first tick, drains
    // the backlog.
    let log = dir.path().join("final.log");
    let child = spawn_run(&config, &log, &[], &[]);
    first_tick(&log);
    stop_cleanly(child, &log);
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(out.matches(CRASH_RECOVERY).count(), 1, "{out}");
    assert!(
        !out.contains("sync drain hit the shutdown deadline"),
        "the backlog did not drain: {out}"
    );

    check_ok(athena(&config).args(["store", "verify"]), "store verify");
    let verify = check_ok(athena(&config).args(["sync", "verify"]), "sync verify");
    assert!(!verify.contains("difference"), "{verify}");

    let store = Store::open(&data, &athena_config::MemoryConfig::default()).unwrap();
    let state: AgentState = store
        .read(|r| r.get(KeyedTable::Agent, STATE_KEY))
        .unwrap()
        .unwrap();
    let ledger: Vec<(u64, LedgerEntry)> = store
        .read(|r| r.seq_after(SeqTable::Ledger, 0, usize::MAX))
        .unwrap();
    let journal = athena::journal::read_all(&store).unwrap();
    assert!(
        state.totals.trades > 0,
        "the loop ran past the observation period and traded"
    );
    assert_eq!(
        observation_end.unwrap() - 3 * 86_400_000,
        state.observation_start_ms
    );
    // No trade lost or duplicated: one ledger entry per trade the book counts, no two fills of
    // the same position and action in one tick, and each fill backed by a journaled decision
    // of its tick.
    assert_eq!(ledger.len() as u64, state.totals.trades);
    let mut seen = std::collections::HashSet::new();
    for (_, e) in &ledger {
        assert!(
            seen.insert((e.tick, e.position.clone(), e.action.clone())),
            "duplicate fill {e:?}"
        );
        assert!(
            journal
                .iter()
                .any(|(_, j)| matches!(j, JournalRecord::Decision(d) if d.tick == e.tick)),
            "fill without a journaled decision: {e:?}"
        );
    }
    // Every decision tick is journaled once: a re-run tick would journal its decisions twice.
    let mut decision_ticks = std::collections::BTreeMap::<(u64, String), u32>::new();
    for (_, j) in &journal {
        if let JournalRecord::Decision(d) = j {
            *decision_ticks
                .entry((d.tick, format!("{:?}", d.intent)))
                .or_default() += 1;
        }
    }
    assert!(
        decision_ticks.values().all(|&n| n == 1),
        "a decision was journaled twice"
    );
    // The books agree with the ledger.
    let holdings = store
        .read(|r| {
            athena::recovery::reconcile::TruthSource::holdings(
                &athena::recovery::reconcile::PaperLedger {
                    starting_usd: 10_000.0,
                },
                r,
            )
        })
        .unwrap()
        .unwrap();
    let report = athena::recovery::reconcile::compare(&state, &holdings, "ledger", 0.01);
    assert!(report.within_tolerance, "{report:?}");
    // Every breaker trip a killed run printed was committed (it prints after its commit).
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    for (name, printed) in &printed_trips {
        let b = risk
            .breakers
            .iter()
            .find(|b| b.kind.as_str() == name)
            .unwrap();
        assert!(
            b.trip_count >= *printed,
            "{name}: {printed} trips printed, {} kept",
            b.trip_count
        );
    }
    eprintln!(
        "crash loop: {KILLS} kills at {points:?}, {KILLS} recoveries, {} trades, {} ledger entries, trips printed {printed_trips:?}",
        state.totals.trades,
        ledger.len()
    );
}

/// What the disk-loss test compares: the state the agent resumes from.
#[derive(Debug, PartialEq)]
struct Snapshot {
    agent: AgentState,
    ledger: Vec<(u64, LedgerEntry)>,
    /// Ids of the memories with a document of their own (all but observations).
    memories: Vec<String>,
    /// Ids of the observations (they travel in hourly packs).
    observations: std::collections::BTreeSet<String>,
    cold: usize,
    trip_counts: Vec<(String, u32)>,
}

fn snapshot(data: &Path) -> Snapshot {
    let store = Store::open(data, &athena_config::MemoryConfig::default()).unwrap();
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    store
        .read(|r| {
            let (documented, packed): (Vec<_>, Vec<_>) = r
                .all_memories()?
                .into_iter()
                .partition(athena_storage::has_document);
            let mut memories: Vec<String> = documented.iter().map(|m| m.id.to_string()).collect();
            memories.sort();
            Ok(Snapshot {
                agent: r.get(KeyedTable::Agent, STATE_KEY)?.unwrap(),
                ledger: r.seq_after(SeqTable::Ledger, 0, usize::MAX)?,
                memories,
                observations: packed.iter().map(|m| m.id.to_string()).collect(),
                cold: r.cold_entries()?.len(),
                trip_counts: risk
                    .breakers
                    .iter()
                    .map(|b| (b.kind.as_str().to_string(), b.trip_count))
                    .collect(),
            })
        })
        .unwrap()
}

#[test]
fn after_disk_loss_restore_from_gcs_brings_back_what_the_cloud_held() {
    let dir = tempfile::tempdir().unwrap();
    let config = cloud_config(dir.path());
    let data = dir.path().join("data");
    // An accelerated run past its observation period and first trades, stopped cleanly: the
    // final checkpoint and every change reach the cloud.
    let log = dir.path().join("before.log");
    let child = spawn_run(&config, &log, &[], &[]);
    let traded = |line: &str| {
        line.split(" trades ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n >= 2)
    };
    wait_line(&log, "two trades", traded, Duration::from_secs(120));
    stop_cleanly(child, &log);
    let before = snapshot(&data);
    assert!(before.agent.totals.trades >= 2 && !before.memories.is_empty());

    std::fs::remove_dir_all(&data).unwrap();

    // Restored on a real-time clock, so no tick runs before the comparison (the agent's next
    // tick is in the accelerated run's future).
    let log = dir.path().join("restore.log");
    let child = spawn_run(
        &config,
        &log,
        &["--restore-from", "gcs"],
        &[("ATHENA_AGENT_CLOCK", "real")],
    );
    wait_for(&log, "athena: agent at tick", Duration::from_secs(60));
    stop_cleanly(child, &log);
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        out.contains("athena: recovery: restore requested from gcs"),
        "{out}"
    );
    assert!(out.contains("find checkpoint (gcs)"), "{out}");
    let after = snapshot(&data);
    assert_eq!(after.agent, before.agent);
    assert_eq!(after.ledger, before.ledger);
    assert_eq!(after.memories, before.memories);
    // Observations come back from their hourly packs: every one the store held, and perhaps
    // some its quota had evicted (still within their retention; the next pruning pass evicts
    // them again).
    assert!(!before.observations.is_empty());
    let missing: Vec<_> = before
        .observations
        .difference(&after.observations)
        .collect();
    assert!(missing.is_empty(), "observations not restored: {missing:?}");
    assert!(
        out.contains("from the object store's hourly packs"),
        "{out}"
    );
    assert_eq!(after.cold, before.cold);
    assert_eq!(after.trip_counts, before.trip_counts);
    let status = check_ok(athena(&config).args(["status"]), "status");
    assert!(
        status.contains("last recovery:") && status.contains("restore requested from gcs"),
        "{status}"
    );
    // A second --restore-from on the now populated directory is refused, nothing touched.
    let refused = athena(&config)
        .args(["run", "--restore-from", "gcs"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

#[test]
fn the_scrubber_of_a_running_agent_trips_memory_corruption_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = athena_config::Config::default();
    config.agent.data_dir = data.clone();
    let victim = {
        let store = Store::open(&data, &config.memory).unwrap();
        athena::backtest::run(&config, &store, 3, |_, _| {}).unwrap();
        store
            .write(|w| w.set_meta_u64(athena::app::CLEAN_SHUTDOWN_KEY, 1))
            .unwrap();
        store.read(|r| r.all_memories()).unwrap()[0].id
    };
    {
        let db = redb::Database::open(data.join(athena_storage::STORE_FILE)).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(athena_storage::tables::MEMORIES)
            .unwrap()
            .insert(u128::from(victim), b"bit rot".as_slice())
            .unwrap();
        tx.commit().unwrap();
    }
    let log = dir.path().join("run.log");
    let mut child = Running(
        support::command()
            .args(["run", "--data-dir"])
            .arg(&data)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let found = wait_for(&log, "found a corrupt record", Duration::from_secs(30));
    assert!(found.contains(&format!("memories key {victim}")), "{found}");
    wait_for(
        &log,
        "breaker memory_corruption tripped",
        Duration::from_secs(10),
    );
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let store = Store::open(&data, &config.memory).unwrap();
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    let b = risk
        .breakers
        .iter()
        .find(|b| b.kind == athena::risk::BreakerKind::MemoryCorruption)
        .unwrap();
    assert_eq!(b.trip_count, 1, "reported once, tripped once");
    assert!(
        b.last_trip
            .as_ref()
            .is_some_and(|t| t.reason.contains(&victim.to_string())),
        "{b:?}"
    );
}
