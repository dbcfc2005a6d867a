//! Recovery benchmarks (issue 6), each beside its naive peer:
//! - `first_tick`: a store with an agent run and 1M memories; `athena run` (the real binary) is
//!   killed with SIGKILL, then the next `athena run` is timed from process spawn to the line it
//!   prints after its first committed tick (target ≤ 1 s). Peer: the naive recovery that
//!   verifies every record before resuming (`Store::open` + `verify_records`, in process).
//! - `checkpoint`: `checkpoint::create` on that store (1M memories): time and file size. Peer:
//!   the naive snapshot, a synced copy of the whole store file.
//! - `restore_gcs`: a run with 100k memories synced to the Firestore emulator and its checkpoint
//!   in the GCS server; the data directory deleted; `recovery::start(.., Some(Gcs))` timed
//!   (target ≤ 60 s). No peer: the target is absolute.
//!
//! Run: `scripts/bench-recovery.sh` (starts the emulator and the GCS server). Sections by name:
//! `scripts/bench-recovery.sh first_tick checkpoint`. ATHENA_BENCH_MEMORIES changes the 1M.

#[path = "common/mod.rs"]
mod common;

use athena::agent::state::{AgentState, STATE_KEY};
use athena_config::Config;
use athena_storage::{KeyedTable, Store};
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_athena");

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let wanted = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let n: u64 = std::env::var("ATHENA_BENCH_MEMORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if wanted("first_tick") || wanted("checkpoint") {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let config = local_config(&data);
        build_store(&config, n, true);
        if wanted("first_tick") {
            first_tick(&data, n);
        }
        if wanted("checkpoint") {
            checkpoint(&config, n);
        }
    }
    if wanted("restore_gcs") {
        restore_gcs(100_000);
    }
}

/// Default config on `data`, with sync off (the bench measures recovery, not the worker).
fn local_config(data: &Path) -> Config {
    let mut c = Config::default();
    c.agent.data_dir = data.to_path_buf();
    c.sync.object_store_url = String::new();
    c
}

/// A 4-day agent run plus `n` memories, with their outbox rows acknowledged when `ack` is set
/// (else they stay for the sync worker).
fn build_store(config: &Config, n: u64, ack: bool) {
    let started = Instant::now();
    let store = Store::open(&config.agent.data_dir, &config.memory).unwrap();
    athena::backtest::run(config, &store, 4, |_, _| {}).unwrap();
    for chunk in memories(n, 30 * DAY_MS, 21).chunks(20_000) {
        if ack {
            insert_acknowledged(&store, chunk);
        } else {
            store.insert_memories(chunk, T0).unwrap();
        }
    }
    let size = std::fs::metadata(store.path()).unwrap().len();
    println!(
        "setup: a 4-day run plus {n} memories ({} in the store), {:.1} MB, built in {:.1} s",
        store.read(|r| r.memory_count()).unwrap(),
        size as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );
}

fn spawn_run(data: &Path) -> Child {
    Command::new(BIN)
        .env("ATHENA_API_BIND", "127.0.0.1:0")
        .args(["run", "--data-dir"])
        .arg(data)
        .env("ATHENA_SYNC_OBJECT_STORE_URL", "")
        .env_remove("ATHENA_BENCH_MEMORIES")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(data.with_extension("stderr")).unwrap())
        .spawn()
        .unwrap()
}

/// Reads the child's output until its first-tick line; returns the wall time from `from`.
fn until_first_tick(child: &mut Child, data: &Path, from: Instant) -> (Duration, String) {
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let mut recovery = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!(
                "athena run ended ({status}) before its first tick: {}",
                std::fs::read_to_string(data.with_extension("stderr")).unwrap_or_default()
            );
        }
        if line.contains("recovered in") {
            recovery = line.trim().to_string();
        }
        if line.contains("athena: first tick") {
            return (from.elapsed(), recovery);
        }
    }
}

fn kill9(mut child: Child) {
    Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn first_tick(data: &Path, n: u64) {
    // A running agent killed with SIGKILL after it committed a tick: the store is left as a
    // crash leaves it.
    let mut child = spawn_run(data);
    let (_, recovery) = until_first_tick(&mut child, data, Instant::now());
    assert!(recovery.is_empty(), "the first start is not a recovery");
    kill9(child);
    let mut times = Vec::new();
    for round in 0..5 {
        let t = Instant::now();
        let mut child = spawn_run(data);
        let (took, recovery) = until_first_tick(&mut child, data, t);
        kill9(child);
        println!(
            "FIRST_TICK round {round}: {:.1} ms from spawn to the first committed tick ({recovery})",
            took.as_secs_f64() * 1000.0
        );
        assert!(recovery.contains("recovered"), "each start is a recovery");
        times.push(took.as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    // The naive peer: verify every record before resuming.
    let t = Instant::now();
    let store = Store::open(data, &athena_config::MemoryConfig::default()).unwrap();
    let report = store.verify_records().unwrap();
    let naive = t.elapsed().as_secs_f64() * 1000.0;
    println!(
        "FIRST_TICK {n} memories: ladder median {:.1} ms, max {:.1} ms (target ≤ 1000 ms); naive full verify before resuming {naive:.1} ms ({} records) = {:.1}× the ladder's whole start",
        times[times.len() / 2],
        times[times.len() - 1],
        report.records,
        naive / times[times.len() / 2]
    );
}

fn checkpoint(config: &Config, n: u64) {
    let store = Store::open(&config.agent.data_dir, &config.memory).unwrap();
    let at = store
        .read(|r| r.get::<AgentState>(KeyedTable::Agent, STATE_KEY))
        .unwrap()
        .unwrap()
        .last_tick_ms;
    let mut times = Vec::new();
    let mut bytes = 0;
    for i in 0..3 {
        let t = Instant::now();
        let e = athena::checkpoint::create(&store, &config.agent.data_dir, config, at + i).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes = e.bytes;
    }
    times.sort_by(f64::total_cmp);
    let store_bytes = std::fs::metadata(store.path()).unwrap().len();
    // The naive peer: a synced copy of the whole store file.
    let copy = config.agent.data_dir.join("copy.redb");
    let t = Instant::now();
    std::fs::copy(store.path(), &copy).unwrap();
    std::fs::File::open(&copy).unwrap().sync_all().unwrap();
    let naive = t.elapsed().as_secs_f64() * 1000.0;
    std::fs::remove_file(&copy).unwrap();
    println!(
        "CHECKPOINT {n} memories: create median {:.1} ms (runs {:?}), file {bytes} bytes; naive synced copy of the store {naive:.1} ms, {store_bytes} bytes = {:.1}× the time, {:.0}× the size",
        times[1],
        times.iter().map(|t| format!("{t:.0}")).collect::<Vec<_>>(),
        naive / times[1],
        store_bytes as f64 / bytes as f64
    );
}

fn restore_gcs(n: u64) {
    std::env::var("FIRESTORE_EMULATOR_HOST")
        .expect("FIRESTORE_EMULATOR_HOST is not set: run scripts/bench-recovery.sh");
    let bucket = std::env::var("GCS_TEST_BUCKET")
        .expect("GCS_TEST_BUCKET is not set: run scripts/bench-recovery.sh");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut config = local_config(&data);
    config.agent.agent_id = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    config.sync.documents = athena_config::DocumentSink::Firestore;
    config.sync.firestore_project = "athena-test".into();
    config.sync.object_store_url = format!("gs://{bucket}/bench-restore");
    // Setup: sync as fast as the emulator takes it.
    config.sync.rate_start_ops = 1_000_000.0;
    build_store(&config, n, false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let memories = runtime.block_on(async {
        let store = Arc::new(Store::open(&data, &config.memory).unwrap());
        let at = store
            .read(|r| r.get::<AgentState>(KeyedTable::Agent, STATE_KEY))
            .unwrap()
            .unwrap()
            .last_tick_ms;
        athena::checkpoint::create(&store, &data, &config, at).unwrap();
        let sinks = athena_sync::Sinks::from_config(&config).await.unwrap();
        let mut worker = athena_sync::Worker::new(
            store.clone(),
            sinks.documents,
            sinks.objects,
            &config.sync,
            1,
            Arc::new(|| T0),
        );
        let t = Instant::now();
        worker.drain().await.unwrap();
        assert_eq!(store.outbox_len().unwrap(), 0);
        println!(
            "setup: synced to the emulator and the GCS server in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        store.read(|r| r.memory_count()).unwrap()
    });
    std::fs::remove_dir_all(&data).unwrap();
    let t = Instant::now();
    let (store, rec) = runtime
        .block_on(athena::recovery::start(
            &config,
            Some(athena::recovery::sources::Source::Gcs),
            0,
        ))
        .unwrap();
    let took = t.elapsed().as_secs_f64();
    let rec = rec.unwrap();
    for s in &rec.steps {
        println!("  {:<28} {:>9.1} ms  {}", s.name, s.ms, s.detail);
    }
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), memories);
    println!("RESTORE_GCS {memories} memories: full restore {took:.2} s (target ≤ 60 s)");
}
