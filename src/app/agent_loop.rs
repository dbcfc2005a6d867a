//! The agent loop of a session: a tick every `agent.tick_interval` of agent time (catching up
//! ticks that fell due while the agent was not running), a checkpoint every
//! `recovery.checkpoint_interval`, the status file and the status line; corrupt records found
//! by the scrubber or pruning trip memory_corruption, once per record.
//!
//! A tick changes the agent in memory and commits everything in one transaction. When the
//! commit fails nothing of the tick happened, so the loop never goes on from that memory: it
//! ends the session when the store cannot be written (see [`super::reopen`]), and otherwise
//! reloads the agent from the store before it tries again one tick later.

use super::commands;
use super::reopen::Unwritable;
use crate::agent::{Agent, AgentError};
use crate::clock::Clock;
use crate::control::{Queue, Request};
use crate::live::{EquityPoint, Shared};
use athena_config::Config;
use athena_storage::{CorruptRecord, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Agent hours between two status lines of `athena run`.
const STATUS_EVERY_MS: u64 = 6 * 3_600_000;

/// The status file counts as stale when no tick published it for this long beyond three tick
/// intervals (wall time): `athena status` then says so instead of showing it as live.
const STALE_MARGIN: Duration = Duration::from_secs(30);

/// What the loop needs.
pub(super) struct Loop {
    pub store: Arc<Store>,
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub stop: watch::Receiver<bool>,
    pub pruned: Arc<AtomicU64>,
    pub findings: mpsc::UnboundedReceiver<CorruptRecord>,
    pub started: Instant,
    /// When the store outage this session resumes from began, if it does.
    pub outage: Option<Instant>,
    /// When the first tick of this session committed.
    pub first_commit: Arc<std::sync::OnceLock<Instant>>,
    /// The agent time of the last committed tick (pruning ages memories on it).
    pub agent_time: Arc<AtomicU64>,
    /// What the API reads: the view published after each commit.
    pub shared: Arc<Shared>,
    /// The operator command queue; the loop holds it while it runs.
    pub queue: Arc<tokio::sync::Mutex<Queue>>,
    /// Test fault hook: the loop stops ticking after this many ticks (a stuck loop).
    pub stall_after: Option<u64>,
}

/// How the loop ended.
pub(super) enum End {
    /// Told to stop; the current tick finished.
    Stopped,
    /// The store could not be written.
    Unwritable(Unwritable),
    /// Anything else that stops the agent: the session shuts down in order and reports it.
    Failed(anyhow::Error),
}

/// Runs the loop until told to stop or the store fails.
pub(super) async fn run(mut l: Loop) -> anyhow::Result<End> {
    let mut agent = match open_agent(&l).await {
        Ok(a) => a,
        Err(AgentError::Store(e)) if e.needs_reopen() => {
            return Ok(End::Unwritable(Unwritable::now(&e)));
        }
        Err(e) => return Err(e.into()),
    };
    let st = l.store.clone();
    let last_recovery = tokio::task::spawn_blocking(move || crate::recovery::last(&st)).await??;
    l.shared.set_last_recovery(last_recovery.clone());
    let config = &l.config;
    let tick_ms = config.agent.tick_interval.as_millis().max(1) as u64;
    let observation_ms = config.agent.observation_period.as_millis() as u64;
    let observation_end = agent.state.observation_start_ms + observation_ms;
    let observing = if agent.state.next_tick > 0 && observation_end <= l.clock.now_ms() {
        format!("its observation ended {}", rfc3339(observation_end))
    } else {
        format!("observing until {} of agent time", rfc3339(observation_end))
    };
    let equity = if config.executor.kind == athena_config::ExecutorKind::Chain
        && agent.state.wallet.is_none()
    {
        "equity read from the wallet at the first tick".to_string()
    } else {
        format!("equity ${:.2}", agent.state.equity_usd())
    };
    println!(
        "athena: agent at tick {}, {equity}; {observing}",
        agent.state.next_tick
    );
    println!("athena: {}", advisor_line(config, &agent));
    let mut llm_failing = false;
    let mut reported: HashSet<(String, String)> = HashSet::new();
    let mut publish_error: Option<String> = None;
    let mut last_status = 0u64;
    let mut first_tick = true;
    let mut ticks_run = 0u64;
    let queue = l.queue.clone();
    let mut queue = queue.lock_owned().await;
    l.shared.publish(&agent);
    loop {
        let due = agent.state.started_ms + agent.state.next_tick * tick_ms;
        let now = l.clock.now_ms();
        if l.stall_after.is_some_and(|n| ticks_run >= n) {
            // The fault hook: a loop that never ticks again (its heartbeat ages).
            let _ = l.stop.changed().await;
            return Ok(End::Stopped);
        }
        // An exit-all does not wait for the tick's time: its tick runs at once.
        if now < due && !agent.exit_all_pending() {
            let wait = l.clock.wall_duration(Duration::from_millis(due - now));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = l.stop.changed() => return Ok(End::Stopped),
                Some(request) = queue.recv() => {
                    agent = match command(agent, request, &l, &mut reported).await {
                        Ok(a) => a,
                        Err(end) => return Ok(end),
                    };
                    continue;
                }
                Some(bad) = l.findings.recv() => {
                    agent = match report_corruption(agent, &l.store, &l.shared, bad, &mut reported).await {
                        Ok(a) => a,
                        Err(e) => return ended_by(e),
                    };
                    continue;
                }
            }
        }
        if *l.stop.borrow() {
            return Ok(End::Stopped);
        }
        // Catching up leaves no time to sleep: take the commands and findings between ticks
        // too. A command is applied before the tick, so a stop is in force for it.
        while let Ok(request) = queue.try_recv() {
            agent = match command(agent, request, &l, &mut reported).await {
                Ok(a) => a,
                Err(end) => return Ok(end),
            };
        }
        while let Ok(bad) = l.findings.try_recv() {
            agent = match report_corruption(agent, &l.store, &l.shared, bad, &mut reported).await {
                Ok(a) => a,
                Err(e) => return ended_by(e),
            };
        }
        let st = l.store.clone();
        let tick_started = Instant::now();
        let (back, result) = tokio::task::spawn_blocking(move || {
            let r = agent.tick(&st);
            (agent, r)
        })
        .await?;
        let tick_micros = tick_started.elapsed().as_micros() as u64;
        agent = back;
        let report = match result {
            Ok(r) => r,
            Err(AgentError::Store(e)) if e.needs_reopen() => {
                return Ok(End::Unwritable(Unwritable::now(&e)));
            }
            Err(AgentError::Market(e)) if e.is_final() => {
                // A replay that ended or has a bad line never gets better: the run stops.
                return Ok(End::Failed(e.into()));
            }
            Err(e @ AgentError::Chain(_)) => {
                // A router that is not one, a quote token no pool has: no retry can help.
                return Ok(End::Failed(e.into()));
            }
            Err(e) => {
                // Nothing of the failed tick was committed: go on from what the store holds.
                if let AgentError::Market(m) = &e {
                    let source = if m.is_api_failure() {
                        crate::monitor::FailureSource::Rpc
                    } else {
                        crate::monitor::FailureSource::Market
                    };
                    l.shared.monitor.failure(source, &m.to_string());
                }
                let api_failure = match &e {
                    AgentError::Market(m) if m.is_api_failure() => Some(m.to_string()),
                    _ => None,
                };
                let e = anyhow::Error::new(e);
                tracing::error!(error = %format!("{e:#}"), "tick failed");
                println!("athena: tick failed: {e:#}");
                agent = match open_agent(&l).await {
                    Ok(a) => a,
                    Err(e) => return ended_by(e),
                };
                if let Some(source) = api_failure {
                    // Counted by the api_failures breaker, on the agent just reloaded.
                    let failure = crate::risk::Observation::ApiFailure {
                        at_ms: l.clock.now_ms(),
                        source,
                    };
                    agent = match observe(agent, &l.store, &l.shared, failure).await {
                        Ok(a) => a,
                        Err(e) => return ended_by(e),
                    };
                }
                tokio::select! {
                    _ = tokio::time::sleep(l.clock.wall_duration(config.agent.tick_interval)) => {}
                    _ = l.stop.changed() => return Ok(End::Stopped),
                }
                continue;
            }
        };
        ticks_run += 1;
        report_llm(&report, &mut llm_failing);
        l.clock.reached(report.at_ms);
        l.agent_time.store(report.at_ms, Ordering::Relaxed);
        // The view carries the tick's risk score and gas: the chart point reuses them.
        let view = l.shared.publish(&agent);
        let point = EquityPoint {
            tick: report.tick,
            at_ms: report.at_ms,
            equity_usd: report.equity_usd,
            risk_score: view.score.total,
            gas_gwei: view.gas_gwei,
        };
        l.shared
            .record_tick(point, tick_micros, report.write_micros);
        l.shared
            .monitor
            .on_tick(&report, &agent, tick_micros as f64 / 1e6);
        l.first_commit.get_or_init(Instant::now);
        // Published before the first commit is announced: whoever reads that line finds the
        // status file of that tick.
        publish_status(&agent, &l, &last_recovery, tick_ms, &mut publish_error);
        if first_tick {
            first_tick = false;
            match l.outage {
                Some(since) => println!(
                    "athena: the store is writable again; tick #{} committed, {} after it failed",
                    report.tick,
                    humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()))
                ),
                None => println!(
                    "athena: first tick #{} committed {:.0} ms after start",
                    report.tick,
                    l.started.elapsed().as_secs_f64() * 1000.0
                ),
            }
        }
        let checkpoint_ms = config.recovery.checkpoint_interval.as_millis().max(1) as u64;
        if report.at_ms % checkpoint_ms < tick_ms {
            super::services::checkpoint(&l.store, config, report.at_ms).await;
        }
        for j in &report.risk_events {
            print_trip(&j.event);
        }
        if report.fills > 0 || report.at_ms >= last_status + STATUS_EVERY_MS {
            last_status = report.at_ms;
            print_status_line(status_line(&agent, &report), &l).await?;
        }
    }
}

/// The start line of the LLM advisor: off, or its model, endpoint, timeout and the answers
/// reloaded from the store.
fn advisor_line(config: &athena_config::Config, agent: &Agent) -> String {
    match agent.llm_stats() {
        None => "llm advisor off (llm.enabled = false): the rules decide alone".into(),
        Some(l) => format!(
            "llm advisor on: model {:?} at {}, a tick waits at most {} for it; {} cached answers reloaded",
            config.llm.model,
            config.llm.endpoint,
            humantime::format_duration(config.llm.timeout),
            l.cached_entries
        ),
    }
}

/// Prints when the advisor starts failing (the rules decide alone) and when it answers again;
/// every failure is logged.
fn report_llm(report: &crate::agent::TickReport, failing: &mut bool) {
    for f in &report.llm_failures {
        tracing::warn!(tick = report.tick, failure = %f, "llm advisor gave no answer; the rules decided alone");
    }
    match report.llm_failures.first() {
        Some(f) if !*failing => {
            *failing = true;
            println!(
                "athena: llm advisor failed at tick #{}: {f}; the rules decide alone until it answers (see /health/detailed)",
                report.tick
            );
        }
        None if *failing && report.llm_asked > 0 => {
            *failing = false;
            println!("athena: llm advisor answers again at tick #{}", report.tick);
        }
        _ => {}
    }
}

/// Applies an operator command and publishes the agent; a store that needs a reopen ends the
/// session, and corrupt records a pruning pass skipped are reported.
async fn command(
    agent: Agent,
    request: Request,
    l: &Loop,
    reported: &mut HashSet<(String, String)>,
) -> Result<Agent, End> {
    let cx = commands::Context {
        store: &l.store,
        config: &l.config,
        shared: &l.shared,
        now_ms: l.clock.now_ms(),
    };
    let out = commands::apply(agent, request, cx).await;
    if let Some(e) = out.store_failed {
        return Err(End::Unwritable(Unwritable::now(&e)));
    }
    let mut agent = out.agent;
    for bad in out.corrupt {
        agent = match report_corruption(agent, &l.store, &l.shared, bad, reported).await {
            Ok(a) => a,
            Err(e) => return Err(ended_by(e).unwrap_or_else(End::Failed)),
        };
    }
    l.shared.publish(&agent);
    Ok(agent)
}

/// Opens the agent from what the store holds.
async fn open_agent(l: &Loop) -> Result<Agent, AgentError> {
    let now = l.clock.now_ms();
    let (st, cfg) = (l.store.clone(), l.config.clone());
    tokio::task::spawn_blocking(move || {
        Agent::open(&st, &cfg, now, |start, seed| {
            crate::backtest::market(&cfg, start, seed)
        })
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The end of the loop for an agent error outside a tick.
fn ended_by(e: AgentError) -> anyhow::Result<End> {
    match e {
        AgentError::Store(s) if s.needs_reopen() => Ok(End::Unwritable(Unwritable::now(&s))),
        other => Ok(End::Failed(other.into())),
    }
}

/// Publishes the status file with the wall time by which the next one is due.
fn publish_status(
    agent: &Agent,
    l: &Loop,
    last_recovery: &Option<crate::recovery::Recovery>,
    tick_ms: u64,
    last_error: &mut Option<String>,
) {
    let mut status = agent.status();
    status.last_recovery = last_recovery.clone();
    let wall_tick = l.clock.wall_duration(Duration::from_millis(tick_ms));
    let now = crate::clock::SystemClock.now_ms();
    status.published_wall_ms = now;
    status.stale_after_wall_ms = now + (wall_tick * 3 + STALE_MARGIN).as_millis() as u64;
    // Said once per distinct error, not once per tick.
    match status.publish(&l.config.agent.data_dir) {
        Ok(()) => *last_error = None,
        Err(e) if last_error.as_deref() != Some(&e.to_string()) => {
            tracing::warn!(error = %e, "cannot publish the status file");
            *last_error = Some(e.to_string());
        }
        Err(_) => {}
    }
}

/// The status line: every few agent hours and after each trade.
async fn print_status_line(line: String, l: &Loop) -> anyhow::Result<()> {
    let st = l.store.clone();
    let (memories, outbox) = tokio::task::spawn_blocking(move || {
        Ok::<_, athena_storage::StoreError>((st.read(|r| r.memory_count())?, st.outbox_len()?))
    })
    .await??;
    println!(
        "{line} | memories {memories} pruned {} | outbox {outbox}",
        l.pruned.load(Ordering::Relaxed),
    );
    Ok(())
}

/// The agent's part of the status line.
fn status_line(agent: &Agent, report: &crate::agent::TickReport) -> String {
    let day = (report.at_ms - agent.state.started_ms) as f64 / 86_400_000.0;
    format!(
        "athena: day {day:.2} tick {} equity ${:.2} positions {} trades {} {}{}",
        report.tick,
        report.equity_usd,
        agent.state.positions.len(),
        agent.state.totals.trades,
        report.trading_state.as_str(),
        if report.observing { " (observing)" } else { "" },
    )
}

/// Trips memory_corruption for a corrupt record, naming it; a record already reported is not
/// reported again.
async fn report_corruption(
    agent: Agent,
    store: &Arc<Store>,
    shared: &Shared,
    bad: CorruptRecord,
    reported: &mut HashSet<(String, String)>,
) -> Result<Agent, AgentError> {
    if !reported.insert((bad.table.clone(), bad.key.clone())) {
        return Ok(agent);
    }
    let what = format!("{} key {}: {}", bad.table, bad.key, bad.reason);
    println!("athena: found a corrupt record: {what}");
    let at = agent.state.last_tick_ms;
    observe(
        agent,
        store,
        shared,
        crate::risk::Observation::IntegrityFailure { at_ms: at, what },
    )
    .await
}

/// Reports something observed outside a tick to the risk engine and commits what it changed;
/// prints a trip, raises its alerts and publishes the view (no tick may come soon to do it:
/// the market may be what failed).
async fn observe(
    agent: Agent,
    store: &Arc<Store>,
    shared: &Shared,
    observation: crate::risk::Observation,
) -> Result<Agent, AgentError> {
    let st = store.clone();
    let (agent, journal) = tokio::task::spawn_blocking(move || {
        let mut agent = agent;
        let j = agent.observe(&st, observation);
        (agent, j)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let journal = journal?;
    for j in &journal {
        print_trip(&j.event);
    }
    shared
        .monitor
        .on_risk_events(&journal, agent.status().trading_state);
    shared.publish(&agent);
    Ok(agent)
}

fn print_trip(event: &crate::risk::RiskEvent) {
    if let crate::risk::RiskEvent::Trip {
        breaker, reason, ..
    } = event
    {
        println!("athena: breaker {} tripped: {reason}", breaker.as_str());
    }
}

fn rfc3339(ms: u64) -> humantime::Rfc3339Timestamp {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}
