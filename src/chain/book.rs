//! The chain executor's book (SPEC.md §1: "the ledger records only what a receipt proves").
//!
//! Each transaction carries a [`Leg`]: which position, which step, and the tick's prices and
//! decimals. [`apply`] turns a mined transaction's receipt into the book's change from the
//! receipt alone: the wallet's token balances change by the ERC20 `Transfer` logs to and from
//! it, its ETH by the gas paid, and the leg's step opens, closes or costs its position. So a
//! receipt found after a crash changes the book exactly as it would have in the tick. Legs are
//! applied in nonce order; the book records the last nonce applied and is committed with it.

use super::send::{Intent, IntentState, Receipt};
use crate::agent::state::{AgentState, LedgerEntry, PaperPosition, WalletBook};
use crate::market::MarketTick;
use alloy::primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};

/// Which step of an open or a close a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// An exact-amount approval for the router.
    Approve,
    /// Half of an open's quote swapped into the other token.
    SwapIn,
    /// A Solidly pool's swap fees owed to the wallet claimed, before its liquidity is removed.
    ClaimFees,
    /// The liquidity added: the position opens.
    AddLiquidity,
    /// The liquidity removed: the position closes.
    RemoveLiquidity,
    /// A close's other token swapped back into the quote token.
    SwapOut,
}

/// What a transaction is for: enough to apply its receipt to the book without anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leg {
    /// The position it opens, closes or feeds.
    pub position: String,
    /// The pool's name.
    pub pool: String,
    /// The step.
    pub step: Step,
    /// The pair (its LP token).
    pub pair: Address,
    /// The pair's tokens, their symbols and decimals.
    pub tokens: [Address; 2],
    /// Their symbols.
    pub symbols: [String; 2],
    /// Their decimals.
    pub decimals: [u8; 2],
    /// Their USD prices at the tick that decided it.
    pub prices: [f64; 2],
    /// The ETH price at that tick (gas in USD).
    pub eth_usd: f64,
    /// The pool's swap fee, a fraction.
    pub fee_rate: f64,
    /// A stable pool.
    pub stable: bool,
    /// The pool's APR and TVL at that tick.
    pub apr_pct: f64,
    /// TVL, USD.
    pub tvl_usd: f64,
    /// The deciding tick and its agent time.
    pub tick: u64,
    /// Agent time.
    pub at_ms: u64,
}

/// Applies a mined intent's receipt to the book: the wallet's token balances change by the
/// receipt's `Transfer` logs to and from it, its ETH by the gas paid; the leg's step then
/// opens, closes or costs its position. Returns the ledger entry it completes, if any.
pub fn apply(state: &mut AgentState, intent: &Intent, receipt: &Receipt) -> Option<LedgerEntry> {
    let book = state.wallet.as_mut()?;
    let before = book.balances.clone();
    let gas_wei = U256::from(receipt.gas_used.to::<u64>())
        * U256::from(receipt.effective_gas_price.to::<u128>());
    let eth = book.balances.entry(Address::ZERO).or_default();
    *eth = eth.saturating_sub(gas_wei);
    let transfer = keccak256("Transfer(address,address,uint256)");
    for log in receipt
        .logs
        .iter()
        .filter(|l| l.topics.first() == Some(&transfer))
    {
        let (Some(from), Some(to)) = (log.topics.get(1), log.topics.get(2)) else {
            continue;
        };
        let amount = U256::from_be_slice(&log.data[..log.data.len().min(32)]);
        let (from, to) = (word_address(from), word_address(to));
        if to == book.address {
            let b = book.balances.entry(log.address).or_default();
            *b = b.saturating_add(amount);
        }
        if from == book.address {
            let b = book.balances.entry(log.address).or_default();
            *b = b.saturating_sub(amount);
        }
    }
    book.applied_nonce = Some(intent.nonce);
    let quote = (book.quote, book.quote_decimals);
    if let Some(leg) = &intent.leg {
        reserve_position_id(state, &leg.position);
    }
    let book = state.wallet.as_mut()?;
    state.cash_usd = whole(book.balance(quote.0), quote.1);
    let leg = intent.leg.as_ref()?;
    let delta = |token: Address, decimals: u8| -> f64 {
        let book = state.wallet.as_ref().expect("checked above");
        let (after, was) = (
            book.balance(token),
            before.get(&token).copied().unwrap_or_default(),
        );
        if after >= was {
            whole(after - was, decimals)
        } else {
            -whole(was - after, decimals)
        }
    };
    let gas_usd = whole(gas_wei, 18) * leg.eth_usd;
    state.totals.gas_paid_usd += gas_usd;
    let d = [
        delta(leg.tokens[0], leg.decimals[0]),
        delta(leg.tokens[1], leg.decimals[1]),
    ];
    let book = state.wallet.as_mut().expect("checked above");
    for i in 0..2 {
        book.learn(leg.tokens[i], &leg.symbols[i], leg.decimals[i], false);
    }
    book.learn(leg.pair, &leg.pool, 18, true);
    let hash = intent.hash.to_string();
    let pending = book.pending.entry(leg.position.clone()).or_default();
    pending.gas_usd += gas_usd;
    pending.hashes.push(hash);
    if !matches!(intent.state, IntentState::Mined { success: true, .. }) {
        // A revert moves nothing but gas: the action stops, its costs stay in the totals.
        let costs = book.pending.remove(&leg.position).unwrap_or_default();
        state.totals.realised_pnl_usd -= costs.gas_usd + costs.fee_usd + costs.slip_usd;
        return None;
    }
    let value = |d: [f64; 2]| d[0] * leg.prices[0] + d[1] * leg.prices[1];
    match leg.step {
        Step::Approve => None,
        Step::ClaimFees => {
            // What it paid counts as received by the close that follows.
            pending.claimed_usd += value([d[0].max(0.0), d[1].max(0.0)]);
            None
        }
        Step::SwapIn | Step::SwapOut => {
            let paid = -value([d[0].min(0.0), d[1].min(0.0)]);
            let got = value([d[0].max(0.0), d[1].max(0.0)]);
            let fee = paid * leg.fee_rate;
            let slip = (paid - fee - got).max(0.0);
            pending.fee_usd += fee;
            pending.slip_usd += slip;
            pending.quote_spent_usd += paid;
            if leg.step == Step::SwapIn {
                return None;
            }
            let costs = book.pending.remove(&leg.position).unwrap_or_default();
            state.totals.fees_paid_usd += fee;
            state.totals.trades += 1;
            // The swap back is part of the close: its costs come off the realised PnL.
            state.totals.realised_pnl_usd -= costs.fee_usd + costs.slip_usd + costs.gas_usd;
            Some(entry(state, leg, "swap", paid, &costs, None))
        }
        Step::AddLiquidity => {
            let deposited = -value([d[0].min(0.0), d[1].min(0.0)]);
            let q = usize::from(leg.tokens[1] == quote.0);
            let costs = book.pending.remove(&leg.position).unwrap_or_default();
            let spent = costs.quote_spent_usd - d[q].min(0.0) * leg.prices[q];
            let shares = raw_delta(&before, book, leg.pair);
            state.positions.push(PaperPosition {
                id: leg.position.clone(),
                pool: leg.pool.clone(),
                tokens: leg.symbols.clone(),
                stable: leg.stable,
                deposited_usd: deposited,
                entry_prices: leg.prices,
                fees_usd: 0.0,
                rewards_usd: 0.0,
                entry_apr_pct: leg.apr_pct,
                opened_ms: leg.at_ms,
                value_usd: deposited,
                pool_tvl_usd: leg.tvl_usd,
                costs_usd: costs.fee_usd + costs.slip_usd + costs.gas_usd,
                lp_shares: Some(shares),
            });
            state.totals.fees_paid_usd += costs.fee_usd;
            state.totals.trades += 1;
            Some(entry(state, leg, "open", spent, &costs, None))
        }
        Step::RemoveLiquidity => {
            let costs = book.pending.get(&leg.position).cloned().unwrap_or_default();
            let received = value([d[0].max(0.0), d[1].max(0.0)]) + costs.claimed_usd;
            // What the next swap (its last leg) adds is booked with it.
            if let Some(p) = book.pending.get_mut(&leg.position) {
                *p = Default::default();
            }
            let i = state.positions.iter().position(|p| p.id == leg.position)?;
            let p = state.positions.remove(i);
            let pnl = received - costs.gas_usd - (p.deposited_usd + p.costs_usd);
            state.totals.realised_pnl_usd += pnl;
            state.totals.trades += 1;
            Some(entry(state, leg, "close", received, &costs, Some(pnl)))
        }
    }
}

/// How much more of `token` the wallet holds than `before` (0 when less).
fn raw_delta(
    before: &std::collections::BTreeMap<Address, U256>,
    book: &WalletBook,
    token: Address,
) -> U256 {
    book.balance(token)
        .saturating_sub(before.get(&token).copied().unwrap_or_default())
}

fn entry(
    state: &AgentState,
    leg: &Leg,
    action: &str,
    usd: f64,
    costs: &crate::agent::state::LegCosts,
    pnl: Option<f64>,
) -> LedgerEntry {
    LedgerEntry {
        at_ms: leg.at_ms,
        tick: leg.tick,
        action: action.into(),
        position: leg.position.clone(),
        pool: leg.pool.clone(),
        usd,
        fee_usd: costs.fee_usd,
        slippage_usd: costs.slip_usd,
        slippage_pct: crate::agent::state::slippage_pct(usd, costs.slip_usd),
        gas_usd: costs.gas_usd,
        cash_after_usd: state.cash_usd,
        pnl_usd: pnl,
        tx_hashes: costs.hashes.clone(),
    }
}

/// Records that the book holds what `intent` did (a dropped intent did nothing).
pub(super) fn note_applied(state: &mut AgentState, intent: &Intent) {
    if let Some(book) = state.wallet.as_mut() {
        book.applied_nonce = Some(intent.nonce);
    }
    if let Some(leg) = &intent.leg {
        reserve_position_id(state, &leg.position);
    }
}

/// A position id a transaction used (`pos-N`, or a sweep's `sweep-N-TOKEN`) is never given
/// again: after a crash the counter may be behind what the tick that crashed had taken.
fn reserve_position_id(state: &mut AgentState, id: &str) {
    if let Some(n) = position_number(id) {
        state.next_position = state.next_position.max(n + 1);
    }
}

/// The counter's number in a position id: `pos-N` or `sweep-N-TOKEN`.
fn position_number(id: &str) -> Option<u64> {
    let number = match id.strip_prefix("sweep-") {
        Some(rest) => rest.split('-').next()?,
        None => id.strip_prefix("pos-")?,
    };
    number.parse().ok()
}

/// Between ticks no open or close is under way: the costs of one a crash or a failure
/// interrupted come off the realised PnL (its tokens stay in the wallet, valued as loose).
pub(super) fn close_interrupted(state: &mut AgentState) {
    let Some(book) = state.wallet.as_mut() else {
        return;
    };
    for (_, costs) in std::mem::take(&mut book.pending) {
        state.totals.realised_pnl_usd -= costs.gas_usd + costs.fee_usd + costs.slip_usd;
    }
}

/// Values the tokens the wallet holds outside positions (left by an interrupted open, or the
/// dust of an add) at the tick's prices.
pub fn mark_loose(state: &mut AgentState, tick: &MarketTick) {
    let Some(book) = state.wallet.as_mut() else {
        return;
    };
    book.loose_usd = book
        .tokens
        .iter()
        .filter(|(t, info)| !info.pair && **t != book.quote)
        .map(|(t, info)| {
            whole(book.balance(*t), info.decimals) * price_of(tick, &info.symbol).unwrap_or(0.0)
        })
        .sum();
}

/// The USD price of token `symbol` in `tick`.
pub(super) fn price_of(tick: &MarketTick, symbol: &str) -> Option<f64> {
    tick.pools.iter().find_map(|p| {
        p.tokens
            .iter()
            .position(|t| t == symbol)
            .map(|i| p.prices_usd[i])
    })
}

pub(super) fn whole(amount: U256, decimals: u8) -> f64 {
    super::pair::whole(amount, decimals)
}

fn word_address(word: &B256) -> Address {
    Address::from_slice(&word[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_or_sweep_id_a_transaction_used_is_never_given_again() {
        assert_eq!(position_number("pos-12"), Some(12));
        assert_eq!(position_number("sweep-7-AERO"), Some(7));
        assert_eq!(position_number("sweep-AERO"), None);
        assert_eq!(position_number("other-3"), None);
        let mut state = AgentState::new(0, 1_000.0, 1);
        reserve_position_id(&mut state, "sweep-41-AERO");
        assert_eq!(state.next_position, 42);
        reserve_position_id(&mut state, "pos-9");
        assert_eq!(state.next_position, 42, "the counter never goes back");
    }
}
