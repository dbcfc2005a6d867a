//! A local chain for the on-chain tests: anvil alone (`scripts/anvil.sh`), or the devnet
//! (`scripts/devnet.sh`: anvil, the tokens, the UniswapV2 factory, router and six pairs, and a
//! trader), as a user starts it; stopped when dropped.

use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// anvil's first unlocked development account (the deployer).
pub const ACCOUNT: &str = "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266";

fn script(name: &str) -> PathBuf {
    super::checkout().join("scripts").join(name)
}

/// A free loopback port (a node restarted by a test comes back on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running node; `deployment` is `chain/devnet.mjs deploy`'s output when the devnet was
/// started (`Value::Null` for a bare anvil).
pub struct Node {
    pub run: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub deployment: Value,
    devnet: bool,
    env: Vec<(String, String)>,
}

impl Node {
    /// anvil alone (`scripts/anvil.sh start`).
    pub fn anvil() -> Self {
        Self::launch(false, &[])
    }

    /// The devnet (`scripts/devnet.sh start`), with `env` (e.g. `DEVNET_TRADER=off`).
    pub fn devnet(env: &[(&str, &str)]) -> Self {
        Self::launch(true, env)
    }

    fn launch(devnet: bool, env: &[(&str, &str)]) -> Self {
        let mut node = Self {
            run: tempfile::tempdir().unwrap(),
            port: free_port(),
            url: String::new(),
            deployment: Value::Null,
            devnet,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        node.start();
        node
    }

    /// Starts the node (again, on the same port: a devnet resumes the chain anvil saved when it
    /// stopped).
    pub fn start(&mut self) {
        let name = if self.devnet { "devnet.sh" } else { "anvil.sh" };
        let ok = Command::new(script(name))
            .args(["start", self.run.path().to_str().unwrap()])
            .env("ANVIL_PORT", self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .status()
            .unwrap()
            .success();
        assert!(ok, "scripts/{name} could not start the node");
        self.url = format!("http://127.0.0.1:{}", self.port);
        if self.devnet {
            let text = std::fs::read_to_string(self.run.path().join("deployment.json")).unwrap();
            self.deployment = serde_json::from_str(&text).unwrap();
        }
    }

    /// Stops the node (and the devnet's trader).
    pub fn stop(&self) {
        let name = if self.devnet { "devnet.sh" } else { "anvil.sh" };
        let _ = Command::new(script(name))
            .args(["stop", self.run.path().to_str().unwrap()])
            .status();
    }

    /// A config file for an agent on this devnet in `dir` (a tick a second, three seconds of
    /// observation, api_failures tripping after three failures), plus `extra` TOML.
    pub fn agent_config(&self, dir: &std::path::Path, extra: &str) -> PathBuf {
        self.agent_config_of(dir, extra, |_| true)
    }

    /// [`Self::agent_config`] reading only the devnet's pools `keep` keeps.
    pub fn agent_config_of(
        &self,
        dir: &std::path::Path,
        extra: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> PathBuf {
        let path = dir.join("athena.toml");
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            &path,
            format!(
                r#"
[agent]
agent_id = "chain-test"
clock = "real"
tick_interval = "1s"
observation_period = "3s"

[market]
source = "chain"

[risk]
api_failures_threshold = 3
api_failures_window = "1m"
api_failures_cooldown = "3s"

[chain]
rpc_url = "{}"
chain_id = 31337
request_timeout = "2s"
router_address = "{}"
solidly_router_address = "{}"
{}
{extra}
"#,
                self.url,
                self.deployment["router"].as_str().unwrap_or_default(),
                self.deployment["solidly_router"]
                    .as_str()
                    .unwrap_or_default(),
                self.pools_toml_of(keep)
            ),
        )
        .unwrap();
        path
    }

    /// `account`'s balance of ERC20 `token` (raw units).
    pub fn erc20_balance(&self, token: &str, account: &str) -> u128 {
        let data = format!("0x70a08231{}", word(account));
        let r = self.rpc("eth_call", json!([{"to": token, "data": data}, "latest"]));
        u128::from_str_radix(r.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    /// Transactions `account` has had mined.
    pub fn nonce(&self, account: &str) -> u64 {
        let n = self.rpc("eth_getTransactionCount", json!([account, "latest"]));
        u64::from_str_radix(n.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }

    /// The devnet's pools as a `[chain]` table's `pools = [...]` line.
    pub fn pools_toml(&self) -> String {
        self.pools_toml_of(|_| true)
    }

    /// The devnet's pools `keep` keeps, as a `pools = [...]` line.
    pub fn pools_toml_of(&self, keep: impl Fn(&Value) -> bool) -> String {
        let pools: Vec<String> = self.deployment["pools"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| keep(p))
            .map(|p| {
                format!(
                    "{{ address = {}, kind = {}, stable = {} }}",
                    p["address"], p["kind"], p["stable"]
                )
            })
            .collect();
        format!("pools = [{}]", pools.join(", "))
    }

    /// Runs `count` trades of the devnet's trader now (seed `seed`); returns the pools traded,
    /// in order, named as the devnet names them with Aerodrome's prefix for a Solidly pool
    /// (`WETH/USDC`, `sAMM-USDC/DAI`, `vAMM-AERO/USDC`).
    pub fn trade(&self, count: u32, seed: u32) -> Vec<String> {
        let out = Command::new("node")
            .arg(super::checkout().join("chain/devnet.mjs"))
            .args(["trade", "--rpc", &self.url, "--every", "0"])
            .args(["--count", &count.to_string(), "--seed", &seed.to_string()])
            .arg("--deployment")
            .arg(self.run.path().join("deployment.json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("failed"), "a trade failed:\n{text}");
        text.lines()
            .filter_map(|l| l.split(" on ").nth(1))
            .map(|kind_name| match kind_name.split_once(' ') {
                Some(("solidly", name)) => {
                    let stable = self.deployment["pools"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| {
                            p["kind"] == "solidly" && p["name"] == name && p["stable"] == true
                        });
                    format!("{}AMM-{name}", if stable { "s" } else { "v" })
                }
                Some((_, name)) => name.to_string(),
                None => kind_name.to_string(),
            })
            .collect()
    }

    /// Calls `method`; panics on an error answer.
    pub fn rpc(&self, method: &str, params: Value) -> Value {
        rpc(&self.url, method, params)
    }

    /// Sends a transaction from the unlocked deployer and waits for its receipt (anvil mines
    /// each transaction in its own block, but the receipt may lag the answer on a busy
    /// machine); panics when it reverted.
    pub fn send(&self, tx: Value) -> Value {
        let hash = self.rpc("eth_sendTransaction", json!([tx]));
        let started = Instant::now();
        let receipt = loop {
            let receipt = self.rpc("eth_getTransactionReceipt", json!([hash]));
            if !receipt.is_null() {
                break receipt;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no receipt for {hash}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(receipt["status"], "0x1", "reverted: {receipt}");
        receipt
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Calls `method` on `url`; panics on an error answer.
pub fn rpc(url: &str, method: &str, params: Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
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
pub fn word(address: &str) -> String {
    format!("{:0>64}", address.trim_start_matches("0x"))
}
