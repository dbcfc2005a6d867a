//! The risk state through the store: trips survive a restart, a restart resumes in the
//! stricter state, and operator controls are journaled with their reasons.

use athena::risk::persist::{journal, load_or_default, save};
use athena::risk::{BreakerKind, Observation, RiskEngine, RiskEvent, RiskState, TradingState};
use athena_config::{GasConfig, MemoryConfig, RiskConfig};
use athena_storage::Store;
use std::path::Path;

const T: u64 = 1_800_000_000_000;
const MIN: u64 = 60_000;
const H: u64 = 3_600_000;

fn engine() -> RiskEngine {
    RiskEngine::new(RiskConfig::default(), GasConfig::default())
}

fn open(dir: &Path) -> Store {
    Store::open(dir, &MemoryConfig::default()).unwrap()
}

#[test]
fn a_trip_survives_a_restart_and_the_operator_reset_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    {
        let store = open(dir.path());
        let mut s = load_or_default(&store).unwrap();
        let mut j = e.record(
            &mut s,
            Observation::IntegrityFailure {
                at_ms: T,
                what: "memories/01HX".into(),
            },
        );
        for i in 0..5 {
            j.extend(e.record(
                &mut s,
                Observation::ApiFailure {
                    at_ms: T + i * MIN,
                    source: "rpc".into(),
                },
            ));
        }
        store.write(|w| save(w, &s, &j, T + 5 * MIN)).unwrap();
    } // the store is closed: a restart

    let store = open(dir.path());
    let mut s = load_or_default(&store).unwrap();
    let j = e.on_restart(&mut s, T + H);
    // api_failures' cooldown passed while down; memory_corruption is latched.
    assert!(!s.is_tripped(BreakerKind::ApiFailures, T + H));
    assert!(s.is_tripped(BreakerKind::MemoryCorruption, T + H));
    assert_eq!(s.trading_state, TradingState::Halted);
    store.write(|w| save(w, &s, &j, T + H)).unwrap();

    let j = e
        .reset(
            &mut s,
            BreakerKind::MemoryCorruption,
            "store verify passed after repair",
            T + 2 * H,
        )
        .unwrap();
    store.write(|w| save(w, &s, &j, T + 2 * H)).unwrap();
    drop(store);

    let store = open(dir.path());
    let s = load_or_default(&store).unwrap();
    assert_eq!(s.trading_state, TradingState::Active);
    assert_eq!(s.breaker(BreakerKind::MemoryCorruption).trip_count, 1);
    let events: Vec<RiskEvent> = journal(&store)
        .unwrap()
        .into_iter()
        .map(|(_, j)| j.event)
        .collect();
    let trip = events.iter().position(|e| matches!(e, RiskEvent::Trip { breaker: BreakerKind::MemoryCorruption, reason, .. } if reason.contains("memories/01HX")));
    let reset = events.iter().position(|e| matches!(e, RiskEvent::Reset { breaker: BreakerKind::MemoryCorruption, reason, was_tripped: true } if reason == "store verify passed after repair"));
    assert!(
        trip.is_some() && reset.is_some() && trip < reset,
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        RiskEvent::Trip {
            breaker: BreakerKind::ApiFailures,
            ..
        }
    )));
    assert!(events.iter().any(|e| matches!(
        e,
        RiskEvent::Rearm {
            breaker: BreakerKind::ApiFailures
        }
    )));
    // The cloud gets the summary through the outbox, in the same transactions.
    assert!(store.outbox_len().unwrap() >= 3);
}

#[test]
fn a_restart_resumes_in_the_stricter_of_the_persisted_and_the_computed_state() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine();
    {
        let store = open(dir.path());
        let mut s = RiskState::default();
        let mut j = e.record(
            &mut s,
            Observation::Equity {
                at_ms: T,
                usd: 10_000.0,
            },
        );
        j.extend(e.record(
            &mut s,
            Observation::Equity {
                at_ms: T + MIN,
                usd: 9_000.0,
            },
        ));
        assert_eq!(s.trading_state, TradingState::ReduceOnly);
        store.write(|w| save(w, &s, &j, T + MIN)).unwrap();
    }
    // Both equity breakers' cooldowns (2 h, 4 h) pass while the process is down.
    let store = open(dir.path());
    let mut s = load_or_default(&store).unwrap();
    let j = e.on_restart(&mut s, T + 5 * H);
    assert_eq!(s.breaker_state(T + 5 * H), TradingState::Active);
    assert_eq!(
        s.trading_state,
        TradingState::ReduceOnly,
        "the persisted state was stricter"
    );
    assert!(j.iter().any(|x| x.event
        == RiskEvent::RestartHold {
            persisted: TradingState::ReduceOnly,
            computed: TradingState::Active
        }));
    // Ticks do not release it; an operator resume does.
    e.tick(&mut s, T + 6 * H);
    assert_eq!(s.computed_state(T + 6 * H), TradingState::ReduceOnly);
    e.resume(&mut s, "checked the books after the crash", T + 6 * H)
        .unwrap();
    assert_eq!(s.trading_state, TradingState::Active);

    // And a computed state stricter than the persisted one wins as well.
    let mut s = RiskState::default();
    s.breakers[BreakerKind::PositionMismatch as usize].tripped = Some(athena::risk::Trip {
        at_ms: T,
        reason: "t".into(),
        until_ms: None,
    });
    let j = e.on_restart(&mut s, T + H);
    assert_eq!(s.trading_state, TradingState::Halted);
    assert!(j.iter().any(|x| matches!(
        x.event,
        RiskEvent::StateChange {
            to: TradingState::Halted,
            ..
        }
    )));
}

#[test]
fn stop_halts_entries_until_resume_and_overrides_expire_by_themselves() {
    let e = engine();
    let mut s = RiskState::default();
    assert!(e.stop(&mut s, "", T).is_err());
    e.stop(&mut s, "incident", T).unwrap();
    assert_eq!(s.trading_state, TradingState::Halted);
    e.tick(&mut s, T + 100 * H);
    assert_eq!(
        s.trading_state,
        TradingState::Halted,
        "a stop lasts until a resume"
    );
    e.resume(&mut s, "resolved", T + 100 * H).unwrap();
    assert_eq!(s.trading_state, TradingState::Active);

    use athena::risk::Limit;
    assert!(
        e.override_limit(&mut s, Limit::MaxPositionFraction, 1.5, H, "r", T)
            .is_err()
    );
    assert!(
        e.override_limit(&mut s, Limit::MaxPositionFraction, 0.3, 25 * H, "r", T)
            .is_err()
    );
    e.override_limit(
        &mut s,
        Limit::MaxPositionFraction,
        0.3,
        H,
        "one large position",
        T,
    )
    .unwrap();
    assert_eq!(e.effective(&s, T + H - 1).0.max_position_fraction, 0.3);
    assert_eq!(e.effective(&s, T + H).0.max_position_fraction, 0.2);
    let j = e.tick(&mut s, T + H);
    assert!(j.iter().any(|x| x.event
        == RiskEvent::OverrideExpired {
            limit: Limit::MaxPositionFraction
        }));
    assert!(s.overrides.is_empty());

    let position = |id: &str| athena::risk::Position {
        id: id.into(),
        pool: format!("pool-{id}"),
        tokens: ["WETH".into(), "USDC".into()],
        stable: false,
        value_usd: 1_000.0,
        pool_tvl_usd: 1e6,
        apr_variance: 0.2,
    };
    let p = athena::risk::Portfolio {
        positions: vec![position("a"), position("b")],
        cash_usd: 5.0,
    };
    assert!(
        e.exit_all(&p, false, "panic", T).is_err(),
        "exit-all needs a confirmation"
    );
    e.stop(&mut s, "exiting everything", T).unwrap();
    let (closes, j) = e.exit_all(&p, true, "depeg", T).unwrap();
    assert_eq!(closes.len(), 2);
    // Every close goes through, halted or not, whatever gas says.
    let m = athena::risk::MarketView {
        now_ms: T,
        gas_gwei: 500.0,
    };
    for c in &closes {
        assert!(e.assess(&s, c, &p, &m).decision.allowed());
    }
    assert!(matches!(&j[0].event, RiskEvent::ExitAll { .. }));
}
