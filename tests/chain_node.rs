//! The node the on-chain tests will use: anvil from npm (`scripts/anvil.sh`, pinned by
//! `chain/package-lock.json`) starts on loopback, and the UniswapV2 factory compiled in the npm
//! package `@uniswap/v2-core` deploys on it and creates a pair: the ground the chain source
//! (tested in `chain_source.rs`) stands on.

mod support;

use serde_json::{Value, json};
use support::devnet::{ACCOUNT, Node, word};

/// Function selectors (the first four bytes of the keccak of each signature).
const FEE_TO_SETTER: &str = "0x094b7415"; // feeToSetter()
const CREATE_PAIR: &str = "0xc9c65396"; // createPair(address,address)
const GET_PAIR: &str = "0xe6a43905"; // getPair(address,address)
const ALL_PAIRS_LENGTH: &str = "0x574f2ba3"; // allPairsLength()

#[test]
fn anvil_from_npm_runs_the_uniswap_v2_factory_compiled_in_npm() {
    let anvil = Node::anvil();
    assert_eq!(anvil.rpc("eth_chainId", json!([])), "0x7a69"); // 31337

    let artifact: Value = serde_json::from_str(
        &std::fs::read_to_string(
            support::checkout()
                .join("chain/node_modules/@uniswap/v2-core/build/UniswapV2Factory.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bytecode = artifact["bytecode"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    let deployed = anvil.send(
        json!({"from": ACCOUNT, "data": format!("0x{bytecode}{}", word(ACCOUNT)), "gas": "0x500000"}),
    );
    let factory = deployed["contractAddress"].as_str().unwrap().to_string();
    let call = |data: String| {
        anvil
            .rpc("eth_call", json!([{"to": factory, "data": data}, "latest"]))
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(call(FEE_TO_SETTER.into()), format!("0x{}", word(ACCOUNT)));
    assert_eq!(call(ALL_PAIRS_LENGTH.into()), format!("0x{:0>64}", "0"));

    // A pair of two (token) addresses: the factory deploys the pair contract.
    let (a, b) = (
        "0x1000000000000000000000000000000000000001",
        "0x2000000000000000000000000000000000000002",
    );
    anvil.send(
        json!({"from": ACCOUNT, "to": factory, "data": format!("{CREATE_PAIR}{}{}", word(a), word(b)), "gas": "0x500000"}),
    );
    assert_eq!(call(ALL_PAIRS_LENGTH.into()), format!("0x{:0>64}", "1"));
    let pair = call(format!("{GET_PAIR}{}{}", word(a), word(b)));
    let pair = format!("0x{}", &pair[pair.len() - 40..]);
    assert_ne!(pair, format!("0x{:0>40}", "0"));
    let code = anvil.rpc("eth_getCode", json!([pair, "latest"]));
    assert!(
        code.as_str().unwrap().len() > 1000,
        "no pair contract at {pair}"
    );
}
