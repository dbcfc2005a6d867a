//! `athena backtest`: the agent on a simulated clock, as fast as the machine allows, then a
//! closing report. Every tick commits; a commit reaches the disk every tick ([`run`]) or every
//! N ticks ([`run_with`]). A backtest's data directory holds its run: started again (after a
//! kill, say) it continues from the last durable tick and ends exactly as an uninterrupted run
//! would.

use crate::agent::{Agent, AgentError, TickReport};
use crate::journal::JournalRecord;
use crate::market::{MarketError, MarketSource};
use crate::risk::{RiskEvent, persist};
use athena_config::{Config, MarketSource as SourceKind};
use athena_storage::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use std::num::NonZeroU64;

/// Agent time of a backtest's first tick: 2026-01-01T00:00:00Z (fixed, so runs compare).
pub const BACKTEST_START_MS: u64 = 1_767_225_600_000;

/// The market source `config` asks for, starting at `start_ms`.
pub fn market(
    config: &Config,
    start_ms: u64,
    seed: u64,
) -> Result<Box<dyn MarketSource>, MarketError> {
    let tick_ms = config.agent.tick_interval.as_millis() as u64;
    match config.market.source {
        SourceKind::Sim => Ok(Box::new(crate::market::sim::Sim::new(
            seed, start_ms, tick_ms,
        ))),
        SourceKind::Replay => Ok(Box::new(crate::market::replay::Replay::open(
            &config.market.replay_path,
        )?)),
        SourceKind::Chain => Ok(Box::new(crate::chain::ChainSource::new(
            &config.chain,
            start_ms,
            tick_ms,
        )?)),
    }
}

/// The closing report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Days simulated.
    pub days: u64,
    /// Seed.
    pub seed: u64,
    /// Ticks run in this process (the rest were committed by an earlier one).
    pub ticks_run: u64,
    /// Wall time of this process's ticks, seconds.
    pub wall_secs: f64,
    /// Starting and final equity, USD.
    pub start_equity_usd: f64,
    /// Final equity.
    pub end_equity_usd: f64,
    /// PnL, USD.
    pub pnl_usd: f64,
    /// Realised PnL of closed positions, USD.
    pub realised_pnl_usd: f64,
    /// Max drawdown, percent.
    pub max_drawdown_pct: f64,
    /// Trades (fills).
    pub trades: u64,
    /// Swap fees paid, USD.
    pub fees_usd: f64,
    /// Gas paid, USD.
    pub gas_usd: f64,
    /// Open positions at the end.
    pub open_positions: usize,
    /// Breaker trips with their reasons.
    pub breaker_trips: BTreeMap<String, Vec<String>>,
    /// Risk rejections by rule.
    pub rejections: BTreeMap<String, u64>,
    /// Decisions journaled.
    pub decisions: u64,
    /// Memories by tier.
    pub memories_by_tier: BTreeMap<String, u64>,
    /// Store file size, bytes.
    pub store_bytes: u64,
    /// Outbox rows written: what the naive path would send as remote writes.
    pub naive_remote_writes: u64,
    /// What the sync layer's coalescing makes of them, flushing every `sync.flush_interval`.
    pub coalesced_remote_writes: u64,
    /// The LLM advisor's layers and model, when it was on.
    pub llm: Option<crate::llm::LlmStats>,
    /// Mean time a tick spent in the advisor's step, ms (0 when off).
    pub advise_ms_per_tick: f64,
    /// The longest a tick spent in it, ms.
    pub advise_ms_max: f64,
}

/// Runs (or continues) a backtest of `days` days in `store`, every tick a durable commit;
/// `progress(done, total)` after each tick.
pub fn run(
    config: &Config,
    store: &Store,
    days: u64,
    progress: impl FnMut(&TickReport, u64),
) -> Result<Report, AgentError> {
    run_with(config, store, days, NonZeroU64::MIN, progress)
}

/// [`run`] with a durable commit every `durable_every` ticks and at the end; the ticks between
/// commit without an fsync ([`Store::set_deferred_durability`]). A backtest killed between
/// two durable commits continues from the earlier one and redoes the ticks after it, which
/// the same seed makes identical.
pub fn run_with(
    config: &Config,
    store: &Store,
    days: u64,
    durable_every: NonZeroU64,
    mut progress: impl FnMut(&TickReport, u64),
) -> Result<Report, AgentError> {
    let deferred = durable_every.get() > 1;
    store.set_deferred_durability(deferred);
    let result = run_ticks(config, store, days, durable_every.get(), &mut progress);
    store.set_deferred_durability(false);
    if deferred {
        store.persist()?;
    }
    result
}

fn run_ticks(
    config: &Config,
    store: &Store,
    days: u64,
    durable_every: u64,
    progress: &mut impl FnMut(&TickReport, u64),
) -> Result<Report, AgentError> {
    let tick_ms = config.agent.tick_interval.as_millis().max(1) as u64;
    let total = days * 86_400_000 / tick_ms;
    let mut agent = Agent::open(store, config, BACKTEST_START_MS, |start, seed| {
        market(config, start, seed)
    })?;
    if agent.state.seed != config.agent.seed {
        return Err(AgentError::OtherRun {
            held: agent.state.seed,
            asked: config.agent.seed,
        });
    }
    let prune_ms = config.memory.prune_interval.as_millis().max(1) as u64;
    let started = std::time::Instant::now();
    let mut ran = 0;
    let mut advise_micros = 0;
    let mut advise_max_micros = 0;
    // Pruning is its own transaction after a tick's: a process killed between the two prunes
    // at restart, at the same agent time, so the run ends as an uninterrupted one would.
    let last = agent.state.last_tick_ms;
    if agent.state.next_tick > 0
        && last % prune_ms < tick_ms
        && store.read(|r| r.meta_u64(PRUNED_KEY))? != Some(last)
    {
        prune(store, last)?;
    }
    while agent.state.next_tick < total {
        let report = agent.tick(store)?;
        if report.at_ms % prune_ms < tick_ms {
            prune(store, report.at_ms)?;
        }
        ran += 1;
        if ran % durable_every == 0 && durable_every > 1 {
            store.persist()?;
        }
        advise_micros += report.advise_micros;
        advise_max_micros = advise_max_micros.max(report.advise_micros);
        progress(&report, total);
    }
    let wall = started.elapsed().as_secs_f64();
    report(
        config,
        store,
        &agent,
        (days, ran, advise_micros, advise_max_micros),
        wall,
    )
}

/// Meta key: agent time of the backtest's last pruning pass.
const PRUNED_KEY: &str = "backtest/pruned_ms";

fn prune(store: &Store, at_ms: u64) -> Result<(), AgentError> {
    store.prune(at_ms)?;
    store.write(|w| w.set_meta_u64(PRUNED_KEY, at_ms))?;
    Ok(())
}

fn report(
    config: &Config,
    store: &Store,
    agent: &Agent,
    (days, ran, advise_micros, advise_max_micros): (u64, u64, u64, u64),
    wall: f64,
) -> Result<Report, AgentError> {
    let s = &agent.state;
    let mut trips: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (_, j) in persist::journal(store)? {
        if let RiskEvent::Trip {
            breaker, reason, ..
        } = j.event
        {
            trips
                .entry(breaker.as_str().to_string())
                .or_default()
                .push(reason);
        }
    }
    let stats = store.memory_stats()?;
    let rows = store.outbox_peek(0, usize::MAX)?;
    let flush = config.sync.flush_interval.as_millis().max(1) as u64;
    let mut windows: BTreeMap<u64, Vec<(u64, athena_storage::OutboxRow)>> = BTreeMap::new();
    let naive = rows.len() as u64;
    for (seq, row) in rows {
        windows
            .entry(row.created_ms / flush)
            .or_default()
            .push((seq, row));
    }
    let coalesced = windows
        .into_values()
        .map(|w| athena_sync::coalesce(w).len() as u64)
        .sum();
    let start = config.executor.paper_starting_usd;
    let end = s.equity_usd();
    Ok(Report {
        days,
        seed: s.seed,
        ticks_run: ran,
        wall_secs: wall,
        start_equity_usd: start,
        end_equity_usd: end,
        pnl_usd: end - start,
        realised_pnl_usd: s.totals.realised_pnl_usd,
        max_drawdown_pct: s.totals.max_drawdown_pct,
        trades: s.totals.trades,
        fees_usd: s.totals.fees_paid_usd,
        gas_usd: s.totals.gas_paid_usd,
        open_positions: s.positions.len(),
        breaker_trips: trips,
        rejections: s.totals.rejections.clone(),
        decisions: s.totals.decisions,
        memories_by_tier: BTreeMap::from([
            ("hot".to_string(), stats.total.hot),
            ("warm".to_string(), stats.total.warm),
            ("cold".to_string(), stats.total.cold),
        ]),
        store_bytes: store.file_size(),
        naive_remote_writes: naive,
        coalesced_remote_writes: coalesced,
        llm: agent.llm_stats(),
        advise_ms_per_tick: advise_micros as f64 / 1e3 / ran.max(1) as f64,
        advise_ms_max: advise_max_micros as f64 / 1e3,
    })
}

/// Every decision record of the journal, oldest first.
pub fn decisions(
    store: &Store,
) -> Result<Vec<crate::journal::DecisionRecord>, athena_storage::StoreError> {
    Ok(crate::journal::read_all(store)?
        .into_iter()
        .filter_map(|(_, rec)| match rec {
            JournalRecord::Decision(d) => Some(d),
            JournalRecord::Risk(_) | JournalRecord::Rejected(_) | JournalRecord::Operator(_) => {
                None
            }
        })
        .collect())
}
