//! Start-up and ordered shutdown of the long-running agent process (`athena run`).
//!
//! The start is the recovery ladder ([`crate::recovery::start`]): a clean start opens the
//! store, a start after a crash verifies it, restores it if it is corrupt, reconciles and
//! records the recovery. Then the agent loop, the memory pruning service, the scrubber and the
//! sync worker run until SIGINT or SIGTERM, which stops them in order: the agent finishes its
//! current tick, pruning and the scrubber stop, a final checkpoint is taken, the sync worker
//! drains (sending that checkpoint) with a deadline, and the clean-shutdown marker is written
//! last. A market error that is final (a replay's bad line or its end) ends the agent loop:
//! the run then stops in the same order and returns that error (exit 1). On a replay the clock
//! is the replay's own time ([`crate::clock::ReplayClock`]). The agent loop also takes a
//! checkpoint every `recovery.checkpoint_interval` of agent time and thins those older than
//! `recovery.checkpoint_hourly_retention` to one a day; it trips memory_corruption for every
//! corrupt record the scrubber reports. Store calls run on `spawn_blocking` (no blocking redb
//! call on an async worker thread).

use crate::clock::Clock;
use athena_config::Config;
use athena_storage::Store;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// Runs until SIGINT or SIGTERM (or until the agent loop cannot go on, whose error it returns),
/// then shuts down in order: stop services, close the store.
/// The start is the recovery ladder ([`crate::recovery::start`]); with `restore_from` it starts
/// on an empty data directory from that source.
pub async fn run(
    config: Config,
    restore_from: Option<crate::recovery::sources::Source>,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (store, recovery) =
        crate::recovery::start(&config, restore_from, crate::clock::SystemClock.now_ms()).await?;
    if let Some(r) = &recovery {
        print_recovery(r);
    }
    let resume_at = store
        .read(|r| {
            r.get::<crate::agent::state::AgentState>(
                athena_storage::KeyedTable::Agent,
                crate::agent::state::STATE_KEY,
            )
        })?
        .map_or(0, |a| a.last_tick_ms);
    let clock = crate::clock::from_config(
        &config.agent,
        crate::clock::start_of_run(&config, resume_at)?,
    );
    let memories = store.read(|r| r.memory_count())?;
    let store = Arc::new(store);
    tracing::info!(
        path = %store.path().display(),
        open_ms = store.open_report.micros / 1000,
        repaired = store.open_report.repaired,
        "store open"
    );
    println!(
        "athena: store open at {} ({} memories); pruning every {} of agent time; Ctrl-C to stop",
        store.path().display(),
        memories,
        humantime::format_duration(config.memory.prune_interval)
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    // The sync worker stops last, after the final checkpoint, so its drain sends it.
    let (sync_stop_tx, sync_stop_rx) = watch::channel(false);
    let deadline = config.recovery.shutdown_deadline;
    let marker = store.clone();
    tokio::task::spawn_blocking(move || marker.write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, 0)))
        .await??;
    let pruned = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (findings_tx, findings) = tokio::sync::mpsc::unbounded_channel();
    let scrub_stats = Arc::new(crate::recovery::scrub::ScrubStats::default());
    let scrubber = tokio::spawn(crate::recovery::scrub::run(
        store.clone(),
        u64::from(config.recovery.scrub_records_per_sec),
        findings_tx,
        scrub_stats,
        stop_rx.clone(),
    ));
    let mut agent = tokio::spawn(agent_loop(
        store.clone(),
        config.clone(),
        clock.clone(),
        stop_rx.clone(),
        pruned.clone(),
        findings,
        started,
    ));
    let pruning = tokio::spawn(pruning_service(
        store.clone(),
        clock.clone(),
        config.memory.prune_interval,
        stop_rx.clone(),
        pruned,
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
                sync_stop_rx,
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
    // The agent loop ends by itself only when it cannot go on: the run stops then too.
    let ended = tokio::select! {
        () = shutdown_signal() => None,
        joined = &mut agent => Some(joined),
    };
    println!("athena: stopping");
    stop_tx.send(true).ok();
    // The agent finishes the tick it is in (a tick is one transaction: it lands or not).
    let joined = match ended {
        Some(joined) => joined,
        None => agent.await,
    };
    let failure = match joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow::Error::new(e).context("the agent loop panicked")),
    };
    match tokio::time::timeout(deadline, pruning).await {
        Ok(joined) => joined?,
        Err(_) => tracing::warn!("pruning service did not stop within the shutdown deadline"),
    }
    match tokio::time::timeout(deadline, scrubber).await {
        Ok(joined) => joined?,
        Err(_) => tracing::warn!("scrubber did not stop within the shutdown deadline"),
    }
    // Shutdown hook: a final checkpoint, then the sync drain (which sends it), then the
    // clean-shutdown marker, last.
    let clock_at_stop = clock.now_ms();
    checkpoint(&store, &config, clock_at_stop).await;
    sync_stop_tx.send(true).ok();
    if let Some(sync) = sync {
        // The worker drains for at most `deadline` itself; allow it that plus a margin.
        match tokio::time::timeout(deadline + std::time::Duration::from_secs(5), sync).await {
            Ok(joined) => joined?,
            Err(_) => {
                tracing::warn!("sync worker did not stop in time; its rows stay in the outbox")
            }
        }
    }
    let marker = store.clone();
    tokio::task::spawn_blocking(move || {
        marker.write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, clock_at_stop.max(1)))
    })
    .await??;
    drop(store);
    println!("athena: stopped cleanly");
    failure.map_or(Ok(()), Err)
}

/// Takes a checkpoint at agent time `at_ms` and thins the old ones; a failure is logged (the
/// store stays the source of truth), never fatal.
async fn checkpoint(store: &Arc<Store>, config: &Config, at_ms: u64) {
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
            tracing::error!(error = %e, "checkpoint failed");
            println!("athena: checkpoint failed: {e}");
        }
        Err(e) => tracing::error!(error = %e, "checkpoint task panicked"),
    }
}

/// Meta key of the clean-shutdown marker: the agent time of the last clean stop, 0 while the
/// process runs (a 0 found at start means the previous process crashed).
pub const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown_ms";

/// Agent hours between two status lines of `athena run`.
const STATUS_EVERY_MS: u64 = 6 * 3_600_000;

/// Runs the agent: one tick every `agent.tick_interval` of agent time (catching up ticks that
/// fell due while it was not running), until told to stop; the current tick always finishes.
async fn agent_loop(
    store: Arc<Store>,
    config: Config,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    pruned: Arc<std::sync::atomic::AtomicU64>,
    mut findings: tokio::sync::mpsc::UnboundedReceiver<athena_storage::CorruptRecord>,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let now = clock.now_ms();
    let (st, cfg) = (store.clone(), config.clone());
    let mut agent = tokio::task::spawn_blocking(move || {
        crate::agent::Agent::open(&st, &cfg, now, |start, seed| {
            crate::backtest::market(&cfg, start, seed)
        })
    })
    .await??;
    let st = store.clone();
    let last_recovery = tokio::task::spawn_blocking(move || crate::recovery::last(&st)).await??;
    let tick_ms = config.agent.tick_interval.as_millis().max(1) as u64;
    let observation_ms = config.agent.observation_period.as_millis() as u64;
    println!(
        "athena: agent at tick {}, equity ${:.2}; observing until {} of agent time",
        agent.state.next_tick,
        agent.state.equity_usd(),
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_millis(
                    agent.state.observation_start_ms + observation_ms
                )
        )
    );
    let mut last_status = 0u64;
    let mut first_tick = true;
    loop {
        let due = agent.state.started_ms + agent.state.next_tick * tick_ms;
        let now = clock.now_ms();
        if now < due {
            tokio::select! {
                _ = tokio::time::sleep(clock.wall_duration(std::time::Duration::from_millis(due - now))) => {}
                _ = stop.changed() => return Ok(()),
                Some(bad) = findings.recv() => {
                    agent = report_corruption(agent, &store, bad).await?;
                    continue;
                }
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
        // Catching up leaves no time to sleep: take the scrubber's findings between ticks too.
        while let Ok(bad) = findings.try_recv() {
            agent = report_corruption(agent, &store, bad).await?;
        }
        let st = store.clone();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = agent.tick(&st);
            (agent, r)
        })
        .await?;
        agent = back;
        let report = match result {
            Ok(r) if first_tick => {
                first_tick = false;
                println!(
                    "athena: first tick #{} committed {:.0} ms after start",
                    r.tick,
                    started.elapsed().as_secs_f64() * 1000.0
                );
                r
            }
            Ok(r) => r,
            Err(crate::agent::AgentError::Market(e)) if e.is_final() => {
                // A replay that ended or has a bad line never gets better: the run stops.
                return Err(e.into());
            }
            Err(e) => {
                // Nothing of a failed tick was committed; try again one tick later.
                let e = anyhow::Error::new(e);
                tracing::error!(error = %format!("{e:#}"), "tick failed");
                println!("athena: tick failed: {e:#}");
                tokio::select! {
                    _ = tokio::time::sleep(clock.wall_duration(config.agent.tick_interval)) => {}
                    _ = stop.changed() => return Ok(()),
                }
                continue;
            }
        };
        clock.reached(report.at_ms);
        let checkpoint_ms = config.recovery.checkpoint_interval.as_millis().max(1) as u64;
        if report.at_ms % checkpoint_ms < tick_ms {
            checkpoint(&store, &config, report.at_ms).await;
        }
        let mut status = agent.status();
        status.last_recovery = last_recovery.clone();
        if let Err(e) = status.publish(&config.agent.data_dir) {
            tracing::warn!(error = %e, "cannot publish the status file");
        }
        for j in &report.risk_events {
            if let crate::risk::RiskEvent::Trip {
                breaker, reason, ..
            } = &j.event
            {
                println!("athena: breaker {} tripped: {reason}", breaker.as_str());
            }
        }
        if report.fills > 0 || report.at_ms >= last_status + STATUS_EVERY_MS {
            last_status = report.at_ms;
            let day = (report.at_ms - agent.state.started_ms) as f64 / 86_400_000.0;
            let st = store.clone();
            let (memories, outbox) = tokio::task::spawn_blocking(move || {
                Ok::<_, athena_storage::StoreError>((
                    st.read(|r| r.memory_count())?,
                    st.outbox_len()?,
                ))
            })
            .await??;
            println!(
                "athena: day {day:.2} tick {} equity ${:.2} positions {} trades {} {}{} | memories {memories} pruned {} | outbox {outbox}",
                report.tick,
                report.equity_usd,
                agent.state.positions.len(),
                agent.state.totals.trades,
                report.trading_state.as_str(),
                if report.observing { " (observing)" } else { "" },
                pruned.load(std::sync::atomic::Ordering::Relaxed),
            );
        }
    }
}

/// Trips memory_corruption for a record the scrubber found corrupt, naming it.
async fn report_corruption(
    mut agent: crate::agent::Agent,
    store: &Arc<Store>,
    bad: athena_storage::CorruptRecord,
) -> anyhow::Result<crate::agent::Agent> {
    let what = format!("{} key {}: {}", bad.table, bad.key, bad.reason);
    println!("athena: scrubber found a corrupt record: {what}");
    let st = store.clone();
    let at = agent.state.last_tick_ms;
    let (agent, journal) = tokio::task::spawn_blocking(move || {
        let j = agent.observe(
            &st,
            crate::risk::Observation::IntegrityFailure { at_ms: at, what },
        );
        (agent, j)
    })
    .await?;
    for j in journal? {
        if let crate::risk::RiskEvent::Trip {
            breaker, reason, ..
        } = &j.event
        {
            println!("athena: breaker {} tripped: {reason}", breaker.as_str());
        }
    }
    Ok(agent)
}

/// Prints a recovery: its cause, each step with its time, and the total.
fn print_recovery(r: &crate::recovery::Recovery) {
    println!("athena: recovery: {}", r.cause);
    for s in &r.steps {
        println!("athena:   {:<28} {:>9.1} ms  {}", s.name, s.ms, s.detail);
    }
    println!("athena: recovered in {:.1} ms", r.total_ms);
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
    pruned: Arc<std::sync::atomic::AtomicU64>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(clock.wall_duration(interval)) => {}
            _ = stop.changed() => return,
        }
        let store = store.clone();
        let now = clock.now_ms();
        match tokio::task::spawn_blocking(move || store.prune(now)).await {
            Ok(Ok(report)) => {
                // The agent's status line shows the running total; the details go to the log.
                pruned.fetch_add(
                    (report.removed_low_confidence
                        + report.merged
                        + report.migrated_cold
                        + report.evicted) as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                tracing::info!(
                    removed = report.removed_low_confidence,
                    merged = report.merged,
                    compacted = report.compacted,
                    cold = report.migrated_cold,
                    evicted = report.evicted,
                    reclaimed_bytes = report.bytes_reclaimed,
                    "pruned"
                );
            }
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
