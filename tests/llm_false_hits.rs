//! The numeric-slot cache against a labelled set of prompt pairs from the advisor's template
//! with different numbers: sign flips, small and large moves, and values just past each
//! field's tolerance. A pair labelled "different" (a sign flip, or a number further than its
//! tolerance) must never be served from the other's answer: zero false hits. For contrast,
//! the same pairs through a plain text-similarity cache (cosine of character-trigram counts
//! of the rendered prompts, the shape of an embedding cache), which serves many of them.
//!
//! `cargo test --test llm_false_hits -- --nocapture` prints the table docs/benchmarks.md
//! records.

#[path = "support/llm_pairs.rs"]
mod llm_pairs;

use athena::llm::cache::{AnswerCache, CacheEntry};
use athena::llm::{Advice, Verdict};
use athena_config::LlmConfig;
use llm_pairs::{labelled, question};
use std::collections::HashMap;

fn trigram_cosine(a: &str, b: &str) -> f64 {
    let grams = |s: &str| {
        let chars: Vec<char> = s.chars().collect();
        let mut m: HashMap<[char; 3], f64> = HashMap::new();
        for w in chars.windows(3) {
            *m.entry([w[0], w[1], w[2]]).or_default() += 1.0;
        }
        m
    };
    let (ga, gb) = (grams(a), grams(b));
    let dot: f64 = ga.iter().map(|(k, v)| v * gb.get(k).unwrap_or(&0.0)).sum();
    let norm = |g: &HashMap<[char; 3], f64>| g.values().map(|v| v * v).sum::<f64>().sqrt();
    dot / (norm(&ga) * norm(&gb))
}

#[test]
fn the_slot_cache_never_serves_a_pair_labelled_different() {
    let config = LlmConfig {
        model: "smollm2".into(),
        ..LlmConfig::default()
    };
    let pairs = labelled(&config, 20);
    assert!(pairs.len() >= 500, "{} pairs", pairs.len());
    let advice = Advice {
        verdict: Verdict::Approve,
        size_factor: 1.0,
        priority: 5,
        reason: String::new(),
    };
    // kind → (pairs, ours served, text-similarity served at 0.95, at 0.99)
    let mut table: Vec<(&str, [u64; 4], bool)> = Vec::new();
    let mut false_hits = Vec::new();
    for p in &pairs {
        let mut cache = AnswerCache::new(&config);
        let (qa, qb) = (question(&p.a), question(&p.b));
        let (ra, rb) = (qa.render(2000).text, qb.render(2000).text);
        cache.insert(CacheEntry {
            exact: cache.exact_key(&qa, &ra),
            slot_key: cache.slot_key(&qa),
            slots: qa.slots.clone(),
            words: qa.words(),
            advice: advice.clone(),
            created_ms: 0,
            tokens: 0,
            usd: 0.0,
        });
        let served = cache.lookup(&qb, &cache.exact_key(&qb, &rb), 1).is_some();
        if served && !p.same {
            false_hits.push(format!("{}: {:?} → {:?}", p.kind, p.a, p.b));
        }
        let cos = trigram_cosine(&ra, &rb);
        let row = match table.iter_mut().find(|(k, _, _)| *k == p.kind) {
            Some(r) => r,
            None => {
                table.push((p.kind, [0; 4], p.same));
                table.last_mut().unwrap()
            }
        };
        row.1[0] += 1;
        row.1[1] += u64::from(served);
        row.1[2] += u64::from(cos >= 0.95);
        row.1[3] += u64::from(cos >= 0.99);
    }
    println!(
        "| pair kind | label | pairs | slot cache served | text similarity ≥ 0.95 served | ≥ 0.99 served |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (kind, [n, ours, t95, t99], same) in &table {
        let label = if *same { "may share" } else { "different" };
        println!("| {kind} | {label} | {n} | {ours} | {t95} | {t99} |");
    }
    let wrong = |i: usize| {
        table
            .iter()
            .filter(|(_, _, same)| !same)
            .map(|(_, c, _)| c[i])
            .sum::<u64>()
    };
    let different: u64 = table.iter().filter(|r| !r.2).map(|r| r.1[0]).sum();
    println!(
        "{} pairs, {different} labelled different: slot cache false hits {}, text similarity ≥ 0.95 false hits {}, ≥ 0.99 {}",
        pairs.len(),
        wrong(1),
        wrong(2),
        wrong(3)
    );
    assert!(false_hits.is_empty(), "false hits: {false_hits:#?}");
    // The cache is useful: most pairs that may share an answer do.
    let (may, shared): (u64, u64) = table
        .iter()
        .filter(|r| r.2)
        .fold((0, 0), |(n, s), r| (n + r.1[0], s + r.1[1]));
    assert!(
        shared * 10 >= may * 9,
        "{shared} of {may} equivalent pairs served"
    );
}
