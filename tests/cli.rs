//! The `athena` binary, used as an operator uses it.

use athena_storage::{Category, Memory, MemoryType, Metadata, Source, Store};
use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::Tmpfs;
/// November 2023: in the past for the wall clock the CLI uses.
const T0: u64 = 1_700_000_000_000;

fn athena(dir: &Path, args: &[&str]) -> Output {
    support::command()
        .args(args)
        .current_dir(dir)
        .env_remove("ATHENA_CONFIG")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run athena")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

fn seed_memories(data: &Path, n: u64) -> Vec<Memory> {
    support::seed_memories(data, n, T0)
}

/// Patterns: one document each in the cloud (observations travel in hourly packs).
fn seed_patterns(data: &Path, n: u64) -> Vec<Memory> {
    support::seed_memories_of(data, n, T0, athena_storage::MemoryType::Pattern)
}

#[test]
fn run_refuses_the_chain_executor_on_simulated_prices_before_touching_anything() {
    let dir = tempfile::tempdir().unwrap();
    let o = support::command()
        .args(["--data-dir", "data", "run"])
        .current_dir(dir.path())
        .env_remove("ATHENA_CONFIG")
        .env("ATHENA_EXECUTOR_KIND", "chain")
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("executor.kind: \"chain\" trades the pools the chain source reads"),
        "{out}{err}"
    );
    assert!(!dir.path().join("data").exists(), "a store was created");
    assert_no_panic(&err);
}

#[test]
fn run_refuses_a_signing_key_file_others_may_read_without_echoing_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.hex");
    let secret = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
    std::fs::write(&key, secret).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = support::command()
        .args(["--data-dir", "data", "run"])
        .current_dir(dir.path())
        .env_remove("ATHENA_CONFIG")
        .env("ATHENA_CHAIN_PRIVATE_KEY_FILE", &key)
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("has mode 0644"), "{out}{err}");
    assert!(err.contains("chmod 600"), "{out}{err}");
    assert!(
        !format!("{out}{err}").contains(&secret[2..]),
        "the key was echoed"
    );
    assert!(!dir.path().join("data").exists(), "a store was created");
    assert_no_panic(&err);
}

#[test]
fn config_check_accepts_shipped_files_and_lists_every_problem() {
    // Read at run time: a test binary reused from a target directory shared with another
    // checkout must look at this checkout.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("run by cargo test");
    let root = Path::new(&manifest_dir);
    for f in [
        "config/athena.toml",
        "config/examples/default.toml",
        "config/examples/replay.toml",
        "config/examples/local-anvil.toml",
    ] {
        let o = athena(root, &["config", "check", "--config", f]);
        assert!(o.status.success(), "{f}: {:?}", text(&o));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[risk]\nmax_position_fraction = 1.5\ncolour = 1\n[gas]\nhard_cap_gwei = -1.0\n",
    )
    .unwrap();
    let o = athena(dir.path(), &["config", "check", "--config", "bad.toml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("bad.toml: 3 problem(s)"), "{err}");
    assert!(
        err.contains("risk.max_position_fraction: must be in (0, 1], got 1.5"),
        "{err}"
    );
    assert!(err.contains("risk.colour: unknown key"), "{err}");
    assert!(
        err.contains("gas.hard_cap_gwei: must be a positive number, got -1"),
        "{err}"
    );
    assert_no_panic(&err);
    // A command that needs the configuration names the file too, and starts nothing.
    let o = athena(
        dir.path(),
        &["backtest", "--days", "1", "--config", "bad.toml"],
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.starts_with("error: bad.toml: 3 configuration problem(s)"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "a refused start wrote nothing"
    );
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let o = support::command()
        .args(["config", "show"])
        .current_dir(dir.path())
        .env("ATHENA_API_ADMIN_TOKEN", "tok-very-secret")
        .output()
        .unwrap();
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert!(!out.contains("tok-very-secret"));
    assert!(out.contains("api.admin_token set"));
}

#[test]
fn bad_arguments_and_files_get_one_line_and_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    for (args, code, needle) in [
        (vec!["--bogus"], 2, "unexpected argument '--bogus'"),
        (
            vec!["memory", "recall", "--limit", "many"],
            2,
            "invalid value 'many'",
        ),
        (
            vec!["config", "check", "--config", "/nonexistent.toml"],
            2,
            "cannot read config file /nonexistent.toml",
        ),
        (
            vec!["memory", "recall", "--category", "general"],
            2,
            "unknown category \"general\"",
        ),
        (
            vec!["memory", "recall", "--type", "hunch"],
            2,
            "unknown memory type",
        ),
        (
            vec!["memory", "recall", "--min-confidence", "2"],
            2,
            "must be in [0, 1], got 2",
        ),
        (
            vec!["memory", "recall", "--min-confidence", "lots"],
            2,
            "invalid value 'lots'",
        ),
        (
            vec!["memory", "recall", "--limit", "0"],
            2,
            "must be at least 1",
        ),
        (
            vec!["memory", "recall", "--since", "100000days"],
            2,
            "at most",
        ),
        (
            vec!["backtest", "--days", "213503982334602"],
            2,
            "must be in [1, 3650], got 213503982334602",
        ),
        (vec!["backtest", "--days", "0"], 2, "must be in [1, 3650]"),
        (
            vec!["backtest", "--days", "1", "--seeds", "7..3"],
            2,
            "the first seed must not exceed the last",
        ),
        (
            vec!["backtest", "--days", "1", "--seeds", "7"],
            2,
            "expected A..B",
        ),
        (
            vec!["backtest", "--days", "1", "--seeds", "1..1000"],
            2,
            "at most 256 seeds",
        ),
        (
            vec!["backtest", "--days", "1", "--durable-every", "0"],
            2,
            "must be at least 1 (1: every tick)",
        ),
        (
            vec![
                "sim",
                "record",
                "--days",
                "18446744073709551615",
                "--out",
                "ticks.jsonl",
            ],
            2,
            "must be in [1, 3650]",
        ),
        (
            vec!["journal", "--kind", "gossip"],
            2,
            "unknown kind \"gossip\"",
        ),
        (vec!["journal", "--limit", "0"], 2, "must be at least 1"),
    ] {
        let o = athena(dir.path(), &args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_no_panic(&err);
    }
    assert!(
        !dir.path().join("data").exists() && !dir.path().join("ticks.jsonl").exists(),
        "a refused command wrote nothing"
    );
    std::fs::create_dir(dir.path().join("notastore")).unwrap();
    std::fs::write(dir.path().join("notastore/athena.redb"), "junk").unwrap();
    let o = athena(dir.path(), &["store", "stats", "--data-dir", "notastore"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("not an Athena store"), "{err}");
}

#[test]
fn memory_commands_work_on_a_real_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed_memories(&data, 30);
    let o = athena(dir.path(), &["memory", "stats", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["by_category"]["pool_behavior"]["hot"], 30);
    let o = athena(
        dir.path(),
        &["memory", "recall", "--pool", "POOL1", "--limit", "5"],
    );
    let (out, _) = text(&o);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|m| m["metadata"]["pool"] == "POOL1"));
    let o = athena(dir.path(), &["memory", "prune"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let report: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    // The memories are years old in wall time: observations are past their retention.
    assert_eq!(report["expired"], 30);
}

#[test]
fn store_verify_finds_flipped_bytes_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ms = seed_memories(&data, 50);
    let o = athena(dir.path(), &["store", "verify"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let path = data.join("athena.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let needle = b"observation 17 of pool";
    // The msgpack record, not the outbox row's JSON copy of it.
    let at = (1..bytes.len() - needle.len())
        .find(|&i| &bytes[i..i + needle.len()] == needle && bytes[i - 1] != b'"')
        .expect("record in the file");
    bytes[at + 3] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let o = athena(dir.path(), &["store", "verify"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("is CORRUPT"), "{err}");
    assert!(
        err.contains(&format!("table memories key {}", ms[17].id)),
        "{err}"
    );
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_no_panic(&err);
    // verify never modifies the store: the damage is still there to be quarantined.
    assert!(
        std::fs::read(&path).unwrap() == bytes,
        "store verify modified the store file"
    );
}

#[test]
fn run_starts_on_the_defaults_trades_within_two_minutes_and_stops_cleanly_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let mut child = support::command()
        .arg("run")
        .current_dir(dir.path())
        .env_remove("ATHENA_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Read the status lines as they come; stop at the first trade (or after two minutes).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let started = std::time::Instant::now();
    let mut out = String::new();
    let mut traded_at = None;
    while started.elapsed() < std::time::Duration::from_secs(120) {
        match rx.recv_timeout(std::time::Duration::from_millis(200)) {
            Ok(line) => {
                out.push_str(&line);
                out.push('\n');
                if line.contains(" trades ") && !line.contains(" trades 0 ") {
                    traded_at = Some((started.elapsed(), line));
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    // `athena status` works while the agent holds the store.
    let live = athena(dir.path(), &["status"]);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let (live_out, live_err) = text(&live);
    assert!(live.status.success(), "{live_err}");
    assert!(live_out.contains("(agent running)"), "{live_out}");
    assert!(live_out.contains("positions"), "{live_out}");
    out.extend(rx.try_iter().map(|l| l + "\n"));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let (elapsed, line) =
        traded_at.unwrap_or_else(|| panic!("no trade within two minutes:\n{out}\n{err}"));
    assert!(status.success(), "{out}\n{err}");
    assert!(out.contains("store open at data/athena.redb"), "{out}");
    assert!(
        out.contains("syncing documents to none and objects to local"),
        "{out}"
    );
    assert!(
        out.contains("(observing)"),
        "the observation period comes first: {out}"
    );
    assert!(
        !line.contains("(observing)"),
        "a trade during observation: {line}"
    );
    assert!(out.contains("stopped cleanly"), "{out}");
    eprintln!("first trade after {elapsed:?}: {line}");

    // The clean-shutdown marker is written last; status reads the book after the stop.
    let store = Store::open(
        &dir.path().join("data"),
        &athena_config::MemoryConfig::default(),
    )
    .unwrap();
    assert!(
        store
            .read(|r| r.meta_u64(athena::app::CLEAN_SHUTDOWN_KEY))
            .unwrap()
            .unwrap_or(0)
            > 0
    );
    drop(store);
    // Hourly checkpoints on the agent clock and a final one at shutdown, all valid.
    let o = athena(dir.path(), &["checkpoint", "list"]);
    let (list, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        list.lines().count() >= 24,
        "a checkpoint per agent hour: {list}"
    );
    let o = athena(dir.path(), &["checkpoint", "verify", "latest"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = athena(dir.path(), &["status"]);
    let (status_out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(status_out.contains("trading state: active"), "{status_out}");
    assert!(status_out.contains("positions"), "{status_out}");
}

#[test]
fn sync_status_and_flush_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    seed_patterns(&data, 20);
    {
        let store = Store::open(&data, &athena_config::MemoryConfig::default()).unwrap();
        store
            .write(|w| {
                w.outbox_append(
                    athena_storage::OutboxOp::PutBlob {
                        path: "segments/s1.seg".into(),
                        bytes: b"segment".to_vec(),
                    },
                    T0,
                )
            })
            .unwrap();
    }
    let o = athena(dir.path(), &["sync", "status", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(s["queue_depth"], 21);
    assert_eq!(s["documents"]["pending"], 20);
    assert_eq!(s["objects"]["pending"], 1);

    let o = athena(dir.path(), &["sync", "flush"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("0 rows left in the outbox"), "{out}");
    // The embedded default sends objects to a local directory under the data directory.
    assert_eq!(
        std::fs::read(data.join("sync/athena-local/segments/s1.seg")).unwrap(),
        b"segment"
    );

    let o = athena(dir.path(), &["sync", "status", "--json"]);
    let s: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(s["queue_depth"], 0);
    assert_eq!(s["rows_delivered"], 21);
    assert_eq!(s["document_writes"], 20);
    assert_eq!(s["object_writes"], 1);
}

#[test]
fn sync_verify_passes_after_a_flush_and_names_what_the_cloud_lost() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let store = Store::open(&data, &athena_config::MemoryConfig::default()).unwrap();
        let md = Metadata {
            pool: Some("WETH/USDC".into()),
            pattern_key: Some("apr_anomaly:WETH/USDC".into()),
            ..Metadata::default()
        };
        let p = Memory::new(
            MemoryType::Pattern,
            Category::AprAnomaly,
            "apr spikes with volume",
            md,
            0.9,
            Source::Rule,
            ulid::Ulid::from_parts(T0, 1),
        );
        store.insert_memory(&p, T0).unwrap();
        store.prune(T0 + 10 * 86_400_000).unwrap(); // into a cold segment
    }
    let o = athena(dir.path(), &["sync", "flush"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = athena(dir.path(), &["sync", "verify"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(
        out.contains("the cloud matches the store (0 documents and 1 objects compared"),
        "{out}"
    );
    // Lose the segment in the "cloud" (the local sync directory).
    let segments = data.join("sync/athena-local/segments");
    for f in std::fs::read_dir(&segments).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let o = athena(dir.path(), &["sync", "verify"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 difference(s)")
            && err.contains("blob:segments/")
            && err.contains("missing or unreadable"),
        "{err}"
    );
}

#[test]
fn risk_status_and_operator_controls_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = athena(d, &["risk", "status"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "no store yet: {err}");
    assert!(err.contains("opening the store in data"), "{err}");
    drop(Store::open(&d.join("data"), &athena_config::MemoryConfig::default()).unwrap());
    let o = athena(d, &["risk", "status"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("trading state: active"), "{out}");
    assert!(out.contains("memory_corruption"), "{out}");

    // Bad input: one line, exit 2, nothing written.
    for (args, says) in [
        (
            &["risk", "reset", "nope", "--reason", "x"][..],
            "unknown breaker",
        ),
        (
            &["risk", "stop", "--reason", "  "][..],
            "a reason is required",
        ),
        (
            &[
                "risk",
                "override",
                "risk.max_position_fraction",
                "1.5",
                "--for",
                "1h",
                "--reason",
                "r",
            ][..],
            "fraction",
        ),
        (
            &[
                "risk",
                "override",
                "risk.max_positions",
                "6",
                "--for",
                "30h",
                "--reason",
                "r",
            ][..],
            "at most 24 h",
        ),
        (
            &[
                "risk",
                "override",
                "risk.colour",
                "1",
                "--for",
                "1h",
                "--reason",
                "r",
            ][..],
            "unknown limit",
        ),
    ] {
        let o = athena(d, args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_no_panic(&err);
    }

    let o = athena(d, &["risk", "stop", "--reason", "incident 42"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("trading state: halted"), "{out}");
    let o = athena(
        d,
        &[
            "risk",
            "override",
            "risk.max_positions",
            "6",
            "--for",
            "2h",
            "--reason",
            "migration",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let o = athena(d, &["risk", "status", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["trading_state"], "halted");
    assert_eq!(v["operator_stop"]["reason"], "incident 42");
    assert_eq!(v["overrides"][0]["value"], 6.0);

    let o = athena(d, &["risk", "resume", "--reason", "resolved"]);
    assert!(
        text(&o).0.contains("trading state: active"),
        "{:?}",
        text(&o)
    );
    let o = athena(
        d,
        &[
            "risk",
            "reset",
            "position_mismatch",
            "--reason",
            "books reconciled",
        ],
    );
    assert!(o.status.success(), "{:?}", text(&o));

    // Every control is in the journal with its reason.
    let store = Store::open(&d.join("data"), &athena_config::MemoryConfig::default()).unwrap();
    let events: Vec<String> = athena::risk::persist::journal(&store)
        .unwrap()
        .into_iter()
        .map(|(_, j)| serde_json::to_string(&j.event).unwrap())
        .collect();
    for says in ["incident 42", "migration", "resolved", "books reconciled"] {
        assert!(
            events.iter().any(|e| e.contains(says)),
            "{says}: {events:#?}"
        );
    }
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every read-only command on `dir`'s store; each must leave the file byte for byte as it was.
fn assert_read_only_commands_change_nothing(dir: &Path) {
    let store = dir.join("data/athena.redb");
    for args in [
        &["status"][..],
        &["status", "--json"],
        &["memory", "stats"],
        &["memory", "recall", "--limit", "3"],
        &["store", "stats"],
        &["store", "verify"],
        &["risk", "status"],
        &["sync", "status"],
        &["journal"],
        &["checkpoint", "list"],
    ] {
        let before = sha256_of(&store);
        let o = athena(dir, args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {out}\n{err}");
        assert_no_panic(&err);
        assert_eq!(sha256_of(&store), before, "{args:?} changed the store file");
    }
}

#[test]
fn read_only_commands_never_change_a_byte_and_refused_controls_never_open_for_writing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seed_memories(&d.join("data"), 20);
    assert_read_only_commands_change_nothing(d);

    // A control refused for its arguments or by the engine leaves the file as it was.
    let store = d.join("data/athena.redb");
    for args in [
        &[
            "risk",
            "override",
            "risk.max_positions",
            "6",
            "--for",
            "25h",
            "--reason",
            "r",
        ][..],
        &["risk", "stop", "--reason", " "],
        &["risk", "reset", "nope", "--reason", "x"],
        &["memory", "recall", "--category", "general"],
    ] {
        let before = sha256_of(&store);
        let o = athena(d, args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(sha256_of(&store), before, "{args:?} changed the store file");
    }
}

#[test]
fn read_only_commands_leave_a_crashed_store_unrepaired_on_disk() {
    use std::io::BufRead;
    // An agent without quick repair, killed: its store needs redb's repair to be opened.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut child = support::command()
        .arg("run")
        .current_dir(d)
        .env_remove("ATHENA_CONFIG")
        .env("ATHENA_RECOVERY_QUICK_REPAIR", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // The first status line comes after ticks were committed.
    let line = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.contains("equity"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(line.is_some(), "the agent printed no status line");
    let o = athena(d, &["store", "verify"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(err.contains("not closed cleanly"), "a crashed store: {err}");
    assert_read_only_commands_change_nothing(d);
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // Far more output than a pipe buffers, so writes fail once the reader is gone.
    seed_memories(&dir.path().join("data"), 1000);
    let mut child = support::command()
        .args(["memory", "recall", "--limit", "1000"])
        .current_dir(dir.path())
        .env_remove("ATHENA_CONFIG")
        .env("RUST_BACKTRACE", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader (and the pipe) is dropped here, as `head -1` exits.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(first.starts_with('{'), "{first}");
    assert_no_panic(&err);
    assert!(err.is_empty(), "nothing on stderr: {err}");
    assert_eq!(o.status.code(), Some(0), "{err}");
}

#[test]
fn athena_data_dir_chooses_the_store_like_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seed_memories(&d.join("elsewhere"), 7);
    let with_env = |args: &[&str]| {
        support::command()
            .args(args)
            .current_dir(d)
            .env_remove("ATHENA_CONFIG")
            .env("ATHENA_DATA_DIR", "elsewhere")
            .output()
            .unwrap()
    };
    let o = with_env(&["memory", "stats", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let stats: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["by_category"]["pool_behavior"]["hot"], 7);
    let o = with_env(&["config", "show"]);
    assert!(
        text(&o).0.contains("data_dir = \"elsewhere\""),
        "{:?}",
        text(&o)
    );
    // --data-dir still wins over the environment.
    let o = with_env(&["memory", "stats", "--data-dir", "nowhere"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(!d.join("data").exists() && !d.join("nowhere").exists());
}

#[test]
fn config_errors_quote_a_short_prefix_and_bound_the_agent_id() {
    let dir = tempfile::tempdir().unwrap();
    let huge = "x".repeat(10 * 1024 * 1024);
    std::fs::write(
        dir.path().join("huge.toml"),
        format!("[agent]\nagent_id = \"{huge}\"\ntick_interval = \"{huge}\"\n"),
    )
    .unwrap();
    let o = athena(dir.path(), &["config", "check", "--config", "huge.toml"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.len() < 2000, "{} bytes of error", err.len());
    assert!(
        err.contains("agent.agent_id: must be 1 to 128 characters"),
        "{err}"
    );
    assert!(err.contains("agent.tick_interval"), "{err}");
    assert_eq!(err.trim().lines().count(), 3, "{err}");
    for (id, says) in [
        ("a".repeat(129), "must be 1 to 128 characters"),
        ("__reserved__".into(), "reserved by Firestore"),
        ("has/slash".into(), "[A-Za-z0-9_-]"),
    ] {
        let o = support::command()
            .args(["config", "check"])
            .current_dir(dir.path())
            .env_remove("ATHENA_CONFIG")
            .env("ATHENA_AGENT_AGENT_ID", &id)
            .output()
            .unwrap();
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{id}: {err}");
        assert!(
            err.contains("agent.agent_id") && err.contains(says),
            "{err}"
        );
    }
    let o = support::command()
        .args(["config", "check"])
        .current_dir(dir.path())
        .env_remove("ATHENA_CONFIG")
        .env("ATHENA_AGENT_AGENT_ID", "a".repeat(128))
        .output()
        .unwrap();
    assert!(o.status.success(), "{:?}", text(&o));
}

/// A decision as the agent loop journals it.
fn decision(at_ms: u64, intent: athena::agent::strategy::Intent) -> athena::journal::JournalRecord {
    athena::journal::JournalRecord::Decision(athena::journal::DecisionRecord {
        tick: at_ms / 300_000,
        at_ms,
        intent,
        apr_pct: 30.0,
        tvl_usd: 1e6,
        trading_state: athena::risk::TradingState::Active,
        decision: athena::risk::model::Decision::Approve {
            size_usd: 500.0,
            bounded_by: Vec::new(),
        },
        gas: athena::risk::GasAction::Proceed,
        executed_usd: Some(500.0),
        note: None,
        // As a journal written before decisions carried their rule, gas and sizing.
        rule: None,
        gas_gwei: None,
        gas_usd: None,
        sizing: None,
        advice: None,
    })
}

#[test]
fn journal_shows_decisions_and_risk_events_newest_first() {
    use athena::agent::strategy::Intent;
    use athena_storage::SeqTable;
    const H: u64 = 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    {
        let store = Store::open(&d.join("data"), &athena_config::MemoryConfig::default()).unwrap();
        let open = |pool: &str| Intent::Open { pool: pool.into() };
        store
            .write(|w| {
                for (i, pool) in ["WETH/USDC", "USDC/DAI"].iter().enumerate() {
                    w.append(SeqTable::Journal, &decision(T0 + i as u64 * H, open(pool)))?;
                    w.append(
                        SeqTable::Ledger,
                        &athena::agent::state::LedgerEntry {
                            at_ms: T0 + i as u64 * H,
                            tick: 0,
                            action: "open".into(),
                            position: format!("pos-{i}"),
                            pool: (*pool).into(),
                            usd: 500.0,
                            fee_usd: 0.0,
                            slippage_usd: 0.0,
                            slippage_pct: 0.0,
                            gas_usd: 0.0,
                            cash_after_usd: 0.0,
                            pnl_usd: None,
                            tx_hashes: Vec::new(),
                        },
                    )?;
                }
                w.append(
                    SeqTable::Journal,
                    &athena::journal::JournalRecord::Risk(athena::risk::state::RiskJournal {
                        at_ms: T0 + 2 * H,
                        event: athena::risk::state::RiskEvent::Trip {
                            breaker: athena::risk::BreakerKind::ALL[0],
                            reason: "a reason with numbers".into(),
                            until_ms: Some(T0 + 3 * H),
                        },
                    }),
                )?;
                w.append(
                    SeqTable::Journal,
                    &decision(
                        T0 + 3 * H,
                        Intent::Close {
                            position: "pos-0".into(),
                            reason: "TVL drain 52.0% within 6h".into(),
                            protection: None,
                        },
                    ),
                )?;
                Ok(())
            })
            .unwrap();
    }
    let o = athena(d, &["risk", "stop", "--reason", "incident 7"]);
    assert!(o.status.success(), "{:?}", text(&o));

    let json_lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let o = athena(d, args);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{args:?}: {err}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let all = json_lines(&["journal", "--json"]);
    let kinds: Vec<&str> = all.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    // Newest first: the stop's state change, the stop, the close, the trip, two opens.
    assert_eq!(
        kinds,
        [
            "risk", "control", "decision", "risk", "decision", "decision"
        ]
    );
    let seqs: Vec<u64> = all.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]), "{seqs:?}");
    assert_eq!(
        all[2]["pool"], "WETH/USDC",
        "a close names its position's pool"
    );

    let decisions = json_lines(&["journal", "--json", "--kind", "decision", "--limit", "2"]);
    assert_eq!(decisions.len(), 2);
    assert!(decisions.iter().all(|e| e["kind"] == "decision"));
    let in_pool = json_lines(&["journal", "--json", "--pool", "WETH/USDC"]);
    assert_eq!(in_pool.len(), 2, "the open and the close of pos-0");
    assert!(in_pool.iter().all(|e| e["pool"] == "WETH/USDC"));
    // --since counts back from the agent's last tick, or the wall clock without an agent:
    // everything written at T0 is years old.
    assert_eq!(
        json_lines(&["journal", "--json", "--kind", "decision", "--since", "2h"]).len(),
        0
    );
    assert_eq!(
        json_lines(&[
            "journal", "--json", "--kind", "decision", "--since", "3650days"
        ])
        .len(),
        3
    );

    let o = athena(d, &["journal"]);
    let (out, _) = text(&o);
    assert!(
        out.contains("close pos-0 in WETH/USDC: TVL drain 52.0% within 6h")
            && out.contains("→ approved $500.00; executed $500.00"),
        "{out}"
    );
    assert!(out.contains("operator stop: incident 7"), "{out}");
    assert!(out.contains("tripped: a reason with numbers"), "{out}");
    assert_eq!(out.lines().count(), 6, "{out}");
    // Risk events are about the whole book, not a pool.
    let o = athena(d, &["journal", "--kind", "risk", "--pool", "WETH/USDC"]);
    let (out, err) = text(&o);
    assert!(o.status.success() && out.is_empty(), "{out}");
    assert!(err.contains("no journal entries match"), "{err}");
}

#[test]
fn sync_verify_finds_a_checkpoint_object_lost_from_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seed_patterns(&d.join("data"), 3);
    for _ in 0..3 {
        let o = athena(d, &["checkpoint", "create"]);
        assert!(o.status.success(), "{:?}", text(&o));
    }
    let o = athena(d, &["sync", "flush"]);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = athena(d, &["sync", "verify"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("3 objects compared"), "{out}");
    let objects = d.join("data/sync/athena-local/checkpoints");
    let lost = std::fs::read_dir(&objects)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&lost).unwrap();
    let o = athena(d, &["sync", "verify"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let name = lost.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        err.contains("1 difference(s)")
            && err.contains(&format!("blob:checkpoints/{name}"))
            && err.contains("missing or unreadable"),
        "{err}"
    );
}

#[test]
fn store_verify_needs_no_copy_on_a_nearly_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let built = dir.path().join("built");
    seed_memories(&built, 20_000);
    let size = std::fs::metadata(built.join("athena.redb")).unwrap().len();
    // Room for the store and a third of it more: a copy cannot fit.
    let mb = (size + size / 3).div_ceil(1 << 20);
    assert!(
        mb * (1 << 20) < 2 * size,
        "store {size} bytes, tmpfs {mb} MB"
    );
    let disk = dir.path().join("disk");
    let _mounted = Tmpfs::mount(&disk, mb);
    std::fs::create_dir(disk.join("data")).unwrap();
    std::fs::copy(built.join("athena.redb"), disk.join("data/athena.redb")).unwrap();
    let before = sha256_of(&disk.join("data/athena.redb"));
    let o = athena(&disk, &["store", "verify"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("verified: "), "{out}");
    let left: Vec<_> = std::fs::read_dir(disk.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec!["athena.redb"], "nothing left behind");
    assert_eq!(sha256_of(&disk.join("data/athena.redb")), before);
}

/// `athena backtest --seeds A..B` runs each seed in its own directory, on several threads, and
/// each seed's report is the one a run of that seed alone gives.
#[test]
fn backtest_seeds_match_their_runs_alone() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], data: &str| {
        let mut all = vec!["backtest", "--days", "4", "--data-dir", data];
        all.extend_from_slice(args);
        let o = athena(dir.path(), &all);
        let (out, err) = text(&o);
        assert!(o.status.success(), "{err}");
        out
    };
    let many: Vec<serde_json::Value> =
        serde_json::from_str(&run(&["--seeds", "3..5", "--json"], "many")).unwrap();
    assert_eq!(
        many.iter()
            .map(|r| r["seed"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        vec![3, 4, 5]
    );
    assert!(dir.path().join("many/seed-4/athena.redb").exists());
    let alone: serde_json::Value =
        serde_json::from_str(&run(&["--seed", "4", "--json"], "alone")).unwrap();
    for field in [
        "pnl_usd",
        "max_drawdown_pct",
        "trades",
        "fees_usd",
        "gas_usd",
        "breaker_trips",
        "decisions",
    ] {
        assert_eq!(many[1][field], alone[field], "{field}");
    }
    let table = run(&["--seeds", "3..4"], "table");
    for needle in ["PnL $", "max DD %", "breaker trips", "cost $", "mean"] {
        assert!(table.contains(needle), "{needle} missing: {table}");
    }
}

#[test]
fn a_backtest_run_again_says_what_it_continued_and_refuses_a_shorter_length() {
    let dir = tempfile::tempdir().unwrap();
    let run = |days: &str| athena(dir.path(), &["backtest", "--days", days, "--seed", "3"]);
    let o = run("2");
    let (first, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(!first.contains("continued"), "{first}");
    assert!(first.contains("a day sent"), "{first}");

    // Run again on the finished directory: nothing to run, and no bill per day of nothing.
    let o = run("2");
    let (again, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(again.contains(" 0 ticks in"), "{again}");
    assert!(
        again.contains("(continued: the first 576 ticks were run by an earlier process)"),
        "{again}"
    );
    assert!(again.contains("sync: the run had already ended"), "{again}");
    assert!(!again.contains("a day sent"), "{again}");
    let equity = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("equity:"))
            .map(str::to_string)
    };
    assert_eq!(equity(&first), equity(&again));

    // Longer: continues, and says its sync figures cover only its own ticks.
    let o = run("3");
    let (longer, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(longer.contains("288 ticks in"), "{longer}");
    assert!(longer.contains("this process's 288 ticks only"), "{longer}");

    // Shorter than what the directory holds: refused in one line, nothing changed.
    let o = run("1");
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("holds a run of 864 ticks, past the 1 days (288 ticks) asked for"),
        "{err}"
    );
    assert_no_panic(&err);
}
