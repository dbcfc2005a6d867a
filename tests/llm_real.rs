//! The advisor against a real model: llama.cpp's llama-server with SmolLM2-135M-Instruct,
//! started by scripts/test.sh (scripts/llama-server.sh) on loopback, its URL in
//! `LLM_TEST_ENDPOINT`. A backtest puts its entries to the model through every layer; the
//! model's JSON-schema replies parse into bounded advice, and every answer it gave passed
//! the risk gate. It proves the plumbing, not trading skill.

use athena::agent::strategy::Intent;
use athena::backtest;
use athena::llm::AdviceSource;

fn endpoint() -> String {
    std::env::var("LLM_TEST_ENDPOINT").expect(
        "LLM_TEST_ENDPOINT is not set: run the tests with scripts/test.sh, which starts llama-server (scripts/llama-server.sh)",
    )
}

#[test]
fn a_backtest_consults_the_real_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.llm.enabled = true;
    config.llm.endpoint = endpoint();
    config.llm.model = "smollm2-135m-instruct".into();
    let store = athena_storage::Store::open(dir.path(), &config.memory).unwrap();
    let report = backtest::run(&config, &store, 5, |_, _| {}).unwrap();
    let l = report.llm.expect("the advisor was on");
    println!("{l:#?}");
    assert!(l.model.calls > 0 && l.model.answers > 0, "{l:?}");
    assert!(
        l.model.prompt_tokens > 0 && l.model.reply_tokens > 0,
        "usage is counted"
    );
    assert_eq!(l.model.timeouts, 0, "{l:?}");
    let decisions = backtest::decisions(&store).unwrap();
    let answered: Vec<_> = decisions
        .iter()
        .filter(|d| matches!(d.intent, Intent::Open { .. } | Intent::Rebalance { .. }))
        .filter_map(|d| d.advice.as_ref().map(|a| (d, a)))
        .filter(|(_, a)| a.source == AdviceSource::Model)
        .collect();
    assert!(!answered.is_empty(), "no entry carries the model's answer");
    for (d, a) in answered {
        assert!((0.25..=1.0).contains(&a.advice.size_factor), "{d:?}");
        assert!((1..=10).contains(&a.advice.priority), "{d:?}");
        if let Some(executed) = d.executed_usd {
            // A size the advisor capped is at most its fraction of the base size.
            assert!(
                executed <= a.advice.size_factor * config.risk.base_position_usd + 1e-6,
                "{d:?}"
            );
        }
    }
}
