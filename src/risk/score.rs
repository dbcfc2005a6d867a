//! The portfolio risk score (SPEC.md §3): four components of 0–25 (concentration,
//! volatility, liquidity, correlation), each its exposure against its limit, and a level.

use crate::risk::model::Portfolio;
use athena_config::RiskConfig;
use serde::{Deserialize, Serialize};

/// Risk level of a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    /// ≤ 25.
    Low,
    /// 26–50.
    Medium,
    /// > 50.
    High,
    /// > 75.
    Critical,
}

impl RiskLevel {
    /// The level of `score`.
    pub fn of(score: f64) -> Self {
        match score {
            s if s > 75.0 => Self::Critical,
            s if s > 50.0 => Self::High,
            s if s > 25.0 => Self::Medium,
            _ => Self::Low,
        }
    }
}

/// The score with its components.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RiskScore {
    /// Largest token exposure against `max_token_fraction`, 0–25.
    pub concentration: f64,
    /// Value-weighted APR variance against 0.5 (the worst volatility band), 0–25.
    pub volatility: f64,
    /// Low-liquidity exposure against `max_low_liquidity_fraction`, 0–25.
    pub liquidity: f64,
    /// Largest exposure of positions sharing one token against `max_correlated_fraction`, 0–25.
    pub correlation: f64,
    /// Sum, 0–100.
    pub total: f64,
    /// Level of the total.
    pub level: RiskLevel,
}

/// `used` against `limit`, scaled to 0–25; an unknown (NaN) exposure scores the worst.
fn component(used: f64, limit: f64) -> f64 {
    if used.is_nan() {
        return 25.0;
    }
    if limit.is_nan() || limit <= 0.0 {
        return if used > 0.0 { 25.0 } else { 0.0 };
    }
    (25.0 * used / limit).clamp(0.0, 25.0)
}

/// Scores `portfolio`.
pub fn score(cfg: &RiskConfig, portfolio: &Portfolio) -> RiskScore {
    let value = portfolio.value_usd();
    let (concentration, volatility, liquidity, correlation) = if value.is_finite() && value > 0.0 {
        let mut tokens: Vec<&str> = portfolio
            .positions
            .iter()
            .flat_map(|p| p.tokens.iter().map(String::as_str))
            .collect();
        tokens.sort_unstable();
        tokens.dedup();
        let largest_token = tokens
            .iter()
            .map(|t| portfolio.token_exposure_usd(t))
            .fold(0.0, f64::max);
        let largest_correlated = tokens
            .iter()
            .map(|t| {
                portfolio
                    .positions
                    .iter()
                    .filter(|p| p.tokens.iter().any(|x| x == t))
                    .map(|p| p.value_usd)
                    .sum::<f64>()
            })
            .fold(0.0, f64::max);
        let invested: f64 = portfolio.positions.iter().map(|p| p.value_usd).sum();
        let weighted_variance = if invested > 0.0 {
            portfolio
                .positions
                .iter()
                .map(|p| p.value_usd * p.apr_variance)
                .sum::<f64>()
                / invested
        } else {
            0.0
        };
        let low: f64 = portfolio
            .positions
            .iter()
            .filter(|p| p.pool_tvl_usd < cfg.low_liquidity_tvl_usd)
            .map(|p| p.value_usd)
            .sum();
        (
            component(largest_token / value, cfg.max_token_fraction),
            component(weighted_variance, 0.5),
            component(low / value, cfg.max_low_liquidity_fraction),
            component(largest_correlated / value, cfg.max_correlated_fraction),
        )
    } else if value.is_nan() || value.is_infinite() {
        (25.0, 25.0, 25.0, 25.0) // a portfolio that cannot be valued is the worst case
    } else {
        (0.0, 0.0, 0.0, 0.0)
    };
    let total = concentration + volatility + liquidity + correlation;
    RiskScore {
        concentration,
        volatility,
        liquidity,
        correlation,
        total,
        level: RiskLevel::of(total),
    }
}
