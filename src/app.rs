//! Start-up and ordered shutdown of the long-running agent process (`athena run`).
//!
//! Today it opens the store and runs the services that exist: the memory pruning service and the
//! sync worker. The agent loop and API join this lifecycle as they are built. Shutdown order:
//! stop the services, let the sync worker drain with a deadline, close the store. Store calls run on
//! `spawn_blocking` (no blocking redb call on an async worker thread).

use crate::clock::Clock;
use anyhow::Context;
use athena_config::Config;
use athena_storage::Store;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// Runs until SIGINT or SIGTERM, then shuts down in order: stop services, close the store.
pub async fn run(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<()> {
    let for_open = config.clone();
    let (store, memories) = tokio::task::spawn_blocking(move || {
        let store = open_store(&for_open)?;
        let memories = store.read(|r| r.memory_count())?;
        Ok::<_, athena_storage::StoreError>((store, memories))
    })
    .await?
    .with_context(|| format!("opening the store in {}", config.agent.data_dir.display()))?;
    let store = Arc::new(store);
    tracing::info!(
        path = %store.path().display(),
        open_ms = store.open_report.micros / 1000,
        repaired = store.open_report.repaired,
        "store open"
    );
    println!(
        "athena: store open at {} ({} memories); pruning every {}; Ctrl-C to stop",
        store.path().display(),
        memories,
        humantime::format_duration(config.memory.prune_interval)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let deadline = config.recovery.shutdown_deadline;
    let pruning = tokio::spawn(pruning_service(
        store.clone(),
        clock.clone(),
        config.memory.prune_interval,
        stop_rx.clone(),
    ));
    let sync = match athena_sync::Sinks::from_config(&config).await {
        Ok(sinks) => {
            println!(
                "athena: syncing documents to {} and objects to {}",
                sinks.documents.name(),
                sinks.objects.name()
            );
            let now = clock.clone();
            let worker = athena_sync::Worker::new(
                store.clone(),
                sinks.documents,
                sinks.objects,
                &config.sync,
                config.agent.seed,
                Arc::new(move || now.now_ms()),
            );
            Some(tokio::spawn(worker.run(
                stop_rx,
                Arc::new(Notify::new()),
                deadline,
            )))
        }
        Err(e) => {
            // The agent works offline: changes stay in the outbox until sync runs again.
            println!("athena: sync is off ({e}); changes stay in the outbox");
            None
        }
    };
    shutdown_signal().await;
    println!("athena: stopping");
    stop_tx.send(true).ok();
    match tokio::time::timeout(deadline, pruning).await {
        Ok(joined) => joined?,
        Err(_) => tracing::warn!("pruning service did not stop within the shutdown deadline"),
    }
    if let Some(sync) = sync {
        // The worker drains for at most `deadline` itself; allow it that plus a margin.
        match tokio::time::timeout(deadline + std::time::Duration::from_secs(5), sync).await {
            Ok(joined) => joined?,
            Err(_) => {
                tracing::warn!("sync worker did not stop in time; its rows stay in the outbox")
            }
        }
    }
    drop(store);
    println!("athena: stopped cleanly");
    Ok(())
}

/// Opens the store of `config` read-write, with its store settings applied.
pub fn open_store(config: &Config) -> Result<Store, athena_storage::StoreError> {
    let mut store = Store::open(&config.agent.data_dir, &config.memory)?;
    store.set_quick_repair(config.recovery.quick_repair);
    Ok(store)
}

/// Prunes memory every `interval` of agent time until told to stop.
async fn pruning_service(
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    interval: std::time::Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(clock.wall_duration(interval)) => {}
            _ = stop.changed() => return,
        }
        let store = store.clone();
        let now = clock.now_ms();
        match tokio::task::spawn_blocking(move || store.prune(now)).await {
            Ok(Ok(report)) => println!(
                "athena: pruned: removed {} merged {} compacted {} cold {} evicted {} reclaimed {} B",
                report.removed_low_confidence,
                report.merged,
                report.compacted,
                report.migrated_cold,
                report.evicted,
                report.bytes_reclaimed
            ),
            Ok(Err(e)) => tracing::error!(error = %e, "pruning failed"),
            Err(e) => tracing::error!(error = %e, "pruning task panicked"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
