//! The eight circuit breakers of SPEC.md §3: what each watches, its effect, its settings, and
//! the trip / re-arm mechanics they share.
//!
//! A breaker is armed or tripped. A trip records when, why, and until when (`None`: latched
//! until an operator resets it). Once its cooldown has passed it re-arms, and from then on it
//! only looks at data newer than the re-arm: a 24 h drawdown window does not re-trip a breaker
//! with a 4 h cooldown on the same loss, but a new loss of the same size trips it again.

use athena_config::{GasConfig, RiskConfig};
use serde::{Deserialize, Serialize};

/// Which breaker.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BreakerKind {
    /// PnL over the window at or below −5% of portfolio value.
    RapidLoss,
    /// Equity at or below 90% of its peak within the window.
    PortfolioDrawdown,
    /// Gas above 3 × the median of the previous readings, or above the hard cap.
    GasManipulation,
    /// Five or more RPC, LLM or cloud failures in the window.
    ApiFailures,
    /// Any checksum or integrity failure (latched).
    MemoryCorruption,
    /// Mean slippage above 2% over the last 5 trades.
    SlippageHigh,
    /// Three LLM timeouts in the window.
    LlmTimeout,
    /// Reconciliation difference above $1,000 (latched).
    PositionMismatch,
}

/// What a tripped breaker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// No entries; exits go on (trading state reduce-only).
    HaltEntries,
    /// Chain transactions postponed: no entries; exits go on.
    Postpone,
    /// Paused: trading state halted until the cooldown ends.
    Pause,
    /// Halted until an operator resets it.
    Halt,
    /// Entry sizes halved.
    HalveSizes,
    /// The LLM advisor is not consulted; rule-based decisions only.
    RuleBasedOnly,
}

impl BreakerKind {
    /// Every breaker, in SPEC.md's order.
    pub const ALL: [Self; 8] = [
        Self::RapidLoss,
        Self::PortfolioDrawdown,
        Self::GasManipulation,
        Self::ApiFailures,
        Self::MemoryCorruption,
        Self::SlippageHigh,
        Self::LlmTimeout,
        Self::PositionMismatch,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RapidLoss => "rapid_loss",
            Self::PortfolioDrawdown => "portfolio_drawdown",
            Self::GasManipulation => "gas_manipulation",
            Self::ApiFailures => "api_failures",
            Self::MemoryCorruption => "memory_corruption",
            Self::SlippageHigh => "slippage_high",
            Self::LlmTimeout => "llm_timeout",
            Self::PositionMismatch => "position_mismatch",
        }
    }

    /// The breaker named `name`, or an error listing the names.
    pub fn parse(name: &str) -> Result<Self, crate::risk::controls::Refused> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                crate::risk::controls::Refused(format!(
                    "unknown breaker {name:?}; one of {}",
                    names.join(", ")
                ))
            })
    }

    /// What it does while tripped.
    pub fn effect(self) -> Effect {
        match self {
            Self::RapidLoss | Self::PortfolioDrawdown => Effect::HaltEntries,
            Self::GasManipulation => Effect::Postpone,
            Self::ApiFailures => Effect::Pause,
            Self::MemoryCorruption | Self::PositionMismatch => Effect::Halt,
            Self::SlippageHigh => Effect::HalveSizes,
            Self::LlmTimeout => Effect::RuleBasedOnly,
        }
    }

    /// Whether it blocks entries while tripped (every effect but halving sizes and turning
    /// the LLM off). No breaker ever blocks an exit.
    pub fn blocks_entries(self) -> bool {
        !matches!(self.effect(), Effect::HalveSizes | Effect::RuleBasedOnly)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A breaker's settings, from `[risk]` and `[gas]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Trip threshold (percent, count, multiple or USD, by breaker).
    pub threshold: f64,
    /// Window the condition is measured over, ms (0: none).
    pub window_ms: u64,
    /// Cooldown after a trip, ms; `None`: latched until an operator resets it.
    pub cooldown_ms: Option<u64>,
}

fn ms(d: std::time::Duration) -> u64 {
    d.as_millis() as u64
}

impl BreakerSettings {
    /// The settings of `kind`.
    pub fn of(kind: BreakerKind, risk: &RiskConfig, gas: &GasConfig) -> Self {
        let (threshold, window, cooldown) = match kind {
            BreakerKind::RapidLoss => (
                risk.rapid_loss_pct,
                ms(risk.rapid_loss_window),
                Some(ms(risk.rapid_loss_cooldown)),
            ),
            BreakerKind::PortfolioDrawdown => (
                risk.drawdown_pct,
                ms(risk.drawdown_window),
                Some(ms(risk.drawdown_cooldown)),
            ),
            BreakerKind::GasManipulation => (
                gas.spike_multiplier,
                ms(risk.gas_manipulation_window),
                Some(ms(risk.gas_manipulation_cooldown)),
            ),
            BreakerKind::ApiFailures => (
                f64::from(risk.api_failures_threshold),
                ms(risk.api_failures_window),
                Some(ms(risk.api_failures_cooldown)),
            ),
            BreakerKind::MemoryCorruption => (1.0, 0, None),
            BreakerKind::SlippageHigh => (
                risk.slippage_high_pct,
                0,
                Some(ms(risk.slippage_high_cooldown)),
            ),
            BreakerKind::LlmTimeout => (
                f64::from(risk.llm_timeout_threshold),
                ms(risk.llm_timeout_window),
                Some(ms(risk.llm_timeout_cooldown)),
            ),
            BreakerKind::PositionMismatch => (risk.position_mismatch_usd, 0, None),
        };
        Self {
            threshold,
            window_ms: window,
            cooldown_ms: cooldown,
        }
    }
}

/// One trip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trip {
    /// When.
    pub at_ms: u64,
    /// Why, with the numbers.
    pub reason: String,
    /// Re-arms at this time; `None`: latched until an operator resets it.
    pub until_ms: Option<u64>,
}

/// A breaker's persisted state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    /// Which breaker.
    pub kind: BreakerKind,
    /// The current trip, if tripped.
    pub tripped: Option<Trip>,
    /// Trips so far.
    pub trip_count: u32,
    /// The latest trip (kept after re-arming).
    pub last_trip: Option<Trip>,
    /// Armed since (0: never tripped); the breaker looks only at data newer than this.
    pub armed_since_ms: u64,
}

impl Breaker {
    /// An armed breaker that never tripped.
    pub fn new(kind: BreakerKind) -> Self {
        Self {
            kind,
            tripped: None,
            trip_count: 0,
            last_trip: None,
            armed_since_ms: 0,
        }
    }

    /// Tripped at `now_ms` (a trip whose cooldown has passed counts as armed even before the
    /// state is updated).
    pub fn is_tripped(&self, now_ms: u64) -> bool {
        self.tripped
            .as_ref()
            .is_some_and(|t| t.until_ms.is_none_or(|u| now_ms < u))
    }

    /// Trips it (no-op if already tripped); returns whether it tripped now.
    pub(crate) fn trip(&mut self, at_ms: u64, reason: String, settings: &BreakerSettings) -> bool {
        if self.is_tripped(at_ms) {
            return false;
        }
        let trip = Trip {
            at_ms,
            reason,
            until_ms: settings.cooldown_ms.map(|c| at_ms.saturating_add(c)),
        };
        self.tripped = Some(trip.clone());
        self.last_trip = Some(trip);
        self.trip_count += 1;
        true
    }

    /// Re-arms it if its cooldown has passed; returns whether it re-armed.
    pub(crate) fn rearm_if_due(&mut self, now_ms: u64) -> bool {
        match &self.tripped {
            Some(t) if t.until_ms.is_some_and(|u| now_ms >= u) => {
                self.armed_since_ms = t.until_ms.unwrap_or(now_ms);
                self.tripped = None;
                true
            }
            _ => false,
        }
    }

    /// Operator reset: armed from `now_ms`; returns whether it was tripped.
    pub(crate) fn reset(&mut self, now_ms: u64) -> bool {
        let was = self.tripped.take().is_some();
        self.armed_since_ms = now_ms;
        was
    }
}
