//! A live market source that sends garbage for one pool (SPEC.md §1 "Bad data"): the pool is
//! left out of that tick with a journaled reason; nothing is marked, sized or closed from it,
//! and a negative TVL is not a "drain".

use athena::agent::Agent;
use athena::agent::strategy::Intent;
use athena::backtest::{self, BACKTEST_START_MS};
use athena::journal::JournalRecord;
use athena::market::sim::Sim;
use athena::market::{Figure, MarketError, MarketSource, MarketTick, PoolSnapshot};
use athena_storage::{SeqTable, Store};
use std::sync::{Arc, Mutex};

type Spoil = fn(&mut PoolSnapshot);

/// The simulator, with the snapshot of a pool spoiled at chosen ticks.
struct Spoiling {
    inner: Sim,
    plan: Arc<Mutex<Vec<(u64, String, Spoil)>>>,
}

impl MarketSource for Spoiling {
    fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError> {
        let mut t = self.inner.tick(index)?;
        for (at, pool, spoil) in self.plan.lock().unwrap().iter() {
            if *at == index {
                t.pools
                    .iter_mut()
                    .filter(|p| &p.pool == pool)
                    .for_each(spoil);
            }
        }
        Ok(t)
    }
}

#[test]
fn a_garbage_snapshot_of_a_held_pool_is_rejected_for_its_tick_and_never_traded_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = 7;
    config.agent.observation_period = std::time::Duration::from_secs(3600);
    let tick_ms = config.agent.tick_interval.as_millis() as u64;
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let plan: Arc<Mutex<Vec<(u64, String, Spoil)>>> = Arc::default();
    let shared = plan.clone();
    let mut agent = Agent::open(&store, &config, BACKTEST_START_MS, |start, seed| {
        Ok(Box::new(Spoiling {
            inner: Sim::new(seed, start, tick_ms),
            plan: shared,
        }))
    })
    .unwrap();
    while agent.state.positions.is_empty() {
        agent.tick(&store).unwrap();
        assert!(agent.state.next_tick < 100, "no position opened");
    }
    let held = agent.state.positions[0].clone();
    let first_bad = agent.state.next_tick;
    plan.lock().unwrap().extend([
        (
            first_bad,
            held.pool.clone(),
            (|p| p.tvl_usd = -1e6) as Spoil,
        ),
        (first_bad + 1, held.pool.clone(), |p| {
            p.prices_usd[1] = f64::NAN
        }),
        (first_bad + 2, held.pool.clone(), |p| p.reserves[0] = -3.0),
    ]);
    for _ in 0..3 {
        agent.tick(&store).unwrap();
        let now = agent.state.positions.iter().find(|p| p.id == held.id);
        let now = now.expect("the held position is not closed on garbage");
        assert_eq!(now.value_usd, held.value_usd, "no mark from garbage");
        assert_eq!(now.pool_tvl_usd, held.pool_tvl_usd, "no mark from garbage");
        assert!(agent.state.equity_usd().is_finite());
    }
    let profile = &agent.state.profiles[&held.pool];
    assert!(
        profile.recent_tvl.iter().all(|(_, tvl)| *tvl > 0.0),
        "no drain signal from garbage: {:?}",
        profile.recent_tvl
    );
    // Good data again: no "drain" measured against the garbage.
    agent.tick(&store).unwrap();
    assert!(agent.state.positions.iter().any(|p| p.id == held.id));

    // The journal says which pool was left out of which tick, and why; no decision of those
    // ticks touched the pool.
    let journal = store
        .read(|r| r.seq_after::<JournalRecord>(SeqTable::Journal, 0, usize::MAX))
        .unwrap();
    let rejected: Vec<(u64, Figure)> = journal
        .iter()
        .filter_map(|(_, j)| match j {
            JournalRecord::Rejected(r) if r.snapshot.pool == held.pool => {
                Some((r.tick, r.snapshot.problem.figure))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (first_bad, Figure::Tvl),
            (first_bad + 1, Figure::Price1),
            (first_bad + 2, Figure::Reserve0),
        ]
    );
    for d in backtest::decisions(&store).unwrap() {
        if d.tick >= first_bad && d.tick < first_bad + 3 {
            let touches = match &d.intent {
                Intent::Open { pool } => pool == &held.pool,
                Intent::Rebalance { from, to } => from == &held.id || to == &held.pool,
                Intent::Compound { position } | Intent::Close { position, .. } => {
                    position == &held.id
                }
                Intent::Sweep { pool, .. } => pool == &held.pool,
            };
            assert!(!touches, "a decision on garbage: {d:?}");
        }
    }
}

#[test]
fn a_garbage_gas_reading_fails_the_tick_which_a_later_try_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    let tick_ms = config.agent.tick_interval.as_millis() as u64;
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let bad = Arc::new(Mutex::new(true));
    let flag = bad.clone();
    struct BadGas {
        inner: Sim,
        bad: Arc<Mutex<bool>>,
    }
    impl MarketSource for BadGas {
        fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError> {
            let mut t = self.inner.tick(index)?;
            if index == 3 && *self.bad.lock().unwrap() {
                t.gas_gwei = f64::INFINITY;
            }
            Ok(t)
        }
    }
    let mut agent = Agent::open(&store, &config, BACKTEST_START_MS, |start, seed| {
        Ok(Box::new(BadGas {
            inner: Sim::new(seed, start, tick_ms),
            bad: flag,
        }))
    })
    .unwrap();
    for _ in 0..3 {
        agent.tick(&store).unwrap();
    }
    let e = agent.tick(&store).unwrap_err();
    assert!(
        matches!(&e, athena::agent::AgentError::Market(m) if !m.is_final()),
        "{e:?}"
    );
    assert_eq!(
        format!("{:#}", anyhow::Error::new(e)),
        "market tick 3: gas_gwei is inf, not a finite number, not negative"
    );
    assert_eq!(agent.state.next_tick, 3, "nothing of it committed");
    *bad.lock().unwrap() = false;
    assert_eq!(agent.tick(&store).unwrap().tick, 3);
}
