//! The risk engine (SPEC.md §3): every proposal passes it, whatever the strategy, the LLM or
//! an operator says.
//!
//! Pure: no I/O, no clock reads (time comes in the inputs), no errors (a rejection is a
//! [`Decision`] with its rule and reason). The caller keeps a [`RiskState`], feeds it what
//! happened ([`RiskEngine::record`]), advances time ([`RiskEngine::tick`]), asks
//! ([`RiskEngine::assess`]), and persists the state with the journal entries each call
//! returns in the same store transaction as the decision they affect ([`persist`]).
//!
//! Entries (open, add, rebalance, compound) are blocked in reduce-only and halted states and
//! by any tripped breaker that blocks entries; exits (close, remove liquidity, exit-all) are
//! never blocked, by a breaker or by a state.

pub mod breakers;
pub mod controls;
pub mod gas;
pub mod model;
pub mod persist;
pub mod score;
pub mod sizing;
pub mod state;

pub use breakers::{Breaker, BreakerKind, BreakerSettings, Effect, Trip};
pub use gas::{GasAction, GasDecision};
pub use model::{
    Cap, Decision, Factors, MarketView, PoolInfo, Portfolio, Position, Proposal, ProposalKind,
    Rule, Sizing,
};
pub use score::{RiskLevel, RiskScore};
pub use state::{Limit, LimitOverride, RiskEvent, RiskJournal, RiskState, TradingState, median};

use athena_config::{GasConfig, RiskConfig};
use state::{EQUITY_READINGS_KEPT, EVENTS_KEPT, GAS_READINGS_KEPT, bound, utc_day};

/// Something that happened, reported by the caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// Portfolio equity marked at a time, USD.
    Equity {
        /// When.
        at_ms: u64,
        /// Equity.
        usd: f64,
    },
    /// A gas price reading, gwei.
    GasReading {
        /// When.
        at_ms: u64,
        /// Gas price.
        gwei: f64,
    },
    /// An RPC, LLM or cloud call failed.
    ApiFailure {
        /// When.
        at_ms: u64,
        /// Which service.
        source: String,
    },
    /// An LLM call timed out.
    LlmTimeout {
        /// When.
        at_ms: u64,
    },
    /// A trade filled with this slippage, percent.
    TradeSlippage {
        /// When.
        at_ms: u64,
        /// Slippage.
        pct: f64,
    },
    /// Gas paid for a transaction, USD (counts against the daily budget).
    GasSpent {
        /// When.
        at_ms: u64,
        /// Cost.
        usd: f64,
    },
    /// A checksum or integrity check failed (store verify, scrubber).
    IntegrityFailure {
        /// When.
        at_ms: u64,
        /// What failed (the key).
        what: String,
    },
    /// Reconciliation found this difference between books and the source of truth, USD.
    Reconciliation {
        /// When.
        at_ms: u64,
        /// Absolute difference.
        difference_usd: f64,
    },
    /// The process recovered from a crash: the recovery factor ramps from here.
    Recovered {
        /// When.
        at_ms: u64,
    },
}

/// The answer to one proposal.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Approve, reduce or reject.
    pub decision: Decision,
    /// Gas protection's verdict on the transaction (advisory for exits, which it never blocks).
    pub gas: GasDecision,
    /// How the entry was sized: base, factors and caps (entries that reached sizing).
    pub sizing: Option<Sizing>,
    /// The trading state the decision was made in.
    pub trading_state: TradingState,
}

/// The engine: the `[risk]` and `[gas]` settings, applied to states it is handed.
#[derive(Debug, Clone)]
pub struct RiskEngine {
    risk: RiskConfig,
    gas: GasConfig,
}

impl RiskEngine {
    /// An engine with these settings.
    pub fn new(risk: RiskConfig, gas: GasConfig) -> Self {
        Self { risk, gas }
    }

    /// The configured settings (without overrides).
    pub fn config(&self) -> (&RiskConfig, &GasConfig) {
        (&self.risk, &self.gas)
    }

    /// The settings in force at `now_ms`: the configuration with the unexpired overrides.
    pub fn effective(&self, state: &RiskState, now_ms: u64) -> (RiskConfig, GasConfig) {
        let (mut r, mut g) = (self.risk.clone(), self.gas.clone());
        for o in state.overrides.iter().filter(|o| now_ms < o.until_ms) {
            let v = o.value;
            match o.limit {
                Limit::BasePositionUsd => r.base_position_usd = v,
                Limit::NewPoolCapUsd => r.new_pool_cap_usd = v,
                Limit::MaxPositionFraction => r.max_position_fraction = v,
                Limit::MaxTokenFraction => r.max_token_fraction = v,
                Limit::MaxStableFraction => r.max_stable_fraction = v,
                Limit::MaxVolatileFraction => r.max_volatile_fraction = v,
                Limit::MaxLowLiquidityFraction => r.max_low_liquidity_fraction = v,
                Limit::MaxCorrelatedFraction => r.max_correlated_fraction = v,
                Limit::MaxPositions => r.max_positions = v as u32,
                Limit::MaxEntryGasFraction => r.max_entry_gas_fraction = v,
                Limit::MaxSlippagePct => r.max_slippage_pct = v,
                Limit::GasHardCapGwei => g.hard_cap_gwei = v,
                Limit::GasDailyBudgetUsd => g.daily_budget_usd = v,
            }
        }
        (r, g)
    }

    fn settings(&self, kind: BreakerKind) -> BreakerSettings {
        BreakerSettings::of(kind, &self.risk, &self.gas)
    }

    /// Advances to `now_ms`: re-arms breakers whose cooldown passed, drops expired overrides,
    /// and updates the trading state.
    pub fn tick(&self, state: &mut RiskState, now_ms: u64) -> Vec<RiskJournal> {
        let mut out = Vec::new();
        for b in &mut state.breakers {
            if b.rearm_if_due(now_ms) {
                out.push(RiskJournal {
                    at_ms: now_ms,
                    event: RiskEvent::Rearm { breaker: b.kind },
                });
            }
        }
        state.overrides.retain(|o| {
            let live = now_ms < o.until_ms;
            if !live {
                out.push(RiskJournal {
                    at_ms: now_ms,
                    event: RiskEvent::OverrideExpired { limit: o.limit },
                });
            }
            live
        });
        self.update_state(state, now_ms, "breakers re-armed", &mut out);
        out
    }

    /// Records what happened and trips the breakers it concerns.
    pub fn record(&self, state: &mut RiskState, obs: Observation) -> Vec<RiskJournal> {
        let at = match &obs {
            Observation::Equity { at_ms, .. }
            | Observation::GasReading { at_ms, .. }
            | Observation::ApiFailure { at_ms, .. }
            | Observation::LlmTimeout { at_ms }
            | Observation::TradeSlippage { at_ms, .. }
            | Observation::GasSpent { at_ms, .. }
            | Observation::IntegrityFailure { at_ms, .. }
            | Observation::Reconciliation { at_ms, .. }
            | Observation::Recovered { at_ms } => *at_ms,
        };
        let mut out = self.tick(state, at);
        let (risk, gas) = self.effective(state, at);
        let mut trips: Vec<(BreakerKind, String)> = Vec::new();
        match obs {
            Observation::Equity { usd, .. } => {
                if !usd.is_finite() {
                    trips.push((
                        BreakerKind::MemoryCorruption,
                        format!("equity reading {usd} is not a number"),
                    ));
                } else {
                    let keep = risk.rapid_loss_window.max(risk.drawdown_window).as_millis() as u64;
                    state.equity.push_back((at, usd));
                    while state.equity.front().is_some_and(|(t, _)| *t + keep < at) {
                        state.equity.pop_front();
                    }
                    bound(&mut state.equity, EQUITY_READINGS_KEPT);
                    trips.extend(self.check_equity(state, &risk, at, usd));
                }
            }
            Observation::GasReading { gwei, .. } => {
                if gwei.is_finite() && gwei >= 0.0 {
                    let s = self.settings(BreakerKind::GasManipulation);
                    let m = median(state.gas_before(at, s.window_ms));
                    if gwei > gas.hard_cap_gwei {
                        trips.push((
                            BreakerKind::GasManipulation,
                            format!(
                                "gas {gwei:.3} gwei above the hard cap {} gwei",
                                gas.hard_cap_gwei
                            ),
                        ));
                    } else if let Some(m) = m
                        && gwei > gas.spike_multiplier * m
                    {
                        trips.push((
                            BreakerKind::GasManipulation,
                            format!(
                                "gas {gwei:.3} gwei above {} × the median {m:.3} of the previous readings",
                                gas.spike_multiplier
                            ),
                        ));
                    }
                    state.gas_readings.push_back((at, gwei));
                    bound(&mut state.gas_readings, GAS_READINGS_KEPT);
                } else {
                    trips.push((
                        BreakerKind::GasManipulation,
                        format!("gas reading {gwei} is not a price"),
                    ));
                }
            }
            Observation::ApiFailure { source, .. } => {
                if let Some((n, window_s)) = self.count_event(state, BreakerKind::ApiFailures, at) {
                    trips.push((
                        BreakerKind::ApiFailures,
                        format!("{n} failures in {window_s} s (latest: {source})"),
                    ));
                }
            }
            Observation::LlmTimeout { .. } => {
                if let Some((n, window_s)) = self.count_event(state, BreakerKind::LlmTimeout, at) {
                    trips.push((
                        BreakerKind::LlmTimeout,
                        format!("{n} LLM timeouts in {window_s} s"),
                    ));
                }
            }
            Observation::TradeSlippage { pct, .. } => {
                let pct = if pct.is_finite() { pct.abs() } else { f64::MAX };
                state.slippage.push_back((at, pct));
                let n = risk.slippage_high_trades.max(1) as usize;
                bound(&mut state.slippage, n);
                let since = state.breaker(BreakerKind::SlippageHigh).armed_since_ms;
                let recent: Vec<f64> = state
                    .slippage
                    .iter()
                    .filter(|(t, _)| *t >= since)
                    .map(|(_, p)| *p)
                    .collect();
                if recent.len() >= n {
                    let mean = recent.iter().sum::<f64>() / recent.len() as f64;
                    if mean > risk.slippage_high_pct {
                        trips.push((
                            BreakerKind::SlippageHigh,
                            format!(
                                "mean slippage {mean:.2}% over the last {n} trades (> {}%)",
                                risk.slippage_high_pct
                            ),
                        ));
                    }
                }
            }
            Observation::GasSpent { usd, .. } => {
                let day = utc_day(at);
                if state.gas_budget.day != day {
                    state.gas_budget = state::GasBudget {
                        day,
                        spent_usd: 0.0,
                    };
                }
                if usd.is_finite() && usd >= 0.0 {
                    state.gas_budget.spent_usd += usd;
                } else {
                    // A cost that is not an amount means the books cannot be trusted.
                    trips.push((
                        BreakerKind::MemoryCorruption,
                        format!("gas spent reading {usd} is not an amount"),
                    ));
                }
            }
            Observation::IntegrityFailure { what, .. } => {
                trips.push((
                    BreakerKind::MemoryCorruption,
                    format!("integrity failure: {what}"),
                ));
            }
            Observation::Reconciliation { difference_usd, .. } => {
                let d = difference_usd.abs();
                if d.is_nan() || d > risk.position_mismatch_usd {
                    trips.push((
                        BreakerKind::PositionMismatch,
                        format!(
                            "reconciliation difference ${d:.2} above ${:.2}",
                            risk.position_mismatch_usd
                        ),
                    ));
                }
            }
            Observation::Recovered { .. } => {
                state.recovered_at_ms = Some(at);
                out.push(RiskJournal {
                    at_ms: at,
                    event: RiskEvent::Recovered,
                });
            }
        }
        let mut causes = Vec::new();
        for (kind, reason) in trips {
            let settings = self.settings(kind);
            if state.breaker_mut(kind).trip(at, reason.clone(), &settings) {
                causes.push(kind.as_str());
                out.push(RiskJournal {
                    at_ms: at,
                    event: RiskEvent::Trip {
                        breaker: kind,
                        reason,
                        until_ms: settings.cooldown_ms.map(|c| at.saturating_add(c)),
                    },
                });
            }
        }
        if !causes.is_empty() {
            self.update_state(
                state,
                at,
                &format!("{} tripped", causes.join(", ")),
                &mut out,
            );
        }
        out
    }

    /// Records an event of a counting breaker (api_failures or llm_timeout) and, when the
    /// events in its window since it was last armed reach its threshold, returns their count
    /// and the window in seconds.
    fn count_event(
        &self,
        state: &mut RiskState,
        kind: BreakerKind,
        at: u64,
    ) -> Option<(usize, u64)> {
        let s = self.settings(kind);
        let from = at
            .saturating_sub(s.window_ms)
            .max(state.breaker(kind).armed_since_ms);
        let series = if kind == BreakerKind::ApiFailures {
            &mut state.api_failures
        } else {
            &mut state.llm_timeouts
        };
        series.push_back(at);
        bound(series, EVENTS_KEPT);
        let n = series.iter().filter(|t| **t >= from && **t <= at).count();
        (n as f64 >= s.threshold).then_some((n, s.window_ms / 1000))
    }

    /// rapid_loss (PnL over its window against the value at the window's start) and
    /// portfolio_drawdown (equity against its peak within the window).
    fn check_equity(
        &self,
        state: &RiskState,
        risk: &RiskConfig,
        at: u64,
        usd: f64,
    ) -> Vec<(BreakerKind, String)> {
        let mut trips = Vec::new();
        let in_window = |kind: BreakerKind, window: std::time::Duration| {
            let from = at
                .saturating_sub(window.as_millis() as u64)
                .max(state.breaker(kind).armed_since_ms);
            state
                .equity
                .iter()
                .filter(move |(t, _)| *t >= from && *t <= at)
                .map(|(_, v)| *v)
        };
        if let Some(start) = in_window(BreakerKind::RapidLoss, risk.rapid_loss_window).next() {
            let pnl = usd - start;
            if start > 0.0 && pnl <= -risk.rapid_loss_pct / 100.0 * start {
                trips.push((
                    BreakerKind::RapidLoss,
                    format!(
                        "PnL {pnl:.2} over {} s is {:.2}% of ${start:.2} (limit −{}%)",
                        risk.rapid_loss_window.as_secs(),
                        100.0 * pnl / start,
                        risk.rapid_loss_pct
                    ),
                ));
            }
        }
        let peak = in_window(BreakerKind::PortfolioDrawdown, risk.drawdown_window)
            .fold(f64::NEG_INFINITY, f64::max);
        if peak > 0.0 && usd <= (1.0 - risk.drawdown_pct / 100.0) * peak {
            trips.push((
                BreakerKind::PortfolioDrawdown,
                format!(
                    "equity ${usd:.2} is {:.2}% below its peak ${peak:.2} in {} s (limit {}%)",
                    100.0 * (1.0 - usd / peak),
                    risk.drawdown_window.as_secs(),
                    risk.drawdown_pct
                ),
            ));
        }
        trips
    }

    /// Recomputes the trading state; journals a change with `cause`.
    pub(crate) fn update_state(
        &self,
        state: &mut RiskState,
        now_ms: u64,
        cause: &str,
        out: &mut Vec<RiskJournal>,
    ) {
        let to = state.computed_state(now_ms);
        if to != state.trading_state {
            out.push(RiskJournal {
                at_ms: now_ms,
                event: RiskEvent::StateChange {
                    from: state.trading_state,
                    to,
                    cause: cause.to_string(),
                },
            });
            state.trading_state = to;
        }
    }

    /// After a restart: the stricter of the persisted state and the one the breakers imply.
    /// A persisted state stricter than the breakers imply is held until an operator resumes.
    pub fn on_restart(&self, state: &mut RiskState, now_ms: u64) -> Vec<RiskJournal> {
        let persisted = state.trading_state;
        let mut out = self.tick(state, now_ms);
        let computed = state.computed_state(now_ms);
        if persisted > computed {
            state.restart_hold = Some(persisted);
            state.trading_state = persisted;
            out.push(RiskJournal {
                at_ms: now_ms,
                event: RiskEvent::RestartHold {
                    persisted,
                    computed,
                },
            });
        }
        out
    }

    /// Gas protection's verdict on a transaction costing `tx_usd` at the market's gas price.
    pub fn gas_check(
        &self,
        state: &RiskState,
        market: &MarketView,
        tx_usd: Option<f64>,
    ) -> GasDecision {
        let (risk, gas) = self.effective(state, market.now_ms);
        gas::check(&risk, &gas, state, market.gas_gwei, tx_usd, market.now_ms)
    }

    /// The portfolio's risk score under the settings in force.
    pub fn score(&self, state: &RiskState, portfolio: &Portfolio, now_ms: u64) -> RiskScore {
        if state.overrides.is_empty() {
            score::score(&self.risk, portfolio)
        } else {
            score::score(&self.effective(state, now_ms).0, portfolio)
        }
    }

    /// Assesses one proposal. Never fails: every problem is a rejection with its rule.
    pub fn assess(
        &self,
        state: &RiskState,
        proposal: &Proposal,
        portfolio: &Portfolio,
        market: &MarketView,
    ) -> Assessment {
        let now = market.now_ms;
        let effective;
        let (risk, gas) = if state.overrides.is_empty() {
            (&self.risk, &self.gas)
        } else {
            effective = self.effective(state, now);
            (&effective.0, &effective.1)
        };
        let trading_state = state.computed_state(now);
        let tx = if proposal.kind.is_exit() {
            None
        } else {
            proposal.entry_gas_usd
        };
        let gas_decision = gas::check(risk, gas, state, market.gas_gwei, tx, now);
        let done = |decision: Decision, sizing| Assessment {
            decision,
            gas: gas_decision.clone(),
            sizing,
            trading_state,
        };
        if proposal.kind.is_exit() {
            return done(
                Decision::Approve {
                    size_usd: 0.0,
                    bounded_by: Vec::new(),
                },
                None,
            );
        }
        if !trading_state.allows_entries() {
            return done(
                Decision::reject(
                    Rule::TradingState,
                    format!(
                        "trading state {}: entries are blocked",
                        trading_state.as_str()
                    ),
                ),
                None,
            );
        }
        if let Some(b) = state.entry_blockers(now).next() {
            let why = b.tripped.as_ref().map_or("", |t| t.reason.as_str());
            return done(
                Decision::reject(
                    Rule::Breaker,
                    format!("breaker {} is tripped: {why}", b.kind.as_str()),
                ),
                None,
            );
        }
        let data = match sizing::entry_data(proposal) {
            Ok(d) => d,
            Err(reject) => return done(reject, None),
        };
        if gas_decision.action != GasAction::Proceed {
            let reason = format!(
                "gas: {}: {}",
                gas_decision.action.as_str(),
                gas_decision.reason
            );
            return done(Decision::reject(Rule::Gas, reason), None);
        }
        let (decision, sizing) = sizing::size_entry(risk, state, proposal, &data, portfolio, now);
        done(decision, sizing)
    }
}
