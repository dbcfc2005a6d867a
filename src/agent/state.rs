//! The agent's persisted state: the paper book (cash, positions, ledger), the tick it is at,
//! its observation period, per-pool profiles, the pools it may not re-enter after a protective
//! close, and run totals. Everything here is written in the tick's one store transaction, so a
//! restarted agent continues exactly where it was.

use crate::risk;
use alloy::primitives::{Address, U256};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Key of the agent state record in the `agent_state` table.
pub const STATE_KEY: &str = "state";

/// A paper position: a constant-product LP share, valued at `entry × sqrt(p0·p1 / p0e·p1e)`
/// plus the fees it earned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaperPosition {
    /// Id.
    pub id: String,
    /// Pool.
    pub pool: String,
    /// Tokens.
    pub tokens: [String; 2],
    /// Stable pool.
    pub stable: bool,
    /// Value deposited (after entry costs), USD.
    pub deposited_usd: f64,
    /// Token prices at entry.
    pub entry_prices: [f64; 2],
    /// Fees earned so far (accrue into the position), USD.
    pub fees_usd: f64,
    /// Unclaimed emissions, USD.
    pub rewards_usd: f64,
    /// Pool APR at entry, percent.
    pub entry_apr_pct: f64,
    /// Opened at.
    pub opened_ms: u64,
    /// Value at the last mark, USD.
    pub value_usd: f64,
    /// Pool TVL at the last mark.
    pub pool_tvl_usd: f64,
    /// Gas and swap costs paid for it so far (entry, compounds), USD.
    pub costs_usd: f64,
    /// On chain: the LP tokens it holds (raw units), as the receipts proved. Written as
    /// decimal text in every format (the positions table is also read untyped).
    #[serde(default, with = "decimal_text")]
    pub lp_shares: Option<U256>,
}

impl PaperPosition {
    /// Value at `prices`: the LP share's constant-product value plus earned fees.
    pub fn value_at(&self, prices: [f64; 2]) -> f64 {
        let ratio = (prices[0] * prices[1]) / (self.entry_prices[0] * self.entry_prices[1]);
        self.deposited_usd * ratio.max(0.0).sqrt() + self.fees_usd
    }
}

/// Statistics of one pool the agent keeps learning (its profile).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolProfile {
    /// Exponentially weighted APR mean (about a day), percent.
    pub apr_mean: f64,
    /// Exponentially weighted APR variance.
    pub apr_var: f64,
    /// Samples seen.
    pub samples: u64,
    /// Recent (ms, TVL) readings within the TVL-drain window, and the newest one older than
    /// it (after a data gap: the last TVL seen before the gap).
    #[serde(with = "crate::series")]
    pub recent_tvl: VecDeque<(u64, f64)>,
    /// Mean APR per UTC hour of day (hourly profile) and samples per hour.
    pub hourly_apr: Vec<(f64, u32)>,
    /// Last day's mean APR per day (daily profile, newest last, 30 kept).
    pub daily_apr: VecDeque<f64>,
    /// Accumulator of the current day: (sum, count).
    pub today: (f64, u32),
    /// Last time an APR anomaly memory was written.
    pub last_anomaly_ms: u64,
}

impl PoolProfile {
    /// APR variance normalised by the mean (coefficient of variation), what the risk
    /// engine's volatility factor reads; `None` until enough samples exist.
    pub fn normalised_variance(&self) -> Option<f64> {
        (self.samples >= 12 && self.apr_mean > 0.0)
            .then(|| self.apr_var.max(0.0).sqrt() / self.apr_mean)
    }
}

/// Run totals, for reports and `athena status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Trades executed (opens, closes, compounds, rebalance legs).
    pub trades: u64,
    /// Swap fees paid, USD.
    pub fees_paid_usd: f64,
    /// Gas paid, USD.
    pub gas_paid_usd: f64,
    /// Realised PnL of closed positions, USD.
    pub realised_pnl_usd: f64,
    /// Peak equity so far, USD.
    pub peak_equity_usd: f64,
    /// Largest drawdown from a peak so far, percent.
    pub max_drawdown_pct: f64,
    /// Proposals rejected by the risk engine, by rule.
    pub rejections: BTreeMap<String, u64>,
    /// Decisions made.
    pub decisions: u64,
}

/// The agent's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentState {
    /// Seed of the run (a data directory holds one run).
    pub seed: u64,
    /// The next tick to run.
    pub next_tick: u64,
    /// Agent time of tick 0.
    pub started_ms: u64,
    /// Start of the observation period (persisted: a restart does not restart it).
    pub observation_start_ms: u64,
    /// Idle cash, USD.
    pub cash_usd: f64,
    /// Open positions.
    pub positions: Vec<PaperPosition>,
    /// Next position number.
    pub next_position: u64,
    /// Profiles by pool.
    pub profiles: BTreeMap<String, PoolProfile>,
    /// Gas by UTC hour of day: (sum, count), for the gas-window pattern.
    pub gas_by_hour: Vec<(f64, u32)>,
    /// Totals.
    pub totals: Totals,
    /// Time of the last tick run.
    pub last_tick_ms: u64,
    /// Id of each pool's high-yield pattern memory (its confidence learns from outcomes).
    pub pool_patterns: BTreeMap<String, String>,
    /// Pools closed for protection, not to be re-entered yet, by pool.
    #[serde(default)]
    pub reentry_guards: BTreeMap<String, ReentryGuard>,
    /// An operator's exit-all in progress (its reason): every position is closed at the next
    /// tick, and it stays set until none is left.
    #[serde(default)]
    pub exit_all: Option<String>,
    /// With the chain executor: the wallet as its receipts proved it (`None` on paper).
    #[serde(default)]
    pub wallet: Option<WalletBook>,
}

/// The chain executor's book of its wallet: every balance changed only by a receipt.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WalletBook {
    /// The wallet.
    pub address: Address,
    /// The quote token (the book's cash).
    pub quote: Address,
    /// Its decimals.
    pub quote_decimals: u8,
    /// Raw balances by token (ETH under the zero address), LP tokens included.
    pub balances: BTreeMap<Address, U256>,
    /// What each token held is.
    pub tokens: BTreeMap<Address, TokenInfo>,
    /// The nonce of the last transaction applied to this book.
    pub applied_nonce: Option<u64>,
    /// Costs of the legs applied so far of an open or close not finished, by position.
    pub pending: BTreeMap<String, LegCosts>,
    /// Value of the tokens held outside positions and cash (an interrupted open's swap, the
    /// dust an add leaves), USD at the last tick.
    pub loose_usd: f64,
    /// What the wallet was worth when the book started, USD: the capital PnL is measured
    /// from (0 in a book older than this field: the configured capital stands in).
    #[serde(default)]
    pub starting_usd: f64,
}

impl WalletBook {
    /// The raw balance of `token` (0 when never held).
    pub fn balance(&self, token: Address) -> U256 {
        self.balances.get(&token).copied().unwrap_or_default()
    }

    /// Records what `token` is.
    pub fn learn(&mut self, token: Address, symbol: &str, decimals: u8, pair: bool) {
        self.tokens.entry(token).or_insert_with(|| TokenInfo {
            symbol: symbol.to_string(),
            decimals,
            pair,
        });
    }
}

/// A token the wallet holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    /// Symbol (a pool's name for an LP token).
    pub symbol: String,
    /// Decimals.
    pub decimals: u8,
    /// An LP token.
    pub pair: bool,
}

/// The costs of an open's or close's legs applied so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LegCosts {
    /// Quote value put into swaps, USD.
    pub quote_spent_usd: f64,
    /// Swap fees, USD.
    pub fee_usd: f64,
    /// Price impact, USD.
    pub slip_usd: f64,
    /// Gas, USD.
    pub gas_usd: f64,
    /// Swap fees a Solidly pool paid out by a claim before the close's remove, USD.
    #[serde(default)]
    pub claimed_usd: f64,
    /// The legs' transaction hashes.
    pub hashes: Vec<String>,
}

/// Why a position was closed for protection: what must stop holding before its pool is
/// entered again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// Its TVL drained.
    TvlDrain {
        /// The TVL the drain was measured against (before the drain), USD.
        reference_tvl_usd: f64,
    },
    /// A stable pool left its peg.
    Depeg,
    /// Risk said reduce.
    RiskReduce,
}

/// A pool closed for protection: not re-entered for `strategy.reentry_cooldown` after the
/// close, nor while its condition holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReentryGuard {
    /// When the position was closed, agent time.
    pub closed_ms: u64,
    /// Why.
    pub protection: Protection,
}

impl AgentState {
    /// A fresh agent at `now_ms` with `cash` USD, for the run of `seed`.
    pub fn new(now_ms: u64, cash: f64, seed: u64) -> Self {
        Self {
            seed,
            next_tick: 0,
            started_ms: now_ms,
            observation_start_ms: now_ms,
            cash_usd: cash,
            positions: Vec::new(),
            next_position: 1,
            profiles: BTreeMap::new(),
            gas_by_hour: vec![(0.0, 0); 24],
            totals: Totals {
                peak_equity_usd: cash,
                ..Totals::default()
            },
            last_tick_ms: 0,
            pool_patterns: BTreeMap::new(),
            reentry_guards: BTreeMap::new(),
            exit_all: None,
            wallet: None,
        }
    }

    /// The capital PnL is measured from: on chain what the wallet was worth when the book
    /// started, on paper `paper_starting_usd`.
    pub fn starting_usd(&self, paper_starting_usd: f64) -> f64 {
        match &self.wallet {
            Some(w) if w.starting_usd > 0.0 => w.starting_usd,
            _ => paper_starting_usd,
        }
    }

    /// Cash plus every position's marked value (and, on chain, the tokens held outside them).
    pub fn equity_usd(&self) -> f64 {
        self.cash_usd
            + self.wallet.as_ref().map_or(0.0, |w| w.loose_usd)
            + self
                .positions
                .iter()
                .map(|p| p.value_usd + p.rewards_usd)
                .sum::<f64>()
    }

    /// The portfolio as the risk engine sees it.
    pub fn portfolio(&self) -> risk::Portfolio {
        risk::Portfolio {
            positions: self
                .positions
                .iter()
                .map(|p| risk::Position {
                    id: p.id.clone(),
                    pool: p.pool.clone(),
                    tokens: p.tokens.clone(),
                    stable: p.stable,
                    value_usd: p.value_usd,
                    pool_tvl_usd: p.pool_tvl_usd,
                    apr_variance: self
                        .profiles
                        .get(&p.pool)
                        .and_then(PoolProfile::normalised_variance)
                        .unwrap_or(1.0),
                })
                .collect(),
            cash_usd: self.cash_usd,
        }
    }
}

/// A ledger entry (the `ledger` table): one fill (open, close, compound; on chain also the
/// swap that ends a close).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Agent time.
    pub at_ms: u64,
    /// Tick.
    pub tick: u64,
    /// open, close, compound.
    pub action: String,
    /// Position.
    pub position: String,
    /// Pool.
    pub pool: String,
    /// USD moved (size in, proceeds out, rewards compounded).
    pub usd: f64,
    /// Swap fee paid, USD.
    pub fee_usd: f64,
    /// Price impact paid, USD.
    pub slippage_usd: f64,
    /// Slippage, percent of the swapped amount.
    pub slippage_pct: f64,
    /// Gas paid, USD.
    pub gas_usd: f64,
    /// Cash after, USD.
    pub cash_after_usd: f64,
    /// Realised PnL (closes), USD.
    pub pnl_usd: Option<f64>,
    /// On chain: the hashes of the transactions whose receipts make this fill.
    #[serde(default)]
    pub tx_hashes: Vec<String>,
}

/// Price impact as a percent of the swapped half of `usd` (the slippage a fill reports).
pub fn slippage_pct(usd: f64, slippage_usd: f64) -> f64 {
    if usd > 0.0 {
        100.0 * slippage_usd / (usd / 2.0)
    } else {
        0.0
    }
}

/// An optional `U256` as decimal text, whatever the format (alloy writes bytes to a binary
/// format, which an untyped reader cannot hold).
mod decimal_text {
    use alloy::primitives::U256;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<U256>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_some(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<U256>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
