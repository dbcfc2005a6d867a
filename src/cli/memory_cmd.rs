//! `athena memory stats|prune|recall`: from the store, or through the running agent's API
//! ([`super::remote`]) while it holds the store; printed by the same code either way.

use super::{now_ms, open_store, open_store_read_only, parse_duration_arg, parse_limit, remote};
use athena_config::Config;
use athena_storage::{Category, Memory, MemoryStats, MemoryType, PruneReport, RecallQuery};
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
    match cmd {
        MemoryCommand::Stats { json } => {
            let stats =
                match remote::call(config, |a| a.get::<MemoryStats>("/memories/stats", &[]))? {
                    Some(s) => s,
                    None => open_store_read_only(config)?.memory_stats()?,
                };
            print_stats(&stats, *json)
        }
        MemoryCommand::Prune => {
            let report = match remote::call(config, prune_remote)? {
                Some(r) => r,
                None => open_store(config)?.prune(now_ms())?,
            };
            outln!("{}", serde_json::to_string_pretty(&report)?);
            Ok(())
        }
        MemoryCommand::Recall(a) => {
            let memories = match remote::call(config, |agent| {
                agent.get::<Vec<Memory>>("/memories/recent", &a.query())
            })? {
                Some(m) => m,
                None => recall_local(config, a)?,
            };
            for m in &memories {
                outln!("{}", serde_json::to_string(m)?);
            }
            Ok(())
        }
    }
}

fn prune_remote(agent: &remote::Agent) -> Result<PruneReport, remote::RemoteError> {
    let applied = agent.post::<crate::control::Applied>("/memory/prune", None)?;
    let detail = applied.detail.unwrap_or_default();
    serde_json::from_value(detail).map_err(|source| remote::RemoteError::Decode {
        path: "/memory/prune".into(),
        source,
    })
}

impl RecallArgs {
    /// The filters as `/memories/recent` takes them.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("limit", remote::list_limit(self.limit))];
        let mut add = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                q.push((k, v));
            }
        };
        add("category", self.category.map(|c| c.as_str().to_string()));
        add("type", self.kind.map(|t| t.as_str().to_string()));
        add("pool", self.pool.clone());
        add("pattern_key", self.pattern_key.clone());
        add(
            "since",
            self.since
                .map(|d| humantime::format_duration(d).to_string()),
        );
        add("min_confidence", self.min_confidence.map(|c| c.to_string()));
        q
    }
}

fn recall_local(config: &Config, a: &RecallArgs) -> anyhow::Result<Vec<Memory>> {
    let store = open_store_read_only(config)?;
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
    Ok(store.recall(&q, now)?.as_ref().clone())
}

fn print_stats(stats: &MemoryStats, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(stats)?);
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
    Ok(())
}
