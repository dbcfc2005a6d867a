//! The agent loop: each tick observes the market, remembers, decides, passes every proposal
//! through the risk engine, executes on the paper book and learns, then commits everything the
//! tick changed (book, positions, ledger, journal, memories, risk state, outbox rows) in one
//! durable store transaction. A restarted agent reads its state back and continues from the
//! next tick; the market source fast-forwards to it, so a run stopped and continued ends the
//! same as one that never stopped.

pub mod advise;
pub mod learn;
pub mod paper;
pub mod state;
pub mod strategy;

use crate::journal::{DecisionRecord, JournalRecord, RejectedRecord};
use crate::llm::{Advisor, Failure, LlmError, LlmStats, Verdict};
use crate::market::sim::{GAS_UNITS_CLAIM, GAS_UNITS_ENTRY, GAS_UNITS_EXIT, GAS_UNITS_SWAP};
use crate::market::{MarketError, MarketSource, MarketTick, PoolSnapshot};
use crate::risk::{
    self, Decision, MarketView, Observation, PoolInfo, Proposal, ProposalKind, RiskEngine,
    RiskJournal, RiskState, TradingState, controls::Refused, gas::GasDecision,
};
use advise::Advised;
use athena_config::Config;
use athena_storage::{KeyedTable, Memory, OutboxOp, SeqTable, Store, StoreError};
use state::{AgentState, LedgerEntry, STATE_KEY};
use strategy::{Intent, Proposed};

/// The book as the cloud sees it.
#[derive(Debug, serde::Serialize)]
pub struct Book<'a> {
    /// Tick.
    pub tick: u64,
    /// Agent time.
    pub at_ms: u64,
    /// Equity, USD.
    pub equity_usd: f64,
    /// Cash, USD.
    pub cash_usd: f64,
    /// Positions.
    pub positions: &'a [state::PaperPosition],
    /// Seed of the run.
    pub seed: u64,
    /// Agent time of tick 0.
    pub started_ms: u64,
    /// Start of the observation period.
    pub observation_start_ms: u64,
    /// Next position number.
    pub next_position: u64,
    /// Run totals.
    pub totals: &'a state::Totals,
}

impl<'a> Book<'a> {
    /// The book of `state`.
    pub fn of(state: &'a AgentState) -> Self {
        Book {
            tick: state.next_tick.saturating_sub(1),
            at_ms: state.last_tick_ms,
            equity_usd: state.equity_usd(),
            cash_usd: state.cash_usd,
            positions: &state.positions,
            seed: state.seed,
            started_ms: state.started_ms,
            observation_start_ms: state.observation_start_ms,
            next_position: state.next_position,
            totals: &state.totals,
        }
    }
}

/// Writes the stored agent's book snapshot to the outbox (what a shutdown does, so the last
/// state reaches the cloud whatever `sync.state_interval` held back); nothing before the
/// first tick.
pub fn snapshot_book(store: &Store, now_ms: u64) -> Result<(), StoreError> {
    store.write(|w| {
        let state: Option<AgentState> = w.get(KeyedTable::Agent, STATE_KEY)?;
        if let Some(state) = state {
            w.outbox_append(
                OutboxOp::upsert("agent", "book", &Book::of(&state))?,
                now_ms,
            )?;
        }
        Ok(())
    })
}

/// File in the data directory where a running agent publishes its status each tick, so
/// `athena status` works while the agent holds the store.
pub const STATUS_FILE: &str = "status.json";

/// The agent's status: what `athena status` shows.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// Trading state.
    pub trading_state: TradingState,
    /// Last tick run.
    pub last_tick: u64,
    /// Its agent time, ms.
    pub last_tick_ms: u64,
    /// Observation period end, ms.
    pub observation_end_ms: u64,
    /// Equity, USD.
    pub equity_usd: f64,
    /// The capital PnL is measured from, USD (on chain: the wallet's worth when the book
    /// started).
    #[serde(default)]
    pub starting_usd: f64,
    /// Cash, USD.
    pub cash_usd: f64,
    /// Open positions.
    pub positions: Vec<state::PaperPosition>,
    /// Breakers tripped.
    pub tripped: Vec<String>,
    /// Totals.
    pub totals: state::Totals,
    /// The last recovery (crash restart or restore), with its step timings.
    #[serde(default)]
    pub last_recovery: Option<crate::recovery::Recovery>,
    /// When a running agent published it, wall ms (0: read from the store).
    #[serde(default)]
    pub published_wall_ms: u64,
    /// A running agent publishes again before this wall time; past it the file is stale.
    #[serde(default)]
    pub stale_after_wall_ms: u64,
}

impl Status {
    /// The status of `state` and `risk` at the last tick.
    pub fn of(state: &AgentState, risk: &RiskState, config: &Config) -> Self {
        let at = state.last_tick_ms;
        Self {
            trading_state: risk.computed_state(at),
            last_tick: state.next_tick.saturating_sub(1),
            last_tick_ms: at,
            observation_end_ms: state.observation_start_ms
                + config.agent.observation_period.as_millis() as u64,
            equity_usd: state.equity_usd(),
            starting_usd: state.starting_usd(config.executor.paper_starting_usd),
            cash_usd: state.cash_usd,
            positions: state.positions.clone(),
            tripped: risk
                .breakers
                .iter()
                .filter(|b| b.is_tripped(at))
                .map(|b| b.kind.as_str().to_string())
                .collect(),
            totals: state.totals.clone(),
            last_recovery: None,
            published_wall_ms: 0,
            stale_after_wall_ms: 0,
        }
    }

    /// Publishes it to `dir/status.json` (written aside, then renamed: readers never see half).
    pub fn publish(&self, dir: &std::path::Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{STATUS_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        let written =
            std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, dir.join(STATUS_FILE)));
        if written.is_err() {
            // A full disk leaves no partial file behind.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TickReport {
    /// Tick number.
    pub tick: u64,
    /// Agent time.
    pub at_ms: u64,
    /// Still observing (no trading).
    pub observing: bool,
    /// Decisions made.
    pub decisions: usize,
    /// Fills executed.
    pub fills: usize,
    /// Memories written.
    pub memories: usize,
    /// Equity after the tick, USD.
    pub equity_usd: f64,
    /// Trading state after the tick.
    pub trading_state: TradingState,
    /// Risk journal entries (trips, re-arms, state changes).
    pub risk_events: Vec<RiskJournal>,
    /// Time the decision step took (rules, risk gate, paper fills; no store I/O), µs.
    pub decide_micros: u64,
    /// Time the tick's store transaction took (encoding, writing, the durable commit), µs.
    pub write_micros: u64,
    /// Pool snapshots the market source gave (accepted and rejected).
    pub pools_seen: usize,
    /// Of them, rejected as bad data (left out of the tick and journaled).
    pub pools_rejected: usize,
    /// Time the LLM advisor's step took (caches and model calls), µs; 0 when off.
    pub advise_micros: u64,
    /// Why the advisor gave no answer this tick, if it failed (each counted by its breaker).
    pub llm_failures: Vec<Failure>,
    /// Questions put to the advisor's caches and model this tick.
    pub llm_asked: usize,
}

/// Where approved decisions are executed.
enum Executor {
    /// The paper book.
    Paper,
    /// Router transactions on chain.
    Chain {
        executor: Box<crate::chain::exec::ChainExecutor>,
        /// Whether the book was reconciled with the chain since the agent opened.
        reconciled: bool,
    },
}

/// The agent.
pub struct Agent {
    config: Config,
    engine: RiskEngine,
    market: Box<dyn MarketSource>,
    executor: Executor,
    /// The book, profiles and totals.
    pub state: AgentState,
    /// The risk engine's state.
    pub risk: RiskState,
    tick_ms: u64,
    /// `sync.state_interval`: how often the book snapshot goes to the cloud, agent ms.
    state_interval_ms: u64,
    /// The last committed tick's market (its screened pools, gas and ETH price).
    last_market: Option<MarketTick>,
    /// The LLM advisor, when `llm.enabled`.
    advisor: Option<Advisor>,
}

impl Agent {
    /// Opens the agent on `store`: its persisted state, or a fresh one starting at `start_ms`.
    /// `market` makes the market source for the run's start time and seed.
    pub fn open(
        store: &Store,
        config: &Config,
        start_ms: u64,
        market: impl FnOnce(u64, u64) -> Result<Box<dyn MarketSource>, MarketError>,
    ) -> Result<Self, AgentError> {
        let engine = RiskEngine::new(config.risk.clone(), config.gas.clone());
        let (state, mut risk, restarted) = store.read(|r| {
            let state: Option<AgentState> = r.get(KeyedTable::Agent, STATE_KEY)?;
            let risk = risk::persist::load(r)?;
            Ok((state.clone(), risk.unwrap_or_default(), state.is_some()))
        })?;
        let state = state.unwrap_or_else(|| {
            AgentState::new(
                start_ms,
                config.executor.paper_starting_usd,
                config.agent.seed,
            )
        });
        let interrupted = journal_interrupted(store)?;
        if interrupted > 0 {
            println!(
                "athena: journaled {interrupted} decisions of a tick that did not commit; their transactions are settled at this tick"
            );
        }
        if restarted {
            let journal = engine.on_restart(&mut risk, state.last_tick_ms);
            if !journal.is_empty() {
                store.write(|w| risk::persist::save(w, &risk, &journal, state.last_tick_ms))?;
            }
        }
        let advisor = if config.llm.enabled {
            Some(Advisor::open(config, store, state.last_tick_ms)?)
        } else {
            None
        };
        let market = market(state.started_ms, state.seed)?;
        let executor = match config.executor.kind {
            athena_config::ExecutorKind::Paper => Executor::Paper,
            athena_config::ExecutorKind::Chain => {
                let directory = market
                    .chain_pools()
                    .ok_or(AgentError::ChainExecutorSource)?;
                Executor::Chain {
                    executor: Box::new(crate::chain::exec::ChainExecutor::new(config, directory)?),
                    reconciled: false,
                }
            }
        };
        Ok(Self {
            config: config.clone(),
            engine,
            market,
            executor,
            state,
            risk,
            tick_ms: config.agent.tick_interval.as_millis() as u64,
            state_interval_ms: config.sync.state_interval.as_millis().max(1) as u64,
            last_market: None,
            advisor,
        })
    }

    /// Replaces the advisor (tests and benchmarks: an endpoint of their own, or none).
    pub fn set_advisor(&mut self, advisor: Option<Advisor>) {
        self.advisor = advisor;
    }

    /// What the LLM advisor's layers saved and its model cost since the agent opened.
    pub fn llm_stats(&self) -> Option<LlmStats> {
        self.advisor.as_ref().map(Advisor::stats)
    }

    /// The status after the last tick.
    pub fn status(&self) -> Status {
        Status::of(&self.state, &self.risk, &self.config)
    }

    /// The portfolio's risk score after the last tick (under the settings in force).
    pub fn risk_score(&self) -> risk::RiskScore {
        self.engine
            .score(&self.risk, &self.state.portfolio(), self.state.last_tick_ms)
    }

    /// The book now.
    pub fn book(&self) -> Book<'_> {
        Book::of(&self.state)
    }

    /// Whether the observation period is still running at `now_ms`.
    pub fn observing(&self, now_ms: u64) -> bool {
        now_ms
            < self.state.observation_start_ms
                + self.config.agent.observation_period.as_millis() as u64
    }

    /// Reports something observed outside a tick (the scrubber's corrupt record) to the risk
    /// engine and persists what it changed; returns the journal entries (a trip, if any).
    pub fn observe(
        &mut self,
        store: &Store,
        observation: Observation,
    ) -> Result<Vec<RiskJournal>, AgentError> {
        let journal = self.engine.record(&mut self.risk, observation);
        let at = self.state.last_tick_ms;
        store.write(|w| risk::persist::save(w, &self.risk, &journal, at))?;
        Ok(journal)
    }

    /// Runs the next tick and commits it. A pool whose snapshot cannot be used is left out of
    /// the tick (no mark, no drain signal, no size from it) and journaled with the reason.
    pub fn tick(&mut self, store: &Store) -> Result<TickReport, AgentError> {
        let mut tick = self.market.tick(self.state.next_tick)?;
        let rejected = screen(&mut tick)?;
        let now = tick.at_ms;
        let seed = self.state.seed;
        if self.state.next_tick == 0 {
            // The run starts at its first tick's time (a replay carries its own).
            self.state.started_ms = now;
            self.state.observation_start_ms = now;
        }
        let mut risk_journal = self.engine.tick(&mut self.risk, now);
        // On chain: receipts not in the book yet are applied first (after a crash, or a
        // receipt that came late), and the book is reconciled once with the chain.
        let settled = self.settle_chain(store, &tick, &mut risk_journal)?;
        risk_journal.extend(self.engine.record(
            &mut self.risk,
            Observation::GasReading {
                at_ms: now,
                gwei: tick.gas_gwei,
            },
        ));

        // Observe and remember.
        paper::mark(&mut self.state, &tick, self.tick_ms);
        risk_journal.extend(self.engine.record(
            &mut self.risk,
            Observation::Equity {
                at_ms: now,
                usd: self.state.equity_usd(),
            },
        ));
        learn::observe(
            &mut self.state,
            &tick,
            self.tick_ms,
            self.config.strategy.tvl_drain_window.as_millis() as u64,
        );
        let mut memories = learn::memories(&mut self.state, &tick, self.tick_ms, seed);
        strategy::release_guards(&self.config.strategy, &mut self.state, &tick);

        // Decide, pass the risk gate, execute.
        let observing = self.observing(now);
        let decide_started = std::time::Instant::now();
        let mut decisions = Vec::new();
        let mut ledger: Vec<LedgerEntry> = settled;
        let mut closed: Vec<String> = Vec::new();
        let intents = match &self.state.exit_all {
            Some(reason) => exit_all_intents(
                &self.config.strategy,
                &self.state,
                &self.tradable(&tick),
                reason,
            ),
            None if observing => Vec::new(),
            None => {
                let reduce = self.risk.computed_state(now) == TradingState::ReduceOnly;
                strategy::decide(
                    &self.config.strategy,
                    &self.state,
                    &self.tradable(&tick),
                    reduce,
                )
            }
        };
        let (intents, advice) = self.advise(&tick, intents);
        for failure in &advice.failures {
            risk_journal.extend(
                self.engine
                    .record(&mut self.risk, llm_observation(failure, now)),
            );
        }
        memories.extend(advice.memories);
        for advised in intents {
            let (record, fills) = self.decide_one(store, &tick, advised, &decisions);
            strategy::guard_after_close(&mut self.state, &record.intent, &fills, now);
            self.state.totals.decisions += 1;
            if let Decision::Reject { rule, .. } = &record.decision {
                *self
                    .state
                    .totals
                    .rejections
                    .entry(rule.as_str().to_string())
                    .or_default() += 1;
            }
            for f in &fills {
                if f.action == "close" {
                    closed.push(f.position.clone());
                }
                if f.slippage_pct > 0.0 {
                    risk_journal.extend(self.engine.record(
                        &mut self.risk,
                        Observation::TradeSlippage {
                            at_ms: now,
                            pct: f.slippage_pct,
                        },
                    ));
                }
                risk_journal.extend(self.engine.record(
                    &mut self.risk,
                    Observation::GasSpent {
                        at_ms: now,
                        usd: f.gas_usd,
                    },
                ));
            }
            ledger.extend(fills);
            decisions.push(record);
        }
        if self.state.positions.is_empty() {
            self.state.exit_all = None;
        }
        let decide_micros = decide_started.elapsed().as_micros() as u64;
        // Learn from outcomes and entries.
        let mut pattern_updates: Vec<(String, Memory)> = Vec::new();
        // Most ticks close nothing: read the pattern memories only when one does.
        let any_close = ledger.iter().any(|e| e.action == "close");
        let outcomes: Vec<(LedgerEntry, Option<Memory>)> = if !any_close {
            Vec::new()
        } else {
            store.read(|r| {
                let mut v = Vec::new();
                for e in ledger.iter().filter(|e| e.action == "close") {
                    let pattern = match self
                        .state
                        .pool_patterns
                        .get(&e.pool)
                        .and_then(|id| id.parse::<ulid::Ulid>().ok())
                    {
                        Some(id) => r.get_memory(id)?,
                        None => None,
                    };
                    v.push((e.clone(), pattern));
                }
                Ok(v)
            })?
        };
        for (close, pattern) in outcomes {
            let (outcome, pattern) = learn::outcome(&close, pattern, seed);
            memories.push(outcome);
            if let Some(p) = pattern {
                memories.push(p);
            }
        }
        for e in ledger.iter().filter(|e| e.action == "open") {
            if !self.state.pool_patterns.contains_key(&e.pool) {
                let apr = tick.pool(&e.pool).map_or(0.0, PoolSnapshot::apr_pct);
                let m = learn::entry_pattern(&e.pool, apr, now, tick.index, seed);
                pattern_updates.push((e.pool.clone(), m.clone()));
                memories.push(m);
            }
        }
        for (pool, m) in &pattern_updates {
            self.state
                .pool_patterns
                .insert(pool.clone(), m.id.to_string());
        }

        self.state.next_tick += 1;
        self.state.last_tick_ms = now;
        let equity = self.state.equity_usd();
        let write_started = std::time::Instant::now();
        store.write(|w| {
            w.put(KeyedTable::Agent, STATE_KEY, &self.state)?;
            let filled: Vec<&str> = ledger.iter().map(|e| e.position.as_str()).collect();
            for p in &self.state.positions {
                w.put(KeyedTable::Positions, &p.id, p)?;
                // The cloud gets a position when a fill changes it, and every position in the
                // book snapshot below (every `sync.state_interval`): not a write per position
                // per tick.
                if filled.contains(&p.id.as_str()) {
                    w.outbox_append(OutboxOp::upsert("positions", &p.id, p)?, now)?;
                }
            }
            if now % self.state_interval_ms < self.tick_ms {
                w.outbox_append(OutboxOp::upsert("agent", "book", &self.book())?, now)?;
            }
            for id in &closed {
                w.remove(KeyedTable::Positions, id)?;
                w.outbox_append(
                    OutboxOp::Delete {
                        collection: "positions".into(),
                        doc: id.clone(),
                    },
                    now,
                )?;
            }
            for e in &ledger {
                let seq = w.append(SeqTable::Ledger, e)?;
                w.outbox_append(OutboxOp::upsert("ledger", seq, e)?, now)?;
            }
            for r in &rejected {
                w.append(SeqTable::Journal, &JournalRecord::Rejected(r.clone()))?;
            }
            for d in &decisions {
                w.append(SeqTable::Journal, &JournalRecord::Decision(d.clone()))?;
            }
            w.remove(KeyedTable::Agent, IN_FLIGHT_KEY)?;
            w.insert_memories(&memories, now)?;
            crate::llm::persist(w, &advice.writes, now)?;
            risk::persist::save(w, &self.risk, &risk_journal, now)?;
            Ok(())
        })?;
        let write_micros = write_started.elapsed().as_micros() as u64;
        let (index, pools_seen) = (tick.index, tick.pools.len() + rejected.len());
        self.last_market = Some(tick);
        Ok(TickReport {
            tick: index,
            at_ms: now,
            observing,
            decisions: decisions.len(),
            fills: ledger.len(),
            memories: memories.len(),
            equity_usd: equity,
            trading_state: self.risk.computed_state(now),
            risk_events: risk_journal,
            decide_micros,
            write_micros,
            pools_seen,
            pools_rejected: rejected.len(),
            advise_micros: advice.micros,
            llm_failures: advice.failures.clone(),
            llm_asked: advice.asked,
        })
    }

    /// Applies an operator control to the risk state and commits it with its journal entries
    /// in one transaction; the agent in memory changes only when the commit succeeds. A
    /// refused control (bad input) changes nothing and writes nothing.
    pub fn control(
        &mut self,
        store: &Store,
        now_ms: u64,
        control: impl FnOnce(&RiskEngine, &mut RiskState) -> Result<Vec<RiskJournal>, Refused>,
    ) -> Result<Result<Vec<RiskJournal>, Refused>, StoreError> {
        let mut risk = self.risk.clone();
        let journal = match control(&self.engine, &mut risk) {
            Ok(j) => j,
            Err(refused) => return Ok(Err(refused)),
        };
        store.write(|w| risk::persist::save(w, &risk, &journal, now_ms))?;
        self.risk = risk;
        Ok(Ok(journal))
    }

    /// The last committed tick's market, if a tick ran in this process.
    pub fn last_market(&self) -> Option<&MarketTick> {
        self.last_market.as_ref()
    }

    /// Gas protection's verdict on an entry at the last tick's gas price.
    pub fn gas_verdict(&self) -> Option<GasDecision> {
        let m = self.last_market.as_ref()?;
        let view = MarketView {
            now_ms: m.at_ms,
            gas_gwei: m.gas_gwei,
        };
        let entry_usd = m.gas_usd(GAS_UNITS_ENTRY);
        Some(self.engine.gas_check(&self.risk, &view, Some(entry_usd)))
    }

    /// Exit-all: journals it, halts trading (an operator stop, so nothing is entered again
    /// until a resume) and marks every position to be closed at the next tick, in one
    /// transaction. Refused without `confirm` or a reason.
    pub fn exit_all(
        &mut self,
        store: &Store,
        now_ms: u64,
        confirm: bool,
        reason: &str,
    ) -> Result<Result<Vec<RiskJournal>, Refused>, StoreError> {
        let portfolio = self.state.portfolio();
        let mut risk = self.risk.clone();
        let mut journal = match self.engine.exit_all(&portfolio, confirm, reason, now_ms) {
            Ok((_, journal)) => journal,
            Err(refused) => return Ok(Err(refused)),
        };
        let stop = self
            .engine
            .stop(&mut risk, &format!("exit-all: {}", reason.trim()), now_ms);
        journal.extend(stop.expect("the reason was accepted by exit-all"));
        let mut state = self.state.clone();
        state.exit_all = (!state.positions.is_empty()).then(|| reason.trim().to_string());
        store.write(|w| {
            w.put(KeyedTable::Agent, STATE_KEY, &state)?;
            risk::persist::save(w, &risk, &journal, now_ms)
        })?;
        self.risk = risk;
        self.state = state;
        Ok(Ok(journal))
    }

    /// Whether an exit-all waits for the next tick.
    pub fn exit_all_pending(&self) -> bool {
        self.state.exit_all.is_some()
    }

    /// The part of `tick` the executor can trade: on chain, the pools it can enter and those
    /// it holds positions in (the strategy never proposes what cannot be executed).
    fn tradable<'t>(&self, tick: &'t MarketTick) -> std::borrow::Cow<'t, MarketTick> {
        let Executor::Chain { executor, .. } = &self.executor else {
            return std::borrow::Cow::Borrowed(tick);
        };
        let held = |pool: &str| self.state.positions.iter().any(|p| p.pool == pool);
        let mut view = tick.clone();
        view.pools
            .retain(|p| executor.can_enter(&p.pool) || held(&p.pool));
        std::borrow::Cow::Owned(view)
    }

    /// On chain: settles open intents, applies the receipts the book lacks, and (once per
    /// process) reconciles the book with the chain at a pinned block, reporting the
    /// difference to the risk engine. Returns the fills applied.
    fn settle_chain(
        &mut self,
        store: &Store,
        tick: &MarketTick,
        journal: &mut Vec<RiskJournal>,
    ) -> Result<Vec<LedgerEntry>, AgentError> {
        let Executor::Chain {
            executor,
            reconciled,
        } = &mut self.executor
        else {
            return Ok(Vec::new());
        };
        let fills = executor.settle(store, &mut self.state, tick)?;
        if !*reconciled {
            let report = executor.reconcile(&mut self.state, tick)?;
            println!(
                "athena: reconciled with the chain at block {}: difference ${:.2} ({}); never traded to fix",
                report.block, report.difference_usd, report.detail
            );
            journal.extend(self.engine.record(
                &mut self.risk,
                Observation::Reconciliation {
                    at_ms: tick.at_ms,
                    difference_usd: report.difference_usd,
                },
            ));
            *reconciled = true;
        }
        Ok(fills)
    }

    /// Opens a position through the executor.
    fn open_position(
        &mut self,
        store: &Store,
        tick: &MarketTick,
        pool: &PoolSnapshot,
        size: f64,
    ) -> paper::Executed {
        match &self.executor {
            Executor::Paper => paper::open(&mut self.state, tick, pool, size)
                .map(|f| vec![f])
                .into(),
            Executor::Chain { executor, .. } => {
                executor.open(store, &mut self.state, tick, pool, size)
            }
        }
    }

    /// Closes a position through the executor.
    fn close_position(&mut self, store: &Store, tick: &MarketTick, id: &str) -> paper::Executed {
        match &self.executor {
            Executor::Paper => paper::close(&mut self.state, tick, id)
                .map(|f| vec![f])
                .into(),
            Executor::Chain { executor, .. } => executor.close(store, &mut self.state, tick, id),
        }
    }

    /// Executes an approved decision of `size` USD.
    fn execute(
        &mut self,
        store: &Store,
        tick: &MarketTick,
        intent: &Intent,
        snapshot: Option<&PoolSnapshot>,
        decision: &Decision,
    ) -> paper::Executed {
        let size = decision.size_usd();
        match (intent, snapshot) {
            (Intent::Open { .. }, Some(s)) => self.open_position(store, tick, s, size),
            (Intent::Rebalance { from, .. }, Some(s)) => {
                let mut done = self.close_position(store, tick, from);
                if done.failure.is_none() {
                    let opened = self.open_position(store, tick, s, size);
                    done.fills.extend(opened.fills);
                    done.failure = opened.failure;
                }
                done
            }
            (Intent::Compound { .. }, Some(_)) if !matches!(self.executor, Executor::Paper) => {
                Err(paper::NotExecuted::NoCompound).into()
            }
            (Intent::Compound { position }, Some(_))
                if matches!(decision, Decision::Approve { .. }) =>
            {
                paper::compound(&mut self.state, tick, position)
                    .map(|f| vec![f])
                    .into()
            }
            (Intent::Compound { .. }, Some(_)) => Err(paper::NotExecuted::CompoundReduced).into(),
            (Intent::Close { position, .. }, _) => self.close_position(store, tick, position),
            (Intent::Sweep { token, .. }, Some(s)) => match &self.executor {
                Executor::Paper => Err(paper::NotExecuted::NoRoute(s.pool.clone())).into(),
                Executor::Chain { executor, .. } => {
                    executor.sweep(store, &mut self.state, tick, s, token)
                }
            },
            (_, None) => {
                let pool = match intent {
                    Intent::Open { pool }
                    | Intent::Rebalance { to: pool, .. }
                    | Intent::Sweep { pool, .. } => pool.clone(),
                    _ => String::new(),
                };
                Err(paper::NotExecuted::PoolMissing(pool)).into()
            }
        }
    }

    /// The risk engine's proposal for `intent` at `tick` (`cap_usd`: the most the advisor lets
    /// an entry have), and the snapshot of its pool.
    fn proposal_of(
        &self,
        tick: &MarketTick,
        intent: &Intent,
        cap_usd: Option<f64>,
    ) -> (Proposal, Option<PoolSnapshot>) {
        let (kind, pool_id, requested, gas_units) = match intent {
            Intent::Open { pool } => (ProposalKind::Open, pool.clone(), cap_usd, GAS_UNITS_ENTRY),
            Intent::Rebalance { from, to } => (
                ProposalKind::Rebalance { from: from.clone() },
                to.clone(),
                cap_usd,
                GAS_UNITS_ENTRY,
            ),
            Intent::Compound { position } => {
                let p = self.state.positions.iter().find(|p| &p.id == position);
                (
                    ProposalKind::Compound {
                        position: position.clone(),
                    },
                    p.map_or(String::new(), |p| p.pool.clone()),
                    p.map(|p| p.rewards_usd),
                    GAS_UNITS_CLAIM,
                )
            }
            Intent::Close { position, .. } => {
                let p = self.state.positions.iter().find(|p| &p.id == position);
                (
                    ProposalKind::Close {
                        position: position.clone(),
                    },
                    p.map_or(String::new(), |p| p.pool.clone()),
                    None,
                    0.0,
                )
            }
            Intent::Sweep { token, pool } => (
                ProposalKind::Sweep {
                    token: token.clone(),
                },
                pool.clone(),
                None,
                0.0,
            ),
        };
        let snapshot = tick.pool(&pool_id).cloned();
        let profile = self.state.profiles.get(&pool_id);
        let pool = PoolInfo {
            id: pool_id.clone(),
            tokens: snapshot
                .as_ref()
                .map_or([String::new(), String::new()], |s| s.tokens.clone()),
            stable: snapshot.as_ref().is_some_and(|s| s.stable),
            tvl_usd: snapshot.as_ref().map(|s| s.tvl_usd),
            created_ms: snapshot.as_ref().map(|s| s.created_ms),
            apr_variance: profile.and_then(state::PoolProfile::normalised_variance),
        };
        let expected_slippage_pct = snapshot.as_ref().map(|s| {
            let half = self.config.risk.base_position_usd / 2.0;
            // A pool priced off the market costs the gap too (bought at its price, valued
            // at the market's).
            100.0 * paper::swap_costs(s, half).1 / half + s.price_gap_pct
        });
        let proposal = Proposal {
            kind,
            pool,
            requested_usd: requested,
            entry_gas_usd: Some(tick.gas_usd(gas_units)),
            expected_slippage_pct,
        };
        (proposal, snapshot)
    }

    /// Assesses one intent and executes it if allowed (and not vetoed by the advisor, whose
    /// size factor caps an entry at that fraction of the base size).
    fn decide_one(
        &mut self,
        store: &Store,
        tick: &MarketTick,
        advised: Advised,
        earlier: &[DecisionRecord],
    ) -> (DecisionRecord, Vec<LedgerEntry>) {
        let Advised {
            proposed: Proposed { intent, rule },
            advice,
        } = advised;
        let now = tick.at_ms;
        let cap_usd = advice
            .as_ref()
            .filter(|a| a.advice.size_factor < 1.0)
            .map(|a| a.advice.size_factor * self.config.risk.base_position_usd);
        let (proposal, snapshot) = self.proposal_of(tick, &intent, cap_usd);
        let market = MarketView {
            now_ms: now,
            gas_gwei: tick.gas_gwei,
        };
        let assessment =
            self.engine
                .assess(&self.risk, &proposal, &self.state.portfolio(), &market);
        let gas_usd = tick.gas_usd(transaction_gas_units(&intent));
        let mut record = DecisionRecord {
            tick: tick.index,
            at_ms: now,
            intent,
            apr_pct: snapshot.as_ref().map_or(0.0, PoolSnapshot::apr_pct),
            tvl_usd: snapshot.as_ref().map_or(0.0, |s| s.tvl_usd),
            trading_state: assessment.trading_state,
            decision: assessment.decision,
            gas: assessment.gas.action,
            executed_usd: None,
            note: None,
            rule: Some(rule),
            gas_gwei: Some(tick.gas_gwei),
            gas_usd: Some(gas_usd),
            sizing: assessment.sizing.map(Box::new),
            advice: advice.map(Box::new),
        };
        let veto = record
            .advice
            .as_ref()
            .filter(|a| a.advice.verdict == Verdict::Veto && record.decision.allowed())
            .map(|a| a.advice.reason.clone());
        if let Some(reason) = veto {
            // The gate's sizing stays in the record; the advisor's veto is the decision.
            record.decision = Decision::Reject {
                rule: risk::Rule::AdvisorVeto,
                reason: format!("the advisor vetoed it: {reason}"),
            };
        }
        if !record.decision.allowed() {
            return (record, Vec::new());
        }
        if let Err(e) = self.write_down_before_executing(store, earlier, &record) {
            record.note = Some(format!(
                "not executed: the decision could not be written down first: {e}"
            ));
            return (record, Vec::new());
        }
        let done = self.execute(
            store,
            tick,
            &record.intent,
            snapshot.as_ref(),
            &record.decision,
        );
        if !done.fills.is_empty() {
            record.executed_usd = Some(done.fills.iter().map(|e| e.usd).sum());
        }
        record.note = done.failure.map(|e| e.to_string());
        (record, done.fills)
    }

    /// On chain, where executing sends transactions before the tick commits: commits the
    /// tick's decisions so far and `pending` (marked interrupted), so a crash before the
    /// commit still leaves them for the journal ([`journal_interrupted`]). Paper executes
    /// nothing outside the tick's commit: nothing to write.
    fn write_down_before_executing(
        &self,
        store: &Store,
        earlier: &[DecisionRecord],
        pending: &DecisionRecord,
    ) -> Result<(), StoreError> {
        if matches!(self.executor, Executor::Paper) {
            return Ok(());
        }
        let mut in_flight = earlier.to_vec();
        let mut pending = pending.clone();
        pending.note = Some(INTERRUPTED.into());
        in_flight.push(pending);
        store.write(|w| w.put(KeyedTable::Agent, IN_FLIGHT_KEY, &in_flight))
    }
}

/// The key of the decisions of a tick being executed on chain (written before each one is
/// executed, removed by the tick's commit).
const IN_FLIGHT_KEY: &str = "decisions_in_flight";

/// The note of a decision whose tick a crash cut short.
const INTERRUPTED: &str = "interrupted: its tick did not commit (the agent stopped or the tick failed) while it was executed; its transactions were settled at the next tick (see the fills and /chain/transactions)";

/// Journals the decisions of a tick a crash cut short on chain (left by
/// [`Agent::write_down_before_executing`]), once.
fn journal_interrupted(store: &Store) -> Result<usize, StoreError> {
    // Read first: an open writes nothing when there is nothing to journal (a full disk).
    let left: Option<Vec<DecisionRecord>> =
        store.read(|r| r.get(KeyedTable::Agent, IN_FLIGHT_KEY))?;
    if left.is_none() {
        return Ok(0);
    }
    store.write(|w| {
        let in_flight: Option<Vec<DecisionRecord>> = w.get(KeyedTable::Agent, IN_FLIGHT_KEY)?;
        let in_flight = in_flight.unwrap_or_default();
        for d in &in_flight {
            w.append(SeqTable::Journal, &JournalRecord::Decision(d.clone()))?;
        }
        w.remove(KeyedTable::Agent, IN_FLIGHT_KEY)?;
        Ok(in_flight.len())
    })
}

/// What the risk engine counts of an advisor failure: a timeout for llm_timeout, anything
/// else for api_failures.
fn llm_observation(failure: &Failure, at_ms: u64) -> Observation {
    match failure {
        Failure::Timeout => Observation::LlmTimeout { at_ms },
        Failure::Failed(why) => Observation::ApiFailure {
            at_ms,
            source: format!("llm: {why}"),
        },
    }
}

/// The gas units the transactions of `intent` cost (a rebalance is an exit and an entry).
fn transaction_gas_units(intent: &Intent) -> f64 {
    match intent {
        Intent::Open { .. } => GAS_UNITS_ENTRY,
        Intent::Close { .. } => GAS_UNITS_EXIT,
        Intent::Rebalance { .. } => GAS_UNITS_EXIT + GAS_UNITS_ENTRY,
        Intent::Compound { .. } => GAS_UNITS_CLAIM,
        Intent::Sweep { .. } => GAS_UNITS_SWAP,
    }
}

/// A close for every position, for an operator's exit-all, and a sweep of every token held
/// outside positions (on chain).
fn exit_all_intents(
    cfg: &athena_config::StrategyConfig,
    state: &AgentState,
    tick: &MarketTick,
    reason: &str,
) -> Vec<Proposed> {
    let closes = state.positions.iter().map(|p| Proposed {
        intent: Intent::Close {
            position: p.id.clone(),
            reason: format!("operator exit-all: {reason}"),
            protection: None,
        },
        rule: format!("operator exit-all of {}: {reason}", p.pool),
    });
    closes.chain(strategy::sweeps(cfg, state, tick)).collect()
}

/// Screens `tick` for bad data (SPEC.md §1): a bad gas or ETH price fails it; every pool whose
/// snapshot cannot be used is dropped from it and returned as a journal record.
fn screen(tick: &mut MarketTick) -> Result<Vec<RejectedRecord>, MarketError> {
    tick.check_figures()
        .map_err(|problem| MarketError::BadTick {
            index: tick.index,
            problem,
        })?;
    let rejected: Vec<RejectedRecord> = tick
        .reject_bad_pools()
        .into_iter()
        .map(|r| RejectedRecord::of(tick, r))
        .collect();
    for r in &rejected {
        let (pool, problem) = (&r.snapshot.pool, &r.snapshot.problem);
        tracing::warn!(tick = r.tick, %pool, %problem, "pool snapshot rejected");
    }
    Ok(rejected)
}

/// Why a tick failed (nothing of it was committed).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The market source gave no tick ([`MarketError::is_final`]: whether a later tick can
    /// do better).
    #[error(transparent)]
    Market(#[from] MarketError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The chain executor could not start, or settle its transactions (a node failure here
    /// reads as the market's, an API failure: see the `From<ExecError>` conversion).
    #[error("chain executor: {0}")]
    Chain(crate::chain::exec::ExecError),
    /// `executor.kind = "chain"` with a market source that is not the chain.
    #[error("executor.kind = \"chain\" needs market.source = \"chain\"")]
    ChainExecutorSource,
    /// The LLM advisor's cache could not be read.
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// The sync worker a backtest drives against counting sinks failed.
    #[error("sync worker: {0}")]
    Sync(#[from] athena_sync::SyncError),
    /// A thread runtime could not be built.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The data directory holds another run.
    #[error(
        "this data directory holds the run of seed {held}, not {asked}: use another --data-dir"
    )]
    OtherRun {
        /// Seed of the run it holds.
        held: u64,
        /// Seed asked for.
        asked: u64,
    },
    /// The data directory holds a run already past the length asked for.
    #[error(
        "this data directory holds a run of {held_ticks} ticks, past the {asked_days} days \
         ({asked_ticks} ticks) asked for: ask for at least as many days, or use another --data-dir"
    )]
    LongerRun {
        /// Ticks the held run has committed.
        held_ticks: u64,
        /// Days asked for.
        asked_days: u64,
        /// Ticks those days make.
        asked_ticks: u64,
    },
}

impl AgentError {
    /// Whether the configuration is wrong (a router address that is not the pools' router, a
    /// quote token no pool has, a key that is no key): the run stops, exit code 2.
    pub fn is_configuration(&self) -> bool {
        use crate::chain::exec::ExecError;
        use crate::chain::router::RouterError;
        match self {
            Self::Chain(ExecError::Router(RouterError::Rpc(_))) => false,
            Self::Chain(ExecError::Router(_) | ExecError::NoQuote(_)) => true,
            Self::Chain(ExecError::Send(crate::chain::send::SendError::Key)) => true,
            Self::ChainExecutorSource => true,
            _ => false,
        }
    }
}

impl From<crate::chain::exec::ExecError> for AgentError {
    /// A node failure reads as the market's (an API failure, retried at the next tick), a
    /// store failure as the store's; anything else stops the run.
    fn from(e: crate::chain::exec::ExecError) -> Self {
        use crate::chain::exec::ExecError;
        use crate::chain::send::SendError;
        match e {
            ExecError::Rpc(rpc)
            | ExecError::Send(SendError::Rpc(rpc))
            | ExecError::Router(crate::chain::router::RouterError::Rpc(rpc)) => {
                Self::Market(crate::chain::ChainError::Rpc(rpc).into())
            }
            ExecError::Send(SendError::Store(store)) => Self::Store(store),
            other => Self::Chain(other),
        }
    }
}
