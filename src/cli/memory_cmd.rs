//! `athena memory stats|prune|recall`.

use super::{now_ms, open_store, open_store_read_only, parse_duration_arg, parse_limit};
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
    #[arg(long, value_parser = str::parse::<Category>)]
    category: Option<Category>,
    /// Memory type (e.g. pattern).
    #[arg(long = "type", value_parser = str::parse::<MemoryType>)]
    kind: Option<MemoryType>,
    /// Pool id.
    #[arg(long)]
    pool: Option<String>,
    /// Pattern key.
    #[arg(long)]
    pattern_key: Option<String>,
    /// Only memories newer than this age (e.g. 2h, 7d).
    #[arg(long, value_parser = parse_duration_arg)]
    since: Option<std::time::Duration>,
    /// Minimum confidence, 0–1.
    #[arg(long, value_parser = parse_confidence)]
    min_confidence: Option<f64>,
    /// Most results (at least 1).
    #[arg(long, default_value_t = 50, value_parser = parse_limit)]
    limit: usize,
}

fn parse_confidence(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(c) if (0.0..=1.0).contains(&c) => Ok(c),
        Ok(c) => Err(format!("must be in [0, 1], got {c}")),
        Err(e) => Err(e.to_string()),
    }
}

pub(super) fn run(config: &Config, cmd: &MemoryCommand) -> anyhow::Result<()> {
    // Only pruning writes; inspection never changes a byte of the store.
    let store = match cmd {
        MemoryCommand::Prune => open_store(config)?,
        MemoryCommand::Stats { .. } | MemoryCommand::Recall(_) => open_store_read_only(config)?,
    };
    match cmd {
        MemoryCommand::Stats { json } => {
            let stats = store.memory_stats()?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&stats)?);
                return Ok(());
            }
            outln!(
                "{:<24} {:>8} {:>8} {:>8}",
                "category",
                "hot",
                "warm",
                "cold"
            );
            for (name, c) in &stats.by_category {
                outln!("{name:<24} {:>8} {:>8} {:>8}", c.hot, c.warm, c.cold);
            }
            let t = stats.total;
            outln!("{:<24} {:>8} {:>8} {:>8}", "total", t.hot, t.warm, t.cold);
            let types: Vec<String> = stats
                .by_type
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            outln!("by type: {}", types.join(", "));
            outln!(
                "local records: {} bytes; cold segments: {} ({} bytes)",
                stats.local_bytes,
                stats.segments,
                stats.segment_bytes
            );
        }
        MemoryCommand::Prune => {
            let report = store.prune(now_ms())?;
            outln!("{}", serde_json::to_string_pretty(&report)?);
        }
        MemoryCommand::Recall(a) => {
            let now = now_ms();
            let q = RecallQuery {
                category: a.category,
                kind: a.kind,
                pool: a.pool.clone(),
                pattern_key: a.pattern_key.clone(),
                since_ms: a.since.map(|d| now.saturating_sub(d.as_millis() as u64)),
                until_ms: None,
                min_confidence: a.min_confidence,
                limit: a.limit,
            };
            for m in store.recall(&q, now)?.iter() {
                outln!("{}", serde_json::to_string(m)?);
            }
        }
    }
    Ok(())
}
