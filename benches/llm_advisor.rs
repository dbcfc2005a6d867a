//! The LLM advisor over a simulated month (issue 16 §5): model calls with the layers
//! (templates, exact and numeric-slot caches, compression, batching) against the naive path's
//! one call per question, and the time a tick spends in the advisor. The model is the
//! in-process mock (`athena::llm::mock`), so the figures count calls, not model latency; the
//! same month against the real model is `athena backtest` (docs/benchmarks.md). Two runs:
//! a model that vetoes every entry (the rules propose again and again: the densest question
//! stream) and one that approves every entry.
//!
//! `cargo bench --bench llm_advisor`

use athena::backtest;
use athena::llm::mock::{Fault, Mock};
use athena_storage::Store;

fn month(fault: Fault, seed: u64) {
    let mock = Mock::start(fault);
    let dir = tempfile::tempdir().unwrap();
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.seed = seed;
    config.llm.enabled = true;
    config.llm.endpoint = mock.url.clone();
    config.llm.model = "mock".into();
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let report = backtest::run(&config, &store, 30, |_, _| {}).unwrap();
    let l = report.llm.unwrap();
    assert_eq!(l.model.calls, mock.requests());
    println!(
        "| {fault:?} | {seed} | {} | {} | {} | {:.0}% | {} / {} / {} | {} in {} calls | {:.3} ms | {} |",
        l.questions,
        l.questions,
        l.model.calls,
        100.0 * (1.0 - l.model.calls as f64 / l.questions.max(1) as f64),
        l.template.hits,
        l.exact.hits,
        l.slot.hits,
        l.batching.hits,
        l.model.batched_calls,
        report.advise_ms_per_tick,
        report.trades,
    );
}

fn main() {
    println!(
        "| model | seed | questions | calls without layers | calls with layers | fewer | template / exact / slot hits | batched | advisor ms per tick | trades |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|---|---:|---:|");
    for seed in [42, 7] {
        for fault in [Fault::Veto, Fault::None] {
            month(fault, seed);
        }
    }
}
