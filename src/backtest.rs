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
use athena_storage::CloudChanges;
use athena_storage::Store;
use athena_sync::status::{FIRESTORE_WRITE_USD, GCS_WRITE_USD};
use athena_sync::{CountingSink, Sent, SinkRole};
use serde::Serialize;
use std::collections::BTreeMap;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
        SourceKind::Sim => Ok(Box::new(crate::market::sim::Sim::with_pools(
            seed,
            start_ms,
            tick_ms,
            config.market.sim_pools as usize,
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
    /// Ticks run in this process.
    pub ticks_run: u64,
    /// Ticks an earlier process had committed in this data directory (a continued run).
    pub ticks_before: u64,
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
    /// What the real sync worker sent to counting sinks, flushing every `sync.flush_interval`
    /// of agent time, beside the naive path (`None` unless asked for: [`Options::count_sync`]).
    pub sync: Option<SyncSent>,
    /// The LLM advisor's layers and model, when it was on.
    pub llm: Option<crate::llm::LlmStats>,
    /// Mean time a tick spent in the advisor's step, ms (0 when off).
    pub advise_ms_per_tick: f64,
    /// The longest a tick spent in it, ms.
    pub advise_ms_max: f64,
}

/// How a backtest runs, beyond its config.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// A durable commit every this many ticks and at the end (1: every tick); the ticks between
    /// commit without an fsync ([`Store::set_deferred_durability`]). A backtest killed between
    /// two durable commits continues from the earlier one and redoes the ticks after it, which
    /// the same seed makes identical.
    pub durable_every: NonZeroU64,
    /// Drive the real sync worker against counting sinks ([`athena_sync::CountingSink`]),
    /// flushing every `sync.flush_interval` of agent time and once at the end (as a shutdown
    /// does), and report what it sent.
    pub count_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            durable_every: NonZeroU64::MIN,
            count_sync: false,
        }
    }
}

/// Runs (or continues) a backtest of `days` days in `store`, every tick a durable commit;
/// `progress(done, total)` after each tick.
pub fn run(
    config: &Config,
    store: &Store,
    days: u64,
    mut progress: impl FnMut(&TickReport, u64),
) -> Result<Report, AgentError> {
    run_ticks(config, store, days, 1, None, &mut progress)
}

/// [`run`] as `options` say.
pub fn run_with(
    config: &Config,
    store: &Arc<Store>,
    days: u64,
    options: Options,
    mut progress: impl FnMut(&TickReport, u64),
) -> Result<Report, AgentError> {
    let mut sync = options
        .count_sync
        .then(|| SyncDrive::new(store, config))
        .transpose()?;
    let deferred = options.durable_every.get() > 1;
    store.set_deferred_durability(deferred);
    let result = run_ticks(
        config,
        store,
        days,
        options.durable_every.get(),
        sync.as_mut(),
        &mut progress,
    );
    store.set_deferred_durability(false);
    if deferred {
        store.persist()?;
    }
    let mut report = result?;
    if let Some(sync) = sync {
        report.sync = Some(sync.finish()?);
    }
    Ok(report)
}

/// What the sync worker sent in a backtest, beside the naive path.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSent {
    /// The naive path: one write per change (document writes, object operations).
    pub naive: CloudChanges,
    /// Sent to the document sink.
    pub documents: Sent,
    /// Sent to the object sink.
    pub objects: Sent,
    /// Flushes (worker passes started on the flush interval, plus the final one).
    pub flushes: u64,
    /// The naive path's bill at the list prices of the sync status's estimate
    /// ([`FIRESTORE_WRITE_USD`] a document write, [`GCS_WRITE_USD`] an object put).
    pub naive_usd: f64,
    /// What was sent, at the same prices (object deletes are free).
    pub sent_usd: f64,
}

impl SyncSent {
    /// Document writes saved against the naive path, percent.
    pub fn fewer_document_writes_pct(&self) -> f64 {
        100.0 * (1.0 - self.documents.writes as f64 / self.naive.documents.max(1) as f64)
    }
}

/// The real worker draining the backtest's outbox into counting sinks on agent time.
struct SyncDrive {
    runtime: tokio::runtime::Runtime,
    worker: athena_sync::Worker,
    documents: Arc<CountingSink>,
    objects: Arc<CountingSink>,
    clock: Arc<AtomicU64>,
    flush_ms: u64,
    next_flush_ms: u64,
    flushes: u64,
    store: Arc<Store>,
    changes_before: CloudChanges,
}

impl SyncDrive {
    fn new(store: &Arc<Store>, config: &Config) -> Result<Self, AgentError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(AgentError::Runtime)?;
        let documents = Arc::new(CountingSink::new(SinkRole::Documents));
        let objects = Arc::new(CountingSink::new(SinkRole::Objects));
        let clock = Arc::new(AtomicU64::new(BACKTEST_START_MS));
        let now: athena_sync::worker::Now = {
            let clock = clock.clone();
            Arc::new(move || clock.load(Ordering::Relaxed))
        };
        let worker = athena_sync::Worker::new(
            store.clone(),
            documents.clone(),
            objects.clone(),
            &config.sync,
            config.agent.seed,
            now,
        );
        Ok(Self {
            runtime,
            worker,
            documents,
            objects,
            clock,
            flush_ms: config.sync.flush_interval.as_millis().max(1) as u64,
            next_flush_ms: 0,
            flushes: 0,
            store: store.clone(),
            changes_before: store.cloud_changes(),
        })
    }

    /// After a tick at agent time `at_ms`: a worker pass when a flush is due.
    fn after_tick(&mut self, at_ms: u64) -> Result<(), AgentError> {
        self.clock.store(at_ms, Ordering::Relaxed);
        if at_ms >= self.next_flush_ms {
            self.flush()?;
            self.next_flush_ms = at_ms - at_ms % self.flush_ms + self.flush_ms;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AgentError> {
        self.flushes += 1;
        self.runtime.block_on(self.worker.drain())?;
        Ok(())
    }

    /// The final book snapshot and flush (as a shutdown does), then what was sent.
    fn finish(mut self) -> Result<SyncSent, AgentError> {
        crate::agent::snapshot_book(&self.store, self.clock.load(Ordering::Relaxed))?;
        self.flush()?;
        let now = self.store.cloud_changes();
        let naive = CloudChanges {
            documents: now.documents - self.changes_before.documents,
            objects: now.objects - self.changes_before.objects,
        };
        let (documents, objects) = (self.documents.sent(), self.objects.sent());
        Ok(SyncSent {
            naive,
            documents,
            objects,
            flushes: self.flushes,
            naive_usd: naive.documents as f64 * FIRESTORE_WRITE_USD
                + naive.objects as f64 * GCS_WRITE_USD,
            sent_usd: documents.writes as f64 * FIRESTORE_WRITE_USD
                + objects.puts as f64 * GCS_WRITE_USD,
        })
    }
}

fn run_ticks(
    config: &Config,
    store: &Store,
    days: u64,
    durable_every: u64,
    mut sync: Option<&mut SyncDrive>,
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
    if agent.state.next_tick > total {
        return Err(AgentError::LongerRun {
            held_ticks: agent.state.next_tick,
            asked_days: days,
            asked_ticks: total,
        });
    }
    let ticks_before = agent.state.next_tick;
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
        if let Some(sync) = sync.as_deref_mut() {
            sync.after_tick(report.at_ms)?;
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
        (days, ticks_before, ran, advise_micros, advise_max_micros),
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
    (days, ticks_before, ran, advise_micros, advise_max_micros): (u64, u64, u64, u64, u64),
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
    let start = config.executor.paper_starting_usd;
    let end = s.equity_usd();
    Ok(Report {
        days,
        seed: s.seed,
        ticks_run: ran,
        ticks_before,
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
        sync: None,
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
