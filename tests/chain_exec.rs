//! The chain executor through the real binary against the devnet (anvil, the UniswapV2
//! factory, router and pairs from their npm artifacts, a trader): positions opened and closed
//! with router transactions, the book equal to the chain's balances, and kill -9 at the worst
//! moments (after an intent is written and before it is broadcast, after the broadcast and
//! before the receipt, and at random) never sending a transaction twice nor losing a fill.

mod support;

use athena::chain::send::IntentState;
use serde_json::json;
use std::time::{Duration, Instant};
use support::chain_agent::{
    AGENT_ADDRESS, EXECUTOR, assert_book_is_the_chain, assert_every_transaction_written_down_once,
    read_store, reconciled, start,
};
use support::devnet::Node;
use support::http::{Agent, TOKEN};

#[test]
fn the_agent_opens_and_closes_positions_on_chain_and_its_book_is_the_chain() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "100")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), EXECUTOR);
    let agent = start(dir.path(), &config, &[]);
    assert_eq!(reconciled(&agent), 0.0, "a fresh book is the wallet");
    let (_, status) = agent.get("/status");
    assert!(
        (status["cash_usd"].as_f64().unwrap() - 10_000.0).abs() < 1e-6,
        "a fresh book starts from the wallet's 10,000 USDC: {status}"
    );

    // It opens positions with router transactions.
    let positions = agent.wait_until("/positions", "two positions opened on chain", |b| {
        b.as_array().is_some_and(|a| a.len() >= 2)
    });
    for p in positions.as_array().unwrap() {
        assert!(p["pool"].as_str().unwrap().contains("USDC"), "{p}");
    }
    let (_, trades) = agent.get("/trades");
    assert!(
        trades.to_string().contains("0x"),
        "fills carry tx hashes: {trades}"
    );

    // Exit-all closes every one on chain.
    let (code, body) = agent.post(
        "/emergency/exit-all",
        Some(TOKEN),
        json!({"confirm": true, "reason": "test: close everything"}),
    );
    assert_eq!(code, 200, "{body}");
    agent.wait_until("/positions", "every position closed on chain", |b| {
        b.as_array().is_some_and(Vec::is_empty)
    });
    // The API and the dashboard (in a real browser) show every transaction, hash and state.
    let (_, listed) = agent.get("/chain/transactions?limit=1000");
    support::browser_test(
        "tests/transactions.test.mjs",
        &[("DASHBOARD_AGENT_URL", agent.base.as_str())],
    );
    let data = agent.dir.clone();
    let log = agent.stop();
    assert!(!log.contains("panicked"), "{log}");

    let (state, ledger, intents) = read_store(&data);
    let shown: Vec<(String, String)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["hash"].as_str().unwrap().into(),
                t["state"].as_str().unwrap().into(),
            )
        })
        .rev()
        .collect();
    let stored: Vec<(String, String)> = intents
        .iter()
        .map(|i| {
            let state = match i.state {
                IntentState::Mined { success: true, .. } => "mined",
                IntentState::Mined { success: false, .. } => "reverted",
                _ => "not settled",
            };
            (i.hash.to_string(), state.to_string())
        })
        .collect();
    // The agent keeps trading while the browser test runs: the listing is the store's
    // transactions up to the moment it was taken (a later one may settle after it).
    assert!(
        !shown.is_empty() && shown.len() <= stored.len(),
        "/chain/transactions against the store: {shown:?} / {stored:?}"
    );
    for ((hash, state), (stored_hash, stored_state)) in shown.iter().zip(&stored) {
        assert_eq!(hash, stored_hash, "/chain/transactions against the store");
        assert!(
            state == stored_state || state == "not settled",
            "{hash}: listed {state}, stored {stored_state}"
        );
    }
    assert_book_is_the_chain(&node, &state);
    assert!(state.positions.is_empty());
    for pool in node.deployment["pools"].as_array().unwrap() {
        let lp = node.erc20_balance(pool["address"].as_str().unwrap(), AGENT_ADDRESS);
        assert_eq!(lp, 0, "LP tokens left in {pool}");
    }
    let opens = ledger.iter().filter(|e| e.action == "open").count();
    let closes = ledger.iter().filter(|e| e.action == "close").count();
    assert!(opens >= 2 && closes == opens, "{ledger:#?}");
    assert!(
        ledger.iter().all(|e| !e.tx_hashes.is_empty()),
        "{ledger:#?}"
    );
    assert!(
        ledger.iter().all(|e| e.gas_usd > 0.0),
        "gas from the receipts: {ledger:#?}"
    );
    assert_every_transaction_written_down_once(&node, &intents);
}

/// A small deterministic generator for the kill times.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *seed >> 33
}

/// Makes the agent trade now: closes everything when it holds positions, else resumes
/// trading (an exit-all halts it) so it opens again. The agent may be killed by its hook
/// meanwhile: a request that finds it gone is not an error.
fn provoke_trades(agent: &Agent) {
    let request = |r: reqwest::RequestBuilder| -> Option<serde_json::Value> {
        agent.rt.block_on(async {
            let r = r.send().await.ok()?;
            r.json().await.ok()
        })
    };
    let Some(positions) = request(agent.http.get(format!("{}/positions", agent.base))) else {
        return;
    };
    let held = positions.as_array().is_some_and(|a| !a.is_empty());
    let (path, body) = if held {
        (
            "/emergency/exit-all",
            json!({"confirm": true, "reason": "test: trade"}),
        )
    } else {
        ("/emergency/resume", json!({"reason": "test: trade again"}))
    };
    let post = agent
        .http
        .post(format!("{}{path}", agent.base))
        .bearer_auth(TOKEN)
        .json(&body);
    let _ = request(post);
}

#[test]
fn kill_9_at_the_worst_moments_never_sends_a_transaction_twice_nor_loses_a_fill() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "100")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), EXECUTOR);
    // The fault hook's points, then random kills: at least 20 kills during live trading.
    let hooks = [
        "signed:1",
        "broadcast:1",
        "signed:2",
        "broadcast:3",
        "signed:4",
        "broadcast:2",
    ];
    let mut seed = 7u64;
    let (mut hook_kills, mut random_kills) = (0, 0);
    let rounds = 24;
    for round in 0..rounds {
        let hook = hooks.get(round).map(|h| ("ATHENA_FAULT_KILL_AFTER", *h));
        let env: Vec<(&str, &str)> = hook.into_iter().collect();
        let mut agent = start(dir.path(), &config, &env);
        let difference = reconciled(&agent);
        assert!(
            difference.abs() < 0.005,
            "round {round}: reconciliation after the restart found ${difference}:\n{}",
            agent.log()
        );
        provoke_trades(&agent);
        if hook.is_some() {
            // The hook kills it at its point; a round whose trades never reach it is killed
            // by hand.
            let started = Instant::now();
            while agent.child.0.try_wait().unwrap().is_none()
                && started.elapsed() < Duration::from_secs(30)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            if agent.log().contains("fault hook: killed after") {
                hook_kills += 1;
            }
        } else {
            std::thread::sleep(Duration::from_millis(200 + next(&mut seed) % 2_500));
            random_kills += 1;
        }
        let _ = agent.child.0.kill();
        let _ = agent.child.0.wait();
    }
    assert!(hook_kills >= 4, "only {hook_kills} hook kills fired");
    assert!(hook_kills + random_kills >= 20);

    // A last start settles everything and reconciles clean; then a clean stop.
    let agent = start(dir.path(), &config, &[]);
    let difference = reconciled(&agent);
    assert!(difference.abs() < 0.005, "{}", agent.log());
    assert!(
        agent.log().contains("; its observation ended 20"),
        "a restart says the observation is over, not that it lasts until a past time: {}",
        agent.log()
    );
    let status = agent.wait_until("/status", "a tick after the last restart", |b| {
        b["last_tick"].as_u64().is_some()
    });
    assert!(
        status["last_recovery"]["cause"].is_string(),
        "the crash recovery shown on the API: {status}"
    );
    let data = agent.dir.clone();
    agent.stop();
    let (state, ledger, intents) = read_store(&data);
    assert_book_is_the_chain(&node, &state);
    assert_every_transaction_written_down_once(&node, &intents);
    assert!(intents.iter().all(|i| i.state.is_settled()), "{intents:#?}");
    println!(
        "kill loop: {hook_kills} hook kills, {random_kills} random kills, {} transactions, {} fills",
        intents.len(),
        ledger.len()
    );
}
