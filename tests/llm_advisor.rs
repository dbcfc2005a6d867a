//! The LLM advisor in a backtest against an in-process OpenAI-compatible mock that injects
//! faults: timeouts, 429s, 500s, malformed JSON, out-of-range numbers and a batch reply
//! missing an item. Each fault leaves the rules to decide alone and counts against the right
//! breaker; a number outside the schema never reaches a size; a batch reply missing an item is
//! asked again one question at a time; answers are cached, persisted with their outbox rows
//! and reloaded. The real model is in `llm_real.rs`.

use athena::agent::strategy::Intent;
use athena::backtest::{self, Report};
use athena::journal::DecisionRecord;
use athena::llm::mock::{Fault, Mock};
use athena::llm::{AdviceSource, Advisor, CacheEntry};
use athena::risk::model::Decision;
use std::time::Duration;

fn start_mock(fault: Fault) -> (Mock, String) {
    let mock = Mock::start(fault);
    let url = mock.url.clone();
    (mock, url)
}

/// A backtest of `days` with the advisor on `url`; one timeout or one failure trips its
/// breaker, so each fault's breaker shows in the report.
fn run(
    url: &str,
    days: u64,
    dir: &std::path::Path,
) -> (Report, Vec<DecisionRecord>, athena_config::Config) {
    let mut config = athena_config::Config::default();
    config.agent.data_dir = dir.to_path_buf();
    config.llm.enabled = true;
    config.llm.endpoint = url.to_string();
    config.llm.model = "mock".into();
    config.llm.timeout = Duration::from_secs(1);
    config.llm.max_retries = 1;
    config.risk.llm_timeout_threshold = 1;
    config.risk.api_failures_threshold = 1;
    let store = athena_storage::Store::open(dir, &config.memory).unwrap();
    let report = backtest::run(&config, &store, days, |_, _| {}).unwrap();
    let decisions = backtest::decisions(&store).unwrap();
    (report, decisions, config)
}

fn entries(decisions: &[DecisionRecord]) -> impl Iterator<Item = &DecisionRecord> {
    decisions
        .iter()
        .filter(|d| matches!(d.intent, Intent::Open { .. } | Intent::Rebalance { .. }))
}

/// Asserts the rules decided alone: the run went on, entries were decided without a model
/// answer, and `breaker` tripped. Under llm_timeout (rule-based only) entries are still
/// executed; api_failures pauses trading, so there they are refused by the breaker.
fn rules_decided_alone(report: &Report, decisions: &[DecisionRecord], breaker: &str) {
    let l = report.llm.expect("the advisor was on");
    assert!(l.unanswered > 0, "{l:?}");
    assert!(
        report.breaker_trips.contains_key(breaker),
        "{breaker} did not trip: {:?}",
        report.breaker_trips
    );
    assert!(entries(decisions).next().is_some(), "no entry was decided");
    if breaker == "llm_timeout" {
        let executed = entries(decisions)
            .filter(|d| d.executed_usd.is_some())
            .count();
        assert!(
            executed > 0,
            "no entry executed: the rules must decide alone"
        );
    }
    for d in entries(decisions) {
        if let Some(a) = &d.advice {
            assert_ne!(
                a.source,
                AdviceSource::Model,
                "a failed call answered: {d:?}"
            );
        }
    }
}

#[test]
fn answers_are_batched_cached_persisted_and_reloaded() {
    let (mock, url) = start_mock(Fault::None);
    let dir = tempfile::tempdir().unwrap();
    let (report, decisions, config) = run(&url, 8, dir.path());
    let l = report.llm.unwrap();
    assert!(l.questions > 0 && l.model.calls > 0, "{l:?}");
    assert_eq!(l.model.calls, mock.requests());
    assert!(
        l.model.batched_calls > 0,
        "the first tick's opens share a call: {l:?}"
    );
    assert_eq!(l.model.batched_calls, mock.batch_requests());
    assert!(l.model.calls < l.questions, "{l:?}");
    assert_eq!(
        (l.unanswered, l.model.failures, l.model.timeouts),
        (0, 0, 0)
    );
    // Every entry decided after the observation period carries its answer.
    for d in entries(&decisions) {
        let a = d
            .advice
            .as_ref()
            .expect("every entry was put to the advisor");
        if a.source != AdviceSource::Template {
            assert_eq!((a.advice.priority, a.advice.size_factor), (7, 1.0));
        }
    }
    // Persisted with outbox rows; reloaded by a new advisor.
    let store = athena_storage::Store::open(dir.path(), &config.memory).unwrap();
    let cached: Vec<(Vec<u8>, CacheEntry)> = store.read(|r| r.llm_cache_all()).unwrap();
    assert!(!cached.is_empty());
    // Every answer was written with its outbox row; those older than the TTL (24 h) were
    // removed, with theirs.
    let rows = store.outbox_peek(0, usize::MAX).unwrap();
    let cache_rows = |delete: bool| {
        rows.iter()
            .filter(|(_, r)| match &r.op {
                athena_storage::OutboxOp::Delete { collection, .. } => {
                    delete && collection == athena::llm::CACHE_COLLECTION
                }
                athena_storage::OutboxOp::Upsert { collection, .. } => {
                    !delete && collection == athena::llm::CACHE_COLLECTION
                }
                _ => false,
            })
            .count() as u64
    };
    assert_eq!(cache_rows(false), l.model.answers);
    assert_eq!(cache_rows(true), l.model.answers - cached.len() as u64);
    let last_ms = cached.iter().map(|(_, e)| e.created_ms).max().unwrap();
    let advisor = Advisor::open(&config, &store, last_ms).unwrap();
    assert_eq!(advisor.cached(), cached.len());
}

#[test]
fn a_veto_is_journaled_with_its_reason_and_written_as_an_llm_memory() {
    let (_mock, url) = start_mock(Fault::Veto);
    let dir = tempfile::tempdir().unwrap();
    let (report, decisions, config) = run(&url, 4, dir.path());
    let vetoed: Vec<&DecisionRecord> = entries(&decisions)
        .filter(|d| matches!(&d.decision, Decision::Reject { rule, .. } if rule.as_str() == "advisor_veto"))
        .collect();
    assert!(!vetoed.is_empty(), "{report:?}");
    assert!(vetoed.iter().all(|d| d.executed_usd.is_none()));
    assert_eq!(report.trades, 0, "nothing entered against a veto");
    let store = athena_storage::Store::open(dir.path(), &config.memory).unwrap();
    let from_llm = store
        .recall(
            &athena_storage::RecallQuery {
                category: Some(athena_storage::Category::MarketAnalysis),
                limit: 100,
                ..Default::default()
            },
            u64::MAX / 2,
        )
        .unwrap();
    assert!(
        from_llm
            .iter()
            .any(|m| m.source == athena_storage::Source::Llm),
        "no memory carries the LLM as its source"
    );
}

#[test]
fn a_timeout_leaves_the_rules_and_trips_llm_timeout() {
    let (_mock, url) = start_mock(Fault::Slow);
    let dir = tempfile::tempdir().unwrap();
    let (report, decisions, _) = run(&url, 4, dir.path());
    rules_decided_alone(&report, &decisions, "llm_timeout");
    assert!(report.llm.unwrap().model.timeouts > 0);
}

#[test]
fn http_errors_leave_the_rules_and_count_as_api_failures() {
    for fault in [Fault::TooMany, Fault::ServerError] {
        let (mock, url) = start_mock(fault);
        let dir = tempfile::tempdir().unwrap();
        let (report, decisions, _) = run(&url, 4, dir.path());
        rules_decided_alone(&report, &decisions, "api_failures");
        let l = report.llm.unwrap();
        assert!(l.model.failures > 0, "{fault:?}: {l:?}");
        // Retried once (max_retries = 1) before giving up.
        assert!(mock.requests() >= 2 * l.model.failures, "{fault:?}");
    }
}

#[test]
fn malformed_and_out_of_range_replies_are_refused_and_never_reach_a_size() {
    for fault in [Fault::Malformed, Fault::OutOfRange] {
        let (_mock, url) = start_mock(fault);
        let dir = tempfile::tempdir().unwrap();
        let (report, decisions, config) = run(&url, 4, dir.path());
        rules_decided_alone(&report, &decisions, "api_failures");
        let l = report.llm.unwrap();
        assert!(
            l.model.batch_fallbacks > 0,
            "{fault:?}: the batch was asked again one by one"
        );
        for d in entries(&decisions) {
            if let Some(a) = &d.advice {
                assert!((0.25..=1.0).contains(&a.advice.size_factor), "{d:?}");
            }
            // No size came from the advisor: what was allowed is the rules' own size.
            if let Decision::Approve { size_usd, .. } = d.decision {
                assert!(size_usd <= config.risk.base_position_usd + 1e-9);
            }
        }
    }
}

#[test]
fn a_batch_reply_missing_an_item_is_asked_again_one_by_one() {
    let (mock, url) = start_mock(Fault::BatchMissingItem);
    let dir = tempfile::tempdir().unwrap();
    let (report, decisions, _) = run(&url, 4, dir.path());
    let l = report.llm.unwrap();
    assert!(l.model.batch_fallbacks > 0, "{l:?}");
    assert_eq!((l.unanswered, l.model.failures), (0, 0), "{l:?}");
    assert!(mock.batch_requests() > 0);
    for d in entries(&decisions) {
        assert!(
            d.advice.is_some(),
            "every question got its own answer: {d:?}"
        );
    }
}
