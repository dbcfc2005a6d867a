//! The risk engine's persisted state: breakers, trading state, the recent series the breakers
//! and gas rules read, the gas budget, operator stop and limit overrides, and the journal
//! entries every change produces.
//!
//! Series are bounded: readings older than the longest window they serve are dropped, and gas
//! readings keep the newest [`GAS_READINGS_KEPT`], so the state does not grow with uptime.

use crate::risk::breakers::{Breaker, BreakerKind, Effect};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Gas readings kept for the median, p95 and rapid-change rules.
pub const GAS_READINGS_KEPT: usize = 1_000;
/// Equity readings kept at most (the windows drop older ones first).
pub const EQUITY_READINGS_KEPT: usize = 10_000;
/// Failure and timeout times kept at most per series.
pub const EVENTS_KEPT: usize = 1_000;

/// Trading state, from least to most strict.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TradingState {
    /// Entries and exits.
    #[default]
    Active,
    /// Exits only.
    ReduceOnly,
    /// Nothing but exits an operator or the risk engine asks for.
    Halted,
}

impl TradingState {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::ReduceOnly => "reduce_only",
            Self::Halted => "halted",
        }
    }

    /// Whether entries are allowed (exits always are).
    pub fn allows_entries(self) -> bool {
        self == Self::Active
    }
}

/// An operator's stop, kept until a resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorStop {
    /// When.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
}

/// A numeric limit an operator may change for a bounded time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// `risk.base_position_usd`
    BasePositionUsd,
    /// `risk.new_pool_cap_usd`
    NewPoolCapUsd,
    /// `risk.max_position_fraction`
    MaxPositionFraction,
    /// `risk.max_token_fraction`
    MaxTokenFraction,
    /// `risk.max_stable_fraction`
    MaxStableFraction,
    /// `risk.max_volatile_fraction`
    MaxVolatileFraction,
    /// `risk.max_low_liquidity_fraction`
    MaxLowLiquidityFraction,
    /// `risk.max_correlated_fraction`
    MaxCorrelatedFraction,
    /// `risk.max_positions`
    MaxPositions,
    /// `risk.max_entry_gas_fraction`
    MaxEntryGasFraction,
    /// `risk.max_slippage_pct`
    MaxSlippagePct,
    /// `gas.hard_cap_gwei`
    GasHardCapGwei,
    /// `gas.daily_budget_usd`
    GasDailyBudgetUsd,
}

impl Limit {
    /// Every limit.
    pub const ALL: [Self; 13] = [
        Self::BasePositionUsd,
        Self::NewPoolCapUsd,
        Self::MaxPositionFraction,
        Self::MaxTokenFraction,
        Self::MaxStableFraction,
        Self::MaxVolatileFraction,
        Self::MaxLowLiquidityFraction,
        Self::MaxCorrelatedFraction,
        Self::MaxPositions,
        Self::MaxEntryGasFraction,
        Self::MaxSlippagePct,
        Self::GasHardCapGwei,
        Self::GasDailyBudgetUsd,
    ];

    /// The configuration key, `section.key`.
    pub fn key(self) -> &'static str {
        match self {
            Self::BasePositionUsd => "risk.base_position_usd",
            Self::NewPoolCapUsd => "risk.new_pool_cap_usd",
            Self::MaxPositionFraction => "risk.max_position_fraction",
            Self::MaxTokenFraction => "risk.max_token_fraction",
            Self::MaxStableFraction => "risk.max_stable_fraction",
            Self::MaxVolatileFraction => "risk.max_volatile_fraction",
            Self::MaxLowLiquidityFraction => "risk.max_low_liquidity_fraction",
            Self::MaxCorrelatedFraction => "risk.max_correlated_fraction",
            Self::MaxPositions => "risk.max_positions",
            Self::MaxEntryGasFraction => "risk.max_entry_gas_fraction",
            Self::MaxSlippagePct => "risk.max_slippage_pct",
            Self::GasHardCapGwei => "gas.hard_cap_gwei",
            Self::GasDailyBudgetUsd => "gas.daily_budget_usd",
        }
    }

    /// The limit with configuration key `key`.
    pub fn parse(key: &str) -> Result<Self, crate::risk::controls::Refused> {
        Self::ALL
            .into_iter()
            .find(|l| l.key() == key || l.key().split_once('.').is_some_and(|(_, k)| k == key))
            .ok_or_else(|| {
                let keys: Vec<&str> = Self::ALL.iter().map(|l| l.key()).collect();
                crate::risk::controls::Refused(format!(
                    "unknown limit {key:?}; one of {}",
                    keys.join(", ")
                ))
            })
    }

    /// Whether `value` is a valid setting of this limit.
    pub fn check(self, value: f64) -> Result<(), crate::risk::controls::Refused> {
        let fraction = matches!(
            self,
            Self::MaxPositionFraction
                | Self::MaxTokenFraction
                | Self::MaxStableFraction
                | Self::MaxVolatileFraction
                | Self::MaxLowLiquidityFraction
                | Self::MaxCorrelatedFraction
                | Self::MaxEntryGasFraction
        );
        let ok = value.is_finite()
            && if fraction {
                value > 0.0 && value <= 1.0
            } else if self == Self::MaxPositions {
                value >= 0.0 && value.fract() == 0.0 && value <= 1_000.0
            } else {
                value >= 0.0
            };
        if ok {
            Ok(())
        } else if fraction {
            Err(crate::risk::controls::Refused(format!(
                "{} must be a fraction in (0, 1], got {}",
                self.key(),
                shown(value)
            )))
        } else {
            Err(crate::risk::controls::Refused(format!(
                "{} must be a finite non-negative number{}, got {}",
                self.key(),
                if self == Self::MaxPositions {
                    " (a whole number up to 1000)"
                } else {
                    ""
                },
                shown(value)
            )))
        }
    }
}

/// A refused value as an operator can read it: in scientific notation when very large or
/// very small (1e308 is not three hundred digits).
fn shown(value: f64) -> String {
    if value != 0.0 && !(1e-6..1e15).contains(&value.abs()) && value.is_finite() {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// An operator's temporary change of one limit; it expires by itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitOverride {
    /// The limit.
    pub limit: Limit,
    /// Its value while the override lasts.
    pub value: f64,
    /// Set at.
    pub at_ms: u64,
    /// Expires at.
    pub until_ms: u64,
    /// Why.
    pub reason: String,
}

/// Today's gas spending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GasBudget {
    /// UTC day number (ms / 86,400,000) the spending belongs to.
    pub day: u64,
    /// Gas spent that day, USD.
    pub spent_usd: f64,
}

impl GasBudget {
    /// Spending on the UTC day of `now_ms` (zero on a new day).
    pub fn spent_on(&self, now_ms: u64) -> f64 {
        if self.day == utc_day(now_ms) {
            self.spent_usd
        } else {
            0.0
        }
    }
}

/// UTC day number of `ms`.
pub fn utc_day(ms: u64) -> u64 {
    ms / 86_400_000
}

/// Something the engine did, for the journal (every trip, re-arm, reset, state change,
/// operator control and override).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskEvent {
    /// A breaker tripped.
    Trip {
        /// Which.
        breaker: BreakerKind,
        /// Why, with the numbers.
        reason: String,
        /// Re-arms at (`None`: latched).
        until_ms: Option<u64>,
    },
    /// A breaker's cooldown passed.
    Rearm {
        /// Which.
        breaker: BreakerKind,
    },
    /// An operator reset a breaker.
    Reset {
        /// Which.
        breaker: BreakerKind,
        /// Why.
        reason: String,
        /// Whether it was tripped.
        was_tripped: bool,
    },
    /// The trading state changed.
    StateChange {
        /// From.
        from: TradingState,
        /// To.
        to: TradingState,
        /// What made it change.
        cause: String,
    },
    /// Operator stop (halt; pending intents are cancelled by the caller).
    Stop {
        /// Why.
        reason: String,
    },
    /// Operator resume.
    Resume {
        /// Why.
        reason: String,
    },
    /// A restart found the persisted state stricter than the breakers imply: it is kept.
    RestartHold {
        /// Persisted state.
        persisted: TradingState,
        /// What the breakers imply.
        computed: TradingState,
    },
    /// A limit override was set.
    Override {
        /// The override.
        change: LimitOverride,
    },
    /// A limit override expired.
    OverrideExpired {
        /// The limit.
        limit: Limit,
    },
    /// Exit-all confirmed: every position is to be closed into the stable asset.
    ExitAll {
        /// Positions to close.
        positions: Vec<String>,
        /// Why.
        reason: String,
    },
    /// A recovery started the recovery-factor ramp.
    Recovered,
}

/// A journal entry of the risk engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskJournal {
    /// Agent time.
    pub at_ms: u64,
    /// What happened.
    pub event: RiskEvent,
}

/// Everything the risk engine persists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskState {
    /// The eight breakers, in [`BreakerKind::ALL`] order.
    pub breakers: Vec<Breaker>,
    /// The trading state as last computed (or held at restart).
    pub trading_state: TradingState,
    /// Operator stop, until a resume.
    pub operator_stop: Option<OperatorStop>,
    /// A restart kept a stricter persisted state; released by an operator resume.
    pub restart_hold: Option<TradingState>,
    /// Equity readings (ms, USD), oldest first.
    #[serde(with = "crate::series")]
    pub equity: VecDeque<(u64, f64)>,
    /// Gas readings (ms, gwei), oldest first.
    #[serde(with = "crate::series")]
    pub gas_readings: VecDeque<(u64, f64)>,
    /// RPC, LLM and cloud failure times.
    pub api_failures: VecDeque<u64>,
    /// LLM timeout times.
    pub llm_timeouts: VecDeque<u64>,
    /// Recent trades' slippage (ms, percent), oldest first.
    #[serde(with = "crate::series")]
    pub slippage: VecDeque<(u64, f64)>,
    /// Today's gas spending.
    pub gas_budget: GasBudget,
    /// Active limit overrides.
    pub overrides: Vec<LimitOverride>,
    /// Last recovery (start of the recovery-factor ramp).
    pub recovered_at_ms: Option<u64>,
}

impl Default for RiskState {
    fn default() -> Self {
        Self {
            breakers: BreakerKind::ALL.into_iter().map(Breaker::new).collect(),
            trading_state: TradingState::Active,
            operator_stop: None,
            restart_hold: None,
            equity: VecDeque::new(),
            gas_readings: VecDeque::new(),
            api_failures: VecDeque::new(),
            llm_timeouts: VecDeque::new(),
            slippage: VecDeque::new(),
            gas_budget: GasBudget::default(),
            overrides: Vec::new(),
            recovered_at_ms: None,
        }
    }
}

impl RiskState {
    /// The breaker of `kind`.
    pub fn breaker(&self, kind: BreakerKind) -> &Breaker {
        &self.breakers[kind.index()]
    }

    pub(crate) fn breaker_mut(&mut self, kind: BreakerKind) -> &mut Breaker {
        &mut self.breakers[kind.index()]
    }

    /// Whether `kind` is tripped at `now_ms`.
    pub fn is_tripped(&self, kind: BreakerKind, now_ms: u64) -> bool {
        self.breaker(kind).is_tripped(now_ms)
    }

    /// The trading state the breakers, the operator stop and a restart hold imply at `now_ms`.
    pub fn computed_state(&self, now_ms: u64) -> TradingState {
        let mut state = self.breaker_state(now_ms);
        if self.operator_stop.is_some() {
            state = state.max(TradingState::Halted);
        }
        if let Some(held) = self.restart_hold {
            state = state.max(held);
        }
        state
    }

    /// The trading state the breakers alone imply.
    pub fn breaker_state(&self, now_ms: u64) -> TradingState {
        self.breakers
            .iter()
            .filter(|b| b.is_tripped(now_ms))
            .map(|b| match b.kind.effect() {
                Effect::Pause | Effect::Halt => TradingState::Halted,
                Effect::HaltEntries => TradingState::ReduceOnly,
                Effect::Postpone | Effect::HalveSizes | Effect::RuleBasedOnly => {
                    TradingState::Active
                }
            })
            .max()
            .unwrap_or_default()
    }

    /// The breakers blocking entries at `now_ms`.
    pub fn entry_blockers(&self, now_ms: u64) -> impl Iterator<Item = &Breaker> {
        self.breakers
            .iter()
            .filter(move |b| b.kind.blocks_entries() && b.is_tripped(now_ms))
    }

    /// Whether the LLM advisor may be consulted (llm_timeout not tripped).
    pub fn llm_allowed(&self, now_ms: u64) -> bool {
        !self.is_tripped(BreakerKind::LlmTimeout, now_ms)
    }

    /// Readings strictly before `now_ms` within `window_ms` (the current one excluded).
    pub(crate) fn gas_before(&self, now_ms: u64, window_ms: u64) -> impl Iterator<Item = f64> + '_ {
        let from = now_ms.saturating_sub(window_ms);
        self.gas_readings
            .iter()
            .filter(move |(t, _)| *t >= from && *t < now_ms)
            .map(|(_, g)| *g)
    }
}

/// Median of `values` (`None` when empty). Sorts a copy; NaNs are never stored.
pub fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Keeps at most `max` newest entries.
pub(crate) fn bound<T>(q: &mut VecDeque<T>, max: usize) {
    while q.len() > max {
        q.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_limit_value_is_shown_short() {
        let e = Limit::MaxPositionFraction.check(1e308).unwrap_err().0;
        assert!(e.ends_with("got 1e308"), "{e}");
        let e = Limit::BasePositionUsd.check(-2.5).unwrap_err().0;
        assert!(e.ends_with("got -2.5"), "{e}");
        let e = Limit::BasePositionUsd.check(f64::NAN).unwrap_err().0;
        assert!(e.ends_with("got NaN"), "{e}");
    }
}
