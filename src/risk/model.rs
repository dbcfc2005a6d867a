//! What the risk engine reads (a proposal, the portfolio, the market view) and what it answers
//! (a decision with its size and the limits that bound it, or a rejection with its rule).
//!
//! Money is USD (`f64`), time is agent time in ms since the epoch, fractions are of portfolio
//! value. Pool data the sizing needs is `Option`: missing data is a rejection, never a default.

use serde::{Deserialize, Serialize};

/// What the strategy (or the LLM advisor, or an operator) wants to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ProposalKind {
    /// Open a new position in a pool not held.
    Open,
    /// Add liquidity to a held position.
    Add {
        /// The position added to.
        position: String,
    },
    /// Move a position to another pool: the exit leg is always allowed, the entry leg is
    /// assessed as an open.
    Rebalance {
        /// The position left.
        from: String,
    },
    /// Claim rewards and add them to the position.
    Compound {
        /// The position compounded.
        position: String,
    },
    /// Close a position.
    Close {
        /// The position closed.
        position: String,
    },
    /// Remove part of a position's liquidity.
    RemoveLiquidity {
        /// The position reduced.
        position: String,
    },
    /// Close every position into the stable asset (emergency control).
    ExitAll,
    /// Swap a token held outside positions back into the stable asset.
    Sweep {
        /// The token's symbol.
        token: String,
    },
}

impl ProposalKind {
    /// Exits (close, remove liquidity, exit-all, a sweep into the stable asset) are never
    /// blocked by a breaker or a state.
    pub fn is_exit(&self) -> bool {
        matches!(
            self,
            Self::Close { .. } | Self::RemoveLiquidity { .. } | Self::ExitAll | Self::Sweep { .. }
        )
    }

    /// Short name for journals and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Add { .. } => "add",
            Self::Rebalance { .. } => "rebalance",
            Self::Compound { .. } => "compound",
            Self::Close { .. } => "close",
            Self::RemoveLiquidity { .. } => "remove_liquidity",
            Self::ExitAll => "exit_all",
            Self::Sweep { .. } => "sweep",
        }
    }
}

/// A pool as the market view knows it. Each `None` the sizing needs makes an entry a
/// rejection naming the missing field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// Pool id (address or name).
    pub id: String,
    /// Its two tokens.
    pub tokens: [String; 2],
    /// A stable pool (both sides pegged) rather than a volatile one.
    pub stable: bool,
    /// Total value locked, USD.
    pub tvl_usd: Option<f64>,
    /// Pool creation time (for the new-pool cap).
    pub created_ms: Option<u64>,
    /// Variance of the pool's APR (normalised), for the volatility factor.
    pub apr_variance: Option<f64>,
}

/// One proposal to assess.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// What to do.
    pub kind: ProposalKind,
    /// The pool entered (entries) or left (exits).
    pub pool: PoolInfo,
    /// Size asked for, USD (`None`: the engine's sizing decides).
    pub requested_usd: Option<f64>,
    /// Modelled gas of the entry transaction(s), USD.
    pub entry_gas_usd: Option<f64>,
    /// Expected slippage of the entry, percent.
    pub expected_slippage_pct: Option<f64>,
}

/// A held position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// Position id.
    pub id: String,
    /// The pool held.
    pub pool: String,
    /// Its two tokens (half the value counts towards each).
    pub tokens: [String; 2],
    /// A stable pool.
    pub stable: bool,
    /// Marked value, USD.
    pub value_usd: f64,
    /// The pool's TVL at the last mark, USD.
    pub pool_tvl_usd: f64,
    /// The pool's APR variance at the last mark.
    pub apr_variance: f64,
}

/// The portfolio: positions and idle cash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Portfolio {
    /// Open positions.
    pub positions: Vec<Position>,
    /// Idle cash (stable asset), USD.
    pub cash_usd: f64,
}

impl Portfolio {
    /// Equity: cash plus every position's value.
    pub fn value_usd(&self) -> f64 {
        self.cash_usd + self.positions.iter().map(|p| p.value_usd).sum::<f64>()
    }

    /// Exposure to `token`, USD (half of each position holding it).
    pub fn token_exposure_usd(&self, token: &str) -> f64 {
        self.positions
            .iter()
            .filter(|p| p.tokens.iter().any(|t| t == token))
            .map(|p| p.value_usd / 2.0)
            .sum()
    }

    /// Value of positions sharing a token with `tokens`, USD, and how many there are.
    pub fn correlated_with(&self, tokens: &[String; 2]) -> (f64, usize) {
        self.positions
            .iter()
            .filter(|p| p.tokens.iter().any(|t| tokens.contains(t)))
            .fold((0.0, 0), |(v, n), p| (v + p.value_usd, n + 1))
    }
}

/// What the engine knows of the market at assessment time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MarketView {
    /// Agent time of the assessment.
    pub now_ms: u64,
    /// Current gas price, gwei (readings recorded before `now_ms` are the previous ones).
    pub gas_gwei: f64,
}

/// A rule that bounded or rejected a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Trading state reduce-only or halted.
    TradingState,
    /// A breaker that blocks entries is tripped.
    Breaker,
    /// Pool data the sizing needs is missing or not a number.
    MissingData,
    /// The request itself is invalid (negative size, unknown position).
    InvalidProposal,
    /// Gas protection said wait, postpone, delay or halt.
    Gas,
    /// At most `max_positions` open positions.
    MaxPositions,
    /// New pools (younger than `new_pool_age`) at most `new_pool_cap_usd`.
    NewPoolCap,
    /// One position at most `max_position_fraction` of the portfolio.
    PositionFraction,
    /// One token at most `max_token_fraction`.
    TokenFraction,
    /// Stable pools at most `max_stable_fraction`.
    StableBand,
    /// Volatile pools at most `max_volatile_fraction`.
    VolatileBand,
    /// Low-liquidity pools at most `max_low_liquidity_fraction` in total.
    LowLiquidity,
    /// Positions sharing a token at most `max_correlated_fraction` in total.
    CorrelatedExposure,
    /// Entry gas at most `max_entry_gas_fraction` of the size.
    EntryGas,
    /// Expected slippage above `max_slippage_pct`.
    Slippage,
    /// Not more than the idle cash.
    Cash,
    /// The size the factors give (base × factors) or the size requested.
    Sizing,
    /// The LLM advisor vetoed the entry (never the risk engine's: the agent records it after
    /// the gate, whose verdict the sizing keeps).
    AdvisorVeto,
}

impl Rule {
    /// snake_case name, as in journals and `athena risk status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TradingState => "trading_state",
            Self::Breaker => "breaker",
            Self::MissingData => "missing_data",
            Self::InvalidProposal => "invalid_proposal",
            Self::Gas => "gas",
            Self::MaxPositions => "max_positions",
            Self::NewPoolCap => "new_pool_cap",
            Self::PositionFraction => "position_fraction",
            Self::TokenFraction => "token_fraction",
            Self::StableBand => "stable_band",
            Self::VolatileBand => "volatile_band",
            Self::LowLiquidity => "low_liquidity",
            Self::CorrelatedExposure => "correlated_exposure",
            Self::EntryGas => "entry_gas",
            Self::Slippage => "slippage",
            Self::Cash => "cash",
            Self::Sizing => "sizing",
            Self::AdvisorVeto => "advisor_veto",
        }
    }
}

/// The size factors of SPEC.md §3 applied to an entry (each in (0, 1]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Factors {
    /// From the pool's APR variance.
    pub volatility: f64,
    /// From the portfolio's exposure to the pool's tokens.
    pub concentration: f64,
    /// From entry gas against the base-sized position.
    pub gas: f64,
    /// From how many held positions share a token with the pool.
    pub correlation: f64,
    /// After a recovery, ramping back to 1.
    pub recovery: f64,
    /// Halved while slippage_high is tripped.
    pub slippage: f64,
}

impl Factors {
    /// The product of every factor.
    pub fn product(&self) -> f64 {
        self.volatility
            * self.concentration
            * self.gas
            * self.correlation
            * self.recovery
            * self.slippage
    }
}

/// How an entry was sized: the base size, each factor, and every cap with the most it
/// allowed. The journal keeps it so an operator can see why a size came out as it did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    /// `risk.base_position_usd`.
    pub base_usd: f64,
    /// The six factors.
    pub factors: Factors,
    /// Every cap that applied, with the most it allowed (USD), in the order checked; the
    /// size is the smallest of them and of the request.
    pub caps: Vec<Cap>,
}

/// One cap on an entry's size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Cap {
    /// The limit.
    pub rule: Rule,
    /// The most it allowed, USD (negative when the limit is already passed).
    pub usd: f64,
}

/// The engine's answer to one proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Decision {
    /// Go ahead with `size_usd` (entries) or as asked (exits, `size_usd` 0).
    Approve {
        /// Size allowed, USD.
        size_usd: f64,
        /// Every limit that bound the size (the smallest first).
        bounded_by: Vec<Rule>,
    },
    /// Go ahead with less than was asked.
    Reduce {
        /// Size allowed, USD.
        size_usd: f64,
        /// Size asked for, USD.
        requested_usd: f64,
        /// The limits that bound it.
        bounded_by: Vec<Rule>,
    },
    /// Do not.
    Reject {
        /// The rule that rejected it.
        rule: Rule,
        /// Why, for the journal and the operator.
        reason: String,
    },
}

impl Decision {
    /// The size allowed (0 for a rejection).
    pub fn size_usd(&self) -> f64 {
        match self {
            Self::Approve { size_usd, .. } | Self::Reduce { size_usd, .. } => *size_usd,
            Self::Reject { .. } => 0.0,
        }
    }

    /// Whether it goes ahead (approved or reduced).
    pub fn allowed(&self) -> bool {
        !matches!(self, Self::Reject { .. })
    }

    pub(crate) fn reject(rule: Rule, reason: impl Into<String>) -> Self {
        Self::Reject {
            rule,
            reason: reason.into(),
        }
    }
}
