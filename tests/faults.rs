//! Faults an operator meets, against the real binary: the cloud down at start, a full disk
//! (a small tmpfs), a disk that stays full past the deadline, and stop signals at awkward
//! moments. Each waits on what the agent prints, never on a fixed sleep.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(180);

/// Polls `athena status --json` until a running agent publishes a status that is not stale
/// with a last tick at or past `at_least`; returns that tick.
fn wait_live_tick(data: &str, at_least: u64) -> u64 {
    let started = std::time::Instant::now();
    loop {
        let (ok, out) = athena(&["status", "--json", "--data-dir", data], &[]);
        if ok && let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) {
            let tick = v["status"]["last_tick"].as_u64().unwrap_or(0);
            if v["running"] == true && v["stale"] == false && tick >= at_least {
                return tick;
            }
        }
        assert!(
            started.elapsed() < LONG,
            "no live status past tick {at_least}: {out}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A status line (`… trades N …`) with N > 0.
fn has_traded(line: &str) -> bool {
    line.starts_with("athena: day")
        && line
            .split("trades ")
            .nth(1)
            .and_then(|t| t.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| n > 0)
}

fn count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// A disk that fills up under a trading agent: one clear message naming the cause, nothing
/// executed while the store cannot be written, no stream of errors; when space returns the
/// store is reopened, verified and the agent goes on, reported as a recovery; a clean stop.
#[test]
fn a_full_disk_stops_execution_and_the_agent_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("fs"), 48);
    let data = fs.0.join("data");
    let data = data.to_str().unwrap();
    let log = dir.path().join("run.log");
    let mut child = spawn_run(
        &["--data-dir", data],
        &[("ATHENA_AGENT_OBSERVATION_PERIOD", "2h")],
        &log,
    );
    // Trading has begun: fills are what must never happen unjournaled.
    wait_line(&log, "a status line with trades", has_traded, LONG);
    let filler = fs.fill();
    let failed = wait_for(&log, "the store cannot be written", LONG);
    assert!(failed.contains("No space left on device"), "{failed}");
    // At least one more attempt fails while the disk is full (the backoff is running).
    wait_line(
        &log,
        "a failed reopen",
        |l| l.contains("failed again after reopening") || l.contains("still not writable"),
        LONG,
    );
    std::fs::remove_file(&filler).unwrap();
    // Live again: a fresh status file (it cannot be written on the full disk, and it is removed
    // whenever the store fails) showing ticks going on.
    let first = wait_live_tick(data, 0);
    wait_live_tick(data, first + 20);
    wait_for(&log, "the store is writable again", LONG);
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, LONG, &log);
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.success() && out.contains("athena: stopped cleanly"),
        "{status}:\n{out}"
    );
    assert_eq!(count(&log, "the store cannot be written"), 1, "{out}");
    // The operator's lines name the cause, never redb's "Previous I/O error" echo.
    assert_eq!(
        count(
            &log,
            "athena: the store failed again after reopening (storage failure: Previous"
        ),
        0,
        "{out}"
    );
    // What the store holds is intact, and the recovery is on record.
    let (ok, verify) = athena(&["store", "verify", "--data-dir", data], &[]);
    assert!(ok, "{verify}");
    let (ok, status) = athena(&["status", "--json", "--data-dir", data], &[]);
    assert!(ok, "{status}");
    assert!(
        status.contains("the store could not be written"),
        "{status}"
    );
}

/// A disk that stays full: after `recovery.store_retry_deadline` the process exits non-zero
/// with one line naming the cause, so a supervisor can act; the next start recovers.
#[test]
fn a_disk_that_stays_full_ends_the_process_after_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&dir.path().join("fs"), 32);
    let data = fs.0.join("data");
    let data = data.to_str().unwrap();
    let log = dir.path().join("run.log");
    let mut child = spawn_run(
        &["--data-dir", data],
        &[("ATHENA_RECOVERY_STORE_RETRY_DEADLINE", "3s")],
        &log,
    );
    wait_for(&log, "first tick", LONG);
    let filler = fs.fill();
    let status = wait_exit(&mut child, LONG, &log);
    let out = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{out}");
    let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
    assert!(
        last.contains("could not be written for") && last.contains("No space left on device"),
        "{last}"
    );
    std::fs::remove_file(&filler).unwrap();
    let log2 = dir.path().join("run2.log");
    let mut again = spawn_run(&["--data-dir", data], &[], &log2);
    wait_for(&log2, "athena: recovery: crash", LONG);
    wait_for(&log2, "first tick", LONG);
    signal(&again, "-TERM");
    assert!(wait_exit(&mut again, LONG, &log2).success());
}

/// SIGTERM as soon as the process says it is starting (signal handlers installed, the ladder
/// about to run) is a clean stop: exit 0, and the next start is no crash recovery. So is
/// SIGHUP while it runs.
#[test]
fn sigterm_during_start_up_and_sighup_while_running_are_clean_stops() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    // A store to recover from: the first run is killed, so the second start runs the ladder.
    let log0 = dir.path().join("run0.log");
    let mut first = spawn_run(&["--data-dir", data], &[], &log0);
    wait_for(&log0, "first tick", LONG);
    signal(&first, "-KILL");
    let _ = first.wait();

    let log1 = dir.path().join("run1.log");
    let mut child = spawn_run(&["--data-dir", data], &[], &log1);
    wait_for(&log1, "athena: starting", LONG);
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, LONG, &log1);
    let out = std::fs::read_to_string(&log1).unwrap();
    assert!(
        status.success() && out.contains("athena: stopped cleanly"),
        "{status}:\n{out}"
    );

    let log2 = dir.path().join("run2.log");
    let mut child = spawn_run(&["--data-dir", data], &[], &log2);
    wait_for(&log2, "first tick", LONG);
    signal(&child, "-HUP");
    let status = wait_exit(&mut child, LONG, &log2);
    let out = std::fs::read_to_string(&log2).unwrap();
    assert!(
        status.success() && out.contains("SIGHUP received") && out.contains("stopped cleanly"),
        "{status}:\n{out}"
    );
    assert!(!out.contains("recovery: crash"), "{out}");

    let log3 = dir.path().join("run3.log");
    let mut child = spawn_run(&["--data-dir", data], &[], &log3);
    wait_for(&log3, "first tick", LONG);
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child, LONG, &log3).success());
    let out = std::fs::read_to_string(&log3).unwrap();
    assert!(
        !out.contains("recovery: crash"),
        "after a SIGHUP stop:\n{out}"
    );
}

/// The real Firestore emulator on a port chosen now, started only after the agent.
struct LateEmulator {
    run: PathBuf,
}

impl LateEmulator {
    fn start(run: &Path, port: u16) -> Self {
        let script = support::checkout().join("scripts/firestore-emulator.sh");
        let ok = Command::new(script)
            .arg("start")
            .arg(run)
            .env("FIRESTORE_EMULATOR_PORT", port.to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "the Firestore emulator did not start");
        Self {
            run: run.to_path_buf(),
        }
    }
}

impl Drop for LateEmulator {
    fn drop(&mut self) {
        let script = support::checkout().join("scripts/firestore-emulator.sh");
        let _ = Command::new(script).arg("stop").arg(&self.run).status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An agent started while Firestore cannot be reached says so in one readable line, trades
/// offline, and syncs once Firestore comes up, without a restart: the outbox empties,
/// `sync verify` is clean and `sync status` kept the last error.
#[test]
fn an_agent_started_while_firestore_is_down_syncs_once_it_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let host = format!("127.0.0.1:{port}");
    let agent = format!("late-{}", ulid::Ulid::new().to_string().to_lowercase());
    let config = dir.path().join("athena.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nagent_id = \"{agent}\"\ndata_dir = \"{}\"\n[sync]\ndocuments = \"firestore\"\nfirestore_project = \"athena-test\"\nobject_store_url = \"file://sync\"\nflush_interval = \"1s\"\n[monitor]\nmetrics_interval = \"200ms\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let env = [
        ("FIRESTORE_EMULATOR_HOST", host.as_str()),
        ("ATHENA_LOG", "warn,athena_sync=info"),
    ];
    let log = dir.path().join("run.log");
    let mut child = spawn_run(&["--config", config], &env, &log);
    let down = wait_for(&log, "is not connected yet", LONG);
    assert!(
        down.contains("Connection refused") && down.len() < 300 && !down.contains("GrpcStatus"),
        "not one readable line: {down}"
    );
    // It trades (observes) offline: changes pile up in the outbox.
    wait_for(&log, "day 0.25", LONG);
    // The cloud's failures are counted and shown in health; the agent goes on ticking.
    let api = wait_for(&log, "athena: API on http://", LONG);
    let base = format!(
        "http://{}",
        api.split("http://")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
    );
    let counted = wait_for_api(&base, "/metrics", |m| {
        m.lines().any(|l| {
            l.starts_with("athena_api_failures_total{source=\"cloud\"}") && !l.ends_with(" 0")
        })
    });
    assert!(
        counted.contains("athena_sync_consecutive_failures"),
        "{counted}"
    );
    let health = wait_for_api(&base, "/health/detailed", |h| {
        h.contains("\"name\":\"sync\",\"status\":\"degraded\"")
    });
    assert!(health.contains("Connection refused"), "{health}");
    let live = wait_for_api(&base, "/health", |_| true);
    assert!(
        !live.contains("unhealthy"),
        "cloud failures made the agent unhealthy: {live}"
    );
    let _emulator = LateEmulator::start(&dir.path().join("emulator"), port);
    wait_for(&log, "sink connected", LONG);
    wait_for(&log, "sync delivers again", LONG);
    signal(&child, "-TERM");
    let status = wait_exit(&mut child, LONG, &log);
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );

    let (ok, status) = athena(&["--config", config, "sync", "status", "--json"], &env);
    assert!(ok, "{status}");
    let s: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(s["queue_depth"], 0, "{status}");
    assert_eq!(s["health"]["consecutive_failures"], 0, "{status}");
    let last = s["health"]["last_error"].as_str().unwrap();
    assert!(last.contains("Connection refused"), "{status}");
    let (ok, verify) = athena(&["--config", config, "sync", "verify"], &env);
    assert!(ok, "{verify}");
}

/// Polls `base` + `path` until `ok` accepts the body; returns it.
fn wait_for_api(base: &str, path: &str, ok: impl Fn(&str) -> bool) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let body = rt.block_on(async {
            reqwest::get(format!("{base}{path}"))
                .await
                .ok()?
                .text()
                .await
                .ok()
        });
        if let Some(b) = body.filter(|b| ok(b)) {
            return b;
        }
        assert!(started.elapsed() < LONG, "GET {path} never matched");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
