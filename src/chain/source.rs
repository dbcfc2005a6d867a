//! The `chain` market source: the configured pairs read from an EVM node, one batched round
//! trip per tick.
//!
//! At the first tick (and again after a tick that failed before it) the source learns its
//! pools: each pair's tokens, their symbols and decimals, a Solidly pool's curve and fee, and
//! the block each pair was created in (a binary search on `eth_getCode`). A pool is named by
//! its tokens' symbols in pair order (`USDC/WETH`), a Solidly pool as Aerodrome names it
//! (`sAMM-USDC/DAI`, `vAMM-AERO/USDC`). Then every tick sends
//! one JSON-RPC batch: the latest block, `eth_feeHistory` (next base fee plus the median
//! priority fee), `getReserves()` of every pair, and the pairs' `Swap` events since the last
//! block read (at most `chain.log_range_blocks` blocks per tick, so a long gap is caught up over
//! several ticks).
//!
//! From these (SPEC.md §1): `chain.quote_token` is worth $1 and every other token is priced
//! through the deepest pool that links it to an already priced token (a stable Solidly pool on
//! its own curve); TVL = Σ reserve × price; 24h volume = the swaps' input value over the last
//! 24 h of block time, fee APR from it; emission APR 0 (gauges are not read). At start the
//! swaps of the last 24 h are fetched too, so the fee APR is whole once the source caught up.

use super::ChainError;
use super::pair::{self, Curve};
use super::rpc::{Batch, Pending, Rpc, RpcError};
use crate::market::{MarketError, MarketSource, MarketTick, PoolSnapshot};
use alloy::primitives::{Address, B256, Bytes, U64, U128};
use alloy::sol_types::SolCall;
use athena_config::{ChainConfig, ChainPool, PairKind};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, VecDeque};

/// Seconds of swaps the fee APR is computed over.
const VOLUME_WINDOW_S: u64 = 86_400;
/// Blocks sampled to estimate the block time when the backfill of the volume window starts.
const BLOCK_TIME_SAMPLE: u64 = 10_000;

/// A token of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Its contract.
    pub address: Address,
    /// Its symbol.
    pub symbol: String,
    /// Its decimals.
    pub decimals: u8,
}

/// A pool as the chain describes it.
#[derive(Debug, Clone)]
pub struct Pool {
    /// The pair contract (also its LP token).
    pub address: Address,
    /// The name the agent knows it by.
    pub name: String,
    /// Its tokens, in pair order.
    pub tokens: [Token; 2],
    /// Its curve.
    pub curve: Curve,
    swap_topic: B256,
    /// Swap fee, a fraction.
    pub fee_rate: f64,
    /// A pool of two stablecoins.
    pub stable: bool,
    /// The pair's kind, as configured.
    pub kind: PairKind,
    /// The factory that made it (`factory()`): a router trades only its own factory's pairs.
    pub factory: Address,
    created_ms: u64,
}

/// The pools a chain source learnt, shared with the chain executor (empty until the source's
/// first tick).
pub type Directory = std::sync::Arc<std::sync::RwLock<Vec<Pool>>>;

/// One swap in the volume window.
#[derive(Debug, Clone, Copy)]
struct Swap {
    at_s: u64,
    pool: usize,
    usd: f64,
}

/// The fields of a block the source reads.
#[derive(Debug, Deserialize)]
struct Block {
    number: U64,
    timestamp: U64,
}

/// The fields of `eth_feeHistory` the source reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FeeHistory {
    base_fee_per_gas: Vec<U128>,
    #[serde(default)]
    reward: Option<Vec<Vec<U128>>>,
}

/// The fields of a log the source reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Log {
    address: Address,
    topics: Vec<B256>,
    data: Bytes,
    block_number: Option<U64>,
    #[serde(default)]
    block_timestamp: Option<U64>,
    #[serde(default)]
    removed: bool,
}

/// The chain market source.
pub struct ChainSource {
    rpc: Rpc,
    config: ChainConfig,
    start_ms: u64,
    tick_ms: u64,
    pools: Option<Vec<Pool>>,
    swaps: VecDeque<Swap>,
    /// The first block whose swaps are not read yet.
    next_log_block: u64,
    /// The latest block seen.
    head: u64,
    /// The pools learnt, for the chain executor.
    directory: Directory,
}

impl ChainSource {
    /// A source reading `config`'s pools, whose tick `i` is at `start_ms + i × tick_ms`. Nothing
    /// is asked of the node before the first tick.
    pub fn new(config: &ChainConfig, start_ms: u64, tick_ms: u64) -> Result<Self, ChainError> {
        Ok(Self {
            rpc: Rpc::new(&config.rpc_url, config.request_timeout)?,
            config: config.clone(),
            start_ms,
            tick_ms: tick_ms.max(1),
            pools: None,
            swaps: VecDeque::new(),
            next_log_block: 0,
            head: 0,
            directory: Directory::default(),
        })
    }

    /// The pools it learns, shared: filled at its first tick.
    pub fn directory(&self) -> Directory {
        self.directory.clone()
    }

    /// HTTP round trips made so far (start-up included).
    pub fn round_trips(&self) -> u64 {
        self.rpc.round_trips()
    }

    /// Reads one tick from the node.
    fn read(&mut self, index: u64) -> Result<MarketTick, ChainError> {
        if self.pools.is_none() {
            let pools = self.learn_pools()?;
            *self.directory.write().expect("never poisoned") = pools.clone();
            self.pools = Some(pools);
        }
        let pools = self.pools.as_ref().expect("learnt above");
        // The range starts at a block known to exist (a range starting past the head is an
        // error): the last block read when it is behind `next_log_block`; logs of blocks read
        // before are dropped below.
        let logs_from = self.next_log_block.min(self.head);
        let logs_to = logs_from + self.config.log_range_blocks - 1;
        let (block, fees, reserves, logs) = self.rpc.batch(|b| {
            let block: Pending<Block> = b.call("eth_getBlockByNumber", ("latest", false));
            let fees: Pending<FeeHistory> = b.call("eth_feeHistory", ("0x1", "latest", [50.0]));
            let reserves: Vec<Pending<Bytes>> = pools
                .iter()
                .map(|p| eth_call(b, p.address, pair::getReservesCall {}.abi_encode()))
                .collect();
            let addresses: Vec<Address> = pools.iter().map(|p| p.address).collect();
            let filter = json!({
                "fromBlock": U64::from(logs_from),
                "toBlock": U64::from(logs_to),
                "address": addresses,
                "topics": [[pair::uniswap_v2_swap_topic(), pair::solidly_swap_topic()]],
            });
            let logs: Pending<Vec<Log>> = b.call("eth_getLogs", [filter]);
            (block, fees, reserves, logs)
        })?;
        let head = block.number.to::<u64>();
        let head_s = block.timestamp.to::<u64>();
        let whole = reserves
            .iter()
            .zip(pools)
            .map(|(data, p)| {
                let (r0, r1) = pair::reserves(data).map_err(|why| malformed("eth_call", why))?;
                Ok([
                    pair::whole(r0, p.tokens[0].decimals),
                    pair::whole(r1, p.tokens[1].decimals),
                ])
            })
            .collect::<Result<Vec<[f64; 2]>, ChainError>>()?;
        let prices = price(pools, &whole, &self.config.quote_token)?;
        self.count_swaps(&logs, head, head_s, &prices)?;
        self.next_log_block = self.next_log_block.max(logs_to.min(head) + 1);
        self.head = head;
        let cutoff = head_s.saturating_sub(VOLUME_WINDOW_S);
        while self.swaps.front().is_some_and(|s| s.at_s <= cutoff) {
            self.swaps.pop_front();
        }
        let pools = self.pools.as_ref().expect("learnt above");
        let native = pools
            .iter()
            .flat_map(|p| p.tokens.iter())
            .find(|t| t.symbol == self.config.native_token)
            .expect("checked when the pools were learnt");
        let snapshots = pools
            .iter()
            .zip(&whole)
            .enumerate()
            .map(|(i, (p, r))| self.snapshot(i, p, *r, &prices))
            .collect();
        Ok(MarketTick {
            index,
            at_ms: self.start_ms + index * self.tick_ms,
            gas_gwei: gas_gwei(&fees),
            eth_usd: usd(&prices, native),
            pools: snapshots,
        })
    }

    /// Pool `i` (`p`, with reserves `r` in whole tokens) as the agent sees it.
    fn snapshot(
        &self,
        i: usize,
        p: &Pool,
        r: [f64; 2],
        prices: &BTreeMap<Address, f64>,
    ) -> PoolSnapshot {
        let prices_usd = [usd(prices, &p.tokens[0]), usd(prices, &p.tokens[1])];
        let tvl_usd = r[0] * prices_usd[0] + r[1] * prices_usd[1];
        let volume_24h_usd = self
            .swaps
            .iter()
            .filter(|s| s.pool == i)
            .fold(0.0, |sum, s| sum + s.usd);
        // The pool's own price of token0 in token1 against the market's (the deepest pools').
        let own = p.curve.spot_price0_in_1(r[0], r[1]);
        let market = prices_usd[0] / prices_usd[1];
        PoolSnapshot {
            pool: p.name.clone(),
            tokens: [p.tokens[0].symbol.clone(), p.tokens[1].symbol.clone()],
            stable: p.stable,
            fee_rate: p.fee_rate,
            prices_usd,
            reserves: r,
            tvl_usd,
            volume_24h_usd,
            fee_apr_pct: volume_24h_usd * p.fee_rate * 365.0 / tvl_usd * 100.0,
            emission_apr_pct: 0.0,
            created_ms: p.created_ms,
            price_gap_pct: 100.0 * (own / market - 1.0).abs(),
        }
    }

    /// Adds the swaps of `logs` (blocks up to `head`) to the volume window.
    fn count_swaps(
        &mut self,
        logs: &[Log],
        head: u64,
        head_s: u64,
        prices: &BTreeMap<Address, f64>,
    ) -> Result<(), ChainError> {
        let pools = self.pools.as_ref().expect("learnt before");
        for log in logs {
            let block = log.block_number.map(|b| b.to::<u64>());
            let unread = |b: u64| b >= self.next_log_block && b <= head;
            if log.removed || !block.is_some_and(unread) {
                continue;
            }
            let Some(i) = pools.iter().position(|p| p.address == log.address) else {
                continue;
            };
            let p = &pools[i];
            if log.topics.first() != Some(&p.swap_topic) {
                continue;
            }
            let a = pair::swap_amounts(&log.data).map_err(|why| malformed("eth_getLogs", why))?;
            // The input side's value; a swap in a pool priced not a number is not counted.
            let value = pair::whole(a[0], p.tokens[0].decimals) * usd(prices, &p.tokens[0])
                + pair::whole(a[1], p.tokens[1].decimals) * usd(prices, &p.tokens[1]);
            if value.is_finite() {
                let at_s = log.block_timestamp.map_or(head_s, |t| t.to::<u64>());
                self.swaps.push_back(Swap {
                    at_s,
                    pool: i,
                    usd: value,
                });
            }
        }
        Ok(())
    }

    /// Learns the pools: tokens, symbols, decimals, curves, fees, creation times; and where
    /// the backfill of the volume window starts.
    fn learn_pools(&mut self) -> Result<Vec<Pool>, ChainError> {
        let cfg = self.config.pools.clone();
        let addresses: Vec<Address> = cfg
            .iter()
            .map(|p| p.address.parse().expect("validated as an address"))
            .collect();
        // Round trip 1: the chain id, the head, code, tokens, factories, and a Solidly pool's
        // curve.
        let (chain_id, block, codes, tokens, stables) = match self.pool_calls(&cfg, &addresses) {
            Ok(answers) => answers,
            Err(e) if e.is_refusal() => return Err(self.refusing_pool(&cfg, &addresses, e)),
            Err(e) => return Err(e.into()),
        };
        if chain_id.to::<u64>() != self.config.chain_id {
            return Err(ChainError::WrongChain {
                configured: self.config.chain_id,
                node: chain_id.to(),
            });
        }
        let head = block.number.to::<u64>();
        let head_s = block.timestamp.to::<u64>();
        let mut pairs = Vec::new();
        for (i, a) in addresses.iter().enumerate() {
            let bad = |why: String| ChainError::Pool {
                address: cfg[i].address.clone(),
                why,
            };
            if codes[i].is_empty() {
                return Err(bad(format!("no contract at this address (block {head})")));
            }
            let token = |data: &Bytes, which: &str| {
                pair::token0Call::abi_decode_returns(data)
                    .map_err(|e| bad(format!("{which}() is not an address: {e}")))
            };
            let t0 = token(&tokens[i].0, "token0")?;
            let t1 = token(&tokens[i].1, "token1")?;
            let factory = pair::factoryCall::abi_decode_returns(&tokens[i].2)
                .map_err(|e| bad(format!("factory() is not an address: {e}")))?;
            let curve = match &stables[i] {
                None => (Curve::ConstantProduct, None),
                Some(stable) => {
                    let stable = pair::stableCall::abi_decode_returns(stable)
                        .map_err(|e| bad(format!("stable() is not a bool: {e}")))?;
                    if stable != cfg[i].stable {
                        return Err(bad(format!(
                            "the pool says stable = {stable}, the configuration says {}",
                            cfg[i].stable
                        )));
                    }
                    let curve = if stable {
                        Curve::Stable
                    } else {
                        Curve::ConstantProduct
                    };
                    (curve, Some((factory, stable)))
                }
            };
            pairs.push((*a, [t0, t1], curve, factory));
        }
        // Round trip 2: each token's symbol and decimals, each Solidly pool's fee, and an
        // older block to estimate the block time.
        let distinct: Vec<Address> = {
            let mut v: Vec<Address> = pairs.iter().flat_map(|(_, t, _, _)| *t).collect();
            v.sort();
            v.dedup();
            v
        };
        let sample = head.min(BLOCK_TIME_SAMPLE);
        let (meta, fees, older) = self
            .rpc
            .batch(|b| {
                let meta: Vec<(Pending<Bytes>, Pending<Bytes>)> = distinct
                    .iter()
                    .map(|t| {
                        (
                            eth_call(b, *t, pair::symbolCall {}.abi_encode()),
                            eth_call(b, *t, pair::decimalsCall {}.abi_encode()),
                        )
                    })
                    .collect();
                let fees: Vec<Option<Pending<Bytes>>> = pairs
                    .iter()
                    .map(|(a, _, (_, solidly), _)| {
                        solidly.map(|(factory, stable)| {
                            let call = pair::getFeeCall { pool: *a, stable };
                            eth_call(b, factory, call.abi_encode())
                        })
                    })
                    .collect();
                let older: Pending<Block> =
                    b.call("eth_getBlockByNumber", (U64::from(head - sample), false));
                (meta, fees, older)
            })
            .map_err(refused_as_token)?;
        let mut known = BTreeMap::new();
        for (t, (symbol, decimals)) in distinct.iter().zip(&meta) {
            let bad = |why: String| ChainError::Pool {
                address: t.to_string(),
                why: format!("token {why}"),
            };
            let symbol = pair::symbolCall::abi_decode_returns(symbol)
                .map_err(|e| bad(format!("symbol() is not a string: {e}")))?;
            let decimals = pair::decimalsCall::abi_decode_returns(decimals)
                .map_err(|e| bad(format!("decimals() is not a uint8: {e}")))?;
            known.insert(
                *t,
                Token {
                    address: *t,
                    symbol,
                    decimals,
                },
            );
        }
        let created = self.creation_times(&addresses, head, head_s);
        let mut pools = Vec::new();
        for (i, (address, [t0, t1], (curve, _), factory)) in pairs.into_iter().enumerate() {
            let tokens = [known[&t0].clone(), known[&t1].clone()];
            let fee_rate = match &fees[i] {
                None => 0.003,
                Some(data) => {
                    let bps = pair::getFeeCall::abi_decode_returns(data).map_err(|e| {
                        ChainError::Pool {
                            address: cfg[i].address.clone(),
                            why: format!("its factory's getFee() is not a number: {e}"),
                        }
                    })?;
                    f64::from(bps) / 10_000.0
                }
            };
            let pair = format!("{}/{}", tokens[0].symbol, tokens[1].symbol);
            pools.push(Pool {
                address,
                // Aerodrome's own names for its pools, so a Solidly pool and a UniswapV2 pair
                // of the same tokens differ.
                name: match (cfg[i].kind, curve) {
                    (PairKind::UniswapV2, _) => pair,
                    (PairKind::Solidly, Curve::Stable) => format!("sAMM-{pair}"),
                    (PairKind::Solidly, Curve::ConstantProduct) => format!("vAMM-{pair}"),
                },
                swap_topic: match cfg[i].kind {
                    PairKind::UniswapV2 => pair::uniswap_v2_swap_topic(),
                    PairKind::Solidly => pair::solidly_swap_topic(),
                },
                tokens,
                curve,
                fee_rate,
                stable: cfg[i].stable,
                kind: cfg[i].kind,
                factory,
                created_ms: created[i],
            });
        }
        self.check_symbols(&pools)?;
        // The volume window starts 24 h of block time back, estimated from the sample.
        let span_s = head_s.saturating_sub(older.timestamp.to::<u64>());
        let blocks_back = if span_s == 0 {
            sample
        } else {
            (VOLUME_WINDOW_S * sample).div_ceil(span_s)
        };
        self.next_log_block = head.saturating_sub(blocks_back);
        self.head = head;
        self.swaps.clear();
        Ok(pools)
    }

    /// The first round trip of [`Self::learn_pools`] for `cfg`'s pools at `addresses`.
    #[allow(clippy::type_complexity)]
    fn pool_calls(
        &self,
        cfg: &[ChainPool],
        addresses: &[Address],
    ) -> Result<
        (
            U64,
            Block,
            Vec<Bytes>,
            Vec<(Bytes, Bytes, Bytes)>,
            Vec<Option<Bytes>>,
        ),
        RpcError,
    > {
        self.rpc.batch(|b| {
            let chain_id: Pending<U64> = b.call("eth_chainId", ());
            let block: Pending<Block> = b.call("eth_getBlockByNumber", ("latest", false));
            let codes: Vec<Pending<Bytes>> = addresses
                .iter()
                .map(|a| b.call("eth_getCode", (a, "latest")))
                .collect();
            let tokens: Vec<(Pending<Bytes>, Pending<Bytes>, Pending<Bytes>)> = addresses
                .iter()
                .map(|a| {
                    (
                        eth_call(b, *a, pair::token0Call {}.abi_encode()),
                        eth_call(b, *a, pair::token1Call {}.abi_encode()),
                        eth_call(b, *a, pair::factoryCall {}.abi_encode()),
                    )
                })
                .collect();
            let stables: Vec<Option<Pending<Bytes>>> = cfg
                .iter()
                .zip(addresses)
                .map(|(p, a)| {
                    (p.kind == PairKind::Solidly)
                        .then(|| eth_call(b, *a, pair::stableCall {}.abi_encode()))
                })
                .collect();
            (chain_id, block, codes, tokens, stables)
        })
    }

    /// The pool whose calls the node refused (asked one pool at a time), named with `e`.
    fn refusing_pool(&self, cfg: &[ChainPool], addresses: &[Address], e: RpcError) -> ChainError {
        for i in 0..cfg.len() {
            match self.pool_calls(&cfg[i..=i], &addresses[i..=i]) {
                Err(refused) if refused.is_refusal() => {
                    return ChainError::Pool {
                        address: cfg[i].address.clone(),
                        why: format!(
                            "it does not answer as a {} pool: {refused}",
                            match cfg[i].kind {
                                PairKind::UniswapV2 => "UniswapV2",
                                PairKind::Solidly => "Solidly",
                            }
                        ),
                    };
                }
                Err(other) => return other.into(),
                Ok(_) => {}
            }
        }
        e.into()
    }

    /// Each pool's creation time, ms: the first block holding its code (a binary search on
    /// `eth_getCode`, all pools in one batch per step). A node that cannot answer for old
    /// blocks (not an archive node) leaves the pools created "now", so they count as new.
    fn creation_times(&self, pools: &[Address], head: u64, head_s: u64) -> Vec<u64> {
        let now = vec![head_s * 1000; pools.len()];
        let mut lo = vec![0u64; pools.len()];
        let mut hi = vec![head; pools.len()];
        while lo.iter().zip(&hi).any(|(l, h)| l < h) {
            let mids: Vec<u64> = lo.iter().zip(&hi).map(|(l, h)| l + (h - l) / 2).collect();
            let codes = self.rpc.batch(|b| {
                pools
                    .iter()
                    .zip(&mids)
                    .map(|(a, m)| b.call::<_, Bytes>("eth_getCode", (a, U64::from(*m))))
                    .collect::<Vec<_>>()
            });
            let Ok(codes) = codes else {
                tracing::warn!(
                    "the node cannot say when the pools were created; counting them as new"
                );
                return now;
            };
            for (i, code) in codes.iter().enumerate() {
                if lo[i] >= hi[i] {
                    continue;
                }
                if code.is_empty() {
                    lo[i] = mids[i] + 1;
                } else {
                    hi[i] = mids[i];
                }
            }
        }
        let blocks = self.rpc.batch(|b| {
            lo.iter()
                .map(|n| b.call::<_, Block>("eth_getBlockByNumber", (U64::from(*n), false)))
                .collect::<Vec<_>>()
        });
        match blocks {
            Ok(blocks) => blocks
                .iter()
                .map(|b| b.timestamp.to::<u64>() * 1000)
                .collect(),
            Err(_) => now,
        }
    }

    /// Pool names are unique (they key positions and profiles), and the quote and native
    /// tokens are among the pools' tokens.
    fn check_symbols(&self, pools: &[Pool]) -> Result<(), ChainError> {
        for (i, p) in pools.iter().enumerate() {
            if let Some(other) = pools[..i].iter().find(|o| o.name == p.name) {
                return Err(ChainError::Pool {
                    address: p.address.to_string(),
                    why: format!(
                        "named {} like the pool at {}: two pools of the same tokens and kind",
                        p.name, other.address
                    ),
                });
            }
        }
        for (key, symbol) in [
            ("chain.quote_token", &self.config.quote_token),
            ("chain.native_token", &self.config.native_token),
        ] {
            if !pools
                .iter()
                .flat_map(|p| p.tokens.iter())
                .any(|t| &t.symbol == symbol)
            {
                return Err(ChainError::Pricing(format!(
                    "{key} = {symbol:?} is not a token of any configured pool"
                )));
            }
        }
        Ok(())
    }
}

impl MarketSource for ChainSource {
    fn chain_pools(&self) -> Option<Directory> {
        Some(self.directory())
    }

    fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError> {
        self.read(index).map_err(|e| {
            if e.is_final() {
                // Learnt again at the next attempt, should the run go on.
                self.pools = None;
            }
            MarketError::from(e)
        })
    }
}

/// Adds an `eth_call` of `data` to `to` at the latest block.
fn eth_call(b: &mut Batch<'_>, to: Address, data: Vec<u8>) -> Pending<Bytes> {
    b.call(
        "eth_call",
        (json!({"to": to, "data": Bytes::from(data)}), "latest"),
    )
}

fn malformed(method: &str, why: String) -> ChainError {
    ChainError::Rpc(RpcError::Malformed {
        method: method.into(),
        why,
    })
}

/// A token call the node answered with an error (a revert): a pool's token is not an ERC20
/// with a symbol and decimals. Anything else (no answer) may pass.
fn refused_as_token(e: RpcError) -> ChainError {
    if e.is_refusal() {
        ChainError::Pool {
            address: "(a token of chain.pools)".into(),
            why: format!("symbol() or decimals() refused: {e}"),
        }
    } else {
        ChainError::Rpc(e)
    }
}

/// The USD price of `t` (not a number when no pool priced it).
fn usd(prices: &BTreeMap<Address, f64>, t: &Token) -> f64 {
    prices.get(&t.address).copied().unwrap_or(f64::NAN)
}

/// Gas price of the next block, gwei: its base fee plus the median priority fee of the last.
fn gas_gwei(fees: &FeeHistory) -> f64 {
    let base = fees.base_fee_per_gas.last().map_or(0, |b| b.to::<u128>());
    let tip = fees
        .reward
        .as_ref()
        .and_then(|r| r.last())
        .and_then(|r| r.first())
        .map_or(0, |t| t.to::<u128>());
    (base + tip) as f64 / 1e9
}

/// USD price of every token reachable from the quote token: each step prices one more token
/// through the deepest pool (by the value of its priced side) that links it to a priced one.
fn price(
    pools: &[Pool],
    whole: &[[f64; 2]],
    quote: &str,
) -> Result<BTreeMap<Address, f64>, ChainError> {
    let mut prices = BTreeMap::new();
    for p in pools {
        for t in &p.tokens {
            if t.symbol == quote {
                prices.insert(t.address, 1.0);
            }
        }
    }
    loop {
        let mut best: Option<(f64, Address, f64)> = None;
        for (p, r) in pools.iter().zip(whole) {
            let [a, b] = [&p.tokens[0], &p.tokens[1]];
            let (known, unknown, value) = match (prices.get(&a.address), prices.get(&b.address)) {
                (Some(pa), None) => {
                    // One token1 is worth 1 / (token1 per token0) token0.
                    let p1 = pa / p.curve.spot_price0_in_1(r[0], r[1]);
                    (r[0] * pa, b.address, p1)
                }
                (None, Some(pb)) => {
                    let p0 = pb * p.curve.spot_price0_in_1(r[0], r[1]);
                    (r[1] * pb, a.address, p0)
                }
                _ => continue,
            };
            if best.is_none_or(|(v, _, _)| known > v) {
                best = Some((known, unknown, value));
            }
        }
        match best {
            Some((_, token, usd)) => {
                prices.insert(token, usd);
            }
            None => break,
        }
    }
    if let Some(t) = pools
        .iter()
        .flat_map(|p| p.tokens.iter())
        .find(|t| !prices.contains_key(&t.address))
    {
        return Err(ChainError::Pricing(format!(
            "no configured pool links {} to the quote token {quote}",
            t.symbol
        )));
    }
    Ok(prices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u8, symbol: &str) -> Token {
        Token {
            address: Address::with_last_byte(n),
            symbol: symbol.into(),
            decimals: 18,
        }
    }

    fn pool(a: Token, b: Token, curve: Curve) -> Pool {
        Pool {
            address: Address::ZERO,
            name: format!("{}/{}", a.symbol, b.symbol),
            tokens: [a, b],
            curve,
            swap_topic: pair::uniswap_v2_swap_topic(),
            fee_rate: 0.003,
            stable: curve == Curve::Stable,
            kind: PairKind::UniswapV2,
            factory: Address::ZERO,
            created_ms: 0,
        }
    }

    #[test]
    fn prices_flow_from_the_quote_token_through_the_deepest_pool() {
        let (usdc, weth, aero, dai) = (
            token(1, "USDC"),
            token(2, "WETH"),
            token(3, "AERO"),
            token(4, "DAI"),
        );
        let pools = [
            pool(aero.clone(), weth.clone(), Curve::ConstantProduct),
            pool(weth.clone(), usdc.clone(), Curve::ConstantProduct),
            pool(usdc.clone(), dai.clone(), Curve::Stable),
            // A shallow WETH pool at a wrong price must not win over the deep one.
            pool(weth.clone(), dai.clone(), Curve::ConstantProduct),
        ];
        let whole = [
            [250_000.0, 100.0],         // 1 AERO = 0.0004 WETH
            [1_000.0, 3_000_000.0],     // 1 WETH = 3000 USDC
            [1_000_000.0, 1_000_000.0], // balanced stable pool
            [1.0, 1_000.0],             // 1 WETH = 1000 DAI, shallow
        ];
        let p = price(&pools, &whole, "USDC").unwrap();
        assert_eq!(p[&usdc.address], 1.0);
        assert!((p[&weth.address] - 3000.0).abs() < 1e-9);
        assert!((p[&aero.address] - 1.2).abs() < 1e-9);
        assert!((p[&dai.address] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_token_no_pool_links_to_the_quote_token_is_refused() {
        let pools = [pool(
            token(2, "WETH"),
            token(3, "AERO"),
            Curve::ConstantProduct,
        )];
        let e = price(&pools, &[[1.0, 1.0]], "USDC").unwrap_err();
        assert!(e.is_final());
        assert!(e.to_string().contains("no configured pool links"), "{e}");
    }

    #[test]
    fn gas_is_the_next_base_fee_plus_the_median_tip() {
        let fees: FeeHistory = serde_json::from_value(json!({
            "oldestBlock": "0x10",
            "baseFeePerGas": ["0x3b9aca00", "0x77359400"],
            "gasUsedRatio": [0.5],
            "reward": [["0x5f5e100"]]
        }))
        .unwrap();
        assert!((gas_gwei(&fees) - 2.1).abs() < 1e-12);
    }
}
