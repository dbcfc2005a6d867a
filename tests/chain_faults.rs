//! The chain executor meeting the chain's faults, through the real binary on the devnet: a
//! base-fee spike (`anvil_setNextBlockBaseFeePerGas`) trips gas_manipulation and postpones
//! entries until the spike is gone and the breaker reset; a swap front-run in its own block
//! (automine off, the test mines) reverts on its minimum output, is journaled as failed and
//! opens no position; an open cut short after its swap is journaled as interrupted and leaves a
//! token in the wallet, which the agent sweeps back into cash.

mod support;

use serde_json::{Value, json};
use std::sync::atomic::{AtomicBool, Ordering};
use support::chain_agent::{
    AGENT_ADDRESS, EXECUTOR, assert_book_is_the_chain, read_store, reconciled, start,
};
use support::devnet::{ACCOUNT, Node, word};
use support::http::{Agent, TOKEN, breaker};

/// Any pool the trader trades clears this minimum APR (a few seconds of volume does not reach
/// the default 20%).
const EAGER: (&str, &str) = ("ATHENA_STRATEGY_MIN_APR_PCT", "0.01");

const GWEI: u128 = 1_000_000_000;

/// `swapExactTokensForTokens(uint256,uint256,address[],address,uint256)`.
const SWAP_SELECTOR: &str = "0x38ed1739";

fn quantity(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The base fee of the node's next block, wei.
fn next_base_fee(node: &Node) -> u128 {
    let fees = node.rpc("eth_feeHistory", json!(["0x1", "latest", []]));
    quantity(fees["baseFeePerGas"].as_array().unwrap().last().unwrap())
}

/// Mines one block whose base fee is `wei` (the block after it starts from there).
fn mine_with_base_fee(node: &Node, wei: u128) {
    node.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        json!([format!("{wei:#x}")]),
    );
    node.rpc("evm_mine", json!([]));
}

/// Waits for `count` more ticks.
fn ticks(agent: &Agent, count: u64) {
    let (_, status) = agent.get("/status");
    let now = status["last_tick"].as_u64().unwrap_or(0);
    agent.wait_until("/status", "more ticks", |b| {
        b["last_tick"].as_u64().unwrap_or(0) >= now + count
    });
}

#[test]
fn a_base_fee_spike_trips_gas_manipulation_and_postpones_entries() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "300")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), EXECUTOR);

    // A first run, still observing (it trades nothing), leaves gas readings at the normal fee.
    let normal = next_base_fee(&node);
    assert!(normal < 5 * GWEI, "the devnet's base fee is {normal} wei");
    let agent = start(
        dir.path(),
        &config,
        &[EAGER, ("ATHENA_AGENT_OBSERVATION_PERIOD", "1h")],
    );
    ticks(&agent, 3);
    agent.stop();
    assert_eq!(node.nonce(AGENT_ADDRESS), 0, "nothing sent while observing");

    // The spike: 90 gwei, under the 100 gwei cap (the trader's blocks take an eighth off each
    // time: it stays a spike for some twenty blocks).
    mine_with_base_fee(&node, 90 * GWEI);
    let agent = start(dir.path(), &config, &[EAGER]);
    let risk = agent.wait_until("/risk/status", "gas_manipulation tripped", |b| {
        !breaker(b, "gas_manipulation")["tripped"].is_null()
    });
    let reason = breaker(&risk, "gas_manipulation")["tripped"]["reason"].to_string();
    assert!(reason.contains("median"), "{reason}");

    // Entries are proposed and postponed; nothing is sent.
    let journal = agent.wait_until("/journal", "an entry postponed", |b| {
        b.to_string()
            .contains("breaker gas_manipulation is tripped")
    });
    ticks(&agent, 3);
    let (_, positions) = agent.get("/positions");
    assert_eq!(positions, json!([]), "{journal}");
    assert_eq!(
        node.nonce(AGENT_ADDRESS),
        0,
        "a transaction went out during the spike"
    );

    // The fee comes back down and an operator resets the breaker: the entries go through.
    mine_with_base_fee(&node, normal);
    let (code, body) = agent.post(
        "/risk/circuit-breakers/gas_manipulation/reset",
        Some(TOKEN),
        json!({"reason": "test: the spike is over"}),
    );
    assert_eq!(code, 200, "{body}");
    agent.wait_until(
        "/positions",
        "positions opened once the spike passed",
        |b| b.as_array().is_some_and(|a| !a.is_empty()),
    );
    let data = agent.dir.clone();
    agent.stop();
    let (state, _, _) = read_store(&data);
    assert_book_is_the_chain(&node, &state);
}

/// Mines the node by hand (automine off) until told to stop. The first swap the agent sends
/// is front-run in its block: the deployer adds a fifth to the pair's reserve of the token the
/// agent sells (a transfer and `sync()`, with fees one wei above the agent's so they come
/// first), so the swap's minimum output cannot be met. Returns the front-run swap's hash.
fn mine_front_running_the_first_swap(node: &Node, stop: &AtomicBool) -> Option<String> {
    let mut front_run = None;
    while !stop.load(Ordering::Relaxed) {
        let pool = node.rpc("txpool_content", json!([]));
        let pending: Vec<Value> = pool["pending"]
            .as_object()
            .into_iter()
            .flat_map(|by_sender| by_sender.values())
            .filter_map(Value::as_object)
            .flat_map(|by_nonce| by_nonce.values().cloned())
            .collect();
        if pending.is_empty() {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        let swap = pending.iter().find(|tx| {
            tx["from"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(AGENT_ADDRESS)
                && tx["input"].as_str().unwrap().starts_with(SWAP_SELECTOR)
        });
        if let (None, Some(swap)) = (&front_run, swap) {
            front_run_swap(node, swap);
            front_run = Some(swap["hash"].as_str().unwrap().to_string());
        }
        node.rpc("evm_mine", json!([]));
    }
    front_run
}

/// Raises its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Sends the deployer's transfer and `sync()` ahead of `swap` (same block, higher tip).
fn front_run_swap(node: &Node, swap: &Value) {
    let input = swap["input"].as_str().unwrap().trim_start_matches("0x");
    let word_at = |i: usize| &input[8 + 64 * i..8 + 64 * (i + 1)];
    let address = |w: &str| format!("0x{}", &w[24..]);
    // amountIn, amountOutMin, offset, to, deadline, path length, path[0], path[1].
    let (sold, bought) = (address(word_at(6)), address(word_at(7)));
    let factory = node.deployment["factory"].as_str().unwrap();
    let data = format!("0xe6a43905{}{}", word(&sold), word(&bought));
    let pair = node.rpc("eth_call", json!([{"to": factory, "data": data}, "latest"]));
    let pair = address(pair.as_str().unwrap().trim_start_matches("0x"));
    let fifth = node.erc20_balance(&sold, &pair) / 5;
    // anvil orders a block by fee (the maximum fee first): one wei more of each goes first.
    let tip = quantity(&swap["maxPriorityFeePerGas"]) + 1;
    let max_fee = quantity(&swap["maxFeePerGas"]) + 1;
    let fees = |tx: Value| {
        let mut tx = tx;
        tx["from"] = json!(ACCOUNT);
        tx["maxPriorityFeePerGas"] = json!(format!("{tip:#x}"));
        tx["maxFeePerGas"] = json!(format!("{max_fee:#x}"));
        tx["gas"] = json!("0x30000");
        tx
    };
    let transfer = format!("0xa9059cbb{}{fifth:064x}", word(&pair));
    node.rpc(
        "eth_sendTransaction",
        json!([fees(json!({"to": sold, "data": transfer}))]),
    );
    node.rpc(
        "eth_sendTransaction",
        json!([fees(json!({"to": pair, "data": "0xfff6cae9"}))]),
    );
}

#[test]
fn a_swap_that_cannot_meet_its_minimum_output_reverts_is_journaled_and_opens_nothing() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "300")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), EXECUTOR);
    node.rpc("evm_setAutomine", json!([false]));
    let stop = AtomicBool::new(false);
    let (data, journal, front_run) = std::thread::scope(|scope| {
        let miner = scope.spawn(|| mine_front_running_the_first_swap(&node, &stop));
        // A failing assertion must stop the miner too, or the scope waits for it forever.
        let _stop_miner = StopOnDrop(&stop);
        let agent = start(dir.path(), &config, &[EAGER]);
        assert_eq!(reconciled(&agent), 0.0);
        let journal = agent.wait_until("/journal", "the reverted swap journaled", |b| {
            b.to_string()
                .contains("reverted: nothing filled but its gas")
        });
        ticks(&agent, 2);
        let data = agent.dir.clone();
        agent.stop();
        stop.store(true, Ordering::Relaxed);
        let front_run = miner.join().unwrap().expect("a swap was front-run");
        (data, journal, front_run)
    });

    let (state, ledger, intents) = read_store(&data);
    let reverted: Vec<_> = intents
        .iter()
        .filter(|i| {
            matches!(
                i.state,
                athena::chain::send::IntentState::Mined { success: false, .. }
            )
        })
        .collect();
    assert_eq!(reverted.len(), 1, "{intents:#?}");
    assert_eq!(
        format!("{:#x}", reverted[0].hash),
        front_run.to_lowercase(),
        "the front-run swap is the one that reverted"
    );
    let leg = reverted[0].leg.as_ref().unwrap();
    assert_eq!(leg.step, athena::chain::book::Step::SwapIn);
    assert!(
        state.positions.iter().all(|p| p.id != leg.position),
        "{journal}"
    );
    assert!(
        ledger
            .iter()
            .all(|e| e.position != leg.position || e.action != "open"),
        "{ledger:#?}"
    );
    assert_book_is_the_chain(&node, &state);
}

#[test]
fn a_token_an_open_cut_short_leaves_in_the_wallet_is_swept_back_into_cash() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "300")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), EXECUTOR);
    // Killed right after its second transaction, the first open's swap, is broadcast.
    let mut agent = start(
        dir.path(),
        &config,
        &[EAGER, ("ATHENA_FAULT_KILL_AFTER", "broadcast:2")],
    );
    let status = agent.child.0.wait().unwrap();
    assert!(!status.success(), "{}", agent.log());
    assert!(
        agent.log().contains("fault hook: killed after"),
        "{}",
        agent.log()
    );

    // Restarted: the swap's receipt is applied, the open is over; the token it bought is
    // loose in the wallet, and a sweep sells it back.
    let agent = start(dir.path(), &config, &[EAGER]);
    assert!(reconciled(&agent).abs() < 0.005, "{}", agent.log());
    let journal = agent.wait_until("/journal", "a sweep journaled", |b| {
        b.to_string().contains("back into cash through")
    });
    // The open the kill cut short is in the journal, said to be interrupted.
    let interrupted: Vec<&serde_json::Value> = journal
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r.to_string()
                .contains("interrupted: its tick did not commit")
        })
        .collect();
    assert_eq!(interrupted.len(), 1, "{journal}");
    assert!(
        interrupted[0].to_string().contains("\"open\""),
        "{}",
        interrupted[0]
    );
    let data = agent.dir.clone();
    agent.stop();

    let (state, ledger, intents) = read_store(&data);
    let swept = ledger
        .iter()
        .find(|e| e.position.starts_with("sweep-") && e.action == "swap")
        .unwrap_or_else(|| panic!("no sweep in the ledger: {ledger:#?}\n{journal}"));
    assert!(
        !swept.tx_hashes.is_empty() && swept.gas_usd > 0.0,
        "{swept:?}"
    );
    let bought = intents
        .iter()
        .find(|i| i.nonce == 1)
        .and_then(|i| i.leg.clone())
        .expect("the first open's swap");
    assert_eq!(bought.step, athena::chain::book::Step::SwapIn);
    assert!(
        swept.pool == bought.pool
            || bought
                .symbols
                .iter()
                .any(|t| swept.pool.contains(t.as_str())),
        "the sweep sells what the cut-short open bought: {swept:?} {bought:?}"
    );
    assert_book_is_the_chain(&node, &state);
    support::chain_agent::assert_every_transaction_written_down_once(&node, &intents);
}
