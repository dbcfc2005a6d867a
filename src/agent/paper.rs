//! The paper executor: fills at the pool's constant-product price with real price impact,
//! the pool's swap fee and modelled gas, against the local book. Entering a pool swaps half
//! the size into the pool (the impact of a swap of `x` into a side holding `R` is
//! `x·(1−f) − R·x·(1−f)/(R + x·(1−f))`); leaving swaps half of the value back.

use crate::agent::state::{AgentState, LedgerEntry, PaperPosition};
use crate::market::sim::{GAS_UNITS_CLAIM, GAS_UNITS_ENTRY, GAS_UNITS_EXIT};
use crate::market::{MarketTick, PoolSnapshot};

const YEAR_MS: f64 = 365.0 * 86_400_000.0;

/// Swap `x` USD through a side of `pool`: (fee, price impact), USD.
pub fn swap_costs(pool: &PoolSnapshot, x: f64) -> (f64, f64) {
    let side = pool.tvl_usd / 2.0;
    let after_fee = x * (1.0 - pool.fee_rate);
    let received = side * after_fee / (side + after_fee);
    (x * pool.fee_rate, after_fee - received)
}

/// What a fill cost: swap fee, price impact, gas (USD).
#[derive(Debug, Clone, Copy)]
struct Costs {
    fee: f64,
    slip: f64,
    gas: f64,
}

fn entry(
    tick: &MarketTick,
    action: &str,
    p: &PaperPosition,
    usd: f64,
    c: Costs,
    cash: f64,
    pnl: Option<f64>,
) -> LedgerEntry {
    LedgerEntry {
        at_ms: tick.at_ms,
        tick: tick.index,
        action: action.into(),
        position: p.id.clone(),
        pool: p.pool.clone(),
        usd,
        fee_usd: c.fee,
        slippage_usd: c.slip,
        slippage_pct: crate::agent::state::slippage_pct(usd, c.slip),
        gas_usd: c.gas,
        cash_after_usd: cash,
        pnl_usd: pnl,
        tx_hashes: Vec::new(),
    }
}

/// Why an approved decision was not executed (journaled as the decision's note).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotExecuted {
    /// Cash does not cover the size and the gas.
    #[error("cash ${cash:.2} does not cover ${size:.2} + gas ${gas:.2}")]
    Cash {
        /// Cash, USD.
        cash: f64,
        /// Size asked, USD.
        size: f64,
        /// Gas, USD.
        gas: f64,
    },
    /// No open position has this id.
    #[error("no position {0}")]
    NoPosition(String),
    /// The pool is not in this tick's market.
    #[error("pool {0} missing from the market")]
    PoolMissing(String),
    /// The risk engine reduced a compound, which cannot be partial.
    #[error("compound reduced by the risk engine: rewards left unclaimed")]
    CompoundReduced,
    /// The chain executor cannot trade this pool (not a UniswapV2 pair of the quote token, or
    /// a token not allowlisted).
    #[error("no route: the chain executor trades UniswapV2 pairs of the quote token, not {0}")]
    NoRoute(String),
    /// A token the executor would approve is not allowlisted.
    #[error("token {0} is not in executor.token_allowlist: not approved")]
    NotAllowlisted(String),
    /// The node or the store failed before the transaction was sent or settled.
    #[error("chain: {0}")]
    Chain(String),
    /// The padded gas limit could cost more than the single-transaction gas cap.
    #[error(
        "gas: the transaction could cost ${usd:.2}, above the ${cap:.2} single-transaction cap"
    )]
    GasCap {
        /// Worst cost at the tick's gas price, USD.
        usd: f64,
        /// The cap, USD.
        cap: f64,
    },
    /// The node says the transaction would revert (`eth_estimateGas`): nothing was sent.
    #[error("not sent: it would revert: {0}")]
    WouldRevert(String),
    /// Mined with status 0 (a minimum output not met, a deadline passed): journaled as
    /// failed, nothing filled but its gas.
    #[error("transaction {0} reverted: nothing filled but its gas")]
    Reverted(alloy::primitives::B256),
    /// No receipt within `executor.receipt_timeout`: settled at the next tick.
    #[error("transaction {0} not mined within executor.receipt_timeout: settled at the next tick")]
    Unconfirmed(alloy::primitives::B256),
    /// Compounding is not done on chain (UniswapV2 pairs pay no emissions).
    #[error("compounding is not done on chain")]
    NoCompound,
}

/// What an executor did for one decision: the fills, and why it stopped short if it did (on
/// chain an open or close is several transactions, and a fill proved before a failure is
/// kept).
#[derive(Debug, Default)]
pub struct Executed {
    /// Ledger entries.
    pub fills: Vec<LedgerEntry>,
    /// Why it did not (all) happen.
    pub failure: Option<NotExecuted>,
}

impl From<Result<Vec<LedgerEntry>, NotExecuted>> for Executed {
    fn from(r: Result<Vec<LedgerEntry>, NotExecuted>) -> Self {
        match r {
            Ok(fills) => Self {
                fills,
                failure: None,
            },
            Err(e) => Self {
                fills: Vec::new(),
                failure: Some(e),
            },
        }
    }
}

/// Opens a position of `size` USD in `pool`.
pub fn open(
    state: &mut AgentState,
    tick: &MarketTick,
    pool: &PoolSnapshot,
    size: f64,
) -> Result<LedgerEntry, NotExecuted> {
    let gas = tick.gas_usd(GAS_UNITS_ENTRY);
    if size + gas > state.cash_usd {
        return Err(NotExecuted::Cash {
            cash: state.cash_usd,
            size,
            gas,
        });
    }
    let (fee, slip) = swap_costs(pool, size / 2.0);
    let deposited = size - fee - slip;
    let id = format!("pos-{}", state.next_position);
    state.next_position += 1;
    state.cash_usd -= size + gas;
    let p = PaperPosition {
        id,
        pool: pool.pool.clone(),
        tokens: pool.tokens.clone(),
        stable: pool.stable,
        deposited_usd: deposited,
        entry_prices: pool.prices_usd,
        fees_usd: 0.0,
        rewards_usd: 0.0,
        entry_apr_pct: pool.apr_pct(),
        opened_ms: tick.at_ms,
        value_usd: deposited,
        pool_tvl_usd: pool.tvl_usd,
        costs_usd: fee + slip + gas,
        lp_shares: None,
    };
    state.totals.fees_paid_usd += fee;
    state.totals.gas_paid_usd += gas;
    state.totals.trades += 1;
    let e = entry(
        tick,
        "open",
        &p,
        size,
        Costs { fee, slip, gas },
        state.cash_usd,
        None,
    );
    state.positions.push(p);
    Ok(e)
}

/// Closes position `id`: swaps half back, claims rewards, books the realised PnL.
pub fn close(
    state: &mut AgentState,
    tick: &MarketTick,
    id: &str,
) -> Result<LedgerEntry, NotExecuted> {
    let i = state
        .positions
        .iter()
        .position(|p| p.id == id)
        .ok_or_else(|| NotExecuted::NoPosition(id.to_string()))?;
    let p = state.positions[i].clone();
    let pool = tick
        .pool(&p.pool)
        .ok_or_else(|| NotExecuted::PoolMissing(p.pool.clone()))?;
    let value = p.value_at(pool.prices_usd);
    let (fee, slip) = swap_costs(pool, value / 2.0);
    let gas = tick.gas_usd(GAS_UNITS_EXIT);
    let proceeds = value - fee - slip + p.rewards_usd - gas;
    let pnl = proceeds - (p.deposited_usd + p.costs_usd);
    state.positions.remove(i);
    state.cash_usd += proceeds;
    state.totals.fees_paid_usd += fee;
    state.totals.gas_paid_usd += gas;
    state.totals.trades += 1;
    state.totals.realised_pnl_usd += pnl;
    Ok(entry(
        tick,
        "close",
        &p,
        value,
        Costs { fee, slip, gas },
        state.cash_usd,
        Some(pnl),
    ))
}

/// Claims position `id`'s rewards and adds them to it.
pub fn compound(
    state: &mut AgentState,
    tick: &MarketTick,
    id: &str,
) -> Result<LedgerEntry, NotExecuted> {
    let gas = tick.gas_usd(GAS_UNITS_CLAIM);
    let p = state
        .positions
        .iter_mut()
        .find(|p| p.id == id)
        .ok_or_else(|| NotExecuted::NoPosition(id.to_string()))?;
    let pool = tick
        .pool(&p.pool)
        .ok_or_else(|| NotExecuted::PoolMissing(p.pool.clone()))?;
    let rewards = p.rewards_usd;
    let (fee, slip) = swap_costs(pool, rewards / 2.0);
    let added = rewards - fee - slip;
    let ratio = (pool.prices_usd[0] * pool.prices_usd[1]) / (p.entry_prices[0] * p.entry_prices[1]);
    p.deposited_usd += added / ratio.max(f64::MIN_POSITIVE).sqrt();
    p.rewards_usd = 0.0;
    p.costs_usd += gas;
    p.value_usd = p.value_at(pool.prices_usd);
    let snapshot = p.clone();
    state.cash_usd -= gas;
    state.totals.fees_paid_usd += fee;
    state.totals.gas_paid_usd += gas;
    state.totals.trades += 1;
    Ok(entry(
        tick,
        "compound",
        &snapshot,
        rewards,
        Costs { fee, slip, gas },
        state.cash_usd,
        None,
    ))
}

/// Marks every position to market and accrues `dt_ms` of fees and emissions.
pub fn mark(state: &mut AgentState, tick: &MarketTick, dt_ms: u64) {
    let years = dt_ms as f64 / YEAR_MS;
    for p in &mut state.positions {
        if let Some(pool) = tick.pool(&p.pool) {
            let value = p.value_at(pool.prices_usd);
            p.fees_usd += value * pool.fee_apr_pct / 100.0 * years;
            p.rewards_usd += value * pool.emission_apr_pct / 100.0 * years;
            p.value_usd = p.value_at(pool.prices_usd);
            p.pool_tvl_usd = pool.tvl_usd;
        }
    }
    let equity = state.equity_usd();
    let t = &mut state.totals;
    t.peak_equity_usd = t.peak_equity_usd.max(equity);
    if t.peak_equity_usd > 0.0 {
        t.max_drawdown_pct = t
            .max_drawdown_pct
            .max(100.0 * (1.0 - equity / t.peak_equity_usd));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::MarketSource;

    #[test]
    fn a_round_trip_costs_fees_impact_and_gas_and_the_book_balances() {
        let mut sim = crate::market::sim::Sim::new(1, 0, 300_000);
        let t = sim.tick(0).unwrap();
        let pool = t.pool("AERO/USDC").unwrap().clone();
        let mut s = AgentState::new(0, 10_000.0, 1);
        let o = open(&mut s, &t, &pool, 1_000.0).unwrap();
        assert!(o.fee_usd > 0.0 && o.slippage_usd > 0.0 && o.gas_usd > 0.0);
        assert!((s.cash_usd - (9_000.0 - o.gas_usd)).abs() < 1e-9);
        let c = close(&mut s, &t, "pos-1").unwrap();
        // Same prices: the loss is exactly the costs both ways.
        let costs = o.fee_usd + o.slippage_usd + o.gas_usd + c.fee_usd + c.slippage_usd + c.gas_usd;
        assert!((c.pnl_usd.unwrap() + costs).abs() < 1e-6, "{c:?} {costs}");
        assert!((s.cash_usd - (10_000.0 - costs)).abs() < 1e-6);
        assert!(
            open(&mut s, &t, &pool, 1e9).is_err(),
            "never more than the cash"
        );
    }
}
