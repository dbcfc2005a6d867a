//! Aerodrome (Solidly) pools through the real binary against the devnet: Aerodrome's Pool,
//! PoolFactory, FactoryRegistry and Router compiled from their published sources and deployed
//! on anvil. The agent opens a stable and a volatile pool through Aerodrome's router (its
//! minimum outputs computed on each pool's own curve), claims the swap fees a pool owes it
//! before it removes its liquidity, and its book equals the chain at the end. An Aerodrome pool
//! priced far off the market is not entered (what its swap would lose is slippage). A position
//! is rebalanced on chain from a UniswapV2 pair into an Aerodrome pool. A router address
//! that is not the pools' router stops the run before anything is sent; the example
//! configuration names where a fresh devnet puts every contract.

mod support;

use alloy::primitives::keccak256;
use athena::chain::book::Step;
use athena::chain::send::IntentState;
use serde_json::{Value, json};
use std::path::Path;
use support::chain_agent::{
    AGENT_ADDRESS, EXECUTOR, assert_book_is_the_chain, assert_every_transaction_written_down_once,
    read_store, reconciled, start,
};
use support::devnet::{ACCOUNT, Node};
use support::http::TOKEN;

/// The first four bytes of the keccak of `signature`, as hex.
fn selector(signature: &str) -> String {
    alloy::hex::encode(&keccak256(signature)[..4])
}

alloy::sol! {
    struct Route { address from; address to; bool stable; address factory; }
    function approve(address spender, uint256 amount) external returns (bool);
    function swapExactTokensForTokens(uint256 amountIn, uint256 amountOutMin, Route[] routes, address to, uint256 deadline) external returns (uint256[] amounts);
}

mod v2 {
    alloy::sol! {
        function swapExactTokensForTokens(uint256 amountIn, uint256 amountOutMin, address[] path, address to, uint256 deadline) external returns (uint256[] amounts);
        function addLiquidity(address tokenA, address tokenB, uint256 amountADesired, uint256 amountBDesired, uint256 amountAMin, uint256 amountBMin, address to, uint256 deadline) external returns (uint256 amountA, uint256 amountB, uint256 liquidity);
    }
}

/// Sends `data` to `to` from the deployer and waits for it to succeed.
fn deployer_call(node: &Node, to: impl std::fmt::Display, data: Vec<u8>) {
    let data = format!("0x{}", alloy::hex::encode(data));
    node.send(json!({"from": ACCOUNT, "to": to.to_string(), "data": data, "gas": "0x80000"}));
}

/// The deployer lets `spender` take `amount` (raw units) of `token`.
fn deployer_approve(
    node: &Node,
    token: impl std::fmt::Display,
    spender: alloy::primitives::Address,
    amount: alloy::primitives::U256,
) {
    use alloy::sol_types::SolCall;
    deployer_call(node, token, approveCall { spender, amount }.abi_encode());
}

/// Adds `amounts` (raw units) of tokens `a` and `b` to their UniswapV2 pair, as the deployer.
fn add_to_pair(node: &Node, [a, b]: [&str; 2], [amount_a, amount_b]: [u128; 2]) {
    use alloy::primitives::{Address, U256};
    use alloy::sol_types::SolCall;
    let router: Address = node.deployment["router"].as_str().unwrap().parse().unwrap();
    for (token, amount) in [(a, amount_a), (b, amount_b)] {
        deployer_approve(node, token, router, U256::from(amount));
    }
    let add = v2::addLiquidityCall {
        tokenA: a.parse().unwrap(),
        tokenB: b.parse().unwrap(),
        amountADesired: U256::from(amount_a),
        amountBDesired: U256::from(amount_b),
        amountAMin: U256::ZERO,
        amountBMin: U256::ZERO,
        to: ACCOUNT.parse().unwrap(),
        deadline: U256::from(u64::MAX),
    }
    .abi_encode();
    deployer_call(node, router, add);
}

/// Where the deployer's swaps go: Aerodrome's volatile pool of the two tokens, or their
/// UniswapV2 pair.
#[derive(Clone, Copy)]
enum Venue {
    Aerodrome,
    UniswapV2,
}

/// Sells `amount` (raw units) of `from` for `to` at `venue`, as the deployer, through the
/// venue's router (in one transaction: the devnet's trader pays pools directly and could take
/// a payment made in a separate one); returns what came out.
fn sell(node: &Node, venue: Venue, from: &str, to: &str, amount: u128) -> u128 {
    use alloy::primitives::{Address, U256};
    use alloy::sol_types::SolCall;
    let address =
        |key: &str| -> Address { node.deployment[key].as_str().unwrap().parse().unwrap() };
    let (from, to): (Address, Address) = (from.parse().unwrap(), to.parse().unwrap());
    let (amount, deadline, me) = (
        U256::from(amount),
        U256::from(u64::MAX),
        ACCOUNT.parse().unwrap(),
    );
    let (router, swap) = match venue {
        Venue::Aerodrome => (
            address("solidly_router"),
            swapExactTokensForTokensCall {
                amountIn: amount,
                amountOutMin: U256::ZERO,
                routes: vec![Route {
                    from,
                    to,
                    stable: false,
                    factory: address("solidly_factory"),
                }],
                to: me,
                deadline,
            }
            .abi_encode(),
        ),
        Venue::UniswapV2 => (
            address("router"),
            v2::swapExactTokensForTokensCall {
                amountIn: amount,
                amountOutMin: U256::ZERO,
                path: vec![from, to],
                to: me,
                deadline,
            }
            .abi_encode(),
        ),
    };
    deployer_approve(node, from, router, amount);
    let before = node.erc20_balance(&to.to_string(), ACCOUNT);
    deployer_call(node, router, swap);
    node.erc20_balance(&to.to_string(), ACCOUNT) - before
}

/// Sells `amount` of `from` for `to` at `venue`, and what came out back.
fn round_trip(node: &Node, venue: Venue, from: &str, to: &str, amount: u128) {
    let bought = sell(node, venue, from, to, amount);
    sell(node, venue, to, from, bought);
}

/// What Solidly `pool`'s `claimFees` would pay the agent now (simulated), USD at the devnet's
/// seed prices (USDC $1, AERO $1.20; the pool's tokens in that order).
fn owed_usd(node: &Node, pool: &str) -> f64 {
    let data = format!("0x{}", selector("claimFees()"));
    let answer = node.rpc(
        "eth_call",
        json!([{"from": AGENT_ADDRESS, "to": pool, "data": data}, "latest"]),
    );
    let hex = answer.as_str().unwrap().trim_start_matches("0x");
    let amount = |i: usize| u128::from_str_radix(&hex[64 * i..64 * (i + 1)], 16).unwrap() as f64;
    amount(0) / 1e6 + amount(1) / 1e18 * 1.2
}

fn solidly_pool<'a>(node: &'a Node, name: &str) -> &'a str {
    node.deployment["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "solidly" && p["name"] == name)
        .and_then(|p| p["address"].as_str())
        .unwrap()
}

/// The Aerodrome pools, and the WETH/USDC pair the native token is priced from (WETH is not
/// allowlisted, so the agent trades only the Aerodrome pools).
fn aerodrome_config(node: &Node, dir: &Path, extra: &str) -> std::path::PathBuf {
    let extra = format!("{EXECUTOR}token_allowlist = [\"USDC\", \"DAI\", \"AERO\"]\n{extra}");
    node.agent_config_of(dir, &extra, |p| {
        p["kind"] == "solidly" || p["name"] == "WETH/USDC"
    })
}

#[test]
fn the_agent_trades_aerodrome_pools_through_its_router_and_claims_their_fees() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "100")]);
    let dir = tempfile::tempdir().unwrap();
    // The stable pool's fee APR (0.05% of the devnet's few minutes of volume) is low.
    let config = aerodrome_config(&node, dir.path(), "[strategy]\nmin_apr_pct = 0.01\n");
    // The wallet also holds 1,000 AERO when the agent starts: the fresh book counts them (not
    // the configured paper capital) and sweeps them back into USDC.
    let aero = node.deployment["tokens"]["AERO"].as_str().unwrap();
    let gift = format!(
        "0xa9059cbb{}{:064x}",
        support::devnet::word(AGENT_ADDRESS),
        1_000 * 10u128.pow(18)
    );
    node.send(json!({"from": ACCOUNT, "to": aero, "data": gift, "gas": "0x30000"}));
    let agent = start(
        dir.path(),
        &config,
        &[("ATHENA_EXECUTOR_PAPER_STARTING_USD", "1")],
    );
    assert_eq!(reconciled(&agent), 0.0);
    assert!(
        agent
            .log()
            .contains("agent at tick 0, equity read from the wallet at the first tick"),
        "a fresh chain book shows no configured capital: {}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("on chain it opens positions in 2 pools"),
        "{}",
        agent.log()
    );
    let (_, status) = agent.get("/status");
    let start_usd = status["starting_usd"].as_f64().unwrap();
    assert!(
        (11_000.0..11_500.0).contains(&start_usd),
        "10,000 USDC and 1,000 AERO at about $1.20: {status}"
    );
    let (_, performance) = agent.get("/performance");
    assert!(
        performance["pnl_usd"].as_f64().unwrap().abs() < 100.0,
        "PnL from the wallet's worth at the start: {performance}"
    );

    // Both Aerodrome pools are entered through Aerodrome's router.
    let positions = agent.wait_until(
        "/positions",
        "a stable and a volatile Aerodrome position",
        |b| {
            let pools: Vec<&str> = b
                .as_array()
                .map(|a| a.iter().filter_map(|p| p["pool"].as_str()).collect())
                .unwrap_or_default();
            pools.contains(&"sAMM-USDC/DAI") && pools.contains(&"vAMM-USDC/AERO")
        },
    );
    assert_eq!(positions.as_array().unwrap().len(), 2, "{positions}");

    // Large round trips through the volatile pool until the fees it owes the agent (0.30% of
    // each swap, paid to the pool's fee contract) are worth well more than a claim's gas.
    let volatile = solidly_pool(&node, "AERO/USDC");
    let (usdc, aero) = (
        node.deployment["tokens"]["USDC"].as_str().unwrap(),
        node.deployment["tokens"]["AERO"].as_str().unwrap(),
    );
    for _ in 0..10 {
        round_trip(&node, Venue::Aerodrome, usdc, aero, 150_000 * 10u128.pow(6));
        if owed_usd(&node, volatile) > 3.0 {
            break;
        }
    }
    assert!(owed_usd(&node, volatile) > 3.0);

    let (code, body) = agent.post(
        "/emergency/exit-all",
        Some(TOKEN),
        json!({"confirm": true, "reason": "test: close the Aerodrome positions"}),
    );
    assert_eq!(code, 200, "{body}");
    agent.wait_until("/positions", "every Aerodrome position closed", |b| {
        b.as_array().is_some_and(Vec::is_empty)
    });
    let data = agent.dir.clone();
    let log = agent.stop();
    assert!(!log.contains("panicked"), "{log}");

    let (state, ledger, intents) = read_store(&data);
    let router = node.deployment["solidly_router"].as_str().unwrap();
    // Where each transaction went, as the node has it.
    let to = |i: &athena::chain::send::Intent| {
        let tx = node.rpc("eth_getTransactionByHash", json!([i.hash.to_string()]));
        tx["to"].as_str().unwrap().to_lowercase()
    };
    let legs: Vec<(Step, String)> = intents
        .iter()
        .filter_map(|i| Some((i.leg.as_ref()?.step, to(i))))
        .collect();
    for step in [
        Step::SwapIn,
        Step::AddLiquidity,
        Step::RemoveLiquidity,
        Step::SwapOut,
    ] {
        assert!(
            legs.iter()
                .any(|(s, to)| *s == step && to == &router.to_lowercase()),
            "{step:?} through Aerodrome's router: {legs:?}"
        );
    }
    // The volatile pool's fees were claimed from the pool, and paid the wallet.
    let claim = intents
        .iter()
        .find(|i| i.leg.as_ref().is_some_and(|l| l.step == Step::ClaimFees))
        .unwrap_or_else(|| panic!("no claim of fees: {legs:?}\n{log}"));
    assert_eq!(to(claim), volatile.to_lowercase());
    assert!(matches!(
        claim.state,
        IntentState::Mined { success: true, .. }
    ));
    let receipt = node.rpc("eth_getTransactionReceipt", json!([claim.hash.to_string()]));
    let paid: Vec<&Value> = receipt["logs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["topics"][0]
                == format!(
                    "0x{}",
                    alloy::hex::encode(keccak256("Transfer(address,address,uint256)"))
                )
                && l["topics"][2]
                    .as_str()
                    .is_some_and(|t| t.ends_with(&AGENT_ADDRESS[2..].to_lowercase()))
        })
        .collect();
    assert!(
        !paid.is_empty(),
        "the claim paid the wallet nothing: {receipt}"
    );

    assert!(state.positions.is_empty());
    for pool in ["USDC/DAI", "AERO/USDC"] {
        let lp = node.erc20_balance(solidly_pool(&node, pool), AGENT_ADDRESS);
        assert_eq!(lp, 0, "LP tokens left in {pool}");
    }
    let opens = ledger.iter().filter(|e| e.action == "open").count();
    let closes = ledger.iter().filter(|e| e.action == "close").count();
    assert!(opens == 2 && closes == 2, "{ledger:#?}");
    assert!(
        ledger
            .iter()
            .any(|e| e.position.starts_with("sweep-") && e.position.ends_with("-AERO")),
        "the AERO held at the start swept back: {ledger:#?}"
    );
    assert_book_is_the_chain(&node, &state);
    assert_every_transaction_written_down_once(&node, &intents);
}

#[test]
fn a_router_that_serves_none_of_the_pools_stops_the_run_before_anything_is_sent() {
    let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
    let dir = tempfile::tempdir().unwrap();
    // The UniswapV2 router named as Aerodrome's: it does not answer defaultFactory().
    let v2 = node.deployment["router"].as_str().unwrap();
    let config = aerodrome_config(&node, dir.path(), "");
    let mut agent = start(
        dir.path(),
        &config,
        &[("ATHENA_CHAIN_SOLIDLY_ROUTER_ADDRESS", v2)],
    );
    let status = agent.child.0.wait().unwrap();
    let log = agent.log();
    assert_eq!(status.code(), Some(2), "a configuration error: {log}");
    assert!(
        log.contains(&format!("chain.solidly_router_address {v2}"))
            || log.to_lowercase().contains(&format!(
                "chain.solidly_router_address {}",
                v2.to_lowercase()
            )),
        "{log}"
    );
    assert!(
        log.contains("does not answer as Aerodrome's router"),
        "{log}"
    );
    // A token's address as the router: no contract code there is a router.
    let weth = node.deployment["weth"].as_str().unwrap();
    let mut agent = start(
        dir.path(),
        &config,
        &[("ATHENA_CHAIN_ROUTER_ADDRESS", weth)],
    );
    let status = agent.child.0.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(
        agent.log().contains("chain.router_address"),
        "{}",
        agent.log()
    );
    assert_eq!(node.nonce(AGENT_ADDRESS), 0, "nothing was sent");
    // No Aerodrome router: its pools are watched, not traded, and a line says so.
    let agent = start(
        dir.path(),
        &config,
        &[("ATHENA_CHAIN_SOLIDLY_ROUTER_ADDRESS", "")],
    );
    support::wait_for(
        &agent.log,
        "sAMM-USDC/DAI (no chain.solidly_router_address set)",
        std::time::Duration::from_secs(60),
    );
    agent.stop();
}

#[test]
fn the_example_configuration_names_where_a_fresh_devnet_puts_its_contracts() {
    let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
    let example = support::checkout().join("config/examples/local-anvil.toml");
    let config = athena_config::load_with_env(Some(&example), Vec::new()).unwrap();
    let same = |a: &str, b: &Value| a.eq_ignore_ascii_case(b.as_str().unwrap());
    assert!(same(
        &config.chain.router_address,
        &node.deployment["router"]
    ));
    assert!(same(
        &config.chain.solidly_router_address,
        &node.deployment["solidly_router"]
    ));
    let deployed: Vec<(String, String, bool)> = node.deployment["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap().to_lowercase(),
                p["kind"].as_str().unwrap().to_string(),
                p["stable"].as_bool().unwrap(),
            )
        })
        .collect();
    let configured: Vec<(String, String, bool)> = config
        .chain
        .pools
        .iter()
        .map(|p| {
            let kind = serde_json::to_value(p.kind).unwrap();
            (
                p.address.to_lowercase(),
                kind.as_str().unwrap().to_string(),
                p.stable,
            )
        })
        .collect();
    assert_eq!(configured, deployed);
}

#[test]
fn a_pool_priced_off_the_market_is_not_entered() {
    let node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "100")]);
    // A large sale of AERO in Aerodrome's volatile pool: AERO there costs far less than in
    // the UniswapV2 pair the market price comes from (now the deeper of the two). An LP in a
    // pool off the market is arbitraged back, at its expense.
    let (usdc, aero) = (
        node.deployment["tokens"]["USDC"].as_str().unwrap(),
        node.deployment["tokens"]["AERO"].as_str().unwrap(),
    );
    sell(
        &node,
        Venue::Aerodrome,
        aero,
        usdc,
        125_000 * 10u128.pow(18),
    );
    let dir = tempfile::tempdir().unwrap();
    // The two AERO/USDC pools (and WETH/USDC, for the price of gas, not traded); both are
    // proposed.
    let extra = format!(
        "{EXECUTOR}token_allowlist = [\"USDC\", \"AERO\"]\n[strategy]\nmin_apr_pct = 0.01\n"
    );
    let config = node.agent_config_of(dir.path(), &extra, |p| {
        p["name"] == "AERO/USDC" || p["name"] == "WETH/USDC"
    });
    let agent = start(dir.path(), &config, &[]);
    // Its first decisions wait for the risk engine's 12 ticks of APR history.
    let decided = |r: &Value| {
        let r = r.to_string();
        r.contains("open vAMM-USDC/AERO") && !r.contains("missing_data")
    };
    let journal = agent.wait_until("/journal", "a decision on the off-market pool", |b| {
        b.as_array().is_some_and(|a| a.iter().any(decided))
    });
    let refused = journal
        .as_array()
        .unwrap()
        .iter()
        .find(|r| decided(r))
        .unwrap();
    assert!(
        refused.to_string().contains("expected slippage"),
        "refused for what its swap would lose: {refused}"
    );
    let data = agent.dir.clone();
    agent.stop();
    let (state, ledger, intents) = read_store(&data);
    assert!(
        ledger.iter().all(|e| e.pool != "vAMM-USDC/AERO"),
        "{ledger:#?}"
    );
    assert!(
        intents
            .iter()
            .all(|i| i.leg.as_ref().is_none_or(|l| l.pool != "vAMM-USDC/AERO")),
        "a transaction for the off-market pool"
    );
    assert_book_is_the_chain(&node, &state);
}

#[test]
fn a_position_is_rebalanced_on_chain_from_a_uniswap_pair_into_an_aerodrome_pool() {
    // No trader: the test makes the volume, so which pool pays more is the test's doing.
    let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
    let (usdc, aero) = (
        node.deployment["tokens"]["USDC"].as_str().unwrap(),
        node.deployment["tokens"]["AERO"].as_str().unwrap(),
    );
    // Volume in the UniswapV2 pair only: it is the one pool worth opening.
    round_trip(&node, Venue::UniswapV2, usdc, aero, 20_000 * 10u128.pow(6));
    let dir = tempfile::tempdir().unwrap();
    // One position; rebalance as soon as its APR is below its entry's (the position's own
    // liquidity lowers it) and another pool pays more, over a ten-year horizon.
    let extra = format!(
        "{EXECUTOR}token_allowlist = [\"USDC\", \"AERO\"]\n[strategy]\nmin_apr_pct = 0.01\n\
         max_positions = 1\nopen_top_n = 1\nrebalance_apr_drop_ratio = 1.0\n\
         rebalance_better_ratio = 1.01\nrebalance_min_gain_over_cost = 0.001\n\
         holding_horizon = \"3650days\"\n"
    );
    let config = node.agent_config_of(dir.path(), &extra, |p| {
        p["name"] == "AERO/USDC" || p["name"] == "WETH/USDC"
    });
    let agent = start(dir.path(), &config, &[]);
    let opened = agent.wait_until("/positions", "a position in the UniswapV2 pair", |b| {
        b.as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(opened[0]["pool"], "USDC/AERO", "{opened}");

    // Now the pair's APR falls (its liquidity doubles: the same fees over twice the TVL) and
    // the Aerodrome pool's passes it (its volume).
    add_to_pair(
        &node,
        [usdc, aero],
        [400_000 * 10u128.pow(6), 333_333 * 10u128.pow(18)],
    );
    round_trip(&node, Venue::Aerodrome, usdc, aero, 60_000 * 10u128.pow(6));
    let started = std::time::Instant::now();
    let moved = loop {
        let (_, positions) = agent.get("/positions");
        if positions
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0]["pool"] == "vAMM-USDC/AERO")
        {
            break positions;
        }
        if started.elapsed() > std::time::Duration::from_secs(90) {
            let (_, journal) = agent.get("/journal?limit=30");
            let (_, pools) = agent.get("/pools/opportunities");
            panic!("no rebalance into Aerodrome: {positions}\n{pools}\n{journal:#}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let (_, journal) = agent.get("/journal?limit=200");
    assert!(
        journal.to_string().contains(&format!(
            "rebalance {} in USDC/AERO into vAMM-USDC/AERO",
            opened[0]["id"].as_str().unwrap()
        )),
        "{journal}"
    );
    let data = agent.dir.clone();
    agent.stop();
    let (state, ledger, intents) = read_store(&data);
    assert_eq!(state.positions.len(), 1, "{moved}");
    let (closed, entered) = (
        ledger
            .iter()
            .find(|e| e.action == "close" && e.pool == "USDC/AERO"),
        ledger
            .iter()
            .find(|e| e.action == "open" && e.pool == "vAMM-USDC/AERO"),
    );
    assert!(closed.is_some() && entered.is_some(), "{ledger:#?}");
    let pair = node.deployment["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "uniswap_v2" && p["name"] == "AERO/USDC")
        .and_then(|p| p["address"].as_str())
        .unwrap();
    assert_eq!(
        node.erc20_balance(pair, AGENT_ADDRESS),
        0,
        "the pair's LP tokens all removed"
    );
    assert_book_is_the_chain(&node, &state);
    assert_every_transaction_written_down_once(&node, &intents);
}
