//! `[risk]`, `[gas]` and `[recovery]`: breakers, sizing, caps, gas protection, checkpoints.
//!
//! Fractions are of portfolio value and lie in (0, 1]; percentages are plain percent (5.0 = 5%).

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// `[risk]`: circuit breakers, position sizing and hard caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RiskConfig {
    /// rapid_loss trips when PnL over its window is at or below minus this percent of value.
    pub rapid_loss_pct: f64,
    /// rapid_loss window. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub rapid_loss_window: Duration,
    /// rapid_loss cooldown. Default 2 h.
    #[serde(with = "humantime_serde")]
    pub rapid_loss_cooldown: Duration,
    /// portfolio_drawdown trips when equity falls this percent below its peak in the window.
    pub drawdown_pct: f64,
    /// portfolio_drawdown window. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub drawdown_window: Duration,
    /// portfolio_drawdown cooldown. Default 4 h.
    #[serde(with = "humantime_serde")]
    pub drawdown_cooldown: Duration,
    /// gas_manipulation window. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub gas_manipulation_window: Duration,
    /// gas_manipulation cooldown. Default 30 min.
    #[serde(with = "humantime_serde")]
    pub gas_manipulation_cooldown: Duration,
    /// api_failures trips at this many failures in its window.
    pub api_failures_threshold: u32,
    /// api_failures window. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub api_failures_window: Duration,
    /// api_failures cooldown. Default 10 min.
    #[serde(with = "humantime_serde")]
    pub api_failures_cooldown: Duration,
    /// slippage_high trips when mean slippage over the last trades exceeds this percent.
    pub slippage_high_pct: f64,
    /// Trades averaged by slippage_high.
    pub slippage_high_trades: u32,
    /// slippage_high cooldown. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub slippage_high_cooldown: Duration,
    /// llm_timeout trips at this many LLM timeouts in its window.
    pub llm_timeout_threshold: u32,
    /// llm_timeout window. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub llm_timeout_window: Duration,
    /// llm_timeout cooldown. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub llm_timeout_cooldown: Duration,
    /// position_mismatch trips above this reconciliation difference, USD.
    pub position_mismatch_usd: f64,
    /// Base position size, USD.
    pub base_position_usd: f64,
    /// Cap for pools younger than `new_pool_age`, USD.
    pub new_pool_cap_usd: f64,
    /// Age under which a pool is new. Default 7 d.
    #[serde(with = "humantime_serde")]
    pub new_pool_age: Duration,
    /// One position at most this fraction of the portfolio.
    pub max_position_fraction: f64,
    /// One token at most this fraction of the portfolio.
    pub max_token_fraction: f64,
    /// Stable pools at most this fraction of the portfolio.
    pub max_stable_fraction: f64,
    /// Volatile pools at most this fraction of the portfolio.
    pub max_volatile_fraction: f64,
    /// Pools under this TVL (USD) are low-liquidity.
    pub low_liquidity_tvl_usd: f64,
    /// Low-liquidity pools at most this fraction of the portfolio in total.
    pub max_low_liquidity_fraction: f64,
    /// Correlated exposure at most this fraction of the portfolio.
    pub max_correlated_fraction: f64,
    /// Open positions at most.
    pub max_positions: u32,
    /// Entry gas at most this fraction of the position size.
    pub max_entry_gas_fraction: f64,
    /// Size factor right after a recovery, ramping back to 1.
    pub recovery_factor: f64,
    /// Duration of the recovery ramp. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub recovery_period: Duration,
    /// Slippage limit that bounds every swap's minimum output, percent.
    pub max_slippage_pct: f64,
}

impl Default for RiskConfig {
    fn default() -> Self {
        const MIN: u64 = 60;
        const HOUR: u64 = 3600;
        Self {
            rapid_loss_pct: 5.0,
            rapid_loss_window: Duration::from_secs(HOUR),
            rapid_loss_cooldown: Duration::from_secs(2 * HOUR),
            drawdown_pct: 10.0,
            drawdown_window: Duration::from_secs(24 * HOUR),
            drawdown_cooldown: Duration::from_secs(4 * HOUR),
            gas_manipulation_window: Duration::from_secs(10 * MIN),
            gas_manipulation_cooldown: Duration::from_secs(30 * MIN),
            api_failures_threshold: 5,
            api_failures_window: Duration::from_secs(5 * MIN),
            api_failures_cooldown: Duration::from_secs(10 * MIN),
            slippage_high_pct: 2.0,
            slippage_high_trades: 5,
            slippage_high_cooldown: Duration::from_secs(HOUR),
            llm_timeout_threshold: 3,
            llm_timeout_window: Duration::from_secs(5 * MIN),
            llm_timeout_cooldown: Duration::from_secs(5 * MIN),
            position_mismatch_usd: 1000.0,
            base_position_usd: 1000.0,
            new_pool_cap_usd: 500.0,
            new_pool_age: Duration::from_secs(7 * 24 * HOUR),
            max_position_fraction: 0.20,
            max_token_fraction: 0.50,
            max_stable_fraction: 0.30,
            max_volatile_fraction: 0.70,
            low_liquidity_tvl_usd: 100_000.0,
            max_low_liquidity_fraction: 0.15,
            max_correlated_fraction: 0.40,
            max_positions: 5,
            max_entry_gas_fraction: 0.01,
            recovery_factor: 0.5,
            recovery_period: Duration::from_secs(24 * HOUR),
            max_slippage_pct: 1.0,
        }
    }
}

/// `[gas]`: gas protection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GasConfig {
    /// Hard cap, gwei. Default 100.
    pub hard_cap_gwei: f64,
    /// Daily gas budget, USD; resets at UTC midnight. Default 50.
    pub daily_budget_usd: f64,
    /// One transaction may use at most this fraction of the daily budget.
    pub max_tx_budget_fraction: f64,
    /// A reading above this multiple of the median of previous readings is a spike.
    pub spike_multiplier: f64,
    /// Readings needed before the 95th-percentile postponement applies.
    pub percentile_min_readings: u32,
    /// A step larger than this fraction of the recent mean delays transactions.
    pub rapid_change_fraction: f64,
    /// Readings in the recent mean of the rapid-change rule.
    pub rapid_change_lookback: u32,
}

impl Default for GasConfig {
    fn default() -> Self {
        Self {
            hard_cap_gwei: 100.0,
            daily_budget_usd: 50.0,
            max_tx_budget_fraction: 0.20,
            spike_multiplier: 3.0,
            percentile_min_readings: 100,
            rapid_change_fraction: 0.5,
            rapid_change_lookback: 10,
        }
    }
}

/// `[recovery]`: checkpoints, reconciliation, scrubbing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Checkpoint period, agent time. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Keep every hourly checkpoint this long, then thin. Default 7 d.
    #[serde(with = "humantime_serde")]
    pub checkpoint_hourly_retention: Duration,
    /// Reconciliation differences up to this are tolerated, USD.
    pub reconcile_tolerance_usd: f64,
    /// Records the background scrubber verifies per second.
    pub scrub_records_per_sec: u32,
    /// Record the store's allocator state at every commit (redb quick-repair), so the open after
    /// a crash does not scan the whole file; costs an extra fsync per commit.
    pub quick_repair: bool,
    /// How long an ordered shutdown may take before it gives up waiting.
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// How long `athena run` keeps reopening a store it cannot write (disk full, I/O error,
    /// read-only file system) before it exits non-zero for its supervisor; wall time.
    /// Default 10 min.
    #[serde(with = "humantime_serde")]
    pub store_retry_deadline: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            checkpoint_interval: Duration::from_secs(3600),
            checkpoint_hourly_retention: Duration::from_secs(7 * 86_400),
            reconcile_tolerance_usd: 100.0,
            scrub_records_per_sec: 1000,
            quick_repair: true,
            shutdown_deadline: Duration::from_secs(30),
            store_retry_deadline: Duration::from_secs(600),
        }
    }
}
