//! Helpers shared by the storage integration tests.
#![allow(dead_code)]

use athena_config::MemoryConfig;
use athena_storage::{Category, Memory, MemoryType, Metadata, Source, Store};
use std::collections::BTreeMap;

pub const HOUR: u64 = 3_600_000;
pub const DAY: u64 = 24 * HOUR;
/// A fixed "now" well inside ULID range.
pub const T0: u64 = 1_800_000_000_000;

pub fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, &MemoryConfig::default()).expect("open store")
}

pub fn open_with(dir: &std::path::Path, cfg: &MemoryConfig) -> Store {
    Store::open(dir, cfg).expect("open store")
}

pub const POOLS: [&str; 6] = [
    "WETH/USDC",
    "WETH/DAI",
    "AERO/USDC",
    "AERO/WETH",
    "USDC/DAI",
    "USDC/USDbC",
];

/// A memory with every field derived from `n`, created at `created_ms`.
pub fn memory(
    n: u64,
    kind: MemoryType,
    category: Category,
    created_ms: u64,
    confidence: f64,
) -> Memory {
    let pool = POOLS[(n % 6) as usize];
    let mut extra = BTreeMap::new();
    extra.insert(
        "regime".to_string(),
        ["calm", "trending", "volatile"][(n % 3) as usize].to_string(),
    );
    let metadata = Metadata {
        pool: Some(pool.to_string()),
        apr: Some(10.0 + (n % 50) as f64 * 1.37),
        tvl: Some(150_000.0 + (n % 97) as f64 * 1234.5),
        volume: Some(40_000.0 + (n % 31) as f64 * 777.7),
        pattern_key: (kind == MemoryType::Pattern)
            .then(|| format!("{}:{}", category.as_str(), pool)),
        extra,
    };
    let content = format!(
        "{pool} {} apr {:.2} tvl {:.0} volume {:.0} observed in regime {} sample {n}",
        category.as_str(),
        metadata.apr.unwrap(),
        metadata.tvl.unwrap(),
        metadata.volume.unwrap(),
        metadata.extra["regime"],
    );
    Memory::new(
        kind,
        category,
        content,
        metadata,
        confidence,
        Source::MarketData,
        ulid::Ulid::from_parts(created_ms, u128::from(n) * 7919 + 1),
    )
}
