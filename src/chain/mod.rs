//! The chain: an EVM node read over JSON-RPC (alloy's RPC client over reqwest and rustls).
//!
//! - [`rpc`]: the client, with its request timeout, batches (one HTTP round trip for many
//!   calls) and a count of round trips;
//! - [`pair`]: UniswapV2 and Solidly (Aerodrome) pairs behind one [`pair::Curve`]: their calls,
//!   Swap events and spot prices;
//! - [`source`]: the `chain` market source, one batched round trip per tick;
//! - [`send`]: transactions signed, written to the store as intents, then broadcast, and
//!   settled by hash and nonce after a crash;
//! - [`router`]: the UniswapV2 and Aerodrome routers' calls, each router checked against its
//!   pools' factory;
//! - [`exec`]: the chain executor: router swaps and liquidity through [`send`];
//! - [`book`]: its book, changed by receipts only.

pub mod book;
pub mod exec;
pub mod pair;
pub mod router;
pub mod rpc;
pub mod send;
pub mod source;

pub use rpc::{Rpc, RpcError};
pub use source::ChainSource;

/// Why the chain source cannot give a tick.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The node did not answer, or answered with an error or something unreadable: the next
    /// tick may do better. Counted as an API failure.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// A configured pool is not what the configuration says (no contract, a call it does not
    /// answer, a Solidly pool whose `stable()` disagrees): the run stops.
    #[error("chain pool {address}: {why}")]
    Pool {
        /// The pool's address.
        address: String,
        /// What is wrong.
        why: String,
    },
    /// The node is another chain than `chain.chain_id` says: the run stops.
    #[error("chain.chain_id is {configured} but the node at chain.rpc_url is chain {node}")]
    WrongChain {
        /// `chain.chain_id`.
        configured: u64,
        /// The node's `eth_chainId`.
        node: u64,
    },
    /// A token cannot be priced: no chain of configured pools leads from the quote token to
    /// it, or the native token is not among the pools' tokens. The run stops.
    #[error("chain: {0}")]
    Pricing(String),
}

impl ChainError {
    /// Whether no later attempt can succeed, so the run must stop rather than retry.
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Rpc(_))
    }
}
