//! The real `athena sync flush` killed with SIGKILL mid-drain against the Firestore emulator,
//! eight times, each once the cloud showed the flush's progress; then the drain completes, `athena sync verify` passes, and a counter fed
//! by increments shows nothing counted twice (replays after lost acks are idempotent).

mod support;

use athena_storage::memory::MEMORY_COLLECTION;
use athena_storage::{Category, Memory, MemoryType, Metadata, OutboxOp, Source, Store};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

const T0: u64 = 1_700_000_000_000;
/// Flushes killed.
const ROUNDS: u64 = 8;
/// Memories each killed flush must have brought to the cloud (beyond the previous rounds').
const MEMORIES_PER_ROUND: u64 = 150;

/// The id of memory `i` of the test's store.
fn memory_id(i: u64) -> ulid::Ulid {
    ulid::Ulid::from_parts(T0 + i, u128::from(i) + 1)
}

#[test]
fn flush_killed_mid_batch_then_resumed_loses_and_duplicates_nothing() {
    let emulator = std::env::var("FIRESTORE_EMULATOR_HOST")
        .expect("FIRESTORE_EMULATOR_HOST is not set: run the tests with scripts/test.sh, which starts the Firestore emulator");
    let dir = tempfile::tempdir().unwrap();
    let agent = format!("crash-{}", ulid::Ulid::new().to_string().to_lowercase());
    let config = dir.path().join("athena.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nagent_id = \"{agent}\"\ndata_dir = \"data\"\n[sync]\ndocuments = \"firestore\"\nfirestore_project = \"athena-test\"\nobject_store_url = \"file://sync\"\nbatch_max_writes = 100\n"
        ),
    )
    .unwrap();
    const MEMORIES: u64 = 2000;
    const TRADES: u64 = 300;
    {
        let store = Store::open(
            &dir.path().join("data"),
            &athena_config::MemoryConfig::default(),
        )
        .unwrap();
        let ms: Vec<Memory> = (0..MEMORIES)
            .map(|i| {
                let md = Metadata {
                    pool: Some(format!("POOL{}", i % 6)),
                    apr: Some(i as f64 / 7.0),
                    ..Metadata::default()
                };
                // Patterns: each is a document of its own (observations travel packed).
                Memory::new(
                    MemoryType::Pattern,
                    Category::PoolBehavior,
                    format!("pattern {i}"),
                    md,
                    0.8,
                    Source::MarketData,
                    memory_id(i),
                )
            })
            .collect();
        store.insert_memories(&ms, T0).unwrap();
        // Increments interleaved, so they land in many batches.
        store
            .write(|w| {
                (0..TRADES).try_for_each(|_| {
                    w.outbox_append(OutboxOp::increment("stats", "day", "trades", 1.0), T0)
                        .map(|_| ())
                })
            })
            .unwrap();
    }
    let flush = || {
        let mut c = support::command();
        c.args(["sync", "flush", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("FIRESTORE_EMULATOR_HOST", &emulator);
        c
    };
    // Each round kills its flush once the cloud holds one more share of the memories (the
    // outbox sends them in order): mid-drain, with at least 800 rows still ahead of it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sink = rt
        .block_on(athena_sync::FirestoreSink::connect(
            "athena-test",
            "(default)",
            &agent,
        ))
        .unwrap();
    for round in 0..ROUNDS {
        let mut child = flush()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let target = memory_id((round + 1) * MEMORIES_PER_ROUND).to_string();
        let started = Instant::now();
        while rt
            .block_on(sink.get_fresh(MEMORY_COLLECTION, &target))
            .unwrap()
            .is_none()
        {
            assert!(
                child.try_wait().unwrap().is_none(),
                "round {round}: the flush ended before memory {target} reached the cloud"
            );
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "round {round}: memory {target} not in the cloud after 120 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "round {round}: the kill did not land: {status}"
        );
    }
    let o = flush().output().unwrap();
    assert!(
        o.status.success(),
        "final flush: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 rows left in the outbox"));
    let o = support::command()
        .args(["sync", "verify", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("FIRESTORE_EMULATOR_HOST", &emulator)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "verify after {ROUNDS} kills: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("{MEMORIES} documents")), "{out}");
    // The counter: exactly one per increment row, however many times rows were re-sent.
    let day = rt
        .block_on(sink.get_fresh("stats", "day"))
        .unwrap()
        .expect("stats/day in Firestore");
    assert_eq!(
        day["trades"].as_f64(),
        Some(TRADES as f64),
        "after {ROUNDS} kills"
    );
}
