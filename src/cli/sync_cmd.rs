//! `athena sync status|flush|verify`. With an agent running, status and flush go through its
//! API ([`super::remote`]): a flush there asks the agent's worker for a pass and watches the
//! outbox drain; verify needs the agent stopped.

use super::{Exit, now_ms, open_store, open_store_read_only, remote};
use athena_config::Config;
use athena_sync::SyncStatus;
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
            let s = match remote::call(config, |a| a.get::<SyncStatus>("/sync/status", &[]))? {
                Some(s) => s,
                None => athena_sync::status(
                    &open_store_read_only(config)?,
                    super::agent_now_ms(config),
                )?,
            };
            print_status(&s, *json)?;
        }
        SyncCommand::Verify => {
            remote::require_stopped(config, "athena sync verify")?;
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
            if let Some(flushed) = remote::call(config, flush_remote)? {
                return print_remote_flush(&flushed);
            }
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

fn print_status(s: &SyncStatus, json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let age =
        |ms: u64| humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string();
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
    Ok(())
}

/// How long a flush through the agent watches its outbox drain.
const FLUSH_WATCH: std::time::Duration = std::time::Duration::from_secs(30);

/// What a flush through the agent saw.
struct RemoteFlush {
    /// The agent's answer to the request.
    message: String,
    /// The outbox at the end of the watch.
    after: SyncStatus,
    /// Rows delivered and dead-lettered over the watch (differences of the store's totals).
    delivered: u64,
    dead_lettered: u64,
    /// How long it watched.
    secs: f64,
}

/// Asks the running agent's worker for a pass, then watches the outbox until it is empty or
/// [`FLUSH_WATCH`] passes. The API does not report what the worker's pass did: the counts are
/// the differences of the store's totals over the watch (other passes included), and the rows
/// to retry are not known.
fn flush_remote(agent: &remote::Agent) -> Result<RemoteFlush, remote::RemoteError> {
    let before = agent.get::<SyncStatus>("/sync/status", &[])?;
    let applied = agent.post::<crate::control::Applied>("/sync/flush", None)?;
    let started = std::time::Instant::now();
    let mut after = agent.get::<SyncStatus>("/sync/status", &[])?;
    while after.queue_depth > 0 && started.elapsed() < FLUSH_WATCH {
        std::thread::sleep(std::time::Duration::from_millis(250));
        after = agent.get::<SyncStatus>("/sync/status", &[])?;
    }
    Ok(RemoteFlush {
        message: applied.message,
        delivered: after.rows_delivered.saturating_sub(before.rows_delivered),
        dead_lettered: after
            .rows_dead_lettered
            .saturating_sub(before.rows_dead_lettered),
        secs: started.elapsed().as_secs_f64(),
        after,
    })
}

fn print_remote_flush(f: &RemoteFlush) -> anyhow::Result<()> {
    outln!("{}", f.message);
    outln!(
        "sync flush: {} rows left in the outbox (the agent's worker, over {:.1} s: {} delivered, {} dead-lettered; rows to retry are not known through the API)",
        f.after.queue_depth,
        f.secs,
        f.delivered,
        f.dead_lettered
    );
    if f.after.queue_depth > 0 && f.after.health.consecutive_failures > 0 {
        anyhow::bail!(
            "the sinks did not take everything: {}",
            f.after.health.last_error
        );
    }
    Ok(())
}
