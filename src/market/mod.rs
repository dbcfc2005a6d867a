//! Where pool data comes from: the seeded simulator (`sim`, the embedded default), a JSONL
//! replay of snapshots (`replay`, which the simulator can also write) or an EVM node
//! (`chain`, in [`crate::chain`]). Each yields one [`MarketTick`] per agent tick; the simulator
//! and a replay give the same ticks for the same seed, bit for bit.
//!
//! Bad data is never traded on (SPEC.md §1): [`PoolSnapshot::check`] names the first figure
//! of a snapshot that is not a finite, non-negative number (prices must be positive). A replay
//! refuses such a line as a [`MarketError::BadLine`]; the agent drops such a pool from the
//! tick of a live source and journals why.

pub mod replay;
pub mod sim;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// How far the pool's own price (from its reserves, on its curve) is from the market
    /// price of its tokens, percent: what a swap in it loses on top of its fee and impact.
    /// 0 where the pool's price is the market's (the simulator, a pool that sets the price).
    #[serde(default)]
    pub price_gap_pct: f64,
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

    /// The first figure that cannot be used: every reserve, TVL, volume and APR must be a
    /// finite number ≥ 0, every price finite and > 0, the fee rate in [0, 1).
    pub fn check(&self) -> Result<(), BadFigure> {
        let p = self.prices_usd;
        let r = self.reserves;
        for (figure, value) in [(Figure::Price0, p[0]), (Figure::Price1, p[1])] {
            BadFigure::positive(figure, value)?;
        }
        for (figure, value) in [
            (Figure::Reserve0, r[0]),
            (Figure::Reserve1, r[1]),
            (Figure::Tvl, self.tvl_usd),
            (Figure::Volume, self.volume_24h_usd),
            (Figure::FeeApr, self.fee_apr_pct),
            (Figure::EmissionApr, self.emission_apr_pct),
        ] {
            BadFigure::not_negative(figure, value)?;
        }
        if !(0.0..1.0).contains(&self.fee_rate) {
            return Err(BadFigure {
                figure: Figure::FeeRate,
                value: self.fee_rate,
            });
        }
        Ok(())
    }
}

/// A figure of a market tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// `prices_usd[0]`.
    Price0,
    /// `prices_usd[1]`.
    Price1,
    /// `reserves[0]`.
    Reserve0,
    /// `reserves[1]`.
    Reserve1,
    /// `tvl_usd`.
    Tvl,
    /// `volume_24h_usd`.
    Volume,
    /// `fee_apr_pct`.
    FeeApr,
    /// `emission_apr_pct`.
    EmissionApr,
    /// `fee_rate`.
    FeeRate,
    /// The tick's `gas_gwei`.
    Gas,
    /// The tick's `eth_usd`.
    EthPrice,
}

impl Figure {
    /// Its field name in a snapshot.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Price0 => "prices_usd[0]",
            Self::Price1 => "prices_usd[1]",
            Self::Reserve0 => "reserves[0]",
            Self::Reserve1 => "reserves[1]",
            Self::Tvl => "tvl_usd",
            Self::Volume => "volume_24h_usd",
            Self::FeeApr => "fee_apr_pct",
            Self::EmissionApr => "emission_apr_pct",
            Self::FeeRate => "fee_rate",
            Self::Gas => "gas_gwei",
            Self::EthPrice => "eth_usd",
        }
    }

    /// What a usable value of it is.
    fn rule(self) -> &'static str {
        match self {
            Self::Price0 | Self::Price1 | Self::EthPrice => "a finite number above 0",
            Self::FeeRate => "a fee rate in [0, 1)",
            _ => "a finite number, not negative",
        }
    }
}

/// A figure that cannot be used, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{} is {value}, not {}", figure.as_str(), figure.rule())]
pub struct BadFigure {
    /// Which.
    pub figure: Figure,
    /// Its value.
    pub value: f64,
}

impl BadFigure {
    fn not_negative(figure: Figure, value: f64) -> Result<(), Self> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(Self { figure, value })
        }
    }

    fn positive(figure: Figure, value: f64) -> Result<(), Self> {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(Self { figure, value })
        }
    }
}

/// A pool dropped from a tick because its snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedSnapshot {
    /// Pool.
    pub pool: String,
    /// Why.
    pub problem: BadFigure,
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

    /// Whether the tick's own figures (gas, ETH price) can be used: gas is a finite number
    /// ≥ 0, the ETH price finite and > 0.
    pub fn check_figures(&self) -> Result<(), BadFigure> {
        BadFigure::not_negative(Figure::Gas, self.gas_gwei)?;
        BadFigure::positive(Figure::EthPrice, self.eth_usd)
    }

    /// Every figure of the tick and of its pools, the first bad one with its pool.
    pub fn check(&self) -> Result<(), (Option<String>, BadFigure)> {
        self.check_figures().map_err(|b| (None, b))?;
        for p in &self.pools {
            p.check().map_err(|b| (Some(p.pool.clone()), b))?;
        }
        Ok(())
    }

    /// Drops every pool whose snapshot cannot be used and says which and why.
    pub fn reject_bad_pools(&mut self) -> Vec<RejectedSnapshot> {
        let mut rejected = Vec::new();
        self.pools.retain(|p| match p.check() {
            Ok(()) => true,
            Err(problem) => {
                rejected.push(RejectedSnapshot {
                    pool: p.pool.clone(),
                    problem,
                });
                false
            }
        });
        rejected
    }
}

/// Why a line of a replay cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LineProblem {
    /// Reading it failed.
    #[error("cannot be read")]
    Unreadable(#[source] std::sync::Arc<std::io::Error>),
    /// It is not a market tick.
    #[error("not a market tick")]
    NotATick(#[source] std::sync::Arc<serde_json::Error>),
    /// A figure of the tick cannot be used.
    #[error("tick {index}")]
    BadTickFigure {
        /// Tick.
        index: u64,
        /// What.
        #[source]
        problem: BadFigure,
    },
    /// A figure of one pool cannot be used.
    #[error("tick {index}, pool {pool}")]
    BadPoolFigure {
        /// Tick.
        index: u64,
        /// Pool.
        pool: String,
        /// What.
        #[source]
        problem: BadFigure,
    },
    /// Its `at_ms` is not after the previous line's.
    #[error("tick {index} at_ms {at_ms} is not after the previous tick's {previous_ms}")]
    TimeNotIncreasing {
        /// Tick.
        index: u64,
        /// Its time.
        at_ms: u64,
        /// The previous line's.
        previous_ms: u64,
    },
    /// A different line with the same index came before.
    #[error("a second, different tick {index} (the first is line {first_line})")]
    DuplicateIndex {
        /// Tick.
        index: u64,
        /// Line of the first.
        first_line: u64,
    },
    /// Its index is below the previous line's.
    #[error("tick {index} after tick {previous}")]
    IndexBackwards {
        /// Tick.
        index: u64,
        /// The previous line's.
        previous: u64,
    },
    /// Ticks are missing before it.
    #[error("tick {index} where tick {expected} was expected")]
    Gap {
        /// Tick.
        index: u64,
        /// The tick asked for.
        expected: u64,
    },
}

/// Why a market source gave no tick. [`MarketError::is_final`] says whether asking again can
/// help: a replay that ended or has a bad line never gets better, so a run must stop.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MarketError {
    /// The replay file cannot be opened.
    #[error("replay file {}", path.display())]
    Unopenable {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::sync::Arc<std::io::Error>,
    },
    /// A line of the replay cannot be used: the replay stops there.
    #[error("{}:{line}", path.display())]
    BadLine {
        /// File.
        path: PathBuf,
        /// Line number (from 1).
        line: u64,
        /// What is wrong with it.
        #[source]
        problem: LineProblem,
    },
    /// The replay ended before the tick asked for.
    #[error("{}:{lines}: the replay ends before tick {index}", path.display())]
    Ended {
        /// File.
        path: PathBuf,
        /// Lines it has.
        lines: u64,
        /// The tick asked for.
        index: u64,
    },
    /// A tick behind the source was asked for (sources only go forward).
    #[error("the market source is at tick {at}; tick {index} is behind it")]
    Behind {
        /// The next tick the source can give.
        at: u64,
        /// The tick asked for.
        index: u64,
    },
    /// A figure of the tick itself (gas, ETH price) cannot be used: the tick is not run.
    #[error("market tick {index}")]
    BadTick {
        /// Tick.
        index: u64,
        /// What.
        #[source]
        problem: BadFigure,
    },
    /// The chain source failed (shared, since a transport error cannot be cloned).
    #[error(transparent)]
    Chain(std::sync::Arc<crate::chain::ChainError>),
}

impl From<crate::chain::ChainError> for MarketError {
    fn from(e: crate::chain::ChainError) -> Self {
        Self::Chain(std::sync::Arc::new(e))
    }
}

impl MarketError {
    /// Whether no later attempt can succeed, so the run must stop rather than retry.
    pub fn is_final(&self) -> bool {
        match self {
            Self::Unopenable { .. }
            | Self::BadLine { .. }
            | Self::Ended { .. }
            | Self::Behind { .. } => true,
            Self::Chain(e) => e.is_final(),
            // A live source's next reading may be good.
            Self::BadTick { .. } => false,
        }
    }

    /// Whether a service the agent calls failed (what the api_failures breaker counts).
    pub fn is_api_failure(&self) -> bool {
        matches!(self, Self::Chain(e) if matches!(**e, crate::chain::ChainError::Rpc(_)))
    }
}

/// A source of market ticks.
pub trait MarketSource: Send {
    /// The tick numbered `index` (ticks are asked for in order; a source may fast-forward,
    /// and the last tick given may be asked for again after a tick that failed).
    fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError>;

    /// The pools of a chain source, shared with the chain executor (`None`: not a chain).
    fn chain_pools(&self) -> Option<crate::chain::source::Directory> {
        None
    }
}
