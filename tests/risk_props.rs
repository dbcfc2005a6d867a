//! Properties of the risk engine over arbitrary portfolios, markets, states and proposal
//! sequences: no approved entry takes a cap past its limit, tripped breakers and strict
//! states block every entry and no exit, sizes never grow as a risk factor worsens, and the
//! risk score stays in 0–100 with the matching level.

use athena::risk::sizing::MIN_SIZE_USD;
use athena::risk::{
    BreakerKind, Decision, MarketView, PoolInfo, Portfolio, Position, Proposal, ProposalKind,
    RiskEngine, RiskLevel, RiskState, Trip,
};
use athena_config::{GasConfig, RiskConfig};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const T: u64 = 1_800_000_000_000;
const H: u64 = 3_600_000;
const TOKENS: [&str; 6] = ["WETH", "USDC", "DAI", "AERO", "USDbC", "cbBTC"];

fn engine() -> RiskEngine {
    RiskEngine::new(RiskConfig::default(), GasConfig::default())
}

fn token_pair() -> impl Strategy<Value = [String; 2]> {
    (0..6usize, 1..6usize)
        .prop_map(|(a, d)| [TOKENS[a].to_string(), TOKENS[(a + d) % 6].to_string()])
}

fn position(i: usize) -> impl Strategy<Value = Position> {
    (
        token_pair(),
        any::<bool>(),
        0.0..6_000.0f64,
        10_000.0..5e6f64,
        0.0..1.0f64,
    )
        .prop_map(
            move |(tokens, stable, value_usd, pool_tvl_usd, apr_variance)| Position {
                id: format!("p{i}"),
                pool: format!("P{i}"),
                tokens,
                stable,
                value_usd,
                pool_tvl_usd,
                apr_variance,
            },
        )
}

fn portfolio() -> impl Strategy<Value = Portfolio> {
    (0..=6usize, 0.0..30_000.0f64).prop_flat_map(|(n, cash_usd)| {
        (0..n)
            .map(position)
            .collect::<Vec<_>>()
            .prop_map(move |positions| Portfolio {
                positions,
                cash_usd,
            })
    })
}

/// Pool data, each field missing now and then.
fn pool_info(id: String) -> impl Strategy<Value = PoolInfo> {
    (
        token_pair(),
        any::<bool>(),
        prop::option::weighted(0.95, 20_000.0..5e6f64),
        prop::option::weighted(0.95, 0..30 * 24 * H),
        prop::option::weighted(0.95, 0.0..1.0f64),
    )
        .prop_map(
            move |(tokens, stable, tvl_usd, age, apr_variance)| PoolInfo {
                id: id.clone(),
                tokens,
                stable,
                tvl_usd,
                created_ms: age.map(|a| T - a),
                apr_variance,
            },
        )
}

/// A proposal against `p`: entries and exits of every kind.
fn proposal(p: &Portfolio, n: usize) -> impl Strategy<Value = Proposal> + use<> {
    let held: Vec<Position> = p.positions.clone();
    (
        0..8usize,
        any::<prop::sample::Index>(),
        pool_info(format!("N{n}")),
        prop::option::of(0.0..8_000.0f64),
        prop::option::weighted(0.95, 0.0..20.0f64),
        prop::option::of(0.0..1.5f64),
    )
        .prop_map(
            move |(k, pick, fresh, requested_usd, entry_gas_usd, slip)| {
                let existing = (!held.is_empty()).then(|| held[pick.index(held.len())].clone());
                let as_pool = |q: &Position| PoolInfo {
                    id: q.pool.clone(),
                    tokens: q.tokens.clone(),
                    stable: q.stable,
                    tvl_usd: Some(q.pool_tvl_usd),
                    created_ms: fresh.created_ms,
                    apr_variance: Some(q.apr_variance),
                };
                let (kind, pool) = match (k, &existing) {
                    (1, Some(q)) => (
                        ProposalKind::Add {
                            position: q.id.clone(),
                        },
                        as_pool(q),
                    ),
                    (2, Some(q)) => (ProposalKind::Rebalance { from: q.id.clone() }, fresh),
                    (3, Some(q)) => (
                        ProposalKind::Compound {
                            position: q.id.clone(),
                        },
                        as_pool(q),
                    ),
                    (4, Some(q)) => (
                        ProposalKind::Close {
                            position: q.id.clone(),
                        },
                        as_pool(q),
                    ),
                    (5, Some(q)) => (
                        ProposalKind::RemoveLiquidity {
                            position: q.id.clone(),
                        },
                        as_pool(q),
                    ),
                    (6, _) => (ProposalKind::ExitAll, fresh),
                    (7, _) => (
                        ProposalKind::Sweep {
                            token: fresh.tokens[0].clone(),
                        },
                        fresh,
                    ),
                    _ => (ProposalKind::Open, fresh),
                };
                Proposal {
                    kind,
                    pool,
                    requested_usd,
                    entry_gas_usd,
                    expected_slippage_pct: slip,
                }
            },
        )
}

fn market() -> impl Strategy<Value = MarketView> {
    prop_oneof![9 => 0.0..1.0f64, 1 => 0.0..200.0f64].prop_map(|gas_gwei| MarketView {
        now_ms: T,
        gas_gwei,
    })
}

/// A state with some breakers tripped, maybe a stop, maybe a recent recovery.
fn state() -> impl Strategy<Value = RiskState> {
    (
        prop::collection::vec(any::<bool>(), 8),
        prop::bool::weighted(0.1),
        prop::option::of(0..48 * H),
        prop::bool::weighted(0.7),
    )
        .prop_map(|(trips, stop, recovered_ago, calm)| {
            let mut s = RiskState::default();
            for (b, t) in s.breakers.iter_mut().zip(trips) {
                if t && !calm {
                    b.tripped = Some(Trip {
                        at_ms: T - 1,
                        reason: "test".into(),
                        until_ms: Some(T + H),
                    });
                    b.trip_count = 1;
                }
            }
            if stop && !calm {
                s.operator_stop = Some(athena::risk::state::OperatorStop {
                    at_ms: T - 1,
                    reason: "test".into(),
                });
            }
            s.recovered_at_ms = recovered_ago.map(|a| T - a);
            s.trading_state = s.computed_state(T);
            s
        })
}

/// Applies an allowed decision to the portfolio, as a paper executor would.
fn apply(p: &mut Portfolio, prop: &Proposal, size: f64) {
    let new_position = |id: String| Position {
        id,
        pool: prop.pool.id.clone(),
        tokens: prop.pool.tokens.clone(),
        stable: prop.pool.stable,
        value_usd: size,
        pool_tvl_usd: prop.pool.tvl_usd.unwrap(),
        apr_variance: prop.pool.apr_variance.unwrap(),
    };
    match &prop.kind {
        ProposalKind::Open => {
            p.cash_usd -= size;
            p.positions
                .push(new_position(format!("o-{}", prop.pool.id)));
        }
        ProposalKind::Add { position } | ProposalKind::Compound { position } => {
            p.cash_usd -= size;
            p.positions
                .iter_mut()
                .find(|q| &q.id == position)
                .unwrap()
                .value_usd += size;
        }
        ProposalKind::Rebalance { from } => {
            let i = p.positions.iter().position(|q| &q.id == from).unwrap();
            p.cash_usd += p.positions.remove(i).value_usd - size;
            p.positions
                .push(new_position(format!("r-{}", prop.pool.id)));
        }
        ProposalKind::Close { position } | ProposalKind::RemoveLiquidity { position } => {
            if let Some(i) = p.positions.iter().position(|q| &q.id == position) {
                p.cash_usd += p.positions.remove(i).value_usd;
            }
        }
        ProposalKind::ExitAll => {
            p.cash_usd += p.positions.drain(..).map(|q| q.value_usd).sum::<f64>();
        }
        // A token held outside positions turns into cash: the portfolio the caps see (cash
        // and positions) does not hold it.
        ProposalKind::Sweep { .. } => {}
    }
}

/// Every cap the entry into `pool` touches holds on `p` (after the entry of `size`).
fn caps_hold(cfg: &RiskConfig, p: &Portfolio, prop: &Proposal, size: f64) -> Result<(), String> {
    let v = p.value_usd();
    let eps = 1e-6 * v.max(1.0);
    let pool = &prop.pool;
    let sum = |f: &dyn Fn(&Position) -> bool| {
        p.positions
            .iter()
            .filter(|q| f(q))
            .map(|q| q.value_usd)
            .sum::<f64>()
    };
    let in_pool = sum(&|q| q.pool == pool.id);
    let check = |name: &str, used: f64, limit: f64| {
        if used <= limit + eps {
            Ok(())
        } else {
            Err(format!("{name}: {used} > {limit} (value {v}, size {size})"))
        }
    };
    check("cash", -p.cash_usd, 0.0)?;
    if matches!(
        prop.kind,
        ProposalKind::Open | ProposalKind::Rebalance { .. }
    ) {
        check(
            "positions",
            p.positions.len() as f64,
            f64::from(cfg.max_positions),
        )?;
    }
    check("position fraction", in_pool, cfg.max_position_fraction * v)?;
    if T - pool.created_ms.unwrap() < cfg.new_pool_age.as_millis() as u64 {
        check("new pool", in_pool, cfg.new_pool_cap_usd)?;
    }
    for t in &pool.tokens {
        check("token", p.token_exposure_usd(t), cfg.max_token_fraction * v)?;
    }
    let band = sum(&|q| q.stable == pool.stable);
    let band_limit = if pool.stable {
        cfg.max_stable_fraction
    } else {
        cfg.max_volatile_fraction
    };
    check("band", band, band_limit * v)?;
    if pool.tvl_usd.unwrap() < cfg.low_liquidity_tvl_usd {
        check(
            "low liquidity",
            sum(&|q| q.pool_tvl_usd < cfg.low_liquidity_tvl_usd),
            cfg.max_low_liquidity_fraction * v,
        )?;
    }
    check(
        "correlated",
        sum(&|q| q.tokens.iter().any(|t| pool.tokens.contains(t))),
        cfg.max_correlated_fraction * v,
    )?;
    check(
        "entry gas",
        prop.entry_gas_usd.unwrap(),
        cfg.max_entry_gas_fraction * size,
    )?;
    check("minimum size", MIN_SIZE_USD, size)?;
    if let Some(r) = prop.requested_usd {
        check("requested", size, r)?;
    }
    Ok(())
}

/// Portfolio, state and a sequence of proposals made against the evolving portfolio.
fn scenario() -> impl Strategy<
    Value = (
        Portfolio,
        RiskState,
        MarketView,
        Vec<(usize, prop::sample::Index, u64)>,
    ),
> {
    (
        portfolio(),
        state(),
        market(),
        prop::collection::vec(
            (0..7usize, any::<prop::sample::Index>(), any::<u64>()),
            1..8,
        ),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn no_approved_entry_takes_a_cap_past_its_limit(
        (mut p, s, m, _) in scenario(),
        steps in prop::collection::vec(any::<u64>(), 1..8),
    ) {
        let e = engine();
        let (cfg, _) = e.config();
        for (n, seed) in steps.into_iter().enumerate() {
            let prop = proposal_from_seed(&p, n, seed);
            let a = e.assess(&s, &prop, &p, &m);
            if prop.kind.is_exit() {
                prop_assert!(a.decision.allowed(), "{a:?}");
                apply(&mut p, &prop, 0.0);
                continue;
            }
            if let Decision::Approve { size_usd, .. } | Decision::Reduce { size_usd, .. } = a.decision {
                let before = p.value_usd();
                apply(&mut p, &prop, size_usd);
                prop_assert!((p.value_usd() - before).abs() <= 1e-6 * before.max(1.0));
                if let Err(why) = caps_hold(cfg, &p, &prop, size_usd) {
                    return Err(TestCaseError::fail(format!("{why}\n{prop:?}\n{a:?}")));
                }
            }
        }
    }

    #[test]
    fn a_tripped_breaker_or_strict_state_blocks_every_entry_and_no_exit(
        (p, s, m, picks) in scenario(),
    ) {
        let e = engine();
        let blocked = s.entry_blockers(T).next().is_some() || !s.computed_state(T).allows_entries();
        for (n, (_, _, seed)) in picks.into_iter().enumerate() {
            let prop = proposal_from_seed(&p, n, seed);
            let a = e.assess(&s, &prop, &p, &m);
            if prop.kind.is_exit() {
                prop_assert!(a.decision.allowed(), "an exit was blocked: {a:?}");
            } else if blocked {
                prop_assert!(!a.decision.allowed(), "an entry went through a tripped breaker or {:?}: {a:?}", s.computed_state(T));
            }
        }
    }

    #[test]
    fn sizes_never_grow_as_a_risk_factor_worsens(
        p in portfolio(),
        pool in pool_info("N".into()),
        gas_usd in 0.0..15.0f64,
        requested in prop::option::of(0.0..8_000.0f64),
        recovered_ago in prop::option::of(0..24 * H),
        worse in 0..7usize,
        amount in 0.0..1.0f64,
        victim in any::<prop::sample::Index>(),
    ) {
        let e = engine();
        let m = MarketView { now_ms: T, gas_gwei: 0.1 };
        let mut s = RiskState::default();
        s.recovered_at_ms = recovered_ago.map(|a| T - a);
        let prop = Proposal { kind: ProposalKind::Open, pool, requested_usd: requested, entry_gas_usd: Some(gas_usd), expected_slippage_pct: Some(0.1) };
        let base = e.assess(&s, &prop, &p, &m);
        let (mut p2, mut s2, mut prop2) = (p.clone(), s.clone(), prop.clone());
        match worse {
            0 => prop2.pool.apr_variance = prop2.pool.apr_variance.map(|v| v + amount),
            1 => prop2.entry_gas_usd = Some(gas_usd * (1.0 + 10.0 * amount)),
            2 => s2.recovered_at_ms = Some(s.recovered_at_ms.map_or(T, |r| r + ((T - r) as f64 * amount) as u64)),
            3 => s2.breakers[BreakerKind::SlippageHigh as usize].tripped = Some(Trip { at_ms: T - 1, reason: "t".into(), until_ms: Some(T + H) }),
            4 => {
                // A held position sharing no token with the pool comes to share one (same
                // portfolio value; no other exposure falls).
                let unrelated: Vec<usize> = (0..p2.positions.len())
                    .filter(|i| !p2.positions[*i].tokens.iter().any(|t| prop2.pool.tokens.contains(t)))
                    .collect();
                if !unrelated.is_empty() {
                    let i = unrelated[victim.index(unrelated.len())];
                    p2.positions[i].tokens[0] = prop2.pool.tokens[0].clone();
                }
            }
            5 => prop2.pool.tvl_usd = prop2.pool.tvl_usd.map(|t| t * (1.0 - amount)),
            _ => prop2.pool.created_ms = prop2.pool.created_ms.map(|c| c + ((T - c) as f64 * amount) as u64),
        }
        let worse_a = e.assess(&s2, &prop2, &p2, &m);
        prop_assert!(
            worse_a.decision.size_usd() <= base.decision.size_usd() + 1e-9,
            "worsening #{worse} grew the size: {:?} → {:?}", base.decision, worse_a.decision
        );
    }

    #[test]
    fn the_risk_score_stays_in_range_with_the_matching_level(p in portfolio(), nan in prop::bool::weighted(0.05)) {
        let mut p = p;
        if nan && !p.positions.is_empty() {
            p.positions[0].apr_variance = f64::NAN;
        }
        let sc = engine().score(&RiskState::default(), &p, T);
        for c in [sc.concentration, sc.volatility, sc.liquidity, sc.correlation] {
            prop_assert!((0.0..=25.0).contains(&c), "{sc:?}");
        }
        prop_assert!((0.0..=100.0).contains(&sc.total), "{sc:?}");
        let level = match sc.total {
            t if t > 75.0 => RiskLevel::Critical,
            t if t > 50.0 => RiskLevel::High,
            t if t > 25.0 => RiskLevel::Medium,
            _ => RiskLevel::Low,
        };
        prop_assert_eq!(sc.level, level);
    }
}

/// Any f64 at all: NaN, infinities, negatives, huge and tiny.
fn any_number() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(0.0),
        any::<f64>(),
        0.0..1e7f64,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// The engine is total: whatever numbers come in, it answers (no panic), and an allowed
    /// entry has a finite, positive size within the cash.
    #[test]
    fn assessment_is_total_on_arbitrary_numbers(
        mut p in portfolio(),
        numbers in prop::collection::vec(any_number(), 9),
        kind in 0..3usize,
    ) {
        let e = engine();
        if let Some(q) = p.positions.first_mut() {
            q.value_usd = numbers[0];
            q.pool_tvl_usd = numbers[1];
            q.apr_variance = numbers[2];
        }
        p.cash_usd = numbers[3].abs().min(1e9);
        let first = p.positions.first().map(|q| q.id.clone());
        let kind = match (kind, first) {
            (1, Some(id)) => ProposalKind::Close { position: id },
            (2, Some(id)) => ProposalKind::Rebalance { from: id },
            _ => ProposalKind::Open,
        };
        let prop = Proposal {
            kind,
            pool: PoolInfo {
                id: "N".into(),
                tokens: ["WETH".into(), "USDC".into()],
                stable: false,
                tvl_usd: Some(numbers[4]),
                created_ms: Some(T - 30 * 24 * H),
                apr_variance: Some(numbers[5]),
            },
            requested_usd: Some(numbers[6]),
            entry_gas_usd: Some(numbers[7]),
            expected_slippage_pct: Some(numbers[8]),
        };
        let m = MarketView { now_ms: T, gas_gwei: numbers[8].abs() };
        let a = e.assess(&RiskState::default(), &prop, &p, &m);
        let _ = e.score(&RiskState::default(), &p, T);
        if a.decision.allowed() && !prop.kind.is_exit() {
            let size = a.decision.size_usd();
            prop_assert!(size.is_finite() && size >= MIN_SIZE_USD, "{a:?}");
            prop_assert!(size <= p.value_usd(), "{a:?}");
        }
    }
}

/// A proposal generated from `seed` against the portfolio as it is now (a sequence step).
fn proposal_from_seed(p: &Portfolio, n: usize, seed: u64) -> Proposal {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(
        ProptestConfig::default(),
        proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &bytes,
        ),
    );
    proposal(p, n).new_tree(&mut runner).unwrap().current()
}
