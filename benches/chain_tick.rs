//! The chain source's tick on anvil (issue 15 §7): the six UniswapV2 pairs of the devnet
//! (`scripts/devnet.sh`, no trader) read by [`ChainSource::tick`] in one JSON-RPC batch,
//! beside the naive path, the same nine calls (latest block, fee history, six `getReserves`,
//! the Swap logs) sent one HTTP request each, in the same process against the same node.
//! Prints the HTTP round trips per tick and the ratio of the two.

use athena::chain::ChainSource;
use athena::market::MarketSource;
use athena_config::{ChainConfig, ChainPool};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::devnet::Node;

#[path = "../tests/support/mod.rs"]
mod support;

/// `getReserves()`.
const GET_RESERVES: &str = "0x0902f1ac";

/// The devnet as the tests start it (`tests/support`), with no trader.
struct Devnet {
    _node: Node,
    url: String,
    pools: Vec<String>,
}

impl Devnet {
    fn start() -> Self {
        let node = Node::devnet(&[("DEVNET_TRADER", "off")]);
        // The six UniswapV2 pairs (the devnet's two Aerodrome pools are left out).
        let pools = node.deployment["pools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["kind"] == "uniswap_v2")
            .map(|p| p["address"].as_str().unwrap().to_string())
            .collect();
        Self {
            url: node.url.clone(),
            pools,
            _node: node,
        }
    }
}

/// The naive path: each call its own request, one after the other.
fn naive_tick(rt: &tokio::runtime::Runtime, http: &reqwest::Client, url: &str, pools: &[String]) {
    let mut calls = vec![
        json!(["eth_getBlockByNumber", ["latest", false]]),
        json!(["eth_feeHistory", ["0x1", "latest", [50.0]]]),
    ];
    for p in pools {
        calls.push(json!(["eth_call", [{"to": p, "data": GET_RESERVES}, "latest"]]));
    }
    calls
        .push(json!(["eth_getLogs", [{"fromBlock": "0x0", "toBlock": "0x7cf", "address": pools}]]));
    rt.block_on(async {
        for (id, c) in calls.iter().enumerate() {
            let body: Value = http
                .post(url)
                .json(&json!({"jsonrpc": "2.0", "id": id, "method": c[0], "params": c[1]}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(body["error"].is_null(), "{body}");
        }
    });
}

fn bench(c: &mut Criterion) {
    let devnet = Devnet::start();
    let config = ChainConfig {
        rpc_url: devnet.url.clone(),
        request_timeout: Duration::from_secs(10),
        pools: devnet
            .pools
            .iter()
            .map(|a| ChainPool {
                address: a.clone(),
                kind: Default::default(),
                stable: false,
            })
            .collect(),
        ..Default::default()
    };
    let mut source = ChainSource::new(&config, 0, 300_000).unwrap();
    let started = Instant::now();
    source.tick(0).unwrap();
    let first = started.elapsed();
    let learn_trips = source.round_trips();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();

    let mut index = 1;
    let mut g = c.benchmark_group("chain_tick");
    g.measurement_time(Duration::from_secs(10));
    g.bench_function("batched (ChainSource::tick)", |b| {
        b.iter(|| {
            source.tick(index).unwrap();
            index += 1;
        })
    });
    g.bench_function("naive (one request per call)", |b| {
        b.iter(|| naive_tick(&rt, &http, &devnet.url, &devnet.pools))
    });
    g.finish();

    // Side by side, the same number of ticks each, alternating.
    let rounds = 400;
    let (mut batched, mut naive) = (Duration::ZERO, Duration::ZERO);
    let trips_before = source.round_trips();
    for _ in 0..rounds {
        let t = Instant::now();
        source.tick(index).unwrap();
        index += 1;
        batched += t.elapsed();
        let t = Instant::now();
        naive_tick(&rt, &http, &devnet.url, &devnet.pools);
        naive += t.elapsed();
    }
    let trips = (source.round_trips() - trips_before) as f64 / f64::from(rounds);
    let ms = |d: Duration| d.as_secs_f64() * 1e3 / f64::from(rounds);
    println!(
        "chain_tick: {} pools; first tick (learning the pools: tokens, decimals, creation \
         blocks) {:.1} ms in {learn_trips} round trips",
        devnet.pools.len(),
        first.as_secs_f64() * 1e3
    );
    println!(
        "chain_tick: {rounds} ticks each: batched {:.3} ms/tick, {trips:.2} round trips/tick; \
         naive {:.3} ms/tick, {} round trips/tick; naive/batched = {:.2}×",
        ms(batched),
        ms(naive),
        devnet.pools.len() + 3,
        naive.as_secs_f64() / batched.as_secs_f64()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
