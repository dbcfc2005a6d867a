//! A 30-simulated-day backtest through the library, checked against invariants read back
//! from the journal and the ledger: no entry during observation, every fill backed by an
//! approved decision of at least its size, never more than the position limit, the new-pool
//! cap, a gas_manipulation trip on every seeded manipulation episode, memory quotas held.

use athena::agent::state::LedgerEntry;
use athena::agent::strategy::Intent;
use athena::backtest::{self, BACKTEST_START_MS};
use athena::journal::JournalRecord;
use athena::market::sim::{IncidentKind, Sim};
use athena::risk::{BreakerKind, RiskEvent};
use athena_storage::{SeqTable, Store};

const DAY_MS: u64 = 86_400_000;

#[test]
fn thirty_day_backtest_keeps_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = 7;
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let report = backtest::run(&config, &store, 30, |_, _| {}).unwrap();
    let tick_ms = config.agent.tick_interval.as_millis() as u64;
    assert_eq!(report.ticks_run, 30 * DAY_MS / tick_ms);
    assert!(
        report.trades > 0 && report.end_equity_usd.is_finite(),
        "{report:?}"
    );

    let decisions = backtest::decisions(&store).unwrap();
    let ledger: Vec<LedgerEntry> = store
        .read(|r| r.seq_after::<LedgerEntry>(SeqTable::Ledger, 0, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let observation_end = BACKTEST_START_MS + config.agent.observation_period.as_millis() as u64;

    // No decision, hence no entry, during observation.
    assert!(!decisions.is_empty());
    for d in &decisions {
        assert!(
            d.at_ms >= observation_end,
            "a decision during observation: {d:?}"
        );
    }
    // Every fill is backed by an allowed decision of the same tick, and never larger.
    for e in &ledger {
        let backing = decisions.iter().find(|d| {
            d.tick == e.tick
                && d.decision.allowed()
                && d.executed_usd.is_some()
                && match &d.intent {
                    Intent::Open { pool } => e.action == "open" && &e.pool == pool,
                    Intent::Rebalance { from, to } => {
                        (e.action == "close" && &e.position == from)
                            || (e.action == "open" && &e.pool == to)
                    }
                    Intent::Compound { position } => {
                        e.action == "compound" && &e.position == position
                    }
                    Intent::Close { position, .. } => {
                        e.action == "close" && &e.position == position
                    }
                    Intent::Sweep { pool, .. } => {
                        e.action == "swap" && &e.pool == pool && e.position.starts_with("sweep-")
                    }
                }
        });
        let d = backing.unwrap_or_else(|| panic!("a fill without an approved decision: {e:?}"));
        if e.action == "open" {
            assert!(e.usd <= d.decision.size_usd() + 1e-9, "{e:?} {d:?}");
        }
    }
    // Never more than max_positions; the new pool (2 days old at the start) capped at $500
    // while younger than 7 days.
    let mut open = 0i64;
    for e in &ledger {
        match e.action.as_str() {
            "open" => open += 1,
            "close" => open -= 1,
            _ => {}
        }
        assert!(
            open <= i64::from(config.risk.max_positions),
            "{open} positions at {e:?}"
        );
        if e.action == "open" && e.pool == "AERO/WETH" && e.at_ms < BACKTEST_START_MS + 5 * DAY_MS {
            assert!(e.usd <= config.risk.new_pool_cap_usd + 1e-9, "{e:?}");
        }
    }
    // Every manipulation episode of the run tripped gas_manipulation (or found it tripped).
    let trips: Vec<(u64, Option<u64>)> = athena::risk::persist::journal(&store)
        .unwrap()
        .into_iter()
        .filter_map(|(_, j)| match j.event {
            RiskEvent::Trip {
                breaker: BreakerKind::GasManipulation,
                until_ms,
                ..
            } => Some((j.at_ms, until_ms)),
            _ => None,
        })
        .collect();
    let sim = Sim::new(7, BACKTEST_START_MS, tick_ms);
    let episodes: Vec<_> = sim
        .incidents()
        .iter()
        .filter(|i| i.kind == IncidentKind::GasManipulation && i.start < report.ticks_run)
        .collect();
    assert!(
        episodes.len() >= 7,
        "{} episodes in 30 days",
        episodes.len()
    );
    for ep in episodes {
        let (from, to) = (
            BACKTEST_START_MS + ep.start * tick_ms,
            BACKTEST_START_MS + (ep.start + ep.ticks) * tick_ms,
        );
        let caught = trips.iter().any(|(at, until)| {
            (*at >= from && *at < to) || (*at < from && until.is_some_and(|u| u > from))
        });
        assert!(
            caught,
            "no gas_manipulation trip for the episode at tick {}",
            ep.start
        );
    }
    // A held pool hit by a TVL drain, or a held stable pool whose token depegs, is closed
    // within the incident (plus a tick) by the rule that names it.
    let mut checked = 0;
    for inc in sim
        .incidents()
        .iter()
        .filter(|i| i.start < report.ticks_run)
    {
        let from = BACKTEST_START_MS + inc.start * tick_ms;
        let to = BACKTEST_START_MS + (inc.start + inc.ticks + 1) * tick_ms;
        let rule = match inc.kind {
            IncidentKind::TvlDrain => "TVL drain",
            IncidentKind::Depeg => "depeg",
            _ => continue,
        };
        let hit = |pool: &str| match inc.kind {
            IncidentKind::TvlDrain => pool == inc.target,
            _ => pool.starts_with("USDC/") && pool.ends_with(inc.target.as_str()),
        };
        // Positions held when the incident starts, from the ledger.
        let mut held: Vec<(&str, &str)> = Vec::new();
        for e in ledger.iter().filter(|e| e.at_ms < from) {
            match e.action.as_str() {
                "open" => held.push((&e.position, &e.pool)),
                "close" => held.retain(|(p, _)| *p != e.position),
                _ => {}
            }
        }
        for (position, pool) in held.iter().filter(|(_, pool)| hit(pool)) {
            checked += 1;
            let closed = decisions.iter().any(|d| {
                d.at_ms >= from
                    && d.at_ms < to
                    && matches!(&d.intent, Intent::Close { position: p, reason, .. } if p == position && reason.contains(rule))
            });
            assert!(
                closed,
                "{position} in {pool} not closed on the {:?} at tick {}",
                inc.kind, inc.start
            );
        }
    }
    eprintln!("incident closes checked: {checked}");
    // Memory quotas, per type and per category, after the last pruning pass.
    let stats = store.memory_stats().unwrap();
    for (name, quota) in &config.memory.quotas {
        let by_type = stats.by_type.get(name).copied();
        let by_category = stats.by_category.get(name).map(|t| t.hot + t.warm + t.cold);
        if let Some(n) = by_type.or(by_category) {
            assert!(n <= *quota, "{name}: {n} memories, quota {quota}");
        }
    }
    // The journal holds both kinds of record, in one sequence.
    let kinds = store
        .read(|r| r.seq_after::<JournalRecord>(SeqTable::Journal, 0, usize::MAX))
        .unwrap();
    assert!(
        kinds
            .iter()
            .any(|(_, k)| matches!(k, JournalRecord::Risk(_)))
    );
    assert!(
        kinds
            .iter()
            .any(|(_, k)| matches!(k, JournalRecord::Decision(_)))
    );
}

/// The backtest drives the real sync worker against counting sinks: the outbox drains to
/// empty, observations travel as one pack per agent hour, and the documents written are at
/// most a tenth of the naive path's one write per change.
#[test]
fn a_backtest_drives_the_sync_worker_and_sends_a_tenth_of_the_naive_document_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = 7;
    let store = std::sync::Arc::new(Store::open(dir.path(), &config.memory).unwrap());
    let options = backtest::Options {
        durable_every: std::num::NonZeroU64::new(288).unwrap(),
        count_sync: true,
    };
    let report = backtest::run_with(&config, &store, 5, options, |_, _| {}).unwrap();
    let sent = report.sync.expect("asked for");
    assert_eq!(store.outbox_len().unwrap(), 0, "the final flush drains");
    assert!(sent.naive.documents > 0 && sent.documents.writes > 0);
    assert!(
        sent.documents.writes * 10 <= sent.naive.documents,
        "{sent:?}"
    );
    // One observation pack per agent hour (the first tick's hour included), each put once.
    assert!(sent.objects.puts >= 5 * 24, "{sent:?}");
    assert!(sent.sent_usd < sent.naive_usd, "{sent:?}");
}
