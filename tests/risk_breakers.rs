//! Each breaker's trigger, window edge, cooldown expiry and re-arm, and each gas rule, on the
//! default settings of SPEC.md §3.

use athena::risk::{
    BreakerKind, Decision, GasAction, MarketView, Observation, PoolInfo, Portfolio, Proposal,
    ProposalKind, RiskEngine, RiskEvent, RiskState, Rule, TradingState,
};
use athena_config::{GasConfig, RiskConfig};

const T: u64 = 1_800_000_000_000;
const MIN: u64 = 60_000;
const H: u64 = 3_600_000;

fn engine() -> RiskEngine {
    RiskEngine::new(RiskConfig::default(), GasConfig::default())
}

fn equity(e: &RiskEngine, s: &mut RiskState, at_ms: u64, usd: f64) -> Vec<RiskEvent> {
    e.record(s, Observation::Equity { at_ms, usd })
        .into_iter()
        .map(|j| j.event)
        .collect()
}

fn tripped(events: &[RiskEvent], kind: BreakerKind) -> bool {
    events
        .iter()
        .any(|e| matches!(e, RiskEvent::Trip { breaker, .. } if *breaker == kind))
}

fn pool(id: &str) -> PoolInfo {
    PoolInfo {
        id: id.into(),
        tokens: ["WETH".into(), "USDC".into()],
        stable: false,
        tvl_usd: Some(5e6),
        created_ms: Some(T - 30 * 24 * H),
        apr_variance: Some(0.05),
    }
}

fn open(id: &str) -> Proposal {
    Proposal {
        kind: ProposalKind::Open,
        pool: pool(id),
        requested_usd: None,
        entry_gas_usd: Some(0.5),
        expected_slippage_pct: Some(0.1),
    }
}

fn cash(usd: f64) -> Portfolio {
    Portfolio {
        positions: Vec::new(),
        cash_usd: usd,
    }
}

fn market(now_ms: u64) -> MarketView {
    MarketView {
        now_ms,
        gas_gwei: 0.05,
    }
}

#[test]
fn rapid_loss_trips_at_five_percent_in_the_window_and_rearms_after_two_hours() {
    let e = engine();
    let mut s = RiskState::default();
    assert!(!tripped(
        &equity(&e, &mut s, T, 10_000.0),
        BreakerKind::RapidLoss
    ));
    assert!(!tripped(
        &equity(&e, &mut s, T + 30 * MIN, 9_501.0),
        BreakerKind::RapidLoss
    ));
    let ev = equity(&e, &mut s, T + 59 * MIN, 9_500.0);
    assert!(tripped(&ev, BreakerKind::RapidLoss), "{ev:?}");
    assert_eq!(s.trading_state, TradingState::ReduceOnly);
    let trip_at = T + 59 * MIN;
    assert!(s.is_tripped(BreakerKind::RapidLoss, trip_at + 2 * H - 1));
    let ev: Vec<_> = e
        .tick(&mut s, trip_at + 2 * H)
        .into_iter()
        .map(|j| j.event)
        .collect();
    assert!(
        ev.contains(&RiskEvent::Rearm {
            breaker: BreakerKind::RapidLoss
        }),
        "{ev:?}"
    );
    assert_eq!(s.trading_state, TradingState::Active);
    assert_eq!(s.breaker(BreakerKind::RapidLoss).trip_count, 1);
}

#[test]
fn rapid_loss_window_edge_uses_the_value_at_the_start_of_the_window() {
    let e = engine();
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    equity(&e, &mut s, T + 30 * MIN, 9_700.0);
    // An hour and a minute later the 10,000 reading is out of the window: −2.6% from 9,700.
    let ev = equity(&e, &mut s, T + 61 * MIN, 9_450.0);
    assert!(!tripped(&ev, BreakerKind::RapidLoss), "{ev:?}");
    // Inside the window the same reading is −5.5% from 10,000.
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    equity(&e, &mut s, T + 30 * MIN, 9_700.0);
    assert!(tripped(
        &equity(&e, &mut s, T + 60 * MIN, 9_450.0),
        BreakerKind::RapidLoss
    ));
}

#[test]
fn drawdown_is_equity_against_its_peak_not_a_sum_of_losses() {
    let e = engine();
    let mut s = RiskState::default();
    // Losses summing to 10% with recoveries between: the drawdown never reaches 10%.
    for (i, v) in [10_000.0, 9_500.0, 10_000.0, 9_500.0, 10_000.0, 9_500.0]
        .into_iter()
        .enumerate()
    {
        let ev = equity(&e, &mut s, T + i as u64 * 3 * H, v);
        assert!(!tripped(&ev, BreakerKind::PortfolioDrawdown), "{ev:?}");
    }
    // 10% below the peak within 24 h trips it (the fall from 10,500 to 9,450 is one step).
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    equity(&e, &mut s, T + H, 10_500.0);
    assert!(!tripped(
        &equity(&e, &mut s, T + 2 * H, 9_451.0),
        BreakerKind::PortfolioDrawdown
    ));
    assert!(tripped(
        &equity(&e, &mut s, T + 3 * H, 9_450.0),
        BreakerKind::PortfolioDrawdown
    ));
    assert_eq!(s.trading_state, TradingState::ReduceOnly);
}

#[test]
fn drawdown_window_edge_drops_a_peak_older_than_24_hours() {
    let e = engine();
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    let ev = equity(&e, &mut s, T + 24 * H + 1, 8_000.0);
    assert!(!tripped(&ev, BreakerKind::PortfolioDrawdown), "{ev:?}");
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    assert!(tripped(
        &equity(&e, &mut s, T + 24 * H, 8_000.0),
        BreakerKind::PortfolioDrawdown
    ));
}

#[test]
fn drawdown_rearms_after_its_cooldown_although_its_window_is_longer() {
    let e = engine();
    let mut s = RiskState::default();
    equity(&e, &mut s, T, 10_000.0);
    assert!(tripped(
        &equity(&e, &mut s, T + H, 9_000.0),
        BreakerKind::PortfolioDrawdown
    ));
    let trip_at = T + H;
    // Still tripped 1 ms before the 4 h cooldown ends; re-armed at it.
    assert!(s.is_tripped(BreakerKind::PortfolioDrawdown, trip_at + 4 * H - 1));
    e.tick(&mut s, trip_at + 4 * H);
    assert_eq!(s.trading_state, TradingState::Active);
    // The 10,000 peak is still inside the 24 h window, but the re-armed breaker looks only
    // at equity since it re-armed: the same loss does not trip it again…
    let ev = equity(&e, &mut s, trip_at + 4 * H + 5 * MIN, 9_000.0);
    assert!(!tripped(&ev, BreakerKind::PortfolioDrawdown), "{ev:?}");
    assert_eq!(s.trading_state, TradingState::Active);
    // …a new 10% fall from the post-re-arm peak does.
    let ev = equity(&e, &mut s, trip_at + 5 * H, 8_100.0);
    assert!(tripped(&ev, BreakerKind::PortfolioDrawdown), "{ev:?}");
    assert_eq!(s.breaker(BreakerKind::PortfolioDrawdown).trip_count, 2);
}

fn gas(e: &RiskEngine, s: &mut RiskState, at_ms: u64, gwei: f64) -> bool {
    let ev = e.record(s, Observation::GasReading { at_ms, gwei });
    ev.iter().any(|j| {
        matches!(
            j.event,
            RiskEvent::Trip {
                breaker: BreakerKind::GasManipulation,
                ..
            }
        )
    })
}

#[test]
fn gas_manipulation_trips_above_three_times_the_median_of_previous_readings() {
    let e = engine();
    let mut s = RiskState::default();
    for i in 0..3 {
        assert!(!gas(&e, &mut s, T + i * MIN, 1.0));
    }
    assert!(
        !gas(&e, &mut s, T + 3 * MIN, 3.0),
        "3 × median is not above it"
    );
    // The current reading is excluded: the median of [1, 1, 1, 3] is 1.
    assert!(gas(&e, &mut s, T + 4 * MIN, 3.01));
    assert_eq!(
        s.trading_state,
        TradingState::Active,
        "gas postpones, it does not halt"
    );
    let a = e.assess(&s, &open("A"), &cash(10_000.0), &market(T + 5 * MIN));
    assert!(
        matches!(
            a.decision,
            Decision::Reject {
                rule: Rule::Breaker,
                ..
            }
        ),
        "{a:?}"
    );
    assert!(s.is_tripped(BreakerKind::GasManipulation, T + 4 * MIN + 30 * MIN - 1));
    e.tick(&mut s, T + 4 * MIN + 30 * MIN);
    assert!(!s.is_tripped(BreakerKind::GasManipulation, T + 34 * MIN));
}

#[test]
fn gas_manipulation_window_edge_and_hard_cap() {
    let e = engine();
    let mut s = RiskState::default();
    assert!(!gas(&e, &mut s, T, 1.0));
    // Ten minutes and a millisecond later the only previous reading is out of the window.
    assert!(!gas(&e, &mut s, T + 10 * MIN + 1, 50.0));
    let mut s = RiskState::default();
    assert!(!gas(&e, &mut s, T, 1.0));
    assert!(gas(&e, &mut s, T + 10 * MIN, 50.0));
    // The hard cap needs no history.
    let mut s = RiskState::default();
    assert!(!gas(&e, &mut s, T, 100.0));
    let mut s = RiskState::default();
    assert!(gas(&e, &mut s, T, 100.5));
}

fn failure(e: &RiskEngine, s: &mut RiskState, at_ms: u64) -> bool {
    let ev = e.record(
        s,
        Observation::ApiFailure {
            at_ms,
            source: "rpc".into(),
        },
    );
    ev.iter().any(|j| {
        matches!(
            j.event,
            RiskEvent::Trip {
                breaker: BreakerKind::ApiFailures,
                ..
            }
        )
    })
}

#[test]
fn api_failures_trip_at_five_in_five_minutes_pause_and_rearm() {
    let e = engine();
    let mut s = RiskState::default();
    for i in 0..4 {
        assert!(!failure(&e, &mut s, T + i * MIN));
    }
    assert!(failure(&e, &mut s, T + 5 * MIN), "five in [T, T + 5 min]");
    assert_eq!(s.trading_state, TradingState::Halted);
    // Exits still go through while paused.
    let mut close = open("A");
    close.kind = ProposalKind::Close {
        position: "p".into(),
    };
    assert!(
        e.assess(&s, &close, &cash(1.0), &market(T + 6 * MIN))
            .decision
            .allowed()
    );
    e.tick(&mut s, T + 15 * MIN - 1);
    assert_eq!(s.trading_state, TradingState::Halted);
    e.tick(&mut s, T + 15 * MIN);
    assert_eq!(s.trading_state, TradingState::Active);
    // Failures from before the re-arm do not count again.
    assert!(!failure(&e, &mut s, T + 16 * MIN));

    // Window edge: the first failure falls out of the window.
    let mut s = RiskState::default();
    for i in 0..4 {
        failure(&e, &mut s, T + i * MIN);
    }
    assert!(!failure(&e, &mut s, T + 5 * MIN + 1));
}

#[test]
fn memory_corruption_latches_until_an_operator_resets_it() {
    let e = engine();
    let mut s = RiskState::default();
    let ev = e.record(
        &mut s,
        Observation::IntegrityFailure {
            at_ms: T,
            what: "memories/01H".into(),
        },
    );
    assert!(ev.iter().any(
        |j| matches!(&j.event, RiskEvent::Trip { reason, .. } if reason.contains("memories/01H"))
    ));
    assert_eq!(s.trading_state, TradingState::Halted);
    e.tick(&mut s, T + 365 * 24 * H);
    assert_eq!(s.trading_state, TradingState::Halted, "latched");
    assert!(
        e.reset(&mut s, BreakerKind::MemoryCorruption, "  ", T)
            .is_err(),
        "a reason is required"
    );
    let ev = e
        .reset(
            &mut s,
            BreakerKind::MemoryCorruption,
            "store verified",
            T + 365 * 24 * H,
        )
        .unwrap();
    assert!(
        matches!(&ev[0].event, RiskEvent::Reset { was_tripped: true, reason, .. } if reason == "store verified")
    );
    assert_eq!(s.trading_state, TradingState::Active);
}

#[test]
fn position_mismatch_trips_above_1000_dollars_and_latches() {
    let e = engine();
    let mut s = RiskState::default();
    e.record(
        &mut s,
        Observation::Reconciliation {
            at_ms: T,
            difference_usd: 1_000.0,
        },
    );
    assert!(!s.is_tripped(BreakerKind::PositionMismatch, T));
    e.record(
        &mut s,
        Observation::Reconciliation {
            at_ms: T,
            difference_usd: -1_000.01,
        },
    );
    assert!(s.is_tripped(BreakerKind::PositionMismatch, T + 1000 * H));
    assert_eq!(s.trading_state, TradingState::Halted);
}

#[test]
fn slippage_high_halves_sizes_and_rearms_after_an_hour() {
    let e = engine();
    let mut s = RiskState::default();
    let before = e
        .assess(&s, &open("A"), &cash(100_000.0), &market(T))
        .decision
        .size_usd();
    for i in 0..5 {
        e.record(
            &mut s,
            Observation::TradeSlippage {
                at_ms: T + i,
                pct: 2.0,
            },
        );
    }
    assert!(
        !s.is_tripped(BreakerKind::SlippageHigh, T + 5),
        "mean 2.0% is not above 2%"
    );
    e.record(
        &mut s,
        Observation::TradeSlippage {
            at_ms: T + 5,
            pct: 2.05,
        },
    );
    assert!(s.is_tripped(BreakerKind::SlippageHigh, T + 5));
    assert_eq!(s.trading_state, TradingState::Active);
    let a = e.assess(&s, &open("A"), &cash(100_000.0), &market(T + 10));
    assert_eq!(a.sizing.as_ref().unwrap().factors.slippage, 0.5);
    assert!((a.decision.size_usd() - before / 2.0).abs() < 1e-9, "{a:?}");
    e.tick(&mut s, T + 5 + H);
    assert!(!s.is_tripped(BreakerKind::SlippageHigh, T + 5 + H));
    // The trades before the re-arm do not count again.
    e.record(
        &mut s,
        Observation::TradeSlippage {
            at_ms: T + 6 + H,
            pct: 3.0,
        },
    );
    assert!(!s.is_tripped(BreakerKind::SlippageHigh, T + 6 + H));
}

#[test]
fn llm_timeout_turns_the_advisor_off_without_blocking_entries() {
    let e = engine();
    let mut s = RiskState::default();
    e.record(&mut s, Observation::LlmTimeout { at_ms: T });
    e.record(&mut s, Observation::LlmTimeout { at_ms: T + MIN });
    assert!(s.llm_allowed(T + MIN));
    // Window edge: the first timeout is out of the 5-minute window.
    e.record(
        &mut s,
        Observation::LlmTimeout {
            at_ms: T + 5 * MIN + 1,
        },
    );
    assert!(s.llm_allowed(T + 5 * MIN + 1));
    e.record(
        &mut s,
        Observation::LlmTimeout {
            at_ms: T + 5 * MIN + 2,
        },
    );
    assert!(!s.llm_allowed(T + 5 * MIN + 2));
    assert!(
        e.assess(&s, &open("A"), &cash(10_000.0), &market(T + 6 * MIN))
            .decision
            .allowed()
    );
    assert!(s.llm_allowed(T + 10 * MIN + 2), "5-minute cooldown");
}

fn readings(e: &RiskEngine, s: &mut RiskState, values: &[f64], start: u64, step: u64) {
    for (i, g) in values.iter().enumerate() {
        e.record(
            s,
            Observation::GasReading {
                at_ms: start + i as u64 * step,
                gwei: *g,
            },
        );
    }
}

fn gas_at(e: &RiskEngine, s: &RiskState, now_ms: u64, gwei: f64, tx: Option<f64>) -> GasAction {
    e.gas_check(
        s,
        &MarketView {
            now_ms,
            gas_gwei: gwei,
        },
        tx,
    )
    .action
}

#[test]
fn gas_rules_cap_spike_budget_percentile_and_rapid_change() {
    let e = engine();
    let s = RiskState::default();
    assert_eq!(gas_at(&e, &s, T, 100.01, None), GasAction::Halt);
    assert_eq!(gas_at(&e, &s, T, f64::NAN, None), GasAction::Halt);
    assert_eq!(gas_at(&e, &s, T, 1.0, None), GasAction::Proceed);

    // Spike: above 3 × the median of the previous readings in the window.
    let mut s = RiskState::default();
    readings(&e, &mut s, &[1.0; 5], T, MIN);
    assert_eq!(gas_at(&e, &s, T + 5 * MIN, 3.5, None), GasAction::Postpone);

    // Rapid change: a step above 50% of the mean of the last 10.
    let mut s = RiskState::default();
    readings(&e, &mut s, &[1.0; 10], T, MIN);
    assert_eq!(gas_at(&e, &s, T + 10 * MIN, 1.5, None), GasAction::Proceed);
    assert_eq!(gas_at(&e, &s, T + 10 * MIN, 1.51, None), GasAction::Delay);
    assert_eq!(gas_at(&e, &s, T + 10 * MIN, 0.49, None), GasAction::Delay);

    // p95 once 100 readings exist (1..=100 → p95 = 95), not before.
    let mut s = RiskState::default();
    let ramp: Vec<f64> = (1..=99).map(f64::from).collect();
    readings(&e, &mut s, &ramp, T, MIN);
    let now = T + 99 * MIN;
    assert_eq!(gas_at(&e, &s, now, 99.5, None), GasAction::Proceed);
    readings(&e, &mut s, &[100.0], now, MIN);
    assert_eq!(gas_at(&e, &s, now + MIN, 96.0, None), GasAction::Postpone);
    assert_eq!(gas_at(&e, &s, now + MIN, 95.0, None), GasAction::Proceed);

    // Budget: one transaction at most 20% of $50; the day at most $50; reset at UTC midnight.
    let mut s = RiskState::default();
    let day_start = T - T % (24 * H);
    assert_eq!(
        gas_at(&e, &s, day_start + H, 1.0, Some(10.0)),
        GasAction::Proceed
    );
    assert_eq!(
        gas_at(&e, &s, day_start + H, 1.0, Some(10.01)),
        GasAction::Wait
    );
    for i in 0..4 {
        e.record(
            &mut s,
            Observation::GasSpent {
                at_ms: day_start + H + i,
                usd: 10.0,
            },
        );
    }
    assert_eq!(
        gas_at(&e, &s, day_start + 2 * H, 1.0, Some(10.0)),
        GasAction::Proceed
    );
    e.record(
        &mut s,
        Observation::GasSpent {
            at_ms: day_start + 2 * H,
            usd: 5.0,
        },
    );
    assert_eq!(
        gas_at(&e, &s, day_start + 3 * H, 1.0, Some(5.01)),
        GasAction::Wait
    );
    assert_eq!(
        gas_at(&e, &s, day_start + 24 * H, 1.0, Some(10.0)),
        GasAction::Proceed
    );
}

#[test]
fn a_gas_verdict_other_than_proceed_rejects_entries_but_not_exits() {
    let e = engine();
    let s = RiskState::default();
    let m = MarketView {
        now_ms: T,
        gas_gwei: 150.0,
    };
    let a = e.assess(&s, &open("A"), &cash(10_000.0), &m);
    assert!(
        matches!(
            a.decision,
            Decision::Reject {
                rule: Rule::Gas,
                ..
            }
        ),
        "{a:?}"
    );
    let mut close = open("A");
    close.kind = ProposalKind::RemoveLiquidity {
        position: "p".into(),
    };
    let a = e.assess(&s, &close, &cash(10_000.0), &m);
    assert!(a.decision.allowed());
    assert_eq!(a.gas.action, GasAction::Halt, "advice is still given");
}
