//! One full risk assessment (issue 4 §8): an add to one of 5 held positions, so every breaker
//! check, the gas rules over 1,000 readings (median, p95, rapid change) and every cap run,
//! and the decision is an approval. Criterion gives the mean; a 100,000-sample histogram
//! gives p50/p99/p99.9 against the 20 µs target. The per-tick cycle (re-arm, a gas and an
//! equity reading, the assessment, the score) is measured beside it.

use athena::risk::{
    Decision, MarketView, Observation, PoolInfo, Portfolio, Position, Proposal, ProposalKind,
    RiskEngine, RiskState,
};
use athena_config::{GasConfig, RiskConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::Instant;

const T: u64 = 1_800_000_000_000;
const MIN: u64 = 60_000;

fn setup() -> (RiskEngine, RiskState, Portfolio, Proposal, MarketView) {
    let e = RiskEngine::new(RiskConfig::default(), GasConfig::default());
    let mut s = RiskState::default();
    for i in 0..1_000u64 {
        let gwei = 0.06 + 0.002 * ((i * 7919) % 13) as f64;
        e.record(
            &mut s,
            Observation::GasReading {
                at_ms: T + i * MIN,
                gwei,
            },
        );
        e.record(
            &mut s,
            Observation::Equity {
                at_ms: T + i * MIN,
                usd: 20_000.0 + (i % 17) as f64,
            },
        );
    }
    let tokens = [
        ["WETH", "USDC"],
        ["WETH", "DAI"],
        ["AERO", "USDC"],
        ["AERO", "WETH"],
        ["USDC", "DAI"],
    ];
    let positions = tokens
        .iter()
        .enumerate()
        .map(|(i, [a, b])| Position {
            id: format!("p{i}"),
            pool: format!("{a}/{b}"),
            tokens: [a.to_string(), b.to_string()],
            stable: i == 4,
            value_usd: 1_000.0 + 100.0 * i as f64,
            pool_tvl_usd: 2e6,
            apr_variance: 0.15,
        })
        .collect();
    let portfolio = Portfolio {
        positions,
        cash_usd: 14_000.0,
    };
    let proposal = Proposal {
        kind: ProposalKind::Add {
            position: "p2".into(),
        },
        pool: PoolInfo {
            id: "AERO/USDC".into(),
            tokens: ["AERO".into(), "USDC".into()],
            stable: false,
            tvl_usd: Some(2e6),
            created_ms: Some(T - 30 * 86_400_000),
            apr_variance: Some(0.15),
        },
        requested_usd: None,
        entry_gas_usd: Some(0.4),
        expected_slippage_pct: Some(0.2),
    };
    let now = T + 1_000 * MIN;
    let market = MarketView {
        now_ms: now,
        gas_gwei: 0.06,
    };
    (e, s, portfolio, proposal, market)
}

fn percentiles(name: &str, mut f: impl FnMut()) {
    let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    for _ in 0..100_000 {
        let t = Instant::now();
        f();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
    }
    println!(
        "{name}: p50 {:.2} µs, p99 {:.2} µs, p99.9 {:.2} µs, max {:.2} µs over {} samples (target p99 < 20 µs)",
        h.value_at_quantile(0.5) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.value_at_quantile(0.999) as f64 / 1e3,
        h.max() as f64 / 1e3,
        h.len()
    );
}

fn bench(c: &mut Criterion) {
    let (e, s, p, prop, m) = setup();
    let a = e.assess(&s, &prop, &p, &m);
    assert!(
        matches!(a.decision, Decision::Approve { .. }),
        "the bench must reach every cap: {a:?}"
    );
    assert_eq!(s.gas_readings.len(), 1_000);

    c.bench_function("risk_assess", |b| {
        b.iter(|| black_box(e.assess(&s, &prop, &p, &m)))
    });
    percentiles("risk_assess", || {
        black_box(e.assess(black_box(&s), &prop, &p, &m));
    });

    let mut state = s.clone();
    let mut now = m.now_ms;
    let mut cycle = || {
        now += MIN;
        black_box(e.tick(&mut state, now));
        black_box(e.record(
            &mut state,
            Observation::GasReading {
                at_ms: now,
                gwei: 0.06,
            },
        ));
        black_box(e.record(
            &mut state,
            Observation::Equity {
                at_ms: now,
                usd: 20_010.0,
            },
        ));
        let market = MarketView {
            now_ms: now + 1,
            gas_gwei: 0.06,
        };
        black_box(e.assess(&state, &prop, &p, &market));
        black_box(e.score(&state, &p, now));
    };
    c.bench_function("risk_tick_cycle", |b| b.iter(&mut cycle));
    percentiles("risk_tick_cycle", cycle);
}

criterion_group!(benches, bench);
criterion_main!(benches);
