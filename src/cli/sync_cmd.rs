//! `athena sync status|flush`.

use super::{Exit, now_ms, open_store, open_store_read_only};
use athena_config::Config;
use clap::Subcommand;
use std::sync::Arc;

/// Sync commands.
#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Queue depth, oldest unsynced change, cursor and lag per sink, dead letters, writes sent
    /// and coalesced, estimated cost.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Drain the outbox to the configured sinks now (the agent must not be running).
    Flush,
    /// Compare every synced document and object with the local store; list differences and
    /// exit 1 when there are any.
    Verify,
}

pub(super) fn run(config: &Config, cmd: &SyncCommand) -> anyhow::Result<()> {
    match cmd {
        SyncCommand::Status { json } => {
            let store = open_store_read_only(config)?;
            let s = athena_sync::status(&store, now_ms())?;
            if *json {
                outln!("{}", serde_json::to_string_pretty(&s)?);
                return Ok(());
            }
            let age = |ms: u64| {
                humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
            };
            outln!(
                "outbox: {} rows, oldest unsynced change {} old",
                s.queue_depth,
                age(s.oldest_unsynced_ms)
            );
            for (name, r) in [("documents", &s.documents), ("objects", &s.objects)] {
                outln!(
                    "  {name:<9} pending {:>8}  cursor {:>10}  lag {}",
                    r.pending,
                    r.cursor,
                    age(r.lag_ms)
                );
            }
            outln!("dead letters: {}", s.dead_letters);
            let at = |ms: u64| {
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
                )
            };
            let h = &s.health;
            if h.consecutive_failures > 0 {
                outln!(
                    "failing: {} passes in a row since {} (agent time); last error: {}",
                    h.consecutive_failures,
                    at(h.failing_since_ms),
                    h.last_error
                );
            } else if !h.last_error.is_empty() {
                outln!(
                    "delivering; last error at {} (agent time): {}",
                    at(h.last_error_ms),
                    h.last_error
                );
            }
            outln!(
                "delivered {} rows with {} document writes and {} object writes ({} rows coalesced away, {} folded while offline); estimated cost ${:.4}",
                s.rows_delivered,
                s.document_writes,
                s.object_writes,
                s.rows_coalesced,
                s.rows_compacted,
                s.estimated_cost_usd
            );
        }
        SyncCommand::Verify => {
            let store = Arc::new(open_store_read_only(config)?);
            let runtime = super::runtime()?;
            let report = runtime.block_on(async {
                let sinks = athena_sync::Sinks::from_config(config).await?;
                athena_sync::verify(
                    &store,
                    sinks.firestore.as_deref(),
                    sinks.object_store.as_deref(),
                )
                .await
            })?;
            let summary = format!(
                "{} documents and {} objects compared, {} keys not yet synced",
                report.documents, report.objects, report.pending
            );
            if report.differences.is_empty() {
                outln!("sync verify: the cloud matches the store ({summary})");
                return Ok(());
            }
            let mut msg = format!(
                "sync verify: {} difference(s) ({summary})",
                report.differences.len()
            );
            for d in &report.differences {
                msg.push_str(&format!("\n  {}: {}", d.key, d.problem));
            }
            return Err(Exit {
                code: 1,
                message: msg,
            }
            .into());
        }
        SyncCommand::Flush => {
            let store = Arc::new(open_store(config)?);
            let runtime = super::runtime()?;
            let report = runtime.block_on(async {
                let sinks = athena_sync::Sinks::from_config(config).await?;
                let mut worker = athena_sync::Worker::new(
                    store.clone(),
                    sinks.documents,
                    sinks.objects,
                    &config.sync,
                    config.agent.seed,
                    Arc::new(now_ms),
                );
                worker.drain().await
            })?;
            let left = store.outbox_len()?;
            outln!(
                "sync flush: {} rows left in the outbox (last pass: {} delivered, {} dead-lettered, {} to retry)",
                left,
                report.delivered,
                report.dead_lettered,
                report.retry
            );
            if let Some(e) = report.last_error {
                anyhow::bail!("the sinks did not take everything: {e}");
            }
        }
    }
    Ok(())
}
