//! Gas protection (SPEC.md §3): hard cap, daily budget, spike rule, p95 postponement and the
//! rapid-change delay. One answer per check, the strictest rule first.

use crate::risk::state::{RiskState, median, utc_day};
use athena_config::{GasConfig, RiskConfig};
use serde::{Deserialize, Serialize};

/// What to do with a chain transaction now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GasAction {
    /// Send it.
    Proceed,
    /// Short delay: gas is moving fast.
    Delay,
    /// Gas is high against recent readings: try again later.
    Postpone,
    /// The daily budget does not allow it: wait for the UTC-midnight reset.
    Wait,
    /// Above the hard cap: no transaction at all.
    Halt,
}

impl GasAction {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proceed => "proceed",
            Self::Delay => "delay",
            Self::Postpone => "postpone",
            Self::Wait => "wait",
            Self::Halt => "halt",
        }
    }
}

/// A gas verdict with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GasDecision {
    /// What to do.
    pub action: GasAction,
    /// Why, with the numbers.
    pub reason: String,
}

impl GasDecision {
    fn new(action: GasAction, reason: String) -> Self {
        Self { action, reason }
    }
}

/// Checks a transaction costing `tx_usd` (`None`: price only) at `gwei`, at `now_ms`, against
/// the readings recorded before `now_ms`.
pub fn check(
    risk: &RiskConfig,
    gas: &GasConfig,
    state: &RiskState,
    gwei: f64,
    tx_usd: Option<f64>,
    now_ms: u64,
) -> GasDecision {
    use GasAction::*;
    if !gwei.is_finite() || gwei < 0.0 {
        return GasDecision::new(Halt, format!("gas reading {gwei} is not a price"));
    }
    if gwei > gas.hard_cap_gwei {
        return GasDecision::new(
            Halt,
            format!(
                "gas {gwei:.3} gwei above the hard cap {} gwei",
                gas.hard_cap_gwei
            ),
        );
    }
    let window = risk.gas_manipulation_window.as_millis() as u64;
    if let Some(m) = median(state.gas_before(now_ms, window))
        && gwei > gas.spike_multiplier * m
    {
        return GasDecision::new(
            Postpone,
            format!(
                "gas {gwei:.3} gwei is a spike: above {} × the median {m:.3} of the previous readings",
                gas.spike_multiplier
            ),
        );
    }
    if let Some(tx) = tx_usd {
        let per_tx = gas.max_tx_budget_fraction * gas.daily_budget_usd;
        if !tx.is_finite() || tx < 0.0 {
            return GasDecision::new(Halt, format!("transaction gas {tx} USD is not a cost"));
        }
        if tx > per_tx {
            return GasDecision::new(
                Wait,
                format!(
                    "transaction gas ${tx:.2} above {:.0}% of the daily budget (${per_tx:.2})",
                    gas.max_tx_budget_fraction * 100.0
                ),
            );
        }
        let spent = state.gas_budget.spent_on(now_ms);
        if spent + tx > gas.daily_budget_usd {
            return GasDecision::new(
                Wait,
                format!(
                    "daily gas budget: ${spent:.2} spent + ${tx:.2} > ${:.2} until UTC midnight (day {})",
                    gas.daily_budget_usd,
                    utc_day(now_ms)
                ),
            );
        }
    }
    let previous = state.gas_readings.iter().filter(|(t, _)| *t < now_ms);
    let count = previous.clone().count();
    if count >= gas.percentile_min_readings as usize && count > 0 {
        let mut v: Vec<f64> = previous.clone().map(|(_, g)| *g).collect();
        let k = ((v.len() as f64) * 0.95).ceil() as usize - 1;
        let k = k.min(v.len() - 1);
        let (_, p95, _) = v.select_nth_unstable_by(k, f64::total_cmp);
        if gwei > *p95 {
            return GasDecision::new(
                Postpone,
                format!(
                    "gas {gwei:.3} gwei above the 95th percentile {p95:.3} of {count} readings"
                ),
            );
        }
    }
    let lookback = gas.rapid_change_lookback as usize;
    if lookback > 0 && count > 0 {
        let recent: Vec<f64> = previous
            .skip(count.saturating_sub(lookback))
            .map(|(_, g)| *g)
            .collect();
        let mean = recent.iter().sum::<f64>() / recent.len() as f64;
        let last = recent[recent.len() - 1];
        if (gwei - last).abs() > gas.rapid_change_fraction * mean {
            return GasDecision::new(
                Delay,
                format!(
                    "gas moved {last:.3} → {gwei:.3} gwei, more than {:.0}% of the recent mean {mean:.3}",
                    gas.rapid_change_fraction * 100.0
                ),
            );
        }
    }
    GasDecision::new(Proceed, format!("gas {gwei:.3} gwei"))
}
