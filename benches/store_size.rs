//! Size benchmarks (bytes, not time; a plain bench target that prints its measurements):
//!
//! (e) on-disk size of 1M warm-tier memories: zstd with a trained dictionary, zstd without,
//!     plain msgpack, and SQLite with JSON bodies (same indexes). Budget: warm records at least
//!     4× smaller than plain msgpack.
//! Growth: 30 simulated days, 6 pools, one observation per pool every 5 minutes plus the
//!     patterns they produce, the outbox drained hourly as the sync layer would, pruning hourly
//!     on versus off. Budget: under 100 MB with pruning on.
//!
//! Run: `cargo bench --bench store_size` (ATHENA_BENCH_MEMORIES=N to change the 1M).

#[path = "common/mod.rs"]
mod common;

use athena_config::MemoryConfig;
use athena_storage::memory::prune::compact;
use athena_storage::{
    Category, Codec, Compression, Memory, MemoryType, Metadata, RecordKind, Source, Store,
};
use common::*;
use std::path::Path;
use std::time::Instant;

const MB: f64 = 1024.0 * 1024.0;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench --list probes every bench target
    }
    let n: u64 = std::env::var("ATHENA_BENCH_MEMORIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    sizes(n);
    growth();
}

fn warm_memories(n: u64) -> Vec<Memory> {
    let mut all = memories(n, 30 * DAY_MS, 3);
    for m in &mut all {
        compact(m, MemoryConfig::default().warm_content_max_chars as usize);
    }
    all
}

fn drain_outbox(store: &Store) {
    loop {
        let rows = store.outbox_peek(0, 50_000).unwrap();
        if rows.is_empty() {
            break;
        }
        let seqs: Vec<u64> = rows.iter().map(|(s, _)| *s).collect();
        store.outbox_ack(&seqs).unwrap();
    }
}

fn table_bytes(store: &Store, name: &str) -> u64 {
    store
        .table_stats()
        .unwrap()
        .into_iter()
        .find(|t| t.name == name)
        .map_or(0, |t| t.stored_bytes)
}

/// Loads `ms` into a fresh store, optionally trains the dictionary, drains the outbox, compacts;
/// returns (memories table stored bytes, file bytes).
fn redb_variant(dir: &Path, ms: &[Memory], dictionary: bool) -> (u64, u64) {
    let mut cfg = MemoryConfig::default();
    cfg.dictionary_min_samples = if dictionary { 1000 } else { u32::MAX };
    cfg.quotas.clear();
    let mut store = Store::open(dir, &cfg).unwrap();
    // As in the product: the dictionary is trained once the first records exist, and later
    // warm records are written once, already compressed with it.
    let (first, rest) = ms.split_at(ms.len().min(2_000));
    for (i, chunk) in std::iter::once(first)
        .chain(rest.chunks(20_000))
        .enumerate()
    {
        store.insert_memories(chunk, T0).unwrap();
        drain_outbox(&store);
        if dictionary && i == 0 {
            let (trained, _) =
                athena_storage::dictionary::train_and_recompress(&store, T0).unwrap();
            assert!(!trained.is_empty(), "dictionary was not trained");
        }
    }
    drain_outbox(&store);
    while store.compact().unwrap() {}
    for t in store
        .table_stats()
        .unwrap()
        .iter()
        .filter(|t| t.stored_bytes + t.metadata_bytes > 1 << 20)
    {
        println!(
            "    {:<28} rows {:>9} stored {:>7.1} MB metadata {:>6.1} MB fragmented {:>6.1} MB",
            t.name,
            t.rows,
            t.stored_bytes as f64 / MB,
            t.metadata_bytes as f64 / MB,
            t.fragmented_bytes as f64 / MB
        );
    }
    (table_bytes(&store, "memories"), store.file_size())
}

fn sizes(n: u64) {
    println!("== (e) size of {n} warm memories ==");
    let t = Instant::now();
    let warm = warm_memories(n);
    // Record level: the same records through each encoding.
    let codec = Codec::new(3);
    let sample: Vec<Vec<u8>> = warm
        .iter()
        .rev()
        .take(20_000)
        .map(|m| Codec::to_msgpack(m).unwrap())
        .collect();
    let dict = zstd::dict::from_samples(
        &sample,
        MemoryConfig::default().dictionary_size_bytes as usize,
    )
    .unwrap();
    codec.add_dictionary(1, RecordKind::MemoryWarm, &dict, true);
    let mut plain = 0u64;
    let mut zstd_only = 0u64;
    let mut zstd_dict = 0u64;
    let mut json = 0u64;
    for m in &warm {
        plain += codec
            .encode(RecordKind::MemoryWarm, Compression::None, m)
            .unwrap()
            .len() as u64;
        zstd_only += codec
            .encode(RecordKind::MemoryWarm, Compression::Zstd, m)
            .unwrap()
            .len() as u64;
        zstd_dict += codec
            .encode(RecordKind::MemoryWarm, Compression::ZstdDict, m)
            .unwrap()
            .len() as u64;
        json += serde_json::to_string(m).unwrap().len() as u64;
    }
    // Settings sweep on the newest 20k records: zstd level x dictionary size.
    let raw: Vec<Vec<u8>> = warm
        .iter()
        .rev()
        .take(20_000)
        .map(|m| Codec::to_msgpack(m).unwrap())
        .collect();
    let raw_total: usize = raw.iter().map(Vec::len).sum();
    for dict_size in [32 * 1024, 64 * 1024, 110 * 1024] {
        let d = zstd::dict::from_samples(&raw, dict_size).unwrap();
        for level in [3, 9, 19] {
            let mut c = zstd::bulk::Compressor::with_dictionary(level, &d).unwrap();
            let total: usize = raw
                .iter()
                .map(|r| c.compress(r).unwrap().len() + athena_storage::codec::HEADER_LEN)
                .sum();
            println!(
                "SWEEP dict {:>6} B level {level:>2}: {:.2}x smaller than msgpack",
                dict_size,
                raw_total as f64 / total as f64
            );
        }
    }
    let per = |b: u64| b as f64 / n as f64;
    println!(
        "record bytes (mean): msgpack {:.1}, zstd {:.1}, zstd+dict {:.1}, json {:.1}",
        per(plain),
        per(zstd_only),
        per(zstd_dict),
        per(json)
    );
    println!(
        "RECORD_RATIO msgpack/zstd+dict = {:.2}x (target >= 4x), msgpack/zstd = {:.2}x",
        plain as f64 / zstd_dict as f64,
        plain as f64 / zstd_only as f64
    );

    // File level: whole stores with indexes.
    let root = tempfile::tempdir().unwrap();
    let (dict_table, dict_file) = redb_variant(&root.path().join("dict"), &warm, true);
    let (zstd_table, zstd_file) = redb_variant(&root.path().join("zstd"), &warm, false);
    let hot: Vec<Memory> = warm
        .iter()
        .cloned()
        .map(|mut m| {
            m.tier = athena_storage::Tier::Hot;
            m
        })
        .collect();
    let (plain_table, plain_file) = redb_variant(&root.path().join("plain"), &hot, false);
    let sqlite_dir = root.path().join("sqlite");
    std::fs::create_dir_all(&sqlite_dir).unwrap();
    let mut sql = sqlite_open(&sqlite_dir);
    for chunk in warm.chunks(20_000) {
        sqlite_insert(&mut sql, chunk, PeerOutbox::None);
    }
    sql.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM;")
        .unwrap();
    drop(sql);
    let sqlite_file = std::fs::metadata(sqlite_dir.join("peer.sqlite"))
        .unwrap()
        .len();
    println!("store file (memories table) in MB:");
    println!(
        "  redb zstd+dict   {:>8.1} ({:.1})",
        dict_file as f64 / MB,
        dict_table as f64 / MB
    );
    println!(
        "  redb zstd        {:>8.1} ({:.1})",
        zstd_file as f64 / MB,
        zstd_table as f64 / MB
    );
    println!(
        "  redb msgpack     {:>8.1} ({:.1})",
        plain_file as f64 / MB,
        plain_table as f64 / MB
    );
    println!("  sqlite json      {:>8.1}", sqlite_file as f64 / MB);
    println!(
        "FILE_RATIO msgpack/zstd+dict = {:.2}x, sqlite/zstd+dict = {:.2}x  ({:.0?})",
        plain_file as f64 / dict_file as f64,
        sqlite_file as f64 / dict_file as f64,
        t.elapsed()
    );
}

/// One simulated day-stream: an observation per pool every 5 minutes, and a pattern per pool
/// every hour whose content repeats (so merging has work), for 30 days.
fn growth() {
    println!("\n== growth: 30 days, 6 pools, 5-minute observations + hourly patterns ==");
    for pruning in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = MemoryConfig::default();
        cfg.dictionary_min_samples = 1000;
        let mut store = Store::open(dir.path(), &cfg).unwrap();
        let mut rng = Rng(17);
        let t = Instant::now();
        let mut written = 0u64;
        for hour in 0..(30 * 24u64) {
            let mut batch = Vec::new();
            for tick in 0..12u64 {
                let now = T0 + hour * 3_600_000 + tick * 300_000;
                for (p, pool) in POOLS.iter().enumerate() {
                    let apr = 10.0 + rng.unit() * 60.0;
                    let md = Metadata {
                        pool: Some(pool.to_string()),
                        apr: Some(apr),
                        tvl: Some(2e5 + rng.unit() * 4e6),
                        volume: Some(rng.unit() * 1e6),
                        ..Metadata::default()
                    };
                    let content = format!(
                        "{pool} apr {apr:.2}% observed; reserves within {:.2}% of fair",
                        rng.unit() * 3.0
                    );
                    batch.push(Memory::new(
                        MemoryType::Observation,
                        Category::PoolBehavior,
                        content,
                        md,
                        0.6 + rng.unit() * 0.4,
                        Source::MarketData,
                        ulid::Ulid::from_parts(now, (p as u128) << 64 | u128::from(rng.next())),
                    ));
                }
            }
            let now = T0 + (hour + 1) * 3_600_000 - 1;
            for (p, pool) in POOLS.iter().enumerate() {
                let (cat, text) = [
                    (
                        Category::AprAnomaly,
                        "apr spikes above its daily mean when volume surges",
                    ),
                    (
                        Category::GasOptimization,
                        "gas is cheapest in the early utc hours",
                    ),
                    (
                        Category::CrossPoolCorrelation,
                        "apr moves together with the weth pools",
                    ),
                ][rng.below(3) as usize];
                let md = Metadata {
                    pool: Some(pool.to_string()),
                    apr: Some(rng.unit() * 80.0),
                    tvl: Some(1e6),
                    pattern_key: Some(format!("{}:{pool}", cat.as_str())),
                    ..Metadata::default()
                };
                batch.push(Memory::new(
                    MemoryType::Pattern,
                    cat,
                    text,
                    md,
                    0.5 + rng.unit() * 0.5,
                    Source::Rule,
                    ulid::Ulid::from_parts(now, (p as u128) << 64 | u128::from(rng.next())),
                ));
            }
            written += batch.len() as u64;
            store.insert_memories(&batch, now).unwrap();
            if pruning {
                store.prune(now).unwrap();
            }
            drain_outbox(&store); // the sync layer acknowledges what it uploaded
        }
        let live = store.read(|r| r.memory_count()).unwrap();
        let before = store.file_size();
        while store.compact().unwrap() {}
        let after = store.file_size();
        println!(
            "GROWTH pruning={pruning:<5} memories written {written}, local {live}, file {:.1} MB (after compaction {:.1} MB), {:.1?}",
            before as f64 / MB,
            after as f64 / MB,
            t.elapsed()
        );
    }
}
