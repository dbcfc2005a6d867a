//! Chain transactions, written down before they are sent (SPEC.md §1, §4): each one is signed
//! with an explicit nonce, stored as an [`Intent`] (the signed bytes, their hash and nonce) in
//! a committed store transaction, and only then broadcast; its receipt is awaited for
//! `executor.receipt_timeout`, and a receipt with status 0 is a failure, never a fill.
//!
//! After a crash, [`Sender::resolve`] settles every intent not known to be mined, by hash and
//! nonce: mined → its receipt; still pending → wait; not found → broadcast the same signed
//! bytes again (the same nonce, so it cannot be spent twice), and "not found" is read as
//! dropped only once another transaction has used its nonce.
//!
//! The chain executor ([`super::exec`]) sends every transaction through it.

use super::book::Leg;
use super::rpc::{Pending, Rpc, RpcError};
use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::network::TxSignerSync;
use alloy::primitives::{Address, B256, Bytes, TxKind, U64, U128, U256};
use alloy::signers::local::PrivateKeySigner;
use athena_config::Secret;
use athena_storage::{KeyedTable, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How often a receipt is asked for while it is awaited.
const RECEIPT_POLL: Duration = Duration::from_millis(100);

/// The signing key. Its `Debug` shows the address only; the key is never printed.
pub struct Wallet {
    signer: PrivateKeySigner,
}

impl std::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wallet({})", self.signer.address())
    }
}

impl Wallet {
    /// The key from `ATHENA_CHAIN_PRIVATE_KEY` or `chain.private_key_file` (64 hex digits, with
    /// or without `0x`). The error never repeats it.
    pub fn from_secret(key: &Secret) -> Result<Self, SendError> {
        let signer: PrivateKeySigner = key.expose().trim().parse().map_err(|_| SendError::Key)?;
        Ok(Self { signer })
    }

    /// The address it signs for.
    pub fn address(&self) -> Address {
        self.signer.address()
    }
}

/// A transaction to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// What it is for, in words (journaled with it).
    pub purpose: String,
    /// The contract or account called.
    pub to: Address,
    /// Calldata.
    pub data: Bytes,
    /// Wei sent with it.
    pub value: U256,
    /// Gas limit (an estimate already padded and checked against the caps).
    pub gas_limit: u64,
    /// Most it may pay per gas, wei (the gas protection's cap).
    pub max_fee_per_gas: u128,
    /// Priority fee per gas, wei.
    pub max_priority_fee_per_gas: u128,
    /// Which step of which position it is (written down with it).
    pub leg: Option<Leg>,
}

/// Where an intent stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum IntentState {
    /// Signed and written down; not known to have been broadcast.
    Signed,
    /// Broadcast; no receipt yet.
    Sent,
    /// In a block. `success == false` is a revert: a failure, never a fill.
    Mined {
        /// Block number.
        block: u64,
        /// The receipt's status.
        success: bool,
        /// Gas used.
        gas_used: u64,
    },
    /// Not on chain, and another transaction used its nonce: it can never be mined.
    Dropped,
}

impl IntentState {
    /// Whether nothing more can happen to it.
    pub fn is_settled(&self) -> bool {
        matches!(self, Self::Mined { .. } | Self::Dropped)
    }
}

/// A signed transaction as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Intent {
    /// Store key: `tx-` and the nonce, zero-padded, so keys sort by nonce.
    pub id: String,
    /// What it is for.
    pub purpose: String,
    /// Sender.
    pub from: Address,
    /// Nonce.
    pub nonce: u64,
    /// Transaction hash.
    pub hash: B256,
    /// The signed transaction (EIP-2718 bytes; public once broadcast, and no key).
    pub raw: Bytes,
    /// Its fee cap, wei per gas.
    pub max_fee_per_gas: u128,
    /// Its gas limit.
    pub gas_limit: u64,
    /// When it was signed, ms.
    pub signed_ms: u64,
    /// Where it stands.
    pub state: IntentState,
    /// Which step of which position it is.
    #[serde(default)]
    pub leg: Option<Leg>,
}

/// Why a transaction could not be sent or settled.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The key is not a secp256k1 private key (its text is never repeated).
    #[error(
        "the chain signing key is not a secp256k1 private key (64 hex digits, not zero, below the group order)"
    )]
    Key,
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
    /// The node failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The store failed: nothing is broadcast that is not written down.
    #[error("the store failed, nothing was sent")]
    Store(#[from] StoreError),
    /// An earlier intent is not settled: a new nonce is not taken before it is.
    #[error("intent {0} is not settled yet; resolve it before sending another")]
    Unsettled(String),
}

/// Signs, records, broadcasts and settles transactions for one wallet.
pub struct Sender {
    rpc: Rpc,
    wallet: Wallet,
    chain_id: u64,
    receipt_timeout: Duration,
}

/// The fields of a receipt read.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// 1: success, 0: reverted.
    pub status: U64,
    /// The block.
    pub block_number: U64,
    /// Gas used.
    pub gas_used: U64,
    /// Price paid per gas, wei.
    pub effective_gas_price: U128,
    /// Its logs.
    #[serde(default)]
    pub logs: Vec<ReceiptLog>,
}

/// A log of a receipt.
#[derive(Debug, Clone, Deserialize)]
pub struct ReceiptLog {
    /// The contract that emitted it.
    pub address: Address,
    /// Its topics.
    pub topics: Vec<B256>,
    /// Its data.
    pub data: Bytes,
}

impl Sender {
    /// A sender for `wallet` on chain `chain_id` through `rpc`.
    pub fn new(rpc: Rpc, wallet: Wallet, chain_id: u64, receipt_timeout: Duration) -> Self {
        Self {
            rpc,
            wallet,
            chain_id,
            receipt_timeout,
        }
    }

    /// The wallet's address.
    pub fn address(&self) -> Address {
        self.wallet.address()
    }

    /// Sends `call` and waits for its receipt: signs it with the next nonce, commits the
    /// intent, broadcasts it, awaits the receipt. Returns the intent as it ended (`Sent` when
    /// no receipt came within the timeout: [`Sender::resolve`] settles it later).
    pub fn send(&self, store: &Store, call: Call, now_ms: u64) -> Result<Intent, SendError> {
        let intent = self.sign_and_record(store, call, now_ms)?;
        self.broadcast(store, intent)
            .and_then(|sent| self.await_receipt(store, sent))
    }

    /// Signs `call` with the next nonce and commits it as an intent. Nothing is broadcast.
    pub fn sign_and_record(
        &self,
        store: &Store,
        call: Call,
        now_ms: u64,
    ) -> Result<Intent, SendError> {
        if let Some(open) = unsettled(store)?.into_iter().next() {
            return Err(SendError::Unsettled(open.id));
        }
        let nonce = self.account_nonce("pending")?;
        let mut tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce,
            gas_limit: call.gas_limit,
            max_fee_per_gas: call.max_fee_per_gas,
            max_priority_fee_per_gas: call.max_priority_fee_per_gas,
            to: TxKind::Call(call.to),
            value: call.value,
            access_list: Default::default(),
            input: call.data,
        };
        let signature = self
            .wallet
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| SendError::Sign(e.to_string()))?;
        let envelope = TxEnvelope::from(tx.into_signed(signature));
        let intent = Intent {
            id: intent_key(nonce),
            purpose: call.purpose,
            from: self.address(),
            nonce,
            hash: *envelope.tx_hash(),
            raw: envelope.encoded_2718().into(),
            max_fee_per_gas: call.max_fee_per_gas,
            gas_limit: call.gas_limit,
            signed_ms: now_ms,
            state: IntentState::Signed,
            leg: call.leg,
        };
        store.write(|w| w.put(KeyedTable::Intents, &intent.id, &intent))?;
        fault_point(FaultPoint::Signed);
        Ok(intent)
    }

    /// Broadcasts a recorded intent's signed bytes and records that it was sent. A node that
    /// already knows the transaction is not an error.
    pub fn broadcast(&self, store: &Store, mut intent: Intent) -> Result<Intent, SendError> {
        let sent = self
            .rpc
            .batch(|b| b.call::<_, B256>("eth_sendRawTransaction", [intent.raw.clone()]));
        match sent {
            Ok(_) => {}
            // Sent before (a second broadcast after a crash): the node has it already.
            Err(e) if e.is_refusal() && e.to_string().contains("already") => {}
            Err(e) => return Err(e.into()),
        }
        intent.state = IntentState::Sent;
        store.write(|w| w.put(KeyedTable::Intents, &intent.id, &intent))?;
        fault_point(FaultPoint::Broadcast);
        Ok(intent)
    }

    /// Waits up to the receipt timeout for a sent intent's receipt and records it; returns it
    /// still `Sent` when none came.
    pub fn await_receipt(&self, store: &Store, mut intent: Intent) -> Result<Intent, SendError> {
        let started = Instant::now();
        loop {
            if let Some(r) = self.receipt(intent.hash)? {
                intent.state = IntentState::Mined {
                    block: r.block_number.to(),
                    success: r.status == U64::from(1),
                    gas_used: r.gas_used.to(),
                };
                store.write(|w| w.put(KeyedTable::Intents, &intent.id, &intent))?;
                return Ok(intent);
            }
            if started.elapsed() >= self.receipt_timeout {
                return Ok(intent);
            }
            std::thread::sleep(RECEIPT_POLL);
        }
    }

    /// Settles every intent not known to be mined (after a crash, say), in nonce order:
    /// mined → its receipt; pending on the node → wait for it; not found while its nonce is
    /// unused → broadcast the same signed bytes again and wait; not found and its nonce used by
    /// another transaction → dropped. Returns the intents it looked at, as they ended.
    pub fn resolve(&self, store: &Store) -> Result<Vec<Intent>, SendError> {
        let mut out = Vec::new();
        for intent in unsettled(store)? {
            let ended = if self.receipt(intent.hash)?.is_some() || self.known(intent.hash)? {
                self.await_receipt(store, intent)?
            } else if self.account_nonce("latest")? > intent.nonce {
                let mut dropped = intent;
                dropped.state = IntentState::Dropped;
                store.write(|w| w.put(KeyedTable::Intents, &dropped.id, &dropped))?;
                dropped
            } else {
                let sent = self.broadcast(store, intent)?;
                self.await_receipt(store, sent)?
            };
            out.push(ended);
        }
        Ok(out)
    }

    /// The wallet's transaction count at `block` ("latest" or "pending").
    fn account_nonce(&self, block: &'static str) -> Result<u64, SendError> {
        let n: U64 = self.rpc.batch(|b| -> Pending<U64> {
            b.call("eth_getTransactionCount", (self.address(), block))
        })?;
        Ok(n.to())
    }

    /// The receipt of `hash`, if it is mined.
    pub fn receipt(&self, hash: B256) -> Result<Option<Receipt>, SendError> {
        Ok(self.rpc.batch(|b| -> Pending<Option<Receipt>> {
            b.call("eth_getTransactionReceipt", [hash])
        })?)
    }

    /// Whether the node knows the transaction (mined or waiting in its pool).
    fn known(&self, hash: B256) -> Result<bool, SendError> {
        let tx: Option<serde_json::Value> = self
            .rpc
            .batch(|b| b.call("eth_getTransactionByHash", [hash]))?;
        Ok(tx.is_some())
    }
}

/// Where the test fault hook `ATHENA_FAULT_KILL_AFTER` may kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultPoint {
    /// The intent is committed, not broadcast.
    Signed,
    /// Broadcast, its receipt not awaited.
    Broadcast,
}

/// The test fault hook `ATHENA_FAULT_KILL_AFTER=signed:N` or `broadcast:N`: the process kills
/// itself with SIGKILL at that point of its N-th transaction (1-based), as `kill -9` would.
fn fault_point(at: FaultPoint) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let Ok(hook) = std::env::var("ATHENA_FAULT_KILL_AFTER") else {
        return;
    };
    let Some((point, n)) = hook.split_once(':') else {
        return;
    };
    let wanted = match point {
        "signed" => FaultPoint::Signed,
        "broadcast" => FaultPoint::Broadcast,
        _ => return,
    };
    if wanted != at {
        return;
    }
    let seen = SEEN.fetch_add(1, Ordering::SeqCst) + 1;
    if n.parse::<u64>().is_ok_and(|n| n == seen) {
        println!("athena: fault hook: killed after {point} of transaction {seen}");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// The store key of the intent with `nonce`: keys sort by nonce.
pub fn intent_key(nonce: u64) -> String {
    format!("tx-{nonce:020}")
}

/// The intents not known to be mined or dropped, in nonce order. A new intent is signed only
/// when every earlier one is settled, so they are the table's tail: it is read from the end
/// back to the first settled one, not whole.
pub fn unsettled(store: &Store) -> Result<Vec<Intent>, StoreError> {
    let mut open = Vec::new();
    let mut failure = None;
    store.read(|r| {
        r.keyed_newest_first::<Intent>(KeyedTable::Intents, |_, intent| match intent {
            Ok(i) if i.state.is_settled() => false,
            Ok(i) => {
                open.push(i);
                true
            }
            Err(e) => {
                failure = Some(e);
                false
            }
        })
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    open.reverse();
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// anvil's first development key (public knowledge, for tests only).
    const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    #[test]
    fn a_wallet_shows_its_address_never_its_key() {
        let w = Wallet::from_secret(&Secret::new(DEV_KEY)).unwrap();
        let shown = format!("{w:?}");
        assert_eq!(shown, "Wallet(0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266)");
        assert!(!shown.contains(&DEV_KEY[2..10]));
        let bad = Wallet::from_secret(&Secret::new("0xnot-a-key-1234")).unwrap_err();
        assert!(!bad.to_string().contains("1234"), "{bad}");
    }
}
