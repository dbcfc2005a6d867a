//! The chain executor (SPEC.md §1): positions opened and closed with router transactions
//! (UniswapV2's for `uniswap_v2` pairs, Aerodrome's for `solidly` pools: [`super::router`]),
//! every one sent through [`super::send`] (signed, written down, broadcast, its receipt
//! awaited), and the book changed only by what a receipt proves.
//!
//! - **Open** `size` USD in a pool of the quote token: swap half of it into the other token
//!   (`swapExactTokensForTokens`), then `addLiquidity` with what the swap gave.
//! - **Close**: in a Solidly pool, first `claimFees` when the swap fees it owes the wallet
//!   (simulated with `eth_call`) are worth more than the claim's gas; then `removeLiquidity` of
//!   the position's LP tokens, then swap the other token back.
//! - Every amount has a minimum: the output the tick's reserves promise (on the pool's own
//!   curve: `x·y` or Aerodrome's stable `x³y + xy³`) less `risk.max_slippage_pct`; every call a
//!   deadline (`executor.deadline`), a fee cap
//!   (`gas.hard_cap_gwei`) and a gas limit of 1.5 × `eth_estimateGas`, refused when it could
//!   cost more than the single-transaction share of the daily gas budget.
//! - Approvals are for the exact amount of the next call, only of allowlisted tokens (and the
//!   configured pools' LP tokens), never unlimited.
//!
//! Each transaction carries a [`Leg`], and its receipt changes the book through
//! [`super::book::apply`] only.
//!
//! Before the first trade each router is checked against the chain ([`Routers::check`]): a
//! router that is not one, or serves none of the pools, stops the run.
//!
//! Compounding is not on chain: gauges and their emissions are not read.

use super::book::{Leg, Step, apply, close_interrupted, mark_loose, note_applied, price_of, whole};
use super::router::{Amounts, Router, RouterError, Routers, claim_fees, decode_claimed};
use super::rpc::{Pending, Rpc, RpcError};
use super::send::{Call, Intent, IntentState, SendError, Sender, Wallet, intent_key};
use super::source::{Directory, Pool};
use crate::agent::paper::{Executed, NotExecuted};
use crate::agent::state::{AgentState, LedgerEntry, WalletBook};
use crate::market::{MarketTick, PoolSnapshot};
use alloy::primitives::{Address, Bytes, U256};
use alloy::sol;
use alloy::sol_types::SolCall;
use athena_config::Config;
use athena_storage::Store;
use serde_json::json;

sol! {
    function approve(address spender, uint256 amount) external returns (bool);
    function allowance(address owner, address spender) external view returns (uint256);
    function balanceOf(address owner) external view returns (uint256);
    function totalSupply() external view returns (uint256);
}

/// A gas estimate is multiplied by this (the first UniswapV2 swap in a block costs far more
/// than `eth_estimateGas` says: 1.5× passed, 1.3× did not).
const GAS_PADDING: f64 = 1.5;

/// An open or a close under way: the store its legs are written to, the book they change,
/// the tick that decided it, and the fills its receipts proved so far.
struct Run<'a> {
    store: &'a Store,
    state: &'a mut AgentState,
    tick: &'a MarketTick,
    fills: Vec<LedgerEntry>,
}

impl<'a> Run<'a> {
    fn new(store: &'a Store, state: &'a mut AgentState, tick: &'a MarketTick) -> Self {
        Self {
            store,
            state,
            tick,
            fills: Vec::new(),
        }
    }

    /// What the run did: the fills its receipts proved, and why it stopped short, if it did.
    fn finish(self, result: Result<(), NotExecuted>) -> Executed {
        Executed {
            fills: self.fills,
            failure: result.err(),
        }
    }

    /// The book's raw balance of `token`.
    fn balance(&self, token: Address) -> U256 {
        self.state
            .wallet
            .as_ref()
            .map(|b| b.balance(token))
            .unwrap_or_default()
    }
}

/// The chain executor.
pub struct ChainExecutor {
    sender: Sender,
    rpc: Rpc,
    routers: Routers,
    directory: Directory,
    quote: String,
    allowlist: Vec<String>,
    deadline_s: u64,
    max_slippage: f64,
    hard_cap_gwei: f64,
    tx_cap_usd: f64,
}

/// What reconciling the book with the chain found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reconciliation {
    /// The pinned block.
    pub block: u64,
    /// Σ |book − chain| over the tokens, USD.
    pub difference_usd: f64,
    /// Each difference, in words.
    pub detail: String,
}

/// Why the chain executor cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The key, the node or the store failed.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The node failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The quote token is not among the pools' tokens (the source has not read the chain
    /// yet, or the configuration names a token no pool has).
    #[error("chain.quote_token {0:?} is not a token of the configured pools")]
    NoQuote(String),
    /// A configured router is not one, or serves none of the pools (or the node failed
    /// while it was checked).
    #[error(transparent)]
    Router(#[from] RouterError),
}

impl ChainExecutor {
    /// The executor `config` describes, trading the pools of `directory` (the chain source's).
    pub fn new(config: &Config, directory: Directory) -> Result<Self, ExecError> {
        let key = config
            .secrets
            .chain_private_key
            .as_ref()
            .ok_or(SendError::Key)?;
        let rpc = Rpc::new(&config.chain.rpc_url, config.chain.request_timeout)?;
        let sender = Sender::new(
            rpc.clone(),
            Wallet::from_secret(key)?,
            config.chain.chain_id,
            config.executor.receipt_timeout,
        );
        Ok(Self {
            sender,
            rpc,
            routers: Routers::new(&config.chain),
            directory,
            quote: config.chain.quote_token.clone(),
            allowlist: config
                .executor
                .token_allowlist
                .iter()
                .map(|t| t.to_lowercase())
                .collect(),
            deadline_s: config.executor.deadline.as_secs().max(1),
            max_slippage: config.risk.max_slippage_pct / 100.0,
            hard_cap_gwei: config.gas.hard_cap_gwei,
            tx_cap_usd: config.gas.daily_budget_usd * config.gas.max_tx_budget_fraction,
        })
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.sender.address()
    }

    /// Whether a position can be opened in `pool`: a pool of the quote token that a checked
    /// router trades and whose tokens are allowlisted.
    pub fn can_enter(&self, pool: &str) -> bool {
        self.pool(pool)
            .is_some_and(|p| self.why_not_entered(&p).is_none())
    }

    /// Why no position can be opened in `pool` (`None`: one can).
    fn why_not_entered(&self, pool: &Pool) -> Option<String> {
        if !pool.tokens.iter().any(|t| t.symbol == self.quote) {
            return Some(format!("not a pool of the quote token {}", self.quote));
        }
        if let Some(t) = pool
            .tokens
            .iter()
            .find(|t| !self.allowed(t.address, &t.symbol))
        {
            return Some(format!("{} is not in executor.token_allowlist", t.symbol));
        }
        self.routers.why_not_traded(pool)
    }

    /// One line: the pools positions can be opened in, and those only watched, with why.
    fn trade_plan(&self) -> String {
        let pools = self.directory.read().expect("never poisoned");
        let (mut traded, mut watched) = (Vec::new(), Vec::new());
        for p in pools.iter() {
            match self.why_not_entered(p) {
                None => traded.push(p.name.clone()),
                Some(why) => watched.push(format!("{} ({why})", p.name)),
            }
        }
        let watched = if watched.is_empty() {
            String::new()
        } else {
            format!("; watches only {}", watched.join(", "))
        };
        format!(
            "on chain it opens positions in {} pools: {}{watched}",
            traded.len(),
            traded.join(", ")
        )
    }

    /// The router that trades `pool`.
    fn router(&self, pool: &Pool) -> Result<&Router, NotExecuted> {
        self.routers
            .for_pool(pool)
            .ok_or_else(|| NotExecuted::NoRoute(pool.name.clone()))
    }

    fn pool(&self, name: &str) -> Option<Pool> {
        let pools = self.directory.read().expect("never poisoned");
        pools.iter().find(|p| p.name == name).cloned()
    }

    fn allowed(&self, address: Address, symbol: &str) -> bool {
        let pools = self.directory.read().expect("never poisoned");
        let is_pair = pools.iter().any(|p| p.address == address);
        if self.allowlist.is_empty() || is_pair {
            return is_pair
                || pools
                    .iter()
                    .any(|p| p.tokens.iter().any(|t| t.address == address));
        }
        self.allowlist.contains(&symbol.to_lowercase())
            || self.allowlist.contains(&address.to_string().to_lowercase())
    }

    /// Settles the chain's side of the book before a tick decides anything: a fresh book
    /// starts from the wallet's balances; every intent not settled yet is settled
    /// ([`Sender::resolve`]); every mined intent the book has not applied is applied, in nonce
    /// order. Returns the fills the applied receipts proved.
    pub fn settle(
        &mut self,
        store: &Store,
        state: &mut AgentState,
        tick: &MarketTick,
    ) -> Result<Vec<LedgerEntry>, ExecError> {
        if !self.routers.checked() {
            let pools = self.directory.read().expect("never poisoned").clone();
            self.routers.check(&self.rpc, &pools)?;
            println!("athena: {}", self.trade_plan());
        }
        let fresh = state.wallet.is_none();
        if fresh {
            self.start_book(state)?;
        }
        self.sender.resolve(store)?;
        // Only the intents after the last one the book applied are read.
        let first = state
            .wallet
            .as_ref()
            .and_then(|w| w.applied_nonce)
            .map_or(0, |n| n + 1);
        let unapplied: Vec<(String, Intent)> = store
            .read(|r| r.all_from(athena_storage::KeyedTable::Intents, &intent_key(first)))
            .map_err(SendError::from)?;
        let mut fills = Vec::new();
        for (_, intent) in unapplied {
            if intent.from != self.address() {
                continue;
            }
            match intent.state {
                IntentState::Mined { .. } => {
                    let receipt =
                        self.sender
                            .receipt(intent.hash)?
                            .ok_or_else(|| RpcError::Malformed {
                                method: "eth_getTransactionReceipt".into(),
                                why: format!("the receipt of mined {} is gone", intent.hash),
                            })?;
                    fills.extend(apply(state, &intent, &receipt));
                }
                IntentState::Dropped => note_applied(state, &intent),
                IntentState::Signed | IntentState::Sent => break,
            }
        }
        close_interrupted(state);
        mark_loose(state, tick);
        if fresh {
            // The capital PnL is measured from: everything the wallet held at the start.
            let equity = state.equity_usd();
            state.totals.peak_equity_usd = equity;
            if let Some(book) = state.wallet.as_mut() {
                book.starting_usd = equity;
            }
        }
        Ok(fills)
    }

    /// The book of a fresh agent: the wallet's ETH and its balance of every pool token (the
    /// quote token is its cash; any other is held outside positions, valued at market and
    /// swept back into the quote token).
    fn start_book(&self, state: &mut AgentState) -> Result<(), ExecError> {
        let tokens: Vec<super::source::Token> = {
            let pools = self.directory.read().expect("never poisoned");
            let mut tokens: Vec<_> = pools
                .iter()
                .flat_map(|p| p.tokens.iter().cloned())
                .collect();
            tokens.sort_by_key(|t| t.address);
            tokens.dedup_by_key(|t| t.address);
            tokens
        };
        let quote = tokens
            .iter()
            .find(|t| t.symbol == self.quote)
            .cloned()
            .ok_or_else(|| ExecError::NoQuote(self.quote.clone()))?;
        let me = self.address();
        let (balances, eth) = self.rpc.batch(|b| {
            let balances: Vec<Pending<Bytes>> = tokens
                .iter()
                .map(|t| eth_call(b, t.address, balanceOfCall { owner: me }.abi_encode()))
                .collect();
            let eth: Pending<U256> = b.call("eth_getBalance", (me, "latest"));
            (balances, eth)
        })?;
        let mut book = WalletBook {
            address: me,
            quote: quote.address,
            quote_decimals: quote.decimals,
            ..WalletBook::default()
        };
        for (t, balance) in tokens.iter().zip(&balances) {
            book.balances.insert(t.address, decode_u256(balance)?);
            book.learn(t.address, &t.symbol, t.decimals, false);
        }
        book.balances.insert(Address::ZERO, eth);
        state.cash_usd = whole(book.balance(quote.address), quote.decimals);
        state.wallet = Some(book);
        Ok(())
    }

    /// Opens a position of `size` USD in `pool`.
    pub fn open(
        &self,
        store: &Store,
        state: &mut AgentState,
        tick: &MarketTick,
        pool: &PoolSnapshot,
        size: f64,
    ) -> Executed {
        let mut run = Run::new(store, state, tick);
        let result = self.try_open(&mut run, pool, size);
        run.finish(result)
    }

    fn try_open(
        &self,
        run: &mut Run<'_>,
        snapshot: &PoolSnapshot,
        size: f64,
    ) -> Result<(), NotExecuted> {
        let pool = self
            .pool(&snapshot.pool)
            .filter(|_| self.can_enter(&snapshot.pool))
            .ok_or_else(|| NotExecuted::NoRoute(snapshot.pool.clone()))?;
        let cash = run.state.cash_usd;
        if size > cash {
            return Err(NotExecuted::Cash {
                cash,
                size,
                gas: 0.0,
            });
        }
        let router = self.router(&pool)?;
        let (q, o) = self.sides(&pool);
        let id = format!("pos-{}", run.state.next_position);
        run.state.next_position += 1;
        let tick = run.tick;
        let leg = |step| self.leg(&id, &pool, snapshot, tick, step);
        let half = size / 2.0 / snapshot.prices_usd[q];
        let half_in = to_raw(half, pool.tokens[q].decimals);
        let out = pool.curve.amount_out(
            half,
            snapshot.reserves[q],
            snapshot.reserves[o],
            snapshot.fee_rate,
        );
        let got = self.swap(run, router, &pool, [q, o], half_in, out, leg(Step::SwapIn))?;
        let quote_left = run.balance(pool.tokens[q].address).min(half_in);
        self.approve(run, router, &pool.tokens[o], got, leg(Step::Approve))?;
        self.approve(run, router, &pool.tokens[q], quote_left, leg(Step::Approve))?;
        let amounts = Amounts {
            a: quote_left,
            b: got,
            a_min: at_least(quote_left, self.max_slippage),
            b_min: at_least(got, self.max_slippage),
        };
        let tokens = [pool.tokens[q].address, pool.tokens[o].address];
        let add = router.add(&pool, tokens, amounts, self.address(), self.deadline(tick));
        self.run(run, add, router.address, leg(Step::AddLiquidity))
    }

    /// Closes position `id`: removes its liquidity and swaps the other token back.
    pub fn close(
        &self,
        store: &Store,
        state: &mut AgentState,
        tick: &MarketTick,
        id: &str,
    ) -> Executed {
        let mut run = Run::new(store, state, tick);
        let result = self.try_close(&mut run, id);
        run.finish(result)
    }

    fn try_close(&self, run: &mut Run<'_>, id: &str) -> Result<(), NotExecuted> {
        let position = run
            .state
            .positions
            .iter()
            .find(|p| p.id == id)
            .cloned()
            .ok_or_else(|| NotExecuted::NoPosition(id.to_string()))?;
        let tick = run.tick;
        let snapshot = tick
            .pool(&position.pool)
            .ok_or_else(|| NotExecuted::PoolMissing(position.pool.clone()))?;
        let pool = self
            .pool(&position.pool)
            .ok_or_else(|| NotExecuted::NoRoute(position.pool.clone()))?;
        let router = self.router(&pool)?;
        let shares = position.lp_shares.unwrap_or_default();
        let supply = self.total_supply(pool.address)?;
        let (q, o) = self.sides(&pool);
        let share = whole(shares, 18) / whole(supply, 18).max(f64::MIN_POSITIVE);
        let expect = |i: usize| self.minimum(snapshot.reserves[i] * share, pool.tokens[i].decimals);
        let leg = |step| self.leg(id, &pool, snapshot, tick, step);
        let before = run.balance(pool.tokens[o].address);
        self.claim_fees_if_worth_it(run, &pool, snapshot, leg(Step::ClaimFees))?;
        let lp = super::source::Token {
            address: pool.address,
            symbol: format!("{} LP", pool.name),
            decimals: 18,
        };
        self.approve(run, router, &lp, shares, leg(Step::Approve))?;
        let amounts = Amounts {
            a: shares,
            b: U256::ZERO,
            a_min: expect(q),
            b_min: expect(o),
        };
        let tokens = [pool.tokens[q].address, pool.tokens[o].address];
        let remove = router.remove(&pool, tokens, amounts, self.address(), self.deadline(tick));
        self.run(run, remove, router.address, leg(Step::RemoveLiquidity))?;
        let got = run.balance(pool.tokens[o].address).saturating_sub(before);
        let got_whole = whole(got, pool.tokens[o].decimals);
        let out = pool.curve.amount_out(
            got_whole,
            snapshot.reserves[o],
            snapshot.reserves[q],
            snapshot.fee_rate,
        );
        self.swap(run, router, &pool, [o, q], got, out, leg(Step::SwapOut))
            .map(|_| ())
    }

    /// Swaps all the wallet holds of `token` (outside positions: an open or a close cut
    /// short) back into the quote token through `snapshot`'s pool. Its ledger entry is a swap
    /// of position `sweep-N-TOKEN`, N taken from the position counter.
    pub fn sweep(
        &self,
        store: &Store,
        state: &mut AgentState,
        tick: &MarketTick,
        snapshot: &PoolSnapshot,
        token: &str,
    ) -> Executed {
        let mut run = Run::new(store, state, tick);
        let result = self.try_sweep(&mut run, snapshot, token);
        run.finish(result)
    }

    fn try_sweep(
        &self,
        run: &mut Run<'_>,
        snapshot: &PoolSnapshot,
        token: &str,
    ) -> Result<(), NotExecuted> {
        let pool = self
            .pool(&snapshot.pool)
            .ok_or_else(|| NotExecuted::NoRoute(snapshot.pool.clone()))?;
        let router = self.router(&pool)?;
        let (q, o) = self.sides(&pool);
        if pool.tokens[o].symbol != token {
            return Err(NotExecuted::NoRoute(snapshot.pool.clone()));
        }
        let held = run.balance(pool.tokens[o].address);
        let out = pool.curve.amount_out(
            whole(held, pool.tokens[o].decimals),
            snapshot.reserves[o],
            snapshot.reserves[q],
            snapshot.fee_rate,
        );
        // Numbered with the positions, not by the tick: a tick a crash cut short is run again,
        // and may sweep again what a second interrupted open left.
        let id = format!("sweep-{}-{token}", run.state.next_position);
        run.state.next_position += 1;
        let leg = self.leg(&id, &pool, snapshot, run.tick, Step::SwapOut);
        self.swap(run, router, &pool, [o, q], held, out, leg)
            .map(|_| ())
    }

    /// Claims a Solidly pool's swap fees owed to the wallet when they are worth more than the
    /// claim's gas (simulated first: nothing is sent for dust, or when the simulation fails).
    fn claim_fees_if_worth_it(
        &self,
        run: &mut Run<'_>,
        pool: &Pool,
        snapshot: &PoolSnapshot,
        leg: Leg,
    ) -> Result<(), NotExecuted> {
        let Some(data) = claim_fees(pool).map(Bytes::from) else {
            return Ok(());
        };
        let request = json!({"from": self.address(), "to": pool.address, "data": data});
        let simulated: Result<Bytes, RpcError> =
            self.rpc.batch(|b| b.call("eth_call", (request, "latest")));
        let Ok(owed) = simulated
            .map_err(|e| e.to_string())
            .and_then(|d| decode_claimed(&d))
        else {
            return Ok(());
        };
        let worth: f64 = (0..2)
            .map(|i| whole(owed[i], pool.tokens[i].decimals) * snapshot.prices_usd[i])
            .sum();
        let gas = self.estimate(pool.address, &data)?;
        let gas_usd = gas as f64 * GAS_PADDING * run.tick.gas_gwei * 1e-9 * run.tick.eth_usd;
        if worth <= gas_usd {
            return Ok(());
        }
        self.run(run, data.to_vec(), pool.address, leg)
    }

    /// Indices of the quote token and the other token in `pool`.
    fn sides(&self, pool: &Pool) -> (usize, usize) {
        let q = usize::from(pool.tokens[1].symbol == self.quote);
        (q, 1 - q)
    }

    /// Swaps `amount_in` of `pool`'s token `sides[0]` for its token `sides[1]` (the tick
    /// promising `expected_out` whole tokens, less the slippage limit as the minimum); returns
    /// what the receipt says came in.
    #[allow(clippy::too_many_arguments)]
    fn swap(
        &self,
        run: &mut Run<'_>,
        router: &Router,
        pool: &Pool,
        sides: [usize; 2],
        amount_in: U256,
        expected_out: f64,
        leg: Leg,
    ) -> Result<U256, NotExecuted> {
        let [from, to] = sides.map(|i| &pool.tokens[i]);
        let approve = Leg {
            step: Step::Approve,
            ..leg.clone()
        };
        self.approve(run, router, from, amount_in, approve)?;
        let before = run.balance(to.address);
        let min_out = self.minimum(expected_out, to.decimals);
        let deadline = self.deadline(run.tick);
        let swap = router.swap(
            pool,
            from.address,
            to.address,
            amount_in,
            min_out,
            self.address(),
            deadline,
        );
        self.run(run, swap, router.address, leg)?;
        Ok(run.balance(to.address).saturating_sub(before))
    }

    /// Approves `router` for exactly `amount` of `token` when its allowance is short.
    fn approve(
        &self,
        run: &mut Run<'_>,
        router: &Router,
        token: &super::source::Token,
        amount: U256,
        leg: Leg,
    ) -> Result<(), NotExecuted> {
        if !self.allowed(token.address, &token.symbol) {
            return Err(NotExecuted::NotAllowlisted(token.symbol.clone()));
        }
        let call = allowanceCall {
            owner: self.address(),
            spender: router.address,
        };
        let allowance = self
            .rpc
            .batch(|b| eth_call(b, token.address, call.abi_encode()))
            .map_err(|e| NotExecuted::Chain(e.to_string()))
            .and_then(|data| decode_u256(&data).map_err(|e| NotExecuted::Chain(e.to_string())))?;
        if allowance >= amount {
            return Ok(());
        }
        let data = approveCall {
            spender: router.address,
            amount,
        }
        .abi_encode();
        self.run(run, data, token.address, leg)
    }

    /// The least a call may give for `expected` whole tokens: less the slippage limit, in raw
    /// units of `decimals`.
    fn minimum(&self, expected: f64, decimals: u8) -> U256 {
        to_raw(expected * (1.0 - self.max_slippage), decimals)
    }

    /// Sends one leg: estimates and pads its gas, checks it against the caps, sends it
    /// through the journal, and applies its receipt to the book.
    fn run(
        &self,
        run: &mut Run<'_>,
        data: Vec<u8>,
        to: Address,
        leg: Leg,
    ) -> Result<(), NotExecuted> {
        let tick = run.tick;
        let data = Bytes::from(data);
        let estimate = self.estimate(to, &data)?;
        let gas_limit = (estimate as f64 * GAS_PADDING).ceil() as u64;
        let worst_usd = gas_limit as f64 * tick.gas_gwei * 1e-9 * tick.eth_usd;
        if worst_usd > self.tx_cap_usd || tick.gas_gwei > self.hard_cap_gwei {
            return Err(NotExecuted::GasCap {
                usd: worst_usd,
                cap: self.tx_cap_usd,
            });
        }
        let max_fee = gwei_to_wei(self.hard_cap_gwei);
        let call = Call {
            purpose: format!("{:?} {} ({})", leg.step, leg.position, leg.pool),
            to,
            data,
            value: U256::ZERO,
            gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: gwei_to_wei(tick.gas_gwei * 0.1).min(max_fee),
            leg: Some(leg),
        };
        let intent = self
            .sender
            .send(run.store, call, tick.at_ms)
            .map_err(|e| NotExecuted::Chain(e.to_string()))?;
        let IntentState::Mined { success, .. } = intent.state else {
            return Err(NotExecuted::Unconfirmed(intent.hash));
        };
        let receipt = self
            .sender
            .receipt(intent.hash)
            .map_err(|e| NotExecuted::Chain(e.to_string()))?
            .ok_or(NotExecuted::Unconfirmed(intent.hash))?;
        run.fills.extend(apply(run.state, &intent, &receipt));
        if success {
            Ok(())
        } else {
            Err(NotExecuted::Reverted(intent.hash))
        }
    }

    fn estimate(&self, to: Address, data: &Bytes) -> Result<u64, NotExecuted> {
        let request = json!({"from": self.address(), "to": to, "data": data});
        let gas: Result<alloy::primitives::U64, RpcError> =
            self.rpc.batch(|b| b.call("eth_estimateGas", [request]));
        match gas {
            Ok(g) => Ok(g.to()),
            Err(e) if e.is_refusal() => Err(NotExecuted::WouldRevert(e.to_string())),
            Err(e) => Err(NotExecuted::Chain(e.to_string())),
        }
    }

    fn total_supply(&self, pair: Address) -> Result<U256, NotExecuted> {
        self.rpc
            .batch(|b| eth_call(b, pair, totalSupplyCall {}.abi_encode()))
            .map_err(|e| NotExecuted::Chain(e.to_string()))
            .and_then(|d| decode_u256(&d).map_err(|e| NotExecuted::Chain(e.to_string())))
    }

    fn deadline(&self, tick: &MarketTick) -> U256 {
        // Block time is wall time; the agent's clock is real with a chain source.
        let now_s = tick
            .at_ms
            .max(crate::clock::Clock::now_ms(&crate::clock::SystemClock))
            / 1000;
        U256::from(now_s + self.deadline_s)
    }

    fn leg(&self, id: &str, pool: &Pool, s: &PoolSnapshot, tick: &MarketTick, step: Step) -> Leg {
        Leg {
            position: id.to_string(),
            pool: pool.name.clone(),
            step,
            pair: pool.address,
            tokens: [pool.tokens[0].address, pool.tokens[1].address],
            symbols: [pool.tokens[0].symbol.clone(), pool.tokens[1].symbol.clone()],
            decimals: [pool.tokens[0].decimals, pool.tokens[1].decimals],
            prices: s.prices_usd,
            eth_usd: tick.eth_usd,
            fee_rate: s.fee_rate,
            stable: s.stable,
            apr_pct: s.apr_pct(),
            tvl_usd: s.tvl_usd,
            tick: tick.index,
            at_ms: tick.at_ms,
        }
    }

    /// The wallet's ETH and token balances (every token the book holds) at block `block`.
    pub fn balances_at(
        &self,
        book: &WalletBook,
        block: u64,
    ) -> Result<std::collections::BTreeMap<Address, U256>, RpcError> {
        let me = self.address();
        let at = alloy::primitives::U64::from(block);
        let tokens: Vec<Address> = book
            .balances
            .keys()
            .copied()
            .filter(|t| *t != Address::ZERO)
            .collect();
        let (eth, words) = self.rpc.batch(|b| {
            let eth: Pending<U256> = b.call("eth_getBalance", (me, at));
            let words: Vec<Pending<Bytes>> = tokens
                .iter()
                .map(|t| {
                    let data = Bytes::from(balanceOfCall { owner: me }.abi_encode());
                    b.call("eth_call", (json!({"to": t, "data": data}), at))
                })
                .collect();
            (eth, words)
        })?;
        let mut out = std::collections::BTreeMap::from([(Address::ZERO, eth)]);
        for (t, w) in tokens.iter().zip(words) {
            out.insert(*t, decode_u256(&w)?);
        }
        Ok(out)
    }

    /// Compares the book with the chain at a pinned block (the latest): every token balance
    /// the book holds, valued at the tick's prices (an LP token at its position's value per
    /// share). ETH is not compared (an operator tops it up for gas): the book takes the
    /// chain's figure. Nothing is traded to fix a difference.
    pub fn reconcile(
        &self,
        state: &mut AgentState,
        tick: &MarketTick,
    ) -> Result<Reconciliation, ExecError> {
        let Some(book) = state.wallet.as_mut() else {
            return Ok(Reconciliation::default());
        };
        let block = self.head()?;
        let chain = self.balances_at(book, block)?;
        let mut difference = 0.0;
        let mut detail = Vec::new();
        for (token, held) in &chain {
            if *token == Address::ZERO {
                continue;
            }
            let booked = book.balance(*token);
            if booked == *held {
                continue;
            }
            let info = book.tokens.get(token).cloned();
            let decimals = info.as_ref().map_or(18, |i| i.decimals);
            let gap = (whole(booked, decimals) - whole(*held, decimals)).abs();
            let usd = match &info {
                Some(i) if i.pair => {
                    let p = state.positions.iter().find(|p| p.pool == i.symbol);
                    p.and_then(|p| Some((p.value_usd, p.lp_shares?)))
                        .map_or(0.0, |(v, s)| gap * v / whole(s, 18).max(f64::MIN_POSITIVE))
                }
                Some(i) if *token == book.quote || i.symbol == self.quote => gap,
                Some(i) => gap * price_of(tick, &i.symbol).unwrap_or(0.0),
                None => 0.0,
            };
            difference += usd;
            let name = info.map_or_else(|| token.to_string(), |i| i.symbol);
            detail.push(format!(
                "{name} book {} chain {} (${usd:.2})",
                whole(booked, decimals),
                whole(*held, decimals)
            ));
        }
        book.balances.insert(
            Address::ZERO,
            chain.get(&Address::ZERO).copied().unwrap_or_default(),
        );
        Ok(Reconciliation {
            block,
            difference_usd: difference,
            detail: if detail.is_empty() {
                "every balance equal".into()
            } else {
                detail.join("; ")
            },
        })
    }

    /// The latest block number.
    pub fn head(&self) -> Result<u64, RpcError> {
        let n: alloy::primitives::U64 = self.rpc.batch(|b| b.call("eth_blockNumber", ()))?;
        Ok(n.to())
    }
}

fn at_least(amount: U256, slippage: f64) -> U256 {
    let keep = ((1.0 - slippage).clamp(0.0, 1.0) * 1e6) as u64;
    amount * U256::from(keep) / U256::from(1_000_000u64)
}

fn gwei_to_wei(gwei: f64) -> u128 {
    (gwei.max(0.0) * 1e9) as u128
}

/// Whole tokens as raw units of `decimals`.
fn to_raw(amount: f64, decimals: u8) -> U256 {
    let scaled = amount.max(0.0) * 10f64.powi(i32::from(decimals));
    U256::from(scaled.floor() as u128)
}

fn decode_u256(data: &Bytes) -> Result<U256, RpcError> {
    if data.is_empty() || data.len() > 32 && !data.len().is_multiple_of(32) {
        return Err(RpcError::Malformed {
            method: "eth_call".into(),
            why: format!("{} bytes where a uint256 was expected", data.len()),
        });
    }
    Ok(U256::from_be_slice(&data[..data.len().min(32)]))
}

fn eth_call(b: &mut super::rpc::Batch<'_>, to: Address, data: Vec<u8>) -> Pending<Bytes> {
    b.call(
        "eth_call",
        (json!({"to": to, "data": Bytes::from(data)}), "latest"),
    )
}
