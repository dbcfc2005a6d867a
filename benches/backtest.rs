//! Backtest throughput. Issue 17 §2: a year of the 6 default pools (105,120 ticks) with a
//! durable commit every 288 ticks, target ≤ 10 s, beside the same year with every tick durable,
//! in one run (`ATHENA_BENCH_SMOKE=1`: 10 days of each, failing only if deferring stops being
//! clearly faster). Issue 5 §7: 30 simulated days of the 6 default pools at 5-minute ticks,
//! every tick one durable store commit; target under 10 s on this machine. Decision
//! latency per tick (rules, risk gate, paper fills, no LLM, no store I/O): target p99 under
//! 2 ms, from a histogram over every trading tick of the run. Criterion times a 3-day run
//! (observation only, then the first trades) for a distribution of the per-run cost.

use athena::backtest;
use athena_storage::Store;
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, seed: u64) -> athena_config::Config {
    let mut c = athena_config::Config::default();
    c.agent.data_dir = dir.to_path_buf();
    c.agent.seed = seed;
    c
}

/// A year of the six default pools (105,120 ticks), durable every 288 ticks, beside the same
/// year with every tick durable, in one run; `days` shorter for the smoke.
fn year(days: u64) -> (f64, f64) {
    let run = |durable_every: u64| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 7);
        let store = std::sync::Arc::new(Store::open(dir.path(), &cfg.memory).unwrap());
        let options = backtest::Options {
            durable_every: std::num::NonZeroU64::new(durable_every).unwrap(),
            count_sync: false,
        };
        let t = Instant::now();
        let r = backtest::run_with(&cfg, &store, days, options, |_, _| {}).unwrap();
        (t.elapsed().as_secs_f64(), r)
    };
    let (deferred, a) = run(288);
    let (every, b) = run(1);
    assert_eq!(
        (a.trades, a.end_equity_usd.to_bits()),
        (b.trades, b.end_equity_usd.to_bits()),
        "the two modes ended differently"
    );
    println!(
        "backtest {days} days ({} ticks, seed 7): durable every 288 ticks {deferred:.2} s; every tick durable {every:.2} s; ratio {:.2}x (target for 365 days: <= 10 s)",
        a.ticks_run,
        every / deferred
    );
    (deferred, every)
}

fn bench(c: &mut Criterion) {
    if std::env::var("ATHENA_BENCH_SMOKE").is_ok_and(|v| v == "1") {
        // Gross regression only: deferred durability must stay clearly faster than a durable
        // commit per tick (measured about 4.5× on 10 days).
        let (deferred, every) = year(10);
        let ratio = every / deferred;
        println!("smoke: per-tick durable / every 288 ticks = {ratio:.2} (fails below 1.5)");
        assert!(
            ratio >= 1.5,
            "gross regression of the deferred-durability backtest"
        );
        return;
    }
    year(365);
    // The 30-day run, once, with the decision-latency histogram.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 7);
    let store = Store::open(dir.path(), &cfg.memory).unwrap();
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut tick_h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let mut last = Instant::now();
    let started = Instant::now();
    let report = backtest::run(&cfg, &store, 30, |t, _| {
        if !t.observing {
            h.record(t.decide_micros.max(1)).unwrap();
        }
        tick_h.record(last.elapsed().as_micros() as u64).unwrap();
        last = Instant::now();
    })
    .unwrap();
    let wall = started.elapsed();
    println!(
        "backtest 30 days: {} ticks in {:.2} s ({:.0} ticks/s; target < 10 s), {} trades, store {:.1} MB",
        report.ticks_run,
        wall.as_secs_f64(),
        report.ticks_run as f64 / wall.as_secs_f64(),
        report.trades,
        report.store_bytes as f64 / 1e6
    );
    println!(
        "decision latency over {} trading ticks: p50 {} µs, p99 {} µs, max {} µs (target p99 < 2 ms)",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.max()
    );
    println!(
        "whole tick incl. durable commit and pruning: p50 {} µs, p99 {} µs, max {} µs",
        tick_h.value_at_quantile(0.5),
        tick_h.value_at_quantile(0.99),
        tick_h.max()
    );

    let mut group = c.benchmark_group("backtest");
    group.sample_size(10).warm_up_time(Duration::from_secs(1));
    group.bench_function("3_days", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let cfg = config(dir.path(), 100 + i);
                let store = Store::open(dir.path(), &cfg.memory).unwrap();
                let t = Instant::now();
                backtest::run(&cfg, &store, 3, |_, _| {}).unwrap();
                total += t.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
