//! `athena memory stats|prune|recall`.

use super::{now_ms, open_store};
use anyhow::Context;
use athena_config::Config;
use athena_storage::{Category, MemoryType, RecallQuery};
use clap::{Args, Subcommand};

/// Memory commands.
#[derive(Debug, Subcommand)]
pub enum MemoryCommand {
    /// Memories by category and tier, by type, and cold segments.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run one pruning pass now and print its report.
    Prune,
    /// Recall memories (JSON, one per line, newest first).
    Recall(RecallArgs),
}

/// Filters of `memory recall`.
#[derive(Debug, Args)]
pub struct RecallArgs {
    /// Category (e.g. pool_behavior).
    #[arg(long)]
    category: Option<String>,
    /// Memory type (e.g. pattern).
    #[arg(long = "type")]
    kind: Option<String>,
    /// Pool id.
    #[arg(long)]
    pool: Option<String>,
    /// Pattern key.
    #[arg(long)]
    pattern_key: Option<String>,
    /// Only memories newer than this age (e.g. 2h, 7d).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Minimum confidence, 0–1.
    #[arg(long)]
    min_confidence: Option<f64>,
    /// Most results.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

pub(super) fn run(config: &Config, cmd: &MemoryCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    match cmd {
        MemoryCommand::Stats { json } => {
            let stats = store.memory_stats()?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
                return Ok(());
            }
            println!(
                "{:<24} {:>8} {:>8} {:>8}",
                "category", "hot", "warm", "cold"
            );
            for (name, c) in &stats.by_category {
                println!("{name:<24} {:>8} {:>8} {:>8}", c.hot, c.warm, c.cold);
            }
            let t = stats.total;
            println!("{:<24} {:>8} {:>8} {:>8}", "total", t.hot, t.warm, t.cold);
            let types: Vec<String> = stats
                .by_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            println!("by type: {}", types.join(", "));
            println!(
                "local records: {} bytes; cold segments: {} ({} bytes)",
                stats.local_bytes, stats.segments, stats.segment_bytes
            );
        }
        MemoryCommand::Prune => {
            let report = store.prune(now_ms())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        MemoryCommand::Recall(a) => {
            if let Some(c) = a.min_confidence.filter(|c| !(0.0..=1.0).contains(c)) {
                anyhow::bail!("--min-confidence must be in [0, 1], got {c}");
            }
            let now = now_ms();
            let q = RecallQuery {
                category: a
                    .category
                    .as_deref()
                    .map(str::parse::<Category>)
                    .transpose()
                    .context("--category")?,
                kind: a
                    .kind
                    .as_deref()
                    .map(str::parse::<MemoryType>)
                    .transpose()
                    .context("--type")?,
                pool: a.pool.clone(),
                pattern_key: a.pattern_key.clone(),
                since_ms: a.since.map(|d| now.saturating_sub(d.as_millis() as u64)),
                until_ms: None,
                min_confidence: a.min_confidence,
                limit: a.limit,
            };
            for m in store.recall(&q, now)?.iter() {
                println!("{}", serde_json::to_string(m)?);
            }
        }
    }
    Ok(())
}
