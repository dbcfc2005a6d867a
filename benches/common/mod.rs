//! Shared bench data: realistic memories and the SQLite peer (WAL, synchronous=FULL) with the
//! same record contents, the same secondary indexes and, like the product path, one outbox row
//! written in the same transaction as each memory.
#![allow(dead_code, missing_docs)]

use athena_storage::{Category, Memory, MemoryType, Metadata, Source};
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::Path;

pub const DAY_MS: u64 = 86_400_000;
pub const T0: u64 = 1_700_000_000_000;
pub const POOLS: [&str; 6] = [
    "WETH/USDC",
    "WETH/DAI",
    "AERO/USDC",
    "AERO/WETH",
    "USDC/DAI",
    "USDC/USDbC",
];

/// Stores `ms` and acknowledges every outbox row, as if the sync worker had sent them (a bench
/// that measures the store, not sync, starts from an empty outbox).
pub fn insert_acknowledged(store: &athena_storage::Store, ms: &[Memory]) {
    store.insert_memories(ms, T0).unwrap();
    let seqs: Vec<u64> = store
        .outbox_peek(0, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    store.outbox_ack(&seqs).unwrap();
}

/// A small deterministic RNG (xorshift64*), so both sides get the same data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Memory number `i` of a stream spread over `span_ms` from `T0`.
pub fn memory(i: u64, span_ms: u64, rng: &mut Rng) -> Memory {
    let pool = POOLS[rng.below(6) as usize];
    let category = Category::ALL[rng.below(9) as usize];
    let kind = if rng.below(10) == 0 {
        MemoryType::Pattern
    } else {
        MemoryType::Observation
    };
    let apr = 5.0 + rng.unit() * 80.0;
    let tvl = 80_000.0 + rng.unit() * 5_000_000.0;
    let volume = 10_000.0 + rng.unit() * 2_000_000.0;
    let regime = ["calm", "trending", "volatile", "incident"][rng.below(4) as usize];
    let mut extra = BTreeMap::new();
    extra.insert("regime".to_string(), regime.to_string());
    extra.insert(
        "gas_gwei".to_string(),
        format!("{:.3}", 0.01 + rng.unit() * 0.2),
    );
    let content = format!(
        "{pool}: apr {apr:.2}% (fee {:.2}%, emissions {:.2}%), tvl ${tvl:.0}, 24h volume ${volume:.0}; \
         regime {regime}; reserves ratio {:.4} vs fair; observed by market scanner",
        apr * 0.4,
        apr * 0.6,
        0.9 + rng.unit() * 0.2,
    );
    let metadata = Metadata {
        pool: Some(pool.to_string()),
        apr: Some(apr),
        tvl: Some(tvl),
        volume: Some(volume),
        pattern_key: (kind == MemoryType::Pattern).then(|| format!("{}:{pool}", category.as_str())),
        extra,
    };
    let created = T0 + (i * 60_000) % span_ms.max(1);
    Memory::new(
        kind,
        category,
        content,
        metadata,
        0.3 + rng.unit() * 0.7,
        Source::MarketData,
        ulid::Ulid::from_parts(created, u128::from(rng.next())),
    )
}

/// `n` memories evenly spread over `span_ms`.
pub fn memories(n: u64, span_ms: u64, seed: u64) -> Vec<Memory> {
    let mut rng = Rng(seed | 1);
    (0..n)
        .map(|i| {
            let mut m = memory(i, span_ms, &mut rng);
            let created = T0 + i * span_ms / n.max(1);
            m.id = ulid::Ulid::from_parts(created, u128::from(rng.next()));
            m.created_ms = created;
            m.accessed_ms = created;
            m
        })
        .collect()
}

pub fn sqlite_open(dir: &Path) -> Connection {
    let c = Connection::open(dir.join("peer.sqlite")).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "FULL").unwrap();
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS memories (
             id BLOB PRIMARY KEY, category INTEGER NOT NULL, pool TEXT, pattern_key TEXT,
             created INTEGER NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;
         CREATE INDEX IF NOT EXISTS idx_cat_time ON memories(category, created, id);
         CREATE INDEX IF NOT EXISTS idx_pool_time ON memories(pool, created, id);
         CREATE INDEX IF NOT EXISTS idx_pattern ON memories(pattern_key, id);
         CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, created INTEGER NOT NULL, body TEXT NOT NULL);",
    )
    .unwrap();
    c
}

/// The outbox row the SQLite peer writes per memory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PeerOutbox {
    /// None (a store-size comparison).
    None,
    /// A JSON copy of the memory (the product's write path before outbox rows referred to
    /// the stored record; the baseline issue 2 and issue 17 quote).
    Copy,
    /// The memory's id only (what the product's outbox row holds now).
    Reference,
}

/// Inserts memories and their outbox rows in one SQLite transaction (the peer of
/// `Store::insert_memories`).
pub fn sqlite_insert(c: &mut Connection, ms: &[Memory], outbox: PeerOutbox) {
    let tx = c.transaction().unwrap();
    {
        let mut mem = tx
            .prepare_cached("INSERT OR REPLACE INTO memories (id, category, pool, pattern_key, created, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap();
        let mut out = tx
            .prepare_cached("INSERT INTO outbox (created, body) VALUES (?1, ?2)")
            .unwrap();
        for m in ms {
            let body = serde_json::to_string(m).unwrap();
            mem.execute(params![
                u128::from(m.id).to_be_bytes().to_vec(),
                m.category.index(),
                m.metadata.pool,
                m.metadata.pattern_key,
                m.created_ms as i64,
                body
            ])
            .unwrap();
            match outbox {
                PeerOutbox::None => {}
                PeerOutbox::Copy => {
                    out.execute(params![m.created_ms as i64, body]).unwrap();
                }
                PeerOutbox::Reference => {
                    out.execute(params![m.created_ms as i64, m.id.to_string()])
                        .unwrap();
                }
            }
        }
    }
    tx.commit().unwrap();
}

pub fn sqlite_get(c: &Connection, id: ulid::Ulid) -> Option<Memory> {
    let mut st = c
        .prepare_cached("SELECT body FROM memories WHERE id = ?1")
        .unwrap();
    st.query_row(params![u128::from(id).to_be_bytes().to_vec()], |r| {
        r.get::<_, String>(0)
    })
    .ok()
    .map(|b| serde_json::from_str(&b).unwrap())
}

pub fn sqlite_recall(
    c: &Connection,
    category: Category,
    since: u64,
    until: u64,
    limit: usize,
) -> Vec<Memory> {
    let mut st = c
        .prepare_cached("SELECT body FROM memories WHERE category = ?1 AND created BETWEEN ?2 AND ?3 ORDER BY created DESC, id DESC LIMIT ?4")
        .unwrap();
    st.query_map(
        params![category.index(), since as i64, until as i64, limit as i64],
        |r| r.get::<_, String>(0),
    )
    .unwrap()
    .map(|b| serde_json::from_str(&b.unwrap()).unwrap())
    .collect()
}
