//! The real `athena sync flush` killed with SIGKILL mid-drain against the Firestore emulator,
//! again and again; then the drain completes, `athena sync verify` passes, and a counter fed
//! by increments shows nothing counted twice (replays after lost acks are idempotent).

use athena_storage::{Category, Memory, MemoryType, Metadata, OutboxOp, Source, Store};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_athena");
const T0: u64 = 1_700_000_000_000;

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
                Memory::new(
                    MemoryType::Observation,
                    Category::PoolBehavior,
                    format!("observation {i}"),
                    md,
                    0.8,
                    Source::MarketData,
                    ulid::Ulid::from_parts(T0 + i, u128::from(i) + 1),
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
        let mut c = Command::new(BIN);
        c.args(["sync", "flush", "--config"])
            .arg(&config)
            .current_dir(dir.path())
            .env("FIRESTORE_EMULATOR_HOST", &emulator);
        c
    };
    let mut kills = 0;
    for round in 0..8u64 {
        let mut child = flush()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150 + (round * 211) % 700));
        if child.try_wait().unwrap().is_none() {
            Command::new("kill")
                .args(["-9", &child.id().to_string()])
                .status()
                .unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    let o = flush().output().unwrap();
    assert!(
        o.status.success(),
        "final flush: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 rows left in the outbox"));
    let o = Command::new(BIN)
        .args(["sync", "verify", "--config"])
        .arg(&config)
        .current_dir(dir.path())
        .env("FIRESTORE_EMULATOR_HOST", &emulator)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "verify after {kills} kills: {out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("{MEMORIES} documents")), "{out}");
    // The counter: exactly one per increment row, however many times rows were re-sent.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let day = rt
        .block_on(async {
            let sink = athena_sync::FirestoreSink::connect("athena-test", "(default)", &agent)
                .await
                .unwrap();
            sink.get_fresh("stats", "day").await
        })
        .unwrap()
        .expect("stats/day in Firestore");
    assert_eq!(
        day["trades"].as_f64(),
        Some(TRADES as f64),
        "after {kills} kills"
    );
    assert!(
        kills >= 3,
        "only {kills} flushes were still running when killed; the test did not exercise crashes"
    );
}
