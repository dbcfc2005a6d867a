//! Transactions written down before they are sent, settled by hash and nonce after a crash,
//! against anvil (`scripts/anvil.sh`). A "crash" here is the sender dropped between two of its
//! steps with only the store left (the store is the only state a crashed process leaves); the
//! kill -9 tests of the running agent come with the chain executor. After each, the sender's
//! transactions on the node are counted: none is sent twice.

mod support;

use alloy::primitives::{Address, Bytes, U256};
use athena::chain::Rpc;
use athena::chain::send::{Call, IntentState, Sender, Wallet, unsettled};
use athena_config::{MemoryConfig, Secret};
use athena_storage::{KeyedTable, Store};
use serde_json::json;
use std::time::Duration;
use support::devnet::{ACCOUNT, Node};

/// anvil's first development key (the unlocked `ACCOUNT`; public knowledge, tests only).
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Somebody to pay.
const PAYEE: &str = "0x000000000000000000000000000000000000beef";

fn sender(node: &Node, receipt_timeout: Duration) -> Sender {
    let rpc = Rpc::new(&node.url, Duration::from_secs(5)).unwrap();
    let wallet = Wallet::from_secret(&Secret::new(DEV_KEY)).unwrap();
    Sender::new(rpc, wallet, 31337, receipt_timeout)
}

fn store(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), &MemoryConfig::default()).unwrap()
}

/// A payment of `wei` to the payee.
fn pay(wei: u64) -> Call {
    Call {
        purpose: format!("pay {wei} wei"),
        to: PAYEE.parse().unwrap(),
        data: Bytes::new(),
        value: U256::from(wei),
        gas_limit: 30_000,
        max_fee_per_gas: 10_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        leg: None,
    }
}

/// Transactions the account has had mined.
fn mined_count(node: &Node) -> u64 {
    let n = node.rpc("eth_getTransactionCount", json!([ACCOUNT, "latest"]));
    u64::from_str_radix(n.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn payee_balance(node: &Node) -> u64 {
    let b = node.rpc("eth_getBalance", json!([PAYEE, "latest"]));
    u64::from_str_radix(b.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

#[test]
fn a_transaction_is_written_down_before_it_is_sent_and_sent_once() {
    let node = Node::anvil();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);

    // The whole path: written down, sent, mined, recorded.
    let done = sender(&node, Duration::from_secs(30))
        .send(&store, pay(5), 1)
        .unwrap();
    assert!(
        matches!(done.state, IntentState::Mined { success: true, .. }),
        "{done:?}"
    );
    assert_eq!((mined_count(&node), payee_balance(&node)), (1, 5));

    // Crash between sign and broadcast: the intent is in the store, the node never saw it.
    let signed = sender(&node, Duration::from_secs(30))
        .sign_and_record(&store, pay(7), 2)
        .unwrap();
    assert_eq!(signed.state, IntentState::Signed);
    assert_eq!(signed.nonce, 1);
    let stored: Vec<(String, athena::chain::send::Intent)> =
        store.read(|r| r.all(KeyedTable::Intents)).unwrap();
    assert!(
        stored
            .iter()
            .any(|(_, i)| i.hash == signed.hash && i.raw == signed.raw)
    );
    assert_eq!(mined_count(&node), 1);
    // A new sender refuses a new nonce while it is open, then resolves it: the same signed
    // bytes are broadcast, mined once.
    let restarted = sender(&node, Duration::from_secs(30));
    assert!(restarted.sign_and_record(&store, pay(9), 3).is_err());
    let resolved = restarted.resolve(&store).unwrap();
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].hash, signed.hash);
    assert!(matches!(
        resolved[0].state,
        IntentState::Mined { success: true, .. }
    ));
    assert_eq!((mined_count(&node), payee_balance(&node)), (2, 12));

    // Crash between broadcast and receipt: resolving finds the receipt and sends nothing.
    let s = sender(&node, Duration::from_secs(30));
    let signed = s.sign_and_record(&store, pay(11), 4).unwrap();
    s.broadcast(&store, signed.clone()).unwrap();
    drop(s);
    let resolved = sender(&node, Duration::from_secs(30))
        .resolve(&store)
        .unwrap();
    assert_eq!(resolved.len(), 1);
    assert!(matches!(
        resolved[0].state,
        IntentState::Mined { success: true, .. }
    ));
    assert_eq!((mined_count(&node), payee_balance(&node)), (3, 23));

    // Resolving again changes nothing.
    assert!(
        sender(&node, Duration::from_secs(30))
            .resolve(&store)
            .unwrap()
            .is_empty()
    );
    assert!(unsettled(&store).unwrap().is_empty());
    assert_eq!((mined_count(&node), payee_balance(&node)), (3, 23));
}

#[test]
fn not_found_is_dropped_only_once_another_transaction_used_its_nonce() {
    let node = Node::anvil();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    let signed = sender(&node, Duration::from_secs(30))
        .sign_and_record(&store, pay(5), 1)
        .unwrap();
    // Something else (the same key elsewhere) uses nonce 0 first.
    node.send(json!({"from": ACCOUNT, "to": PAYEE, "value": "0x64"}));
    let resolved = sender(&node, Duration::from_secs(30))
        .resolve(&store)
        .unwrap();
    assert_eq!(resolved[0].hash, signed.hash);
    assert_eq!(resolved[0].state, IntentState::Dropped);
    // Its payment was never made.
    assert_eq!((mined_count(&node), payee_balance(&node)), (1, 100));
}

#[test]
fn a_pending_transaction_is_waited_for_not_sent_again() {
    let node = Node::anvil();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    node.rpc("evm_setAutomine", json!([false]));
    let s = sender(&node, Duration::from_millis(300));
    let signed = s.sign_and_record(&store, pay(5), 1).unwrap();
    let sent = s.broadcast(&store, signed).unwrap();
    let sent = s.await_receipt(&store, sent).unwrap();
    assert_eq!(sent.state, IntentState::Sent, "no block yet: {sent:?}");
    drop(s);

    // Resolving while it waits in the node's pool leaves it sent and waiting, one transaction
    // in the pool.
    let resolved = sender(&node, Duration::from_millis(300))
        .resolve(&store)
        .unwrap();
    assert_eq!(resolved[0].state, IntentState::Sent);
    let pool = node.rpc("txpool_content", json!([]));
    assert_eq!(pool["pending"].as_object().unwrap().len(), 1, "{pool}");

    node.rpc("evm_mine", json!([]));
    let resolved = sender(&node, Duration::from_secs(30))
        .resolve(&store)
        .unwrap();
    assert!(matches!(
        resolved[0].state,
        IntentState::Mined { success: true, .. }
    ));
    assert_eq!((mined_count(&node), payee_balance(&node)), (1, 5));
}

#[test]
fn a_reverted_transaction_is_recorded_as_a_failure() {
    let node = Node::anvil();
    let dir = tempfile::tempdir().unwrap();
    let store = store(&dir);
    // A contract whose code is the single opcode REVERT (0xfd): deployed from init code
    // 0x60fd60005360016000f3 (store 0xfd at 0, return 1 byte).
    let receipt = node.send(json!({"from": ACCOUNT, "data": "0x60fd60005360016000f3"}));
    let reverter: Address = receipt["contractAddress"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut call = pay(0);
    call.to = reverter;
    call.purpose = "a call that reverts".into();
    call.gas_limit = 50_000;
    let done = sender(&node, Duration::from_secs(30))
        .send(&store, call, 1)
        .unwrap();
    assert!(
        matches!(done.state, IntentState::Mined { success: false, .. }),
        "{done:?}"
    );
}
