//! The sync worker against the naive path (one Firestore write per change, as the original
//! did), on the Firestore emulator, in the same process (issue 3 §8).
//!
//! The change stream is a simulated trading day of the agent (after its observation period):
//! 288 ticks of 5 minutes, each committed as one store transaction with its outbox rows. Per
//! tick: a snapshot document and an observation memory per pool (6 pools), per-pool statistics
//! increments, recall touching 8 memories (access time and count), 2 pattern confidence
//! updates, one decision journal document, the risk state and the gas window, 5 positions
//! marked to market, 4 day counters incremented; a new pattern every hour, a rebalance trade
//! (position closed and opened, two ledger entries) with probability 3% per tick, and hourly
//! pruning that evicts observations above their quota of 1,000.
//!
//! First, one full agent-day through each path, counting requests at the sink: the naive path
//! (every outbox row pushed alone, in order), the worker draining the day as one backlog
//! (after an outage, or `athena sync flush`), the worker with the default write limiter, and
//! the worker flushing after every tick (a 60 s flush with 300 s ticks sends each tick alone).
//! Then criterion times the naive and batched drains of a two-hour backlog.
//!
//! Needs `FIRESTORE_EMULATOR_HOST`: run it with `scripts/bench-sync.sh`, which starts the
//! emulator, runs this bench and stops it.

mod common;

use athena_config::{MemoryConfig, SyncConfig};
use athena_storage::{Memory, MemoryType, OutboxOp, Store};
use athena_sync::coalesce::single;
use athena_sync::{FirestoreSink, NoneSink, RequestCounts, Sink, SinkRole, Worker};
use common::{POOLS, Rng, T0};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK_MS: u64 = 300_000;
const TICKS_PER_DAY: u64 = 288;
const OBSERVATION_QUOTA: usize = 1_000;
const POSITIONS: usize = 5;

/// The agent's writes, tick by tick, from a seed.
struct AgentDay {
    rng: Rng,
    tick: u64,
    observations: VecDeque<Memory>,
    patterns: Vec<Memory>,
    positions: Vec<(String, &'static str)>,
    ledger: u64,
    memories: u64,
}

impl AgentDay {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed | 1);
        let positions = (0..POSITIONS)
            .map(|k| (format!("p{k}"), POOLS[rng.below(6) as usize]))
            .collect();
        Self {
            rng,
            tick: 0,
            observations: VecDeque::new(),
            patterns: Vec::new(),
            positions,
            ledger: 0,
            memories: 0,
        }
    }

    fn new_memory(&mut self, kind: MemoryType, pool: &str, now: u64) -> Memory {
        let mut m = common::memory(self.memories, 1, &mut self.rng);
        self.memories += 1;
        m.id = ulid::Ulid::from_parts(now, u128::from(self.rng.next()));
        m.kind = kind;
        m.created_ms = now;
        m.accessed_ms = now;
        m.metadata.pool = Some(pool.to_string());
        m.metadata.pattern_key =
            (kind == MemoryType::Pattern).then(|| format!("{}:{pool}", m.category.as_str()));
        m
    }

    /// Commits the next tick; returns the outbox rows it appended.
    fn next_tick(&mut self, store: &Store) -> u64 {
        let now = T0 + self.tick * TICK_MS;
        let day = now / 86_400_000;
        let before = store.outbox_high_water().unwrap();
        let mut memories = Vec::new();
        let mut ops = Vec::new();
        let mut evicted = Vec::new();
        for pool in POOLS {
            let apr = 5.0 + self.rng.unit() * 80.0;
            ops.push(OutboxOp::Upsert {
                collection: "pools".into(),
                doc: pool.replace('/', "-"),
                body: json!({
                    "price": 1.0 + self.rng.unit(),
                    "tvl_usd": 100_000.0 + self.rng.unit() * 5e6,
                    "apr": apr,
                    "volume_24h_usd": self.rng.unit() * 2e6,
                    "at_ms": now,
                })
                .to_string(),
            });
            let key = pool.replace('/', "-");
            ops.push(OutboxOp::increment("pool_stats", &key, "samples", 1.0));
            ops.push(OutboxOp::increment("pool_stats", &key, "apr_sum", apr));
            let m = self.new_memory(MemoryType::Observation, pool, now);
            self.observations.push_back(m.clone());
            memories.push(m);
        }
        if self.tick.is_multiple_of(12) {
            let pool = POOLS[self.rng.below(6) as usize];
            let m = self.new_memory(MemoryType::Pattern, pool, now);
            self.patterns.push(m.clone());
            memories.push(m);
        }
        for _ in 0..8 {
            let n = self.observations.len().min(200) as u64;
            let pick = self.rng.below(n + self.patterns.len() as u64);
            let m = if pick < n {
                let i = self.observations.len() - 1 - pick as usize;
                &mut self.observations[i]
            } else {
                &mut self.patterns[(pick - n) as usize]
            };
            m.accessed_ms = now;
            m.access_count += 1;
            memories.push(m.clone());
        }
        for _ in 0..2 {
            let i = self.rng.below(self.patterns.len() as u64) as usize;
            let success = self.rng.below(2) == 0;
            let p = &mut self.patterns[i];
            p.confidence = (p.confidence + if success { 0.02 } else { -0.02 }).clamp(0.0, 1.0);
            p.occurrences += 1;
            memories.push(p.clone());
        }
        if self.tick % 12 == 11 {
            while self.observations.len() > OBSERVATION_QUOTA {
                evicted.push(self.observations.pop_front().unwrap().id);
            }
        }
        ops.push(OutboxOp::Upsert {
            collection: "decisions".into(),
            doc: format!("{day}-{:03}", self.tick),
            body: json!({"action": "hold", "proposals": 0, "verdict": "no entry", "at_ms": now})
                .to_string(),
        });
        ops.push(OutboxOp::Upsert {
            collection: "risk".into(),
            doc: "state".into(),
            body: json!({"trading": "active", "score": self.rng.below(100), "at_ms": now})
                .to_string(),
        });
        ops.push(OutboxOp::Upsert {
            collection: "risk".into(),
            doc: "gas".into(),
            body: json!({"gwei": self.rng.unit() * 0.2, "budget_used_usd": self.rng.unit() * 5.0})
                .to_string(),
        });
        if self.rng.below(100) < 3 {
            let k = self.rng.below(POSITIONS as u64) as usize;
            ops.push(OutboxOp::Delete {
                collection: "positions".into(),
                doc: self.positions[k].0.clone(),
            });
            for side in ["close", "open"] {
                self.ledger += 1;
                ops.push(OutboxOp::Upsert {
                    collection: "ledger".into(),
                    doc: format!("{day}-{:05}", self.ledger),
                    body: json!({"side": side, "usd": 1000.0 * self.rng.unit(), "at_ms": now})
                        .to_string(),
                });
            }
            self.positions[k] = (
                format!("p{}", POSITIONS as u64 + self.ledger),
                POOLS[self.rng.below(6) as usize],
            );
        }
        for (id, pool) in &self.positions {
            ops.push(OutboxOp::Upsert {
                collection: "positions".into(),
                doc: id.clone(),
                body: json!({"pool": pool, "value_usd": 1000.0 + self.rng.unit() * 50.0, "at_ms": now})
                    .to_string(),
            });
        }
        let stats = format!("{day}");
        for (field, delta) in [
            ("ticks", 1.0),
            ("gas_readings", 1.0),
            ("recalls", 8.0),
            ("decisions", 1.0),
        ] {
            ops.push(OutboxOp::increment("stats", &stats, field, delta));
        }
        store
            .write(|w| {
                w.insert_memories(&memories, now)?;
                for id in &evicted {
                    w.delete_memory(*id, now)?;
                }
                for op in ops {
                    w.outbox_append(op, now)?;
                }
                Ok(())
            })
            .unwrap();
        self.tick += 1;
        store.outbox_high_water().unwrap() - before
    }
}

/// A store holding `ticks` ticks of the agent day in its outbox; returns it with the row count.
fn backlog(dir: &std::path::Path, ticks: u64) -> (Arc<Store>, u64) {
    let store = Arc::new(Store::open(dir, &MemoryConfig::default()).unwrap());
    let mut day = AgentDay::new(7);
    let rows = (0..ticks).map(|_| day.next_tick(&store)).sum();
    (store, rows)
}

async fn firestore() -> Arc<FirestoreSink> {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "FIRESTORE_EMULATOR_HOST is not set: run this bench with scripts/bench-sync.sh, which starts the Firestore emulator"
    );
    let agent = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    Arc::new(
        FirestoreSink::connect("athena-bench", "(default)", &agent)
            .await
            .expect("connect to the emulator"),
    )
}

/// The naive path: every outbox row pushed alone, in order; then acked.
async fn naive_drain(store: &Store, sink: &FirestoreSink) {
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    let mut seqs = Vec::with_capacity(rows.len());
    for (seq, row) in rows {
        let write = single(row.op, seq).unwrap();
        let result = sink.push(std::slice::from_ref(&write)).await;
        assert!(result[0].is_ok(), "{result:?}");
        seqs.push(seq);
    }
    store.outbox_ack(&seqs).unwrap();
}

fn unpaced() -> SyncConfig {
    SyncConfig {
        rate_start_ops: 1e9,
        rate_ceiling_ops: 1e9,
        ..SyncConfig::default()
    }
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn worker(store: Arc<Store>, sink: Arc<FirestoreSink>, config: &SyncConfig) -> Worker {
    Worker::new(
        store,
        sink,
        Arc::new(NoneSink(SinkRole::Objects)),
        config,
        1,
        Arc::new(wall_clock_ms),
    )
}

struct Run {
    name: &'static str,
    requests: RequestCounts,
    wall: Duration,
}

impl Run {
    fn print(&self, changes: u64, naive: Option<&Run>) {
        let r = self.requests;
        let fewer = |ours: u64, theirs: u64| {
            format!("{:.2}% fewer", 100.0 * (1.0 - ours as f64 / theirs as f64))
        };
        let vs = naive.map_or(String::new(), |n| {
            format!(
                "; vs naive: write requests {}, documents written {}, {:.1}x faster",
                fewer(r.commits, n.requests.commits),
                fewer(r.documents_written, n.requests.documents_written),
                n.wall.as_secs_f64() / self.wall.as_secs_f64()
            )
        });
        println!(
            "sync_drain agent-day {:<26} changes {changes:>6}  write requests {:>6}  documents written {:>6}  reads {:>5}  wall {:>8.3} s  {:>8.0} changes/s{vs}",
            self.name,
            r.commits,
            r.documents_written,
            r.reads,
            self.wall.as_secs_f64(),
            changes as f64 / self.wall.as_secs_f64(),
        );
    }
}

/// One full agent-day through each path, with the requests each made.
fn agent_day(rt: &tokio::runtime::Runtime) {
    let mut runs = Vec::new();
    for name in [
        "naive (1 write/change)",
        "worker, backlog",
        "worker, backlog, paced",
        "worker, flush every tick",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let sink = rt.block_on(firestore());
        let (store, changes, wall) = if name.contains("every tick") {
            let store = Arc::new(Store::open(dir.path(), &MemoryConfig::default()).unwrap());
            let mut day = AgentDay::new(7);
            let mut w = worker(store.clone(), sink.clone(), &unpaced());
            let mut wall = Duration::ZERO;
            let mut rows = 0;
            for _ in 0..TICKS_PER_DAY {
                rows += day.next_tick(&store);
                let t = Instant::now();
                rt.block_on(w.drain()).unwrap();
                wall += t.elapsed();
            }
            (store, rows, wall)
        } else {
            let (store, rows) = backlog(dir.path(), TICKS_PER_DAY);
            let t = Instant::now();
            if name.starts_with("naive") {
                rt.block_on(naive_drain(&store, &sink));
            } else {
                let config = if name.ends_with("paced") {
                    SyncConfig::default()
                } else {
                    unpaced()
                };
                rt.block_on(worker(store.clone(), sink.clone(), &config).drain())
                    .unwrap();
            }
            (store, rows, t.elapsed())
        };
        assert_eq!(store.outbox_len().unwrap(), 0, "{name} left rows behind");
        let run = Run {
            name,
            requests: sink.requests(),
            wall,
        };
        run.print(changes, runs.first());
        runs.push(run);
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    agent_day(&rt);

    let ticks = 24; // two hours
    let mut group = c.benchmark_group("sync_drain_2h_backlog");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1));
    let mut medians = Vec::new();
    for naive in [true, false] {
        let name = if naive { "naive" } else { "worker" };
        let mut times = Vec::new();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let (store, _) = backlog(dir.path(), ticks);
                    let sink = rt.block_on(firestore());
                    let t = Instant::now();
                    if naive {
                        rt.block_on(naive_drain(&store, &sink));
                    } else {
                        rt.block_on(worker(store.clone(), sink, &unpaced()).drain())
                            .unwrap();
                    }
                    let elapsed = t.elapsed();
                    times.push(elapsed);
                    total += elapsed;
                }
                total
            })
        });
        times.sort();
        medians.push(times[times.len() / 2]);
    }
    group.finish();
    println!(
        "sync_drain_2h_backlog: median naive {:.3} s, worker {:.3} s, ratio {:.1}x",
        medians[0].as_secs_f64(),
        medians[1].as_secs_f64(),
        medians[0].as_secs_f64() / medians[1].as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
