//! The `athena` binary, used as an operator uses it.

use athena_storage::{Category, Memory, MemoryType, Metadata, Source, Store};
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_athena");
/// November 2023: in the past for the wall clock the CLI uses.
const T0: u64 = 1_700_000_000_000;

fn athena(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
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
    let store = Store::open(data, &athena_config::MemoryConfig::default()).unwrap();
    let ms: Vec<Memory> = (0..n)
        .map(|i| {
            let md = Metadata {
                pool: Some(format!("POOL{}", i % 3)),
                apr: Some(20.0 + i as f64),
                ..Metadata::default()
            };
            Memory::new(
                MemoryType::Observation,
                Category::PoolBehavior,
                format!("observation {i} of pool"),
                md,
                0.8,
                Source::MarketData,
                ulid::Ulid::from_parts(T0 + i * 1000, u128::from(i) + 1),
            )
        })
        .collect();
    store.insert_memories(&ms, T0).unwrap();
    ms
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
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
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
            1,
            "unknown category \"general\"",
        ),
        (
            vec!["memory", "recall", "--min-confidence", "2"],
            1,
            "--min-confidence must be in [0, 1]",
        ),
    ] {
        let o = athena(dir.path(), &args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_no_panic(&err);
    }
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
    let mut child = Command::new(BIN)
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
    seed_memories(&data, 20);
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
