//! The node the on-chain tests will use: anvil from npm (`scripts/anvil.sh`, pinned by
//! `chain/package-lock.json`) starts on loopback, and the UniswapV2 factory compiled in the npm
//! package `@uniswap/v2-core` deploys on it and creates a pair. This checks the ground the
//! chain source and executor stand on; it does not test them (they are not built yet, and
//! `executor.kind = "chain"` is refused).

use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

/// anvil's first unlocked development account.
const ACCOUNT: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";
/// Function selectors (the first four bytes of the keccak of each signature).
const FEE_TO_SETTER: &str = "0x094b7415"; // feeToSetter()
const CREATE_PAIR: &str = "0xc9c65396"; // createPair(address,address)
const GET_PAIR: &str = "0xe6a43905"; // getPair(address,address)
const ALL_PAIRS_LENGTH: &str = "0x574f2ba3"; // allPairsLength()

struct Anvil {
    run: tempfile::TempDir,
    url: String,
}

impl Anvil {
    fn start() -> Self {
        let run = tempfile::tempdir().unwrap();
        let ok = Command::new(script())
            .args(["start", run.path().to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "scripts/anvil.sh could not start anvil");
        let addr = std::fs::read_to_string(run.path().join("anvil.addr")).unwrap();
        Self {
            url: format!("http://{}", addr.trim()),
            run,
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["stop", self.run.path().to_str().unwrap()])
            .status();
    }
}

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/anvil.sh")
}

fn rpc(rt: &tokio::runtime::Runtime, url: &str, method: &str, params: Value) -> Value {
    rt.block_on(async {
        let body: Value = reqwest::Client::new()
            .post(url)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(body["error"].is_null(), "{method}: {body}");
        body["result"].clone()
    })
}

/// An address as one ABI word.
fn word(address: &str) -> String {
    format!("{:0>64}", address.trim_start_matches("0x"))
}

/// Sends a transaction from the unlocked account and waits for its receipt (anvil mines each
/// transaction in its own block, but the receipt may lag the answer on a busy machine).
fn send(rt: &tokio::runtime::Runtime, url: &str, tx: Value) -> Value {
    let hash = rpc(rt, url, "eth_sendTransaction", json!([tx]));
    let started = std::time::Instant::now();
    let receipt = loop {
        let receipt = rpc(rt, url, "eth_getTransactionReceipt", json!([hash]));
        if !receipt.is_null() {
            break receipt;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no receipt for {hash}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(receipt["status"], "0x1", "reverted: {receipt}");
    receipt
}

#[test]
fn anvil_from_npm_runs_the_uniswap_v2_factory_compiled_in_npm() {
    let anvil = Anvil::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = anvil.url.as_str();
    assert_eq!(rpc(&rt, url, "eth_chainId", json!([])), "0x7a69"); // 31337

    let artifact: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("chain/node_modules/@uniswap/v2-core/build/UniswapV2Factory.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let bytecode = artifact["bytecode"]
        .as_str()
        .unwrap()
        .trim_start_matches("0x");
    let deployed = send(
        &rt,
        url,
        json!({"from": ACCOUNT, "data": format!("0x{bytecode}{}", word(ACCOUNT)), "gas": "0x500000"}),
    );
    let factory = deployed["contractAddress"].as_str().unwrap().to_string();
    let call = |data: String| {
        rpc(
            &rt,
            url,
            "eth_call",
            json!([{"to": factory, "data": data}, "latest"]),
        )
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
    send(
        &rt,
        url,
        json!({"from": ACCOUNT, "to": factory, "data": format!("{CREATE_PAIR}{}{}", word(a), word(b)), "gas": "0x500000"}),
    );
    assert_eq!(call(ALL_PAIRS_LENGTH.into()), format!("0x{:0>64}", "1"));
    let pair = call(format!("{GET_PAIR}{}{}", word(a), word(b)));
    let pair = format!("0x{}", &pair[pair.len() - 40..]);
    assert_ne!(pair, format!("0x{:0>40}", "0"));
    let code = rpc(&rt, url, "eth_getCode", json!([pair, "latest"]));
    assert!(
        code.as_str().unwrap().len() > 1000,
        "no pair contract at {pair}"
    );
}
