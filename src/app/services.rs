//! The background services of a session beside the agent loop: pruning and checkpoints, and
//! joining a service at shutdown with a deadline.

use super::reopen::Unwritable;
use crate::clock::Clock;
use athena_config::Config;
use athena_storage::{CorruptRecord, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the pruning service needs.
pub(super) struct Pruning {
    pub store: Arc<Store>,
    pub clock: Arc<dyn Clock>,
    /// The agent time of the last committed tick (0: none yet).
    pub agent_time: Arc<AtomicU64>,
    /// Agent time between two passes.
    pub interval: Duration,
    pub stop: watch::Receiver<bool>,
    /// Memories removed so far (the status line shows it).
    pub pruned: Arc<AtomicU64>,
    /// Corrupt records a pass skipped.
    pub findings: mpsc::UnboundedSender<CorruptRecord>,
    /// Set when the store cannot be written.
    pub fault: watch::Sender<Option<Unwritable>>,
    /// Told each pass's report.
    pub monitor: Arc<crate::monitor::Monitor>,
}

/// Prunes memory every `interval` of agent time, at the agent's time (the last committed
/// tick), until told to stop. A corrupt record is skipped by the pass and sent to `findings`
/// (the agent loop trips memory_corruption once for it); a store that cannot be written ends
/// the service and is reported on `fault`.
pub(super) async fn pruning(p: Pruning) {
    let Pruning {
        store,
        clock,
        agent_time,
        interval,
        mut stop,
        pruned,
        findings,
        fault,
        monitor,
    } = p;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(clock.wall_duration(interval)) => {}
            _ = stop.changed() => return,
        }
        let store = store.clone();
        // Memories age on the agent's time: the last committed tick, not a clock the agent
        // may lag behind (at a high time scale it would prune what it just learned).
        let now = match agent_time.load(Ordering::Relaxed) {
            0 => clock.now_ms(),
            at => at,
        };
        match tokio::task::spawn_blocking(move || store.prune(now)).await {
            Ok(Ok(report)) => {
                monitor.on_prune(&report);
                // The agent's status line shows the running total; the details go to the log.
                pruned.fetch_add(
                    (report.removed_low_confidence
                        + report.merged
                        + report.migrated_cold
                        + report.evicted) as u64,
                    Ordering::Relaxed,
                );
                tracing::info!(
                    removed = report.removed_low_confidence,
                    merged = report.merged,
                    compacted = report.compacted,
                    cold = report.migrated_cold,
                    evicted = report.evicted,
                    corrupt = report.corrupt.len(),
                    reclaimed_bytes = report.bytes_reclaimed,
                    "pruned"
                );
                for bad in report.corrupt {
                    findings.send(bad).ok();
                }
            }
            Ok(Err(e)) if e.needs_reopen() => {
                fault.send(Some(Unwritable::now(&e))).ok();
                return;
            }
            Ok(Err(e)) => tracing::error!(error = %e, "pruning failed"),
            Err(e) => tracing::error!(error = %e, "pruning task panicked"),
        }
    }
}

/// Takes a checkpoint at agent time `at_ms` and thins the old ones; a failure is logged (the
/// store stays the source of truth), never fatal.
pub(super) async fn checkpoint(store: &Arc<Store>, config: &Config, at_ms: u64) {
    let (st, cfg) = (store.clone(), config.clone());
    let result = tokio::task::spawn_blocking(move || {
        let dir = &cfg.agent.data_dir;
        let entry = crate::checkpoint::create(&st, dir, &cfg, at_ms)?;
        let keep = cfg.recovery.checkpoint_hourly_retention.as_millis() as u64;
        crate::checkpoint::thin(&st, dir, keep, at_ms)?;
        Ok::<_, crate::checkpoint::CheckpointError>(entry)
    })
    .await;
    match result {
        Ok(Ok(e)) => tracing::info!(id = %e.id, bytes = e.bytes, "checkpoint"),
        Ok(Err(e)) => {
            let e = athena_sync::one_line(&e);
            tracing::error!(error = %e, "checkpoint failed");
            println!("athena: checkpoint failed: {e}");
        }
        Err(e) => tracing::error!(error = %e, "checkpoint task panicked"),
    }
}

/// Waits for a stopped service for at most `deadline`.
pub(super) async fn join(name: &str, task: tokio::task::JoinHandle<()>, deadline: Duration) {
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(service = name, error = %e, "service panicked"),
        Err(_) => tracing::warn!(service = name, "service did not stop within the deadline"),
    }
}
