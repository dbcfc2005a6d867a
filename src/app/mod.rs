//! Start-up and ordered shutdown of the long-running agent process (`athena run`).
//!
//! The stop signals are installed first ([`signals`]), then the start is the recovery ladder
//! ([`crate::recovery::start`]): a clean start opens the store, a start after a crash verifies
//! it, restores it if it is corrupt, reconciles and records the recovery. Then a *session*
//! runs the agent loop, the memory pruning service, the scrubber and the sync worker until a
//! stop signal, which stops them in order: the agent finishes its current tick, pruning and
//! the scrubber stop, a final checkpoint is taken, the sync worker drains (sending that
//! checkpoint) with a deadline, and the clean-shutdown marker is written last.
//!
//! A session also ends when the store cannot be written (disk full, an I/O error): its
//! services stop, the store is closed and opened again with backoff ([`reopen`]), and a new
//! session starts on it, reported as a recovery; past `recovery.store_retry_deadline` the
//! process exits non-zero. The sync sinks outlive sessions, and a sink that cannot be built at
//! start (the cloud unreachable) is built again in the background by its first pushes, so an
//! agent started offline syncs when the cloud returns.
//!
//! Store calls run on `spawn_blocking` (no blocking redb call on an async worker thread).

mod agent_loop;
mod commands;
pub mod reopen;
mod services;
pub mod signals;

use crate::clock::Clock;
use athena_config::Config;
use athena_storage::Store;
use athena_sync::WorkerSinks;
use reopen::Unwritable;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Meta key of the clean-shutdown marker: the agent time of the last clean stop, 0 while the
/// process runs (a 0 found at start means the previous process crashed).
pub const CLEAN_SHUTDOWN_KEY: &str = "clean_shutdown_ms";

/// How a session ended.
enum Ended {
    /// A stop was asked for, and the ordered shutdown is done.
    Stopped,
    /// The store could not be written; the session's services are stopped and the store is
    /// released for a reopen.
    Unwritable(Unwritable),
}

/// Runs the agent until `stop` turns true (see [`signals::install`]), then shuts down in
/// order. The start is the recovery ladder; with `restore_from` it starts on an empty data
/// directory from that source.
pub async fn run(
    config: Config,
    restore_from: Option<crate::recovery::sources::Source>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    // The stop signals are handled from here on: a stop during the ladder is a clean one.
    println!(
        "athena: starting (pid {}); opening the store in {}",
        std::process::id(),
        config.agent.data_dir.display()
    );
    let (commands, queue) = crate::control::queue();
    let monitor = crate::monitor::Monitor::new(&config)?;
    let shared = crate::live::Shared::new(commands, monitor.clone());
    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    // Up before the ladder: an operator sees the start (and a bad bind fails before the
    // store is touched).
    let api = crate::api::start(&config, shared.clone(), stop.clone()).await?;
    let (monitor_stop_tx, monitor_stop) = watch::channel(false);
    let sampled = shared.clone();
    let monitoring = tokio::spawn(monitor.run(move || sampled.store(), monitor_stop));
    let result = run_sessions(&config, restore_from, stop, &shared, &queue, started).await;
    monitor_stop_tx.send(true).ok();
    services::join("monitor", monitoring, Duration::from_secs(5)).await;
    if let Some(api) = api {
        api.stop().await;
    }
    result
}

/// The recovery ladder, then sessions until a stop.
async fn run_sessions(
    config: &Config,
    restore_from: Option<crate::recovery::sources::Source>,
    mut stop: watch::Receiver<bool>,
    shared: &Arc<crate::live::Shared>,
    queue: &Arc<tokio::sync::Mutex<crate::control::Queue>>,
    started: Instant,
) -> anyhow::Result<()> {
    let config = config.clone();
    let now = || crate::clock::SystemClock.now_ms();
    let mut fault: Option<Unwritable> = None;
    let (mut store, mut recovery) = match crate::recovery::start(&config, restore_from, now()).await
    {
        Ok(opened) => opened,
        Err(e) if e.needs_reopen() => {
            let outage = fault.insert(Unwritable::now(&e));
            shared.monitor.store_failed(&outage.cause);
            reopen::reopen(&config, outage, &mut stop, now).await?
        }
        Err(e) => return Err(e.into()),
    };
    if *stop.borrow() {
        println!("athena: stop asked for during start-up");
    }
    let sinks = connect_sinks(&config).await;
    loop {
        match (&recovery, &fault) {
            (Some(r), Some(outage)) => println!(
                "athena: store reopened after {} attempts; verified ({})",
                outage.attempts,
                r.steps
                    .iter()
                    .find(|s| s.name == "verify")
                    .map_or("not needed", |s| s.detail.as_str())
            ),
            (Some(r), None) => print_recovery(r),
            (None, _) => {}
        }
        let session = Session {
            config: &config,
            sinks: &sinks,
            started,
            outage: fault.as_ref().map(|f| f.since),
            shared,
            queue,
        };
        let (ended, healthy_for) = session.run(Arc::new(store), stop.clone()).await?;
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Unwritable(failing) => {
                shared.monitor.store_failed(&failing.cause);
                // A store that reopened but failed again soon after is the same outage (a
                // nearly full disk takes a few small commits): its deadline and backoff go on.
                let outage = match fault.take() {
                    Some(earlier) if healthy_for < reopen::OUTAGE_CLEARS_AFTER => {
                        earlier.again(failing)
                    }
                    _ => failing,
                };
                let outage = fault.insert(outage);
                (store, recovery) = reopen::reopen(&config, outage, &mut stop, now).await?;
            }
        }
    }
}

/// Builds the sync sinks once for the whole process; says which could not connect yet.
async fn connect_sinks(config: &Config) -> WorkerSinks {
    let sinks = WorkerSinks::connect(config).await;
    println!(
        "athena: syncing documents to {} and objects to {}",
        sinks.documents.name(),
        sinks.objects.name()
    );
    for (name, why) in &sinks.not_connected {
        println!(
            "athena: sync to {name} is not connected yet ({why}); retrying in the background, \
             changes stay in the outbox"
        );
    }
    sinks
}

/// One run of the services on one open store.
struct Session<'a> {
    config: &'a Config,
    sinks: &'a WorkerSinks,
    started: Instant,
    /// When the store outage this session resumes from began, if it does.
    outage: Option<Instant>,
    /// What the API reads.
    shared: &'a Arc<crate::live::Shared>,
    /// The operator command queue.
    queue: &'a Arc<tokio::sync::Mutex<crate::control::Queue>>,
}

impl Session<'_> {
    /// Runs the services until a stop or a store failure; returns how it ended and how long
    /// the store took writes (from the first committed tick to the end).
    async fn run(
        &self,
        store: Arc<Store>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<(Ended, Duration)> {
        let config = self.config;
        let (resume_at, memories) = match resume_point(&store) {
            Ok(read) => read,
            Err(e) if e.needs_reopen() => {
                return Ok((Ended::Unwritable(Unwritable::now(&e)), Duration::ZERO));
            }
            Err(e) => return Err(e.into()),
        };
        let clock = crate::clock::from_config(
            &config.agent,
            crate::clock::start_of_run(config, resume_at)?,
        );
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
        if let Some(fault) = mark_running(&store).await? {
            return Ok((Ended::Unwritable(fault), Duration::ZERO));
        }
        self.shared.monitor.store_writable();

        let (services_stop_tx, services_stop) = watch::channel(false);
        // The sync worker stops last, after the final checkpoint, so its drain sends it.
        let (sync_stop_tx, sync_stop) = watch::channel(false);
        let (fault_tx, mut fault_rx) = watch::channel::<Option<Unwritable>>(None);
        let pruned = Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Corrupt records found by the scrubber and by pruning; the agent loop trips
        // memory_corruption once per record.
        let (findings_tx, findings) = tokio::sync::mpsc::unbounded_channel();
        let scrubber = tokio::spawn(crate::recovery::scrub::run(
            store.clone(),
            u64::from(config.recovery.scrub_records_per_sec),
            findings_tx.clone(),
            Arc::new(crate::recovery::scrub::ScrubStats::default()),
            services_stop.clone(),
        ));
        let first_commit = Arc::new(std::sync::OnceLock::new());
        let agent_time = Arc::new(std::sync::atomic::AtomicU64::new(resume_at));
        let mut agent = tokio::spawn(agent_loop::run(agent_loop::Loop {
            store: store.clone(),
            config: config.clone(),
            clock: clock.clone(),
            stop: services_stop.clone(),
            pruned: pruned.clone(),
            findings,
            started: self.started,
            outage: self.outage,
            first_commit: first_commit.clone(),
            agent_time: agent_time.clone(),
            shared: self.shared.clone(),
            queue: self.queue.clone(),
            stall_after: stall_after_hook(),
        }));
        self.shared.set_store(Some(store.clone()));
        let pruning = tokio::spawn(services::pruning(services::Pruning {
            store: store.clone(),
            clock: clock.clone(),
            agent_time: agent_time.clone(),
            interval: config.memory.prune_interval,
            stop: services_stop.clone(),
            pruned,
            findings: findings_tx,
            fault: fault_tx,
            monitor: self.shared.monitor.clone(),
        }));
        let now = clock.clone();
        let worker = athena_sync::Worker::new(
            store.clone(),
            self.sinks.documents.clone(),
            self.sinks.objects.clone(),
            &config.sync,
            config.agent.seed,
            Arc::new(move || now.now_ms()),
        );
        let deadline = config.recovery.shutdown_deadline;
        let sync = tokio::spawn(worker.run(sync_stop, self.shared.flush.clone(), deadline));

        let ended = tokio::select! {
            _ = stop.changed() => None,
            joined = &mut agent => Some(joined),
            _ = fault_rx.changed() => None,
        };
        let failure = fault_rx.borrow().clone();
        services_stop_tx.send(true).ok();
        let agent_result = match ended {
            Some(joined) => joined,
            // The agent finishes the tick it is in (a tick is one transaction: it lands or not).
            None => agent.await,
        };
        let loop_end = match agent_result {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => agent_loop::End::Failed(e),
            Err(e) => agent_loop::End::Failed(anyhow::anyhow!("the agent loop panicked: {e}")),
        };
        services::join("pruning service", pruning, deadline).await;
        services::join("scrubber", scrubber, deadline).await;
        let failure = match (loop_end, failure) {
            (agent_loop::End::Unwritable(f), _) | (_, Some(f)) => Some(f),
            (agent_loop::End::Failed(e), None) => {
                // Not the disk: a bug or a final error. Shut down in order, then report it.
                self.shutdown(&store, &clock, sync_stop_tx, sync).await?;
                return Err(e);
            }
            (agent_loop::End::Stopped, None) => None,
        };
        let healthy_for = first_commit.get().map_or(Duration::ZERO, Instant::elapsed);
        if let Some(f) = failure {
            // Nothing more is written: no checkpoint, no marker. The worker stops at once (its
            // drain fails on the same store) and every handle on the store is released.
            sync_stop_tx.send(true).ok();
            services::join("sync worker", sync, deadline).await;
            // The last status is no longer live; removing a file works on a full disk.
            let status = config.agent.data_dir.join(crate::agent::STATUS_FILE);
            std::fs::remove_file(status).ok();
            self.shared.set_store(None);
            drop(store);
            return Ok((Ended::Unwritable(f), healthy_for));
        }
        self.shutdown(&store, &clock, sync_stop_tx, sync).await?;
        Ok((Ended::Stopped, healthy_for))
    }

    /// The shutdown hook: the final book snapshot and a final checkpoint, then the sync drain
    /// (which sends them), then the clean-shutdown marker, last.
    async fn shutdown(
        &self,
        store: &Arc<Store>,
        clock: &Arc<dyn Clock>,
        sync_stop: watch::Sender<bool>,
        sync: tokio::task::JoinHandle<()>,
    ) -> anyhow::Result<()> {
        println!("athena: stopping");
        let config = self.config;
        let clock_at_stop = clock.now_ms();
        // The last book reaches the cloud whatever `sync.state_interval` held back.
        let book = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            crate::agent::snapshot_book(&book, clock_at_stop).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r);
        if let Err(e) = written {
            tracing::warn!(error = %e, "the final book snapshot was not written");
        }
        services::checkpoint(store, config, clock_at_stop).await;
        sync_stop.send(true).ok();
        // The worker drains for at most the deadline itself; allow it that plus a margin.
        let deadline = config.recovery.shutdown_deadline;
        services::join("sync worker", sync, deadline + Duration::from_secs(5)).await;
        let marker = store.clone();
        tokio::task::spawn_blocking(move || {
            marker.write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, clock_at_stop.max(1)))
        })
        .await??;
        println!("athena: stopped cleanly");
        Ok(())
    }
}

/// The test fault hook `ATHENA_FAULT_STALL_AFTER_TICKS=N`: the agent loop stops ticking
/// after N ticks of a session (a stuck loop, for the heartbeat's health check).
fn stall_after_hook() -> Option<u64> {
    let n = std::env::var("ATHENA_FAULT_STALL_AFTER_TICKS").ok()?;
    let n = n.parse().ok()?;
    println!("athena: fault hook: the agent loop stalls after {n} ticks");
    Some(n)
}

/// The agent time the store's run reached (0: none yet) and its memory count.
fn resume_point(store: &Store) -> Result<(u64, u64), athena_storage::StoreError> {
    store.read(|r| {
        let agent: Option<crate::agent::state::AgentState> = r.get(
            athena_storage::KeyedTable::Agent,
            crate::agent::state::STATE_KEY,
        )?;
        Ok((agent.map_or(0, |a| a.last_tick_ms), r.memory_count()?))
    })
}

/// Clears the clean-shutdown marker: from here on a stop that does not finish in order is a
/// crash for the next start. A store that cannot take this write is reported, not an error.
async fn mark_running(store: &Arc<Store>) -> anyhow::Result<Option<Unwritable>> {
    let marker = store.clone();
    match tokio::task::spawn_blocking(move || {
        marker.write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, 0))
    })
    .await?
    {
        Ok(()) => Ok(None),
        Err(e) if e.needs_reopen() => Ok(Some(Unwritable::now(&e))),
        Err(e) => Err(e.into()),
    }
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
