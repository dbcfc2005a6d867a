//! An agent trading on the devnet with the chain executor, as the on-chain tests start it:
//! its wallet, its start, the reconciliation it prints, and its book read back and compared
//! with the chain.

use super::devnet::Node;
use super::http::{Agent, TOKEN};
use athena::agent::state::{AgentState, LedgerEntry, STATE_KEY};
use athena::chain::send::{Intent, IntentState};
use athena_config::MemoryConfig;
use athena_storage::{KeyedTable, SeqTable, Store};
use std::path::Path;
use std::time::Duration;

/// The devnet's agent wallet (anvil's third development account, public knowledge), funded
/// with 10,000 USDC by the deployment.
pub const AGENT_KEY: &str = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a";
pub const AGENT_ADDRESS: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

pub const EXECUTOR: &str = "[executor]\nkind = \"chain\"\nreceipt_timeout = \"10s\"\n";

pub fn start(dir: &Path, config: &Path, extra_env: &[(&str, &str)]) -> Agent {
    let mut env = vec![
        ("ATHENA_CONFIG", config.to_str().unwrap()),
        ("ATHENA_CHAIN_PRIVATE_KEY", AGENT_KEY),
        ("ATHENA_API_ADMIN_TOKEN", TOKEN),
    ];
    env.extend_from_slice(extra_env);
    Agent::start(dir, &env)
}

/// The store's book, ledger and intents (the agent stopped).
pub fn read_store(data: &Path) -> (AgentState, Vec<LedgerEntry>, Vec<Intent>) {
    let store = Store::open(data, &MemoryConfig::default()).unwrap();
    store
        .read(|r| {
            let state: AgentState = r.get(KeyedTable::Agent, STATE_KEY)?.unwrap();
            let ledger = r
                .seq_after::<LedgerEntry>(SeqTable::Ledger, 0, usize::MAX)?
                .into_iter()
                .map(|(_, e)| e)
                .collect();
            let intents = r
                .all::<Intent>(KeyedTable::Intents)?
                .into_iter()
                .map(|(_, i)| i)
                .collect();
            Ok((state, ledger, intents))
        })
        .unwrap()
}

/// Every token balance the book holds equals the wallet's on the node (ETH aside: the book
/// takes the node's figure, an operator tops it up for gas).
pub fn assert_book_is_the_chain(node: &Node, state: &AgentState) {
    let book = state.wallet.as_ref().expect("a chain book");
    for (token, held) in &book.balances {
        if token.is_zero() {
            continue;
        }
        let on_chain = node.erc20_balance(&token.to_string(), AGENT_ADDRESS);
        assert_eq!(
            held.to::<u128>(),
            on_chain,
            "token {token} ({:?}): book and chain differ",
            book.tokens.get(token)
        );
    }
    let usdc = node.deployment["tokens"]["USDC"].as_str().unwrap();
    let cash = node.erc20_balance(usdc, AGENT_ADDRESS) as f64 / 1e6;
    assert!(
        (state.cash_usd - cash).abs() < 1e-6,
        "cash {} vs USDC on chain {cash}",
        state.cash_usd
    );
    for p in &state.positions {
        let shares = p.lp_shares.expect("a chain position holds LP tokens");
        assert!(!shares.is_zero(), "{p:?}");
    }
}

/// Every transaction the wallet had mined is an intent in the store, and no step of a
/// position succeeded twice.
pub fn assert_every_transaction_written_down_once(node: &Node, intents: &[Intent]) {
    let mined = intents
        .iter()
        .filter(|i| matches!(i.state, IntentState::Mined { .. }))
        .count() as u64;
    assert_eq!(
        node.nonce(AGENT_ADDRESS),
        mined,
        "transactions on chain vs mined intents in the store: {intents:#?}"
    );
    let mut legs = std::collections::BTreeSet::new();
    for i in intents {
        if let (IntentState::Mined { success: true, .. }, Some(leg)) = (&i.state, &i.leg)
            && leg.step != athena::chain::book::Step::Approve
        {
            assert!(
                legs.insert((leg.position.clone(), leg.step)),
                "{:?} of {} sent twice",
                leg.step,
                leg.position
            );
        }
    }
}

/// The reconciliation line of this process's first tick: the difference, USD.
pub fn reconciled(agent: &Agent) -> f64 {
    let line = super::wait_for(
        &agent.log,
        "reconciled with the chain",
        Duration::from_secs(60),
    );
    line.split("difference $")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no difference in {line:?}"))
}
