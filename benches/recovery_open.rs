//! Why quick repair is on: time to open a store of N memories after its writer was killed with
//! SIGKILL, with redb quick-repair on (allocator state saved at every commit) and off (the open
//! rebuilds it by walking the file). The commit-side cost is in `store_vs_sqlite` (group
//! `a_single_commit`, `b_batch_1000`: `redb` vs `redb_no_quick_repair`).
//!
//! Run: `cargo bench --bench recovery_open` (ATHENA_BENCH_MEMORIES=N to change the 1M).

#[path = "common/mod.rs"]
mod common;

use athena_config::MemoryConfig;
use athena_storage::Store;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2] == "on");
        return;
    }
    let n: u64 = std::env::var("ATHENA_BENCH_MEMORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), &MemoryConfig::default()).unwrap();
        for chunk in memories(n, 30 * DAY_MS, 21).chunks(10_000) {
            insert_acknowledged(&store, chunk);
        }
    }
    let size = std::fs::metadata(dir.path().join(athena_storage::STORE_FILE))
        .unwrap()
        .len();
    println!("store of {n} memories: {:.1} MB", size as f64 / 1048576.0);
    for mode in ["on", "off", "on", "off"] {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args(["--child", dir.path().to_str().unwrap(), mode])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "committed", "child did not commit");
        Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status()
            .unwrap();
        child.wait().unwrap();
        let t = Instant::now();
        let store = Store::open(dir.path(), &MemoryConfig::default()).unwrap();
        let open = t.elapsed();
        let first = Instant::now();
        store.read(|r| r.memory_count()).unwrap();
        println!(
            "RECOVERY_OPEN quick_repair={mode:<3} open after SIGKILL {:>8.1} ms (repaired: {}), first read {:.2} ms",
            open.as_secs_f64() * 1000.0,
            store.open_report.repaired,
            first.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Opens the store, commits a few memories with quick repair `on`/off, says so, and waits to
/// be killed.
fn child(dir: &str, quick_repair: bool) {
    let mut store = Store::open(std::path::Path::new(dir), &MemoryConfig::default()).unwrap();
    store.set_quick_repair(quick_repair);
    let ms = memories(10, DAY_MS, u64::from(quick_repair) + 77);
    store.insert_memories(&ms, T0).unwrap();
    println!("committed");
    std::thread::sleep(std::time::Duration::from_secs(600));
}
