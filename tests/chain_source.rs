//! The `chain` market source against the devnet (`scripts/devnet.sh`: anvil from npm, tokens,
//! the UniswapV2 factory, router and six pairs from npm artifacts, and a trader):
//! - read in-process: names, prices, TVL, fees and gas as deployed (six UniswapV2 pairs and two
//!   Aerodrome pools compiled from source), swap volume on exactly the pools traded, one HTTP
//!   round trip per tick, an empty pool rejected for the tick;
//! - through the binary: the agent paper-trades the devnet's pools, rides out the node going
//!   away (api_failures trips, nothing is lost) and goes on when it returns;
//! - a configured address that is not a pair, a Solidly pool whose curve the config gets
//!   wrong, or a node of another chain stops the run with a one-line error naming it.

mod support;

use athena::chain::ChainSource;
use athena::market::MarketSource;
use athena_config::{ChainConfig, ChainPool};
use serde_json::{Value, json};
use std::time::Duration;
use support::devnet::{ACCOUNT, Node, word};
use support::http::{Agent, breaker};

/// `createPair(address,address)`.
const CREATE_PAIR: &str = "0xc9c65396";

fn chain_config(node: &Node) -> ChainConfig {
    let pools = node.deployment["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| ChainPool {
            address: p["address"].as_str().unwrap().to_string(),
            kind: serde_json::from_value(p["kind"].clone()).unwrap(),
            stable: p["stable"].as_bool().unwrap(),
        })
        .collect();
    ChainConfig {
        rpc_url: node.url.clone(),
        chain_id: 31337,
        request_timeout: Duration::from_secs(5),
        pools,
        ..Default::default()
    }
}

/// The pool a devnet name ("WETH/USDC", "sAMM-USDC/DAI") has in a tick (named in the pair's
/// token order).
fn named<'a>(
    tick: &'a athena::market::MarketTick,
    devnet_name: &str,
) -> &'a athena::market::PoolSnapshot {
    let (prefix, pair) = devnet_name
        .split_once('-')
        .map_or(("", devnet_name), |(p, rest)| (p, rest));
    let (a, b) = pair.split_once('/').unwrap();
    let dash = if prefix.is_empty() { "" } else { "-" };
    tick.pool(devnet_name)
        .or_else(|| tick.pool(&format!("{prefix}{dash}{b}/{a}")))
        .unwrap_or_else(|| panic!("no pool {devnet_name} in {:?}", tick.pools))
}

/// The devnet's pools: name, seeded TVL, fee rate.
const POOLS: [(&str, f64, f64); 8] = [
    ("WETH/USDC", 4e6, 0.003),
    ("WETH/DAI", 1.5e6, 0.003),
    ("AERO/USDC", 8e5, 0.003),
    ("AERO/WETH", 6e5, 0.003),
    ("USDC/DAI", 3e6, 0.003),
    ("USDC/USDbC", 1.2e6, 0.003),
    // Aerodrome's factory fees: 0.05% stable, 0.30% volatile.
    ("sAMM-USDC/DAI", 2e6, 0.0005),
    ("vAMM-AERO/USDC", 7e5, 0.003),
];

fn near(value: f64, expected: f64, tolerance: f64) -> bool {
    (value - expected).abs() <= tolerance * expected
}

#[test]
fn the_chain_source_reads_the_devnet_in_one_round_trip_per_tick() {
    let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
    let mut source = ChainSource::new(&chain_config(&node), 1_000_000, 60_000).unwrap();

    // As deployed: WETH $3000, AERO $1.20, the stables at $1, the seeded TVLs.
    let t0 = source.tick(0).unwrap();
    assert_eq!(t0.at_ms, 1_000_000);
    assert_eq!(t0.pools.len(), POOLS.len());
    assert!(near(t0.eth_usd, 3000.0, 1e-6), "eth {}", t0.eth_usd);
    assert!(
        t0.gas_gwei > 0.0 && t0.gas_gwei < 100.0,
        "gas {}",
        t0.gas_gwei
    );
    for (name, tvl, fee) in POOLS {
        let p = named(&t0, name);
        assert!(near(p.tvl_usd, tvl, 1e-6), "{name}: TVL {}", p.tvl_usd);
        assert_eq!(p.volume_24h_usd, 0.0, "{name}: no swap yet");
        assert_eq!(p.fee_rate, fee, "{name}");
        assert!(p.check().is_ok(), "{name}: {:?}", p.check());
    }
    let aero = named(&t0, "AERO/USDC");
    let i = aero.tokens.iter().position(|t| t == "AERO").unwrap();
    assert!(near(aero.prices_usd[i], 1.2, 1e-6), "{:?}", aero.prices_usd);
    assert!(named(&t0, "USDC/DAI").stable && !named(&t0, "WETH/USDC").stable);
    assert!(named(&t0, "sAMM-USDC/DAI").stable && !named(&t0, "vAMM-AERO/USDC").stable);
    assert!(named(&t0, "USDC/DAI").depeg_pct() < 1e-6);

    // Swaps show as volume on exactly the pools traded (UniswapV2 and Solidly Swap events),
    // and the fee APR follows from it. Seed 3's first six trades leave three pools alone.
    let traded = node.trade(6, 3);
    assert!(traded.iter().any(|t| t.starts_with("vAMM-")), "{traded:?}");
    let before = source.round_trips();
    let t1 = source.tick(1).unwrap();
    assert_eq!(
        source.round_trips() - before,
        1,
        "one batched round trip per tick"
    );
    assert_eq!(t1.at_ms, 1_060_000);
    for (name, _, _) in POOLS {
        let p = named(&t1, name);
        if traded.iter().any(|t| t == name) {
            assert!(
                p.volume_24h_usd > 100.0,
                "{name} traded: {}",
                p.volume_24h_usd
            );
            let apr = p.volume_24h_usd * p.fee_rate * 365.0 / p.tvl_usd * 100.0;
            assert!(
                near(p.fee_apr_pct, apr, 1e-9),
                "{name}: {} vs {apr}",
                p.fee_apr_pct
            );
        } else {
            assert_eq!(p.volume_24h_usd, 0.0, "{name} not traded ({traded:?})");
        }
    }
    // A swap is counted once: a tick with no new block adds nothing.
    let t2 = source.tick(2).unwrap();
    for (a, b) in t1.pools.iter().zip(&t2.pools) {
        assert_eq!(a.volume_24h_usd, b.volume_24h_usd, "{}", a.pool);
    }

    // An empty pair (no liquidity) is read but cannot be used: its snapshot fails the check
    // the agent screens every pool with, and nothing else changes.
    let tokens = &node.deployment["tokens"];
    let (aero, dai) = (
        tokens["AERO"].as_str().unwrap(),
        tokens["DAI"].as_str().unwrap(),
    );
    node.send(json!({
        "from": ACCOUNT, "to": node.deployment["factory"],
        "data": format!("{CREATE_PAIR}{}{}", word(aero), word(dai)), "gas": "0x500000"
    }));
    let empty = node.rpc(
        "eth_call",
        json!([{"to": node.deployment["factory"], "data": format!("0xe6a43905{}{}", word(aero), word(dai))}, "latest"]),
    );
    let empty = format!("0x{}", &empty.as_str().unwrap()[26..]);
    let mut config = chain_config(&node);
    config.pools.push(ChainPool {
        address: empty,
        kind: Default::default(),
        stable: false,
    });
    let mut with_empty = ChainSource::new(&config, 0, 60_000).unwrap();
    let t = with_empty.tick(0).unwrap();
    assert_eq!(t.pools.len(), POOLS.len() + 1);
    let bad = t.pools.last().unwrap();
    assert!(bad.check().is_err(), "an empty pool passed: {bad:?}");
    assert!(t.pools[..POOLS.len()].iter().all(|p| p.check().is_ok()));
}

#[test]
fn the_agent_paper_trades_the_devnet_and_rides_out_the_node_going_away() {
    let mut node = Node::devnet(&[("DEVNET_TRADE_EVERY_MS", "100")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), "");
    let agent = Agent::start(dir.path(), &[("ATHENA_CONFIG", config.to_str().unwrap())]);

    // It sees the devnet's pools and, after the observation period, opens positions on paper.
    let pools = agent.wait_until("/pools/opportunities", "the devnet's pools", |b| {
        b.as_array().is_some_and(|a| a.len() == POOLS.len())
    });
    assert!(pools.to_string().contains("sAMM-"), "{pools}");
    let positions = agent.wait_until("/positions", "a position opened on paper", |b| {
        b.as_array().is_some_and(|a| !a.is_empty())
    });

    // The node goes away: ticks fail, api_failures trips, the agent keeps running and keeps
    // its book.
    node.stop();
    let risk = agent.wait_until("/risk/status", "api_failures tripped", |b| {
        !breaker(b, "api_failures")["tripped"].is_null()
    });
    assert!(
        breaker(&risk, "api_failures")["tripped"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("RPC"),
        "{risk}"
    );
    // Alerted now, not once a tick commits again.
    agent.wait_until("/alerts", "the trip alerted during the outage", |b| {
        b.to_string()
            .contains("circuit breaker api_failures tripped")
    });
    let (status, held) = agent.get("/positions");
    assert_eq!(status, 200);
    let ids = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect()
    };
    for id in ids(&positions) {
        assert!(
            ids(&held).contains(&id),
            "position {id} lost during the outage: {held}"
        );
    }
    assert!(agent.log().contains("tick failed"), "{}", agent.log());

    // The node returns with its chain: ticks go on.
    let (_, before) = agent.get("/status");
    let tick_before = before["last_tick"].as_u64().unwrap();
    node.start();
    agent.wait_until("/status", "ticks after the node returned", |b| {
        b["last_tick"].as_u64().unwrap_or(0) > tick_before + 2
    });
    agent.wait_until(
        "/risk/status",
        "trading again once api_failures re-armed",
        |b| b["trading_state"] == "active",
    );
    agent.stop();
}

#[test]
fn a_pool_that_is_not_what_the_config_says_stops_the_run_naming_it() {
    let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
    let dir = tempfile::tempdir().unwrap();
    let config = node.agent_config(dir.path(), "");
    // `athena run` with the config as it is now and `env` exits with an error holding `expected`.
    let refuses = |env: &[(&str, &str)], expected: String| {
        let data = dir.path().join("data");
        let mut all = vec![("ATHENA_CONFIG", config.to_str().unwrap())];
        all.extend_from_slice(env);
        let (ok, out) = support::athena(&["--data-dir", data.to_str().unwrap(), "run"], &all);
        assert!(
            !ok && out.contains(&expected),
            "expected {expected:?}: {out}"
        );
    };
    // The deployer's account: no contract there.
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "pools = [",
        &format!("pools = [{{ address = \"{ACCOUNT}\" }}, "),
    );
    std::fs::write(&config, text).unwrap();
    refuses(
        &[],
        format!("chain pool {ACCOUNT}: no contract at this address"),
    );

    // A token's address given as a pool: the node refuses its calls; the error names it.
    let usdc = node.deployment["tokens"]["USDC"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(ACCOUNT, &usdc);
    std::fs::write(&config, &text).unwrap();
    refuses(
        &[],
        format!("chain pool {usdc}: it does not answer as a UniswapV2 pool"),
    );
    std::fs::write(&config, text.replace(&usdc, ACCOUNT)).unwrap();

    // Another chain than the config says.
    refuses(
        &[("ATHENA_CHAIN_CHAIN_ID", "8453")],
        "chain.chain_id is 8453 but the node at chain.rpc_url is chain 31337".into(),
    );

    // An Aerodrome pool said to be volatile that is stable.
    let stable = node.deployment["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "solidly" && p["stable"] == true)
        .unwrap()["address"]
        .as_str()
        .unwrap()
        .to_string();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("{{ address = \"{ACCOUNT}\" }}, "), "")
        .replace(
            &format!("address = \"{stable}\", kind = \"solidly\", stable = true"),
            &format!("address = \"{stable}\", kind = \"solidly\", stable = false"),
        );
    std::fs::write(&config, text).unwrap();
    refuses(
        &[],
        format!("chain pool {stable}: the pool says stable = true, the configuration says false"),
    );
}
