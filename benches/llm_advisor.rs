//! The LLM advisor over a simulated month (issue 16 §5): model calls with the layers
//! (templates, exact and numeric-slot caches, compression, batching) against the naive path's
//! one call per question, and the time a tick spends in the advisor. The model is the
//! in-process mock (`athena::llm::mock`), so the figures count calls, not model latency; the
//! same month against the real model is `athena backtest` (docs/benchmarks.md). Two runs:
//! a model that vetoes every entry (the rules propose again and again: the densest question
//! stream) and one that approves every entry.
//!
//! With `LLM_EMBEDDINGS_ENDPOINT` set (a llama-server started with `--embeddings`:
//! `scripts/llama-server.sh start-embeddings DIR` writes DIR/embeddings.addr), it also puts the
//! labelled prompt pairs of `tests/llm_false_hits.rs` through a plain embedding-similarity
//! cache, for contrast with the numeric-slot cache's zero false hits.
//!
//! `cargo bench --bench llm_advisor`

#[path = "../tests/support/llm_pairs.rs"]
mod llm_pairs;

use athena::backtest;
use athena::llm::mock::{Fault, Mock};
use athena_storage::Store;
use serde_json::{Value, json};

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
    if let Ok(endpoint) = std::env::var("LLM_EMBEDDINGS_ENDPOINT") {
        embedding_contrast(&endpoint);
    }
}

/// The embeddings of `texts` from an OpenAI-compatible `/embeddings` endpoint.
fn embed(endpoint: &str, texts: &[String]) -> Vec<Vec<f64>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    let mut out = Vec::new();
    for chunk in texts.chunks(32) {
        let body = json!({"input": chunk, "model": "embedding"});
        let reply: Value = rt.block_on(async {
            let response = client
                .post(format!("{endpoint}/embeddings"))
                .json(&body)
                .send()
                .await
                .expect("the embeddings endpoint answers");
            response.json().await.expect("a JSON reply")
        });
        let mut data: Vec<&Value> = reply["data"].as_array().expect("data").iter().collect();
        data.sort_by_key(|d| d["index"].as_u64());
        out.extend(data.iter().map(|d| {
            d["embedding"]
                .as_array()
                .expect("an embedding")
                .iter()
                .map(|x| x.as_f64().expect("a number"))
                .collect::<Vec<f64>>()
        }));
    }
    out
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The labelled pairs through a plain embedding-similarity cache at three thresholds.
fn embedding_contrast(endpoint: &str) {
    let config = athena_config::LlmConfig {
        model: "smollm2".into(),
        ..athena_config::LlmConfig::default()
    };
    let pairs = llm_pairs::labelled(&config, 20);
    let texts: Vec<String> = pairs
        .iter()
        .flat_map(|p| {
            [
                llm_pairs::question(&p.a).render(2000).text,
                llm_pairs::question(&p.b).render(2000).text,
            ]
        })
        .collect();
    let vectors = embed(endpoint, &texts);
    let thresholds = [0.95, 0.99, 0.999];
    let mut rows: Vec<(&str, bool, u64, [u64; 3])> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        let c = cosine(&vectors[2 * i], &vectors[2 * i + 1]);
        let row = match rows.iter().position(|r| r.0 == p.kind) {
            Some(r) => &mut rows[r],
            None => {
                rows.push((p.kind, p.same, 0, [0; 3]));
                rows.last_mut().unwrap()
            }
        };
        row.2 += 1;
        for (k, t) in thresholds.iter().enumerate() {
            row.3[k] += u64::from(c >= *t);
        }
    }
    println!();
    println!(
        "| pair kind | label | pairs | embedding cosine ≥ 0.95 served | ≥ 0.99 served | ≥ 0.999 served |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (kind, same, n, served) in &rows {
        let label = if *same { "may share" } else { "different" };
        println!(
            "| {kind} | {label} | {n} | {} | {} | {} |",
            served[0], served[1], served[2]
        );
    }
}
