//! Many pools (issue 17 §3 and §4).
//!
//! 1. The tick (observe, remember, decide, risk, learn, commit) with 6, 60 and 600 simulated
//!    pools (`market.sim_pools`): a backtest in process whose commits defer their fsync to the
//!    end (so the figures exclude it), the wall time of each tick (the pruning pass due in it
//!    included) in a histogram; the cost per tick and per pool, the store's growth per day (an
//!    upper bound: no sync worker drains the outbox here), and the memory quotas, checked after
//!    a final pruning pass (each pass enforces them). Target: a 600-pool tick p99 ≤ 20 ms, growing at
//!    most linearly with the pools.
//! 2. Resident memory of the real `athena run` binary over 30 accelerated days at 6 and at 600
//!    pools (the embedded defaults, local sync target):
//!    VmRSS sampled from /proc every 100 ms, reported per simulated day after warm-up.
//!    Target at 6 pools: flat after warm-up and ≤ 64 MB.
//!
//! Run: `cargo bench --bench many_pools` (MANY_POOLS_DAYS, default 6, sets part 1's run;
//! MANY_POOLS_RSS=0 skips part 2). With `ATHENA_BENCH_SMOKE=1` part 1 runs 2 days at 6 and 60
//! pools and fails only on a gross regression: a per-pool tick cost at 60 pools over 3× the
//! one at 6 (measured about 0.3×).

use athena::backtest::{self, Options};
use athena_storage::Store;
use std::num::NonZeroU64;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_athena");

struct TickCost {
    pools: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    growth_mb_per_day: f64,
    memories: u64,
    over_quota: Vec<String>,
}

fn tick_cost(pools: usize, days: u64) -> TickCost {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = 7;
    config.market.sim_pools = pools as u32;
    let store = Arc::new(Store::open(dir.path(), &config.memory).unwrap());
    let options = Options {
        durable_every: NonZeroU64::new(u64::MAX).unwrap(),
        count_sync: false,
    };
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut last = Instant::now();
    backtest::run_with(&config, &store, days, options, |_, _| {
        h.record(last.elapsed().as_micros().max(1) as u64).unwrap();
        last = Instant::now();
    })
    .unwrap();
    // Quotas are enforced by each pruning pass (hourly): checked right after one, so the
    // memories written since the last pass do not count against them.
    let last = store
        .read(|r| {
            r.get::<athena::agent::state::AgentState>(
                athena_storage::KeyedTable::Agent,
                athena::agent::state::STATE_KEY,
            )
        })
        .unwrap()
        .map_or(0, |s| s.last_tick_ms);
    store.prune(last).unwrap();
    let stats = store.memory_stats().unwrap();
    let over_quota = config
        .memory
        .quotas
        .iter()
        .filter_map(|(name, quota)| {
            let n = stats
                .by_category
                .get(name)
                .map(|t| t.hot + t.warm)
                .or_else(|| stats.by_type.get(name).copied())?;
            (n > *quota).then(|| format!("{name} {n} > {quota}"))
        })
        .collect();
    TickCost {
        pools,
        p50_us: h.value_at_quantile(0.5),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
        growth_mb_per_day: store.file_size() as f64 / 1e6 / days as f64,
        memories: stats.total.hot + stats.total.warm,
        over_quota,
    }
}

fn print_costs(costs: &[TickCost], days: u64) {
    println!("tick without the fsync, {days} simulated days (3 observing, then trading), seed 7:");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>14} {:>14} {:>10} quotas",
        "pools", "p50 µs", "p99 µs", "max µs", "p50 µs/pool", "store MB/day", "memories"
    );
    for c in costs {
        println!(
            "{:>6} {:>10} {:>10} {:>10} {:>14.2} {:>14.2} {:>10} {}",
            c.pools,
            c.p50_us,
            c.p99_us,
            c.max_us,
            c.p50_us as f64 / c.pools as f64,
            c.growth_mb_per_day,
            c.memories,
            if c.over_quota.is_empty() {
                "held".to_string()
            } else {
                c.over_quota.join(", ")
            }
        );
    }
}

/// Resident memory (VmRSS, kB) of `pid`.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// The last tick `athena run` published in its status file.
fn last_tick(dir: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(athena::agent::STATUS_FILE)).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["last_tick"].as_u64()
}

/// RSS per simulated day of an accelerated `athena run` over `days` days: (day, max kB).
fn rss_over_run(pools: usize, days: u64) -> Vec<(u64, u64)> {
    let dir = tempfile::tempdir().unwrap();
    let ticks_per_day = 288;
    let mut child = Command::new(BIN)
        .args(["--data-dir", dir.path().to_str().unwrap(), "run"])
        .env("ATHENA_AGENT_TIME_SCALE", "1000000")
        // The worker flushes on wall time: at 1,000,000× a 60 s flush never comes within
        // the run and the outbox (and the file) would only grow. 10 ms of wall time is about
        // 33 ticks of agent time.
        .env("ATHENA_SYNC_FLUSH_INTERVAL", "10ms")
        .env("ATHENA_MARKET_SIM_POOLS", pools.to_string())
        .env_remove("ATHENA_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the athena binary");
    let mut per_day: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let (Some(rss), Some(tick)) = (rss_kb(child.id()), last_tick(dir.path())) else {
            assert!(Instant::now() < deadline, "the run never reported a tick");
            continue;
        };
        let day = tick / ticks_per_day + 1;
        if day > days {
            break;
        }
        match per_day.last_mut() {
            Some((d, max)) if *d == day => *max = (*max).max(rss),
            _ => per_day.push((day, rss)),
        }
        assert!(Instant::now() < deadline, "30 days took over 30 minutes");
    }
    let _ = child.kill();
    let _ = child.wait();
    per_day
}

fn print_rss(pools: usize, per_day: &[(u64, u64)]) {
    let mb = |kb: u64| kb as f64 / 1024.0;
    let warm: Vec<u64> = per_day
        .iter()
        .filter(|(d, _)| *d > 5)
        .map(|(_, k)| *k)
        .collect();
    let (lo, hi) = (
        warm.iter().min().copied().unwrap_or(0),
        warm.iter().max().copied().unwrap_or(0),
    );
    let days: Vec<String> = per_day
        .iter()
        .filter(|(d, _)| [1, 3, 5, 10, 15, 20, 25, 30].contains(d))
        .map(|(d, k)| format!("day {d} {:.1}", mb(*k)))
        .collect();
    println!(
        "athena run, {pools} pools, RSS MB (max per simulated day): {}; after warm-up (days 6-30) {:.1} to {:.1} MB",
        days.join(", "),
        mb(lo),
        mb(hi)
    );
}

fn main() {
    if std::env::var("ATHENA_BENCH_SMOKE").is_ok_and(|v| v == "1") {
        let costs = [tick_cost(6, 2), tick_cost(60, 2)];
        print_costs(&costs, 2);
        let per_pool = |c: &TickCost| c.p50_us as f64 / c.pools as f64;
        let ratio = per_pool(&costs[1]) / per_pool(&costs[0]);
        println!("smoke: per-pool tick cost at 60 pools / at 6 pools = {ratio:.2} (fails above 3)");
        assert!(
            ratio <= 3.0,
            "gross regression: the tick grows super-linearly with the pools"
        );
        return;
    }
    let days: u64 = std::env::var("MANY_POOLS_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let costs: Vec<TickCost> = [6, 60, 600].iter().map(|n| tick_cost(*n, days)).collect();
    print_costs(&costs, days);
    if std::env::var("MANY_POOLS_RSS").is_ok_and(|v| v == "0") {
        return;
    }
    for pools in [6, 600] {
        let per_day = rss_over_run(pools, 30);
        print_rss(pools, &per_day);
    }
}
