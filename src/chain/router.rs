//! The routers the chain executor sends through: UniswapV2's Router02 for `uniswap_v2` pairs
//! (`chain.router_address`) and Aerodrome's Router for `solidly` pools
//! (`chain.solidly_router_address`). One [`Router`] encodes a swap, an add and a remove of
//! liquidity for either; Aerodrome's calls name the pool's curve (`stable`) and a swap its
//! factory.
//!
//! A router trades only the pools its factory made: [`Routers::check`] asks the node once,
//! before the first trade, for each router's code and factory (`factory()` of UniswapV2's,
//! `defaultFactory()` of Aerodrome's) and compares it with each pool's `factory()`. A router
//! address with no contract, or one that does not answer as its kind of router, or one whose
//! factory made none of the configured pools of its kind stops the run (a mistyped address
//! must not lead to transactions that move nothing); a pool of another factory is watched, not
//! traded, and said so.

use super::pair;
use super::rpc::{Pending, Rpc, RpcError};
use super::source::Pool;
use alloy::primitives::{Address, Bytes, U256};
use alloy::sol;
use alloy::sol_types::SolCall;
use athena_config::{ChainConfig, PairKind};
use serde_json::json;

mod v2 {
    alloy::sol! {
        function swapExactTokensForTokens(uint256 amountIn, uint256 amountOutMin, address[] path, address to, uint256 deadline) external returns (uint256[] amounts);
        function addLiquidity(address tokenA, address tokenB, uint256 amountADesired, uint256 amountBDesired, uint256 amountAMin, uint256 amountBMin, address to, uint256 deadline) external returns (uint256 amountA, uint256 amountB, uint256 liquidity);
        function removeLiquidity(address tokenA, address tokenB, uint256 liquidity, uint256 amountAMin, uint256 amountBMin, address to, uint256 deadline) external returns (uint256 amountA, uint256 amountB);
    }
}

mod solidly {
    alloy::sol! {
        struct Route { address from; address to; bool stable; address factory; }
        function swapExactTokensForTokens(uint256 amountIn, uint256 amountOutMin, Route[] routes, address to, uint256 deadline) external returns (uint256[] amounts);
        function addLiquidity(address tokenA, address tokenB, bool stable, uint256 amountADesired, uint256 amountBDesired, uint256 amountAMin, uint256 amountBMin, address to, uint256 deadline) external returns (uint256 amountA, uint256 amountB, uint256 liquidity);
        function removeLiquidity(address tokenA, address tokenB, bool stable, uint256 liquidity, uint256 amountAMin, uint256 amountBMin, address to, uint256 deadline) external returns (uint256 amountA, uint256 amountB);
        function defaultFactory() external view returns (address);
    }
}

sol! {
    /// A Solidly pool's swap fees owed to the caller, paid out (Aerodrome's `Pool.claimFees`).
    function claimFees() external returns (uint256 claimed0, uint256 claimed1);
}

/// A configured router and, once checked, the factory whose pools it trades.
#[derive(Debug, Clone)]
pub struct Router {
    /// The kind of pools it trades.
    pub kind: PairKind,
    /// Its address.
    pub address: Address,
    factory: Option<Address>,
}

/// The amounts of one call, in raw units, the pool's tokens in the order the call names them.
#[derive(Debug, Clone, Copy)]
pub struct Amounts {
    /// The first token's amount (desired, or the liquidity to remove).
    pub a: U256,
    /// The second token's amount (desired; unused by a remove).
    pub b: U256,
    /// The least of the first token the call may take or give.
    pub a_min: U256,
    /// The least of the second.
    pub b_min: U256,
}

impl Router {
    /// `swapExactTokensForTokens` of `amount_in` of `from` for `to` in `pool`, at least
    /// `min_out`, paid to `recipient` by `deadline`.
    #[allow(clippy::too_many_arguments)]
    pub fn swap(
        &self,
        pool: &Pool,
        from: Address,
        to: Address,
        amount_in: U256,
        min_out: U256,
        recipient: Address,
        deadline: U256,
    ) -> Vec<u8> {
        match self.kind {
            PairKind::UniswapV2 => v2::swapExactTokensForTokensCall {
                amountIn: amount_in,
                amountOutMin: min_out,
                path: vec![from, to],
                to: recipient,
                deadline,
            }
            .abi_encode(),
            PairKind::Solidly => solidly::swapExactTokensForTokensCall {
                amountIn: amount_in,
                amountOutMin: min_out,
                routes: vec![solidly::Route {
                    from,
                    to,
                    stable: pool.stable,
                    factory: pool.factory,
                }],
                to: recipient,
                deadline,
            }
            .abi_encode(),
        }
    }

    /// `addLiquidity` of `tokens` to `pool`.
    pub fn add(
        &self,
        pool: &Pool,
        tokens: [Address; 2],
        amounts: Amounts,
        recipient: Address,
        deadline: U256,
    ) -> Vec<u8> {
        let [token_a, token_b] = tokens;
        match self.kind {
            PairKind::UniswapV2 => v2::addLiquidityCall {
                tokenA: token_a,
                tokenB: token_b,
                amountADesired: amounts.a,
                amountBDesired: amounts.b,
                amountAMin: amounts.a_min,
                amountBMin: amounts.b_min,
                to: recipient,
                deadline,
            }
            .abi_encode(),
            PairKind::Solidly => solidly::addLiquidityCall {
                tokenA: token_a,
                tokenB: token_b,
                stable: pool.stable,
                amountADesired: amounts.a,
                amountBDesired: amounts.b,
                amountAMin: amounts.a_min,
                amountBMin: amounts.b_min,
                to: recipient,
                deadline,
            }
            .abi_encode(),
        }
    }

    /// `removeLiquidity` of `amounts.a` LP tokens of `pool`, at least `a_min` and `b_min` of
    /// `tokens`.
    pub fn remove(
        &self,
        pool: &Pool,
        tokens: [Address; 2],
        amounts: Amounts,
        recipient: Address,
        deadline: U256,
    ) -> Vec<u8> {
        let [token_a, token_b] = tokens;
        match self.kind {
            PairKind::UniswapV2 => v2::removeLiquidityCall {
                tokenA: token_a,
                tokenB: token_b,
                liquidity: amounts.a,
                amountAMin: amounts.a_min,
                amountBMin: amounts.b_min,
                to: recipient,
                deadline,
            }
            .abi_encode(),
            PairKind::Solidly => solidly::removeLiquidityCall {
                tokenA: token_a,
                tokenB: token_b,
                stable: pool.stable,
                liquidity: amounts.a,
                amountAMin: amounts.a_min,
                amountBMin: amounts.b_min,
                to: recipient,
                deadline,
            }
            .abi_encode(),
        }
    }
}

/// The pool's call that pays out its swap fees owed to the caller (a Solidly pool's; a
/// UniswapV2 pair keeps its fees in its reserves, so it has none).
pub fn claim_fees(pool: &Pool) -> Option<Vec<u8>> {
    (pool.kind == PairKind::Solidly).then(|| claimFeesCall {}.abi_encode())
}

/// What a simulated `claimFees` would pay, raw units of the pool's two tokens.
pub fn decode_claimed(data: &[u8]) -> Result<[U256; 2], String> {
    claimFeesCall::abi_decode_returns(data)
        .map(|r| [r.claimed0, r.claimed1])
        .map_err(|e| format!("claimFees: {e}"))
}

/// Why a configured router cannot be traded through: the run stops.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// No contract at the address.
    #[error("{key} {address}: no contract at this address (block {block})")]
    NoCode {
        /// The configuration key.
        key: &'static str,
        /// The address.
        address: Address,
        /// The block asked at.
        block: u64,
    },
    /// The contract does not answer as a router of its kind.
    #[error("{key} {address}: does not answer as {kind}'s router: {why}")]
    NotARouter {
        /// The configuration key.
        key: &'static str,
        /// The address.
        address: Address,
        /// `UniswapV2` or `Aerodrome`.
        kind: &'static str,
        /// Its answer.
        why: String,
    },
    /// Its factory made none of the configured pools of its kind.
    #[error(
        "{key} {address}: its factory {factory} made none of the configured {kind} pools (theirs: {theirs})"
    )]
    ServesNone {
        /// The configuration key.
        key: &'static str,
        /// The address.
        address: Address,
        /// `uniswap_v2` or `solidly`.
        kind: &'static str,
        /// The router's factory.
        factory: Address,
        /// The pools' factories.
        theirs: String,
    },
    /// The node failed: the check is tried again at the next tick.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// The configured routers, checked once against the chain.
#[derive(Debug, Clone)]
pub struct Routers {
    routers: Vec<Router>,
    checked: bool,
}

impl Routers {
    /// The routers `chain` configures (validated as addresses; Aerodrome's is optional).
    pub fn new(chain: &ChainConfig) -> Self {
        let configured = [
            (PairKind::UniswapV2, chain.router_address.as_str()),
            (PairKind::Solidly, chain.solidly_router_address.as_str()),
        ];
        let routers = configured
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .map(|(kind, a)| Router {
                kind,
                address: a.parse().expect("validated as an address"),
                factory: None,
            })
            .collect();
        Self {
            routers,
            checked: false,
        }
    }

    /// Whether [`Self::check`] has succeeded.
    pub fn checked(&self) -> bool {
        self.checked
    }

    /// The router that trades `pool`: the one of its kind whose factory made it (none before
    /// the check).
    pub fn for_pool(&self, pool: &Pool) -> Option<&Router> {
        self.routers
            .iter()
            .find(|r| r.kind == pool.kind && r.factory == Some(pool.factory))
    }

    /// Asks the node for each router's code and factory (two round trips a router, once),
    /// and matches them with `pools` (a pool no router trades: [`Self::why_not_traded`]).
    pub fn check(&mut self, rpc: &Rpc, pools: &[Pool]) -> Result<(), RouterError> {
        for router in &mut self.routers {
            let key = config_key(router.kind);
            let address = router.address;
            let (block, code) = rpc.batch(|b| {
                let block: Pending<alloy::primitives::U64> = b.call("eth_blockNumber", ());
                let code: Pending<Bytes> = b.call("eth_getCode", (address, "latest"));
                (block, code)
            })?;
            if code.is_empty() {
                return Err(RouterError::NoCode {
                    key,
                    address,
                    block: block.to(),
                });
            }
            let not_a_router = |why: String| RouterError::NotARouter {
                key,
                address,
                kind: router_name(router.kind),
                why,
            };
            let data = Bytes::from(factory_call(router.kind));
            let answer: Result<Bytes, RpcError> =
                rpc.batch(|b| b.call("eth_call", (json!({"to": address, "data": data}), "latest")));
            let word = match answer {
                Err(e) if e.is_refusal() => return Err(not_a_router(e.to_string())),
                other => other?,
            };
            let factory = pair::factoryCall::abi_decode_returns(&word)
                .map_err(|e| not_a_router(format!("its factory is not an address: {e}")))?;
            let theirs: Vec<&Pool> = pools.iter().filter(|p| p.kind == router.kind).collect();
            if !theirs.is_empty() && theirs.iter().all(|p| p.factory != factory) {
                let mut named: Vec<String> = theirs.iter().map(|p| p.factory.to_string()).collect();
                named.dedup();
                return Err(RouterError::ServesNone {
                    key,
                    address,
                    kind: kind_name(router.kind),
                    factory,
                    theirs: named.join(", "),
                });
            }
            router.factory = Some(factory);
        }
        self.checked = true;
        Ok(())
    }

    /// Why no router trades `pool` (`None`: one does): none of its kind is set, or the one
    /// set serves another factory.
    pub fn why_not_traded(&self, pool: &Pool) -> Option<String> {
        if self.for_pool(pool).is_some() {
            return None;
        }
        Some(match self.routers.iter().find(|r| r.kind == pool.kind) {
            None => format!("no {} set", config_key(pool.kind)),
            Some(r) => format!(
                "its factory {} is not the one of {} {} ({})",
                pool.factory,
                config_key(r.kind),
                r.address,
                r.factory
                    .map_or_else(|| "unknown".into(), |f| f.to_string())
            ),
        })
    }
}

fn config_key(kind: PairKind) -> &'static str {
    match kind {
        PairKind::UniswapV2 => "chain.router_address",
        PairKind::Solidly => "chain.solidly_router_address",
    }
}

fn router_name(kind: PairKind) -> &'static str {
    match kind {
        PairKind::UniswapV2 => "UniswapV2",
        PairKind::Solidly => "Aerodrome",
    }
}

fn kind_name(kind: PairKind) -> &'static str {
    match kind {
        PairKind::UniswapV2 => "uniswap_v2",
        PairKind::Solidly => "solidly",
    }
}

fn factory_call(kind: PairKind) -> Vec<u8> {
    match kind {
        PairKind::UniswapV2 => pair::factoryCall {}.abi_encode(),
        PairKind::Solidly => solidly::defaultFactoryCall {}.abi_encode(),
    }
}
