//! Where pool data comes from: the seeded simulator (`sim`, the embedded default) or a JSONL
//! replay of snapshots (`replay`, which the simulator can also write). Both yield one
//! [`MarketTick`] per agent tick; the same seed gives the same ticks, bit for bit.

pub mod replay;
pub mod sim;

use serde::{Deserialize, Serialize};

/// One pool at one moment, with the derived figures of SPEC.md §1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolSnapshot {
    /// Pool id, e.g. `WETH/USDC`.
    pub pool: String,
    /// Its two tokens.
    pub tokens: [String; 2],
    /// A stable pool (fee 0.01%) rather than a volatile one (0.30%).
    pub stable: bool,
    /// Swap fee rate (0.003 = 0.30%).
    pub fee_rate: f64,
    /// USD price of each token.
    pub prices_usd: [f64; 2],
    /// Reserves of each token.
    pub reserves: [f64; 2],
    /// Total value locked, USD (Σ reserve × price).
    pub tvl_usd: f64,
    /// Volume over the last 24 h, USD.
    pub volume_24h_usd: f64,
    /// Fee APR, percent: 24h volume × fee × 365 / TVL × 100.
    pub fee_apr_pct: f64,
    /// Emission APR, percent.
    pub emission_apr_pct: f64,
    /// Pool creation time, ms.
    pub created_ms: u64,
}

impl PoolSnapshot {
    /// Fee plus emission APR, percent.
    pub fn apr_pct(&self) -> f64 {
        self.fee_apr_pct + self.emission_apr_pct
    }

    /// How far the pool's stable tokens are from $1, percent (0 for volatile pools).
    pub fn depeg_pct(&self) -> f64 {
        if !self.stable {
            return 0.0;
        }
        self.prices_usd
            .iter()
            .map(|p| (p - 1.0).abs() * 100.0)
            .fold(0.0, f64::max)
    }
}

/// Everything the agent observes at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MarketTick {
    /// Tick number from the start of the run.
    pub index: u64,
    /// Agent time, ms.
    pub at_ms: u64,
    /// Gas price, gwei.
    pub gas_gwei: f64,
    /// ETH price, USD (for gas costs).
    pub eth_usd: f64,
    /// Every pool.
    pub pools: Vec<PoolSnapshot>,
}

impl MarketTick {
    /// Gas cost of `units` gas at this tick's price, USD.
    pub fn gas_usd(&self, units: f64) -> f64 {
        units * self.gas_gwei * 1e-9 * self.eth_usd
    }

    /// The snapshot of `pool`.
    pub fn pool(&self, pool: &str) -> Option<&PoolSnapshot> {
        self.pools.iter().find(|p| p.pool == pool)
    }
}

/// A source of market ticks.
pub trait MarketSource: Send {
    /// The tick numbered `index` (ticks are asked for in order; a source may fast-forward).
    fn tick(&mut self, index: u64) -> Result<MarketTick, String>;
}
