//! An outage of the real servers under a steady write load: this test starts its own Firestore
//! emulator and fake-gcs-server (with the project's scripts), syncs to them with the worker's
//! run loop while a writer keeps changing memories, a counter and objects, then takes both
//! servers away while the writer goes on: the emulator is frozen with SIGSTOP (requests hang,
//! the worst case for a client), fake-gcs-server and its proxy are stopped (connections
//! refused). While they are away the outbox is compacted. Then both come back (same ports;
//! fake-gcs-server keeps its objects on disk), the backlog drains, and `sync verify`, the
//! counter and every object agree with the local store.
//!
//! The Firestore client and `object_store` find their servers through FIRESTORE_EMULATOR_HOST
//! and GOOGLE_SERVICE_ACCOUNT, so the test starts the servers, then runs the scenario in a child
//! process of this same test binary with those variables pointing at them.

mod common;

use athena_config::{MemoryConfig, SyncConfig};
use athena_storage::{OutboxOp, Store};
use athena_sync::{FirestoreSink, ObjectStoreSink, Sink, Worker, verify};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Polls `done` every 50 ms until it holds; panics naming `what` after `limit` (a hang guard,
/// not a timing assertion).
async fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} after {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Set in the child process: the servers' run directory.
const RUN_DIR_VAR: &str = "OUTAGE_TEST_RUN_DIR";

/// The servers of one run directory; the process that started them stops them on drop.
struct Servers {
    run: std::path::PathBuf,
    owned: Option<tempfile::TempDir>,
}

impl Servers {
    fn start() -> Self {
        let owned = tempfile::tempdir().unwrap();
        let dir = owned.path().to_str().unwrap().to_string();
        common::script("firestore-emulator.sh", &["start", &dir]);
        common::script("fake-gcs.sh", &["start", &dir]);
        Self {
            run: owned.path().to_path_buf(),
            owned: Some(owned),
        }
    }
    fn attach(dir: &str) -> Self {
        Self {
            run: dir.into(),
            owned: None,
        }
    }
    fn dir(&self) -> String {
        self.run.to_str().unwrap().to_string()
    }
    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.run.join(name))
            .unwrap()
            .trim()
            .to_string()
    }
    fn signal_firestore(&self, signal: &str) {
        let pid = self.file("firestore.pid");
        let ok = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {signal} {pid}");
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        if self.owned.is_none() {
            return;
        }
        let dir = self.dir();
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.file("firestore.pid")])
            .status();
        common::script("firestore-emulator.sh", &["stop", &dir]);
        common::script("fake-gcs.sh", &["stop", &dir]);
    }
}

#[test]
fn an_outage_of_both_servers_under_load_drains_and_verifies() {
    in_child_with_servers(
        "an_outage_of_both_servers_under_load_drains_and_verifies",
        scenario,
    );
}

/// A BatchWrite to a Firestore that went away comes back at once as a retriable error for the
/// worker's backoff to handle; the client does not retry it by itself (it used to, without a
/// time limit, so an outage surfaced only as the worker's push timeout and a rate-limited
/// answer never reached the worker's limiter).
#[test]
fn a_push_to_a_stopped_firestore_returns_a_retriable_error_at_once() {
    in_child_with_servers(
        "a_push_to_a_stopped_firestore_returns_a_retriable_error_at_once",
        push_to_stopped_firestore,
    );
}

async fn push_to_stopped_firestore(servers: Servers) {
    let sink = FirestoreSink::connect("athena-test", "(default)", &common::fresh_agent())
        .await
        .unwrap();
    let write = athena_sync::Write::Delete {
        collection: "memories".into(),
        doc: "gone".into(),
    };
    assert_eq!(sink.push(std::slice::from_ref(&write)).await, vec![Ok(())]);
    servers.signal_firestore("-KILL");
    // A bound far above one attempt: the old client retried for ever, so this failed.
    let results = tokio::time::timeout(Duration::from_secs(120), sink.push(&[write]))
        .await
        .expect("the push kept retrying inside the client");
    let err = results[0].as_ref().unwrap_err();
    assert_eq!(err.kind, athena_sync::ErrorKind::Transient, "{err}");
    assert!(err.detail.len() < 300, "not one line: {err}");
}

/// Runs `test` (the test function named `name`) in a child process of this test binary, with
/// the variables of servers this process starts: the Firestore client and `object_store` read
/// them from the environment.
fn in_child_with_servers<F: std::future::Future<Output = ()>>(
    name: &str,
    test: impl FnOnce(Servers) -> F,
) {
    if let Ok(dir) = std::env::var(RUN_DIR_VAR) {
        // The child: run the test against the parent's servers.
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(test(Servers::attach(&dir)));
    }
    let servers = Servers::start();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture"])
        .env(RUN_DIR_VAR, servers.dir())
        .env("FIRESTORE_EMULATOR_HOST", servers.file("firestore.addr"))
        .env(
            "GOOGLE_SERVICE_ACCOUNT",
            servers.run.join("gcs-service-account.json"),
        )
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{name} failed in its child process"
    );
}

async fn scenario(servers: Servers) {
    let agent = common::fresh_agent();
    let firestore = Arc::new(
        FirestoreSink::connect("athena-test", "(default)", &agent)
            .await
            .unwrap(),
    );
    let objects = Arc::new(
        ObjectStoreSink::from_url("gs://athena-test/outage", std::path::Path::new("."), &agent)
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
    let config = SyncConfig {
        flush_interval: Duration::from_millis(200),
        push_timeout: Duration::from_secs(2),
        retry_initial: Duration::from_millis(300),
        retry_max: Duration::from_secs(1),
        ..common::unpaced()
    };
    let worker = Worker::new(
        store.clone(),
        firestore.clone(),
        objects.clone(),
        &config,
        11,
        Arc::new(|| common::T0),
    );
    let counters = worker.counters();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let flush = Arc::new(tokio::sync::Notify::new());
    let running = tokio::spawn(worker.run(stop_rx, flush.clone(), Duration::from_secs(30)));

    // The writer: every 10 ms, a few memories (some rewritten), one counter increment, and an
    // object every 10th step.
    let writing = Arc::new(AtomicBool::new(true));
    // Stops the writer however this function ends (a failed assertion must not leave the
    // runtime waiting for it forever).
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(false, Ordering::SeqCst);
        }
    }
    let _stop_writer = StopOnDrop(writing.clone());
    let increments = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, writing, increments) = (store.clone(), writing.clone(), increments.clone());
        tokio::task::spawn_blocking(move || {
            let mut step = 0u64;
            while writing.load(Ordering::SeqCst) {
                let ms: Vec<_> = (0..3)
                    .map(|i| common::memory((step * 3 + i) % 400))
                    .collect();
                store.insert_memories(&ms, common::T0).unwrap();
                store
                    .write(|w| {
                        w.outbox_append(OutboxOp::increment("stats", "day", "trades", 1.0), 0)?;
                        if step.is_multiple_of(10) {
                            w.outbox_append(
                                OutboxOp::PutBlob {
                                    path: format!("segments/{}.seg", step % 70),
                                    bytes: format!("segment {step}").into_bytes(),
                                },
                                0,
                            )?;
                        }
                        Ok(())
                    })
                    .unwrap();
                increments.fetch_add(1, Ordering::SeqCst);
                step += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    wait_until(
        "rows synced before the outage",
        Duration::from_secs(60),
        || counters.rows_delivered.load(Ordering::SeqCst) > 0,
    )
    .await;
    let before = counters.rows_delivered.load(Ordering::SeqCst);
    // The outage.
    servers.signal_firestore("-STOP");
    common::script("fake-gcs.sh", &["stop", &servers.dir()]);
    // The worker saw the outage: it compacts the outbox while the writer goes on.
    wait_until(
        "compaction during the outage",
        Duration::from_secs(60),
        || counters.rows_compacted.load(Ordering::SeqCst) > 0,
    )
    .await;
    // Still offline, the writer pauses: within a few retry rounds the rows above the fence
    // (those no pass can have sent) are down to one per key, whatever the timing was.
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let appended = store.outbox_high_water().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (waiting, above_fence) = loop {
        let fence = counters.fence.load(Ordering::SeqCst);
        let rows = store.outbox_peek(0, usize::MAX).unwrap();
        let above: Vec<String> = rows
            .iter()
            .filter(|(seq, _)| *seq > fence)
            .map(|(_, r)| r.op.remote_key())
            .collect();
        let keys: std::collections::HashSet<&String> = above.iter().collect();
        if keys.len() == above.len() {
            break (rows.len() as u64, above.len());
        }
        assert!(
            Instant::now() < deadline,
            "still {} rows above the fence for {} keys",
            above.len(),
            keys.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let compacted = counters.rows_compacted.load(Ordering::SeqCst);
    assert!(
        waiting > 0,
        "the outbox kept the changes made during the outage"
    );
    assert!(compacted > 0, "the outbox was compacted during the outage");
    assert!(
        above_fence <= 400 + 1 + 70,
        "{above_fence} rows above the fence"
    );
    // The servers return.
    servers.signal_firestore("-CONT");
    common::script("fake-gcs.sh", &["start", &servers.dir()]);
    let deadline = Instant::now() + Duration::from_secs(90);
    while store.outbox_len().unwrap() > 0 {
        assert!(
            Instant::now() < deadline,
            "backlog not drained: {} rows left",
            store.outbox_len().unwrap()
        );
        flush.notify_one();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_tx.send(true).unwrap();
    running.await.unwrap();
    eprintln!(
        "outage: {before} rows delivered before, {waiting} waiting and {compacted} folded during, {appended} appended by then, {} delivered in all",
        counters.rows_delivered.load(Ordering::SeqCst)
    );

    // The cloud equals the local store.
    let report = verify(&store, Some(&firestore), Some(&objects))
        .await
        .unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    let day = firestore.get_fresh("stats", "day").await.unwrap().unwrap();
    assert_eq!(
        day["trades"].as_f64(),
        Some(increments.load(Ordering::SeqCst) as f64),
        "every increment counted exactly once"
    );
    let manifest = objects.manifest().await.unwrap();
    for i in 0..70u64 {
        let path = format!("segments/{i}.seg");
        if let Ok(bytes) = objects.get(&path).await {
            assert_eq!(
                manifest.objects.get(&path).map(|e| e.bytes),
                Some(bytes.len() as u64)
            );
        }
    }
}
