//! Monitoring (SPEC.md §7): metrics, health and alerts, behind one [`Monitor`].
//!
//! The monitor is fed, never reaches out: the agent loop calls [`Monitor::on_tick`], the
//! operator API [`Monitor::on_command`], the store's writer [`Monitor::store_failed`] /
//! [`Monitor::store_writable`], pruning [`Monitor::on_prune`], external callers
//! [`Monitor::failure`]; [`Monitor::run`] samples the store every `monitor.metrics_interval`
//! (on `spawn_blocking`: redb reads block) and checks health every `monitor.health_interval`.
//! The API serves [`Metrics::encode`], [`Monitor::health`], [`Monitor::liveness`],
//! [`Alerts::recent`] and [`Alerts::subscribe`].
//!
//! Times: health is decided in wall ms (passed in, so tests need no clock); agent time is used
//! only where the store keeps agent time (the sync lag).

pub mod alerts;
pub mod health;
pub mod metrics;
mod sample;

pub use alerts::{Alert, AlertKind, Alerts, Delivery, Severity, WebhookError};
pub use health::{Component, ComponentName, HealthReport, Inputs, Status, Thresholds};
pub use metrics::{FailureSource, Metrics, MetricsError};

use crate::agent::{Agent, TickReport};
use crate::risk::{RiskEvent, RiskJournal, TradingState};
use athena_config::{ClockKind, Config};
use athena_storage::{PruneReport, Store};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// The monitor could not start.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// A metric could not be registered (a programming error).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

pub use crate::clock::wall_ms;

/// Everything health is decided on that the monitor was told (see [`Inputs`]).
#[derive(Debug, Default)]
struct State {
    started_wall_ms: u64,
    tick_interval_wall_ms: u64,
    prune_interval_wall_ms: u64,
    last_tick_wall_ms: Option<u64>,
    /// The last tick that failed reading the market (the loop alive, retrying).
    last_failed_tick_wall_ms: Option<u64>,
    last_tick_agent_ms: Option<u64>,
    trading_state: Option<TradingState>,
    pools: Option<(usize, usize)>,
    /// Why the market could not be read at the last attempt, until a tick reads it again.
    market_error: Option<String>,
    store_error: Option<String>,
    disk_used_ratio: Option<f64>,
    sync_failures: u64,
    sync_last_error: String,
    sync_lag_ms: u64,
    sync_oldest_unsynced_ms: u64,
    dead_letters: Option<u64>,
    cpu_ratio: Option<f64>,
    memory_ratio: Option<f64>,
    /// Process CPU seconds and wall ms at the last sample (for the CPU ratio).
    cpu_seen: Option<(f64, u64)>,
    last_prune_wall_ms: Option<u64>,
    last_prune: Option<PruneReport>,
    overall: Option<Status>,
    llm: Option<health::LlmInputs>,
}

/// Metrics, health and alerts of one agent process.
pub struct Monitor {
    /// The metrics (`/metrics`).
    pub metrics: Arc<Metrics>,
    /// The alerts (`/alerts`, the live stream, the webhook).
    pub alerts: Alerts,
    thresholds: Thresholds,
    metrics_interval: Duration,
    health_interval: Duration,
    starting_usd: f64,
    time_scale: f64,
    state: Mutex<State>,
}

impl Monitor {
    /// A monitor for `config`. Wall intervals of ticks and prunes are derived from the
    /// configured clock (agent time divided by `agent.time_scale` on a simulated clock);
    /// [`Monitor::set_wall_intervals`] overrides them.
    pub fn new(config: &Config) -> Result<Arc<Self>, MonitorError> {
        let metrics = Arc::new(Metrics::new()?);
        let scale = match config.agent.clock {
            ClockKind::Simulated if config.agent.time_scale > 0.0 => config.agent.time_scale,
            _ => 1.0,
        };
        let wall = |d: Duration| (d.as_millis() as f64 / scale) as u64;
        let state = State {
            started_wall_ms: wall_ms(),
            tick_interval_wall_ms: wall(config.agent.tick_interval),
            prune_interval_wall_ms: wall(config.memory.prune_interval),
            ..State::default()
        };
        Ok(Arc::new(Self {
            alerts: Alerts::new(&config.monitor, &metrics),
            metrics,
            thresholds: Thresholds::of(&config.monitor),
            metrics_interval: config.monitor.metrics_interval,
            health_interval: config.monitor.health_interval,
            starting_usd: config.executor.paper_starting_usd,
            time_scale: scale,
            state: Mutex::new(state),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets the expected wall time between ticks and between prunes (for health).
    pub fn set_wall_intervals(&self, tick: Duration, prune: Duration) {
        let mut s = self.lock();
        s.tick_interval_wall_ms = tick.as_millis() as u64;
        s.prune_interval_wall_ms = prune.as_millis() as u64;
    }

    /// A committed tick that took `tick_seconds` of wall time.
    pub fn on_tick(&self, report: &TickReport, agent: &Agent, tick_seconds: f64) {
        self.on_tick_at(report, agent, tick_seconds, wall_ms());
    }

    /// [`Monitor::on_tick`] at `now_wall_ms`.
    pub fn on_tick_at(&self, report: &TickReport, agent: &Agent, tick_seconds: f64, now: u64) {
        let m = &self.metrics;
        m.tick_duration.observe(tick_seconds);
        m.ticks.inc();
        m.last_tick_timestamp.set(report.at_ms as f64 / 1000.0);
        let st = &agent.state;
        m.equity.set(report.equity_usd);
        m.cash.set(st.cash_usd);
        m.pnl
            .set(report.equity_usd - st.starting_usd(self.starting_usd));
        m.positions.set(st.positions.len() as i64);
        m.position_value.set(
            st.positions
                .iter()
                .map(|p| p.value_usd + p.rewards_usd)
                .sum(),
        );
        metrics::mirror(&m.trades, st.totals.trades);
        metrics::mirror(&m.decisions, st.totals.decisions);
        for s in [
            TradingState::Active,
            TradingState::ReduceOnly,
            TradingState::Halted,
        ] {
            m.trading_state
                .with_label_values(&[s.as_str()])
                .set(i64::from(s == report.trading_state));
        }
        for b in &agent.risk.breakers {
            let name = b.kind.as_str();
            m.breaker_tripped
                .with_label_values(&[name])
                .set(i64::from(b.is_tripped(report.at_ms)));
            metrics::mirror(
                &m.breaker_trips.with_label_values(&[name]),
                u64::from(b.trip_count),
            );
        }
        m.set_risk_score(&agent.risk_score());
        // A failure stays until a consultation answers again (questions are rare: the tick
        // after a failure usually asks nothing).
        let previous_failure = self
            .lock()
            .llm
            .as_ref()
            .and_then(|l| l.last_failure.clone());
        let llm = agent.llm_stats().map(|l| {
            m.set_llm_stats(&l);
            health::LlmInputs {
                questions: l.questions,
                hit_rate: l.hit_rate(),
                last_failure: match report.llm_failures.first() {
                    Some(f) => Some(f.to_string()),
                    None if report.llm_asked > 0 => None,
                    None => previous_failure,
                },
                rule_based_only: agent.risk.breakers.iter().any(|b| {
                    b.kind == crate::risk::BreakerKind::LlmTimeout && b.is_tripped(report.at_ms)
                }),
            }
        });
        for failure in &report.llm_failures {
            // Timeouts feed llm_timeout, not the API failure count.
            if let crate::llm::Failure::Failed(why) = failure {
                self.failure(FailureSource::Llm, why);
            }
        }
        if agent.llm_stats().is_some() {
            m.llm_advise_seconds
                .observe(report.advise_micros as f64 / 1e6);
        }
        self.tick_alerts(report, now);
        let mut s = self.lock();
        s.last_tick_wall_ms = Some(now);
        s.last_tick_agent_ms = Some(report.at_ms);
        s.pools = Some((report.pools_seen, report.pools_rejected));
        s.market_error = None;
        s.llm = llm;
    }

    /// Risk events recorded outside a tick (a failed market read, a corrupt record) and the
    /// trading state after them: their alerts now, not at the next tick.
    pub fn on_risk_events(&self, events: &[RiskJournal], trading_state: TradingState) {
        self.risk_alerts(events, trading_state, wall_ms());
    }

    /// Alerts for the tick's breaker trips and a trading-state change.
    fn tick_alerts(&self, report: &TickReport, now: u64) {
        self.risk_alerts(&report.risk_events, report.trading_state, now);
    }

    /// Alerts for breaker trips among `events` and a change to `trading_state`.
    fn risk_alerts(&self, events: &[RiskJournal], trading_state: TradingState, now: u64) {
        for j in events {
            if let RiskEvent::Trip {
                breaker, reason, ..
            } = &j.event
            {
                self.alerts.raise(
                    AlertKind::BreakerTrip,
                    breaker.as_str(),
                    Severity::Critical,
                    format!("circuit breaker {} tripped: {reason}", breaker.as_str()),
                    now,
                );
            }
        }
        let previous = self.lock().trading_state.replace(trading_state);
        if let Some(from) = previous
            && from != trading_state
        {
            let to = trading_state;
            let severity = match to {
                TradingState::Active => Severity::Info,
                TradingState::ReduceOnly => Severity::Warning,
                TradingState::Halted => Severity::Critical,
            };
            self.alerts.raise(
                AlertKind::TradingState,
                format!("{}->{}", from.as_str(), to.as_str()),
                severity,
                format!("trading state {} -> {}", from.as_str(), to.as_str()),
                now,
            );
        }
    }

    /// An operator command (`command`, `outcome`: names the caller fixes, a bounded set)
    /// answered after `seconds`.
    pub fn on_command(&self, command: &'static str, outcome: &'static str, seconds: f64) {
        self.metrics
            .command_seconds
            .with_label_values(&[command])
            .observe(seconds);
        self.metrics
            .commands
            .with_label_values(&[command, outcome])
            .inc();
    }

    /// A store write failed with `error` (the store is unhealthy until a write succeeds).
    pub fn store_failed(&self, error: &str) {
        let now = wall_ms();
        self.lock().store_error = Some(error.to_string());
        self.alerts.raise(
            AlertKind::StoreWrite,
            "failed",
            Severity::Critical,
            format!("store write failed: {error}"),
            now,
        );
    }

    /// A store write succeeded (again): clears a failure, alerting the recovery once.
    pub fn store_writable(&self) {
        if self.lock().store_error.take().is_some() {
            self.alerts.raise(
                AlertKind::StoreWrite,
                "recovered",
                Severity::Info,
                "store writes work again",
                wall_ms(),
            );
        }
    }

    /// An external call to `source` failed. Cloud failures also count as failed sync attempts
    /// until the next store sample reads the sync worker's own health.
    pub fn failure(&self, source: FailureSource, error: &str) {
        self.metrics
            .api_failures
            .with_label_values(&[source.as_str()])
            .inc();
        match source {
            FailureSource::Cloud => {
                let mut s = self.lock();
                s.sync_failures += 1;
                s.sync_last_error = error.to_string();
            }
            FailureSource::Market | FailureSource::Rpc => {
                let mut s = self.lock();
                s.market_error = Some(error.to_string());
                s.last_failed_tick_wall_ms = Some(wall_ms());
            }
            FailureSource::Llm => {}
        }
    }

    /// A prune run finished (now).
    pub fn on_prune(&self, report: &PruneReport) {
        let now = wall_ms();
        self.metrics.record_prune(report, now);
        let mut s = self.lock();
        s.last_prune_wall_ms = Some(now);
        s.last_prune = Some(report.clone());
    }

    /// The last pruning pass of this process: when (wall ms) and what it did.
    pub fn last_prune(&self) -> Option<(u64, PruneReport)> {
        let s = self.lock();
        s.last_prune_wall_ms.zip(s.last_prune.clone())
    }

    /// Agent time now, estimated from the last tick (wall time since, times the clock's
    /// scale); the wall before the first tick.
    pub fn agent_now_ms(&self, now_wall_ms: u64) -> u64 {
        let s = self.lock();
        match (s.last_tick_agent_ms, s.last_tick_wall_ms) {
            (Some(agent), Some(wall)) => {
                agent + (now_wall_ms.saturating_sub(wall) as f64 * self.time_scale) as u64
            }
            _ => now_wall_ms,
        }
    }

    fn inputs(&self, now: u64) -> Inputs {
        let s = self.lock();
        Inputs {
            now_wall_ms: now,
            started_wall_ms: s.started_wall_ms,
            last_tick_wall_ms: s.last_tick_wall_ms,
            last_failed_tick_wall_ms: s.last_failed_tick_wall_ms,
            tick_interval_wall_ms: s.tick_interval_wall_ms,
            store_error: s.store_error.clone(),
            disk_used_ratio: s.disk_used_ratio,
            sync_failures: s.sync_failures,
            sync_last_error: s.sync_last_error.clone(),
            sync_lag_ms: s.sync_lag_ms,
            sync_oldest_unsynced_ms: s.sync_oldest_unsynced_ms,
            pools: s.pools,
            market_error: s.market_error.clone(),
            cpu_ratio: s.cpu_ratio,
            memory_ratio: s.memory_ratio,
            last_prune_wall_ms: s.last_prune_wall_ms,
            prune_interval_wall_ms: s.prune_interval_wall_ms,
            llm: s.llm.clone(),
        }
    }

    /// Every component's health at `now_wall_ms` (`/health/detailed`).
    pub fn health(&self, now_wall_ms: u64) -> HealthReport {
        health::evaluate(&self.inputs(now_wall_ms), &self.thresholds)
    }

    /// Liveness at `now_wall_ms` (`/health`): unhealthy only for the loop or the store.
    pub fn liveness(&self, now_wall_ms: u64) -> HealthReport {
        health::liveness(&self.inputs(now_wall_ms), &self.thresholds)
    }

    /// Checks health and raises a Health alert when the overall status changed (the first
    /// check alerts only when it is not healthy).
    pub fn check_health(&self, now_wall_ms: u64) -> HealthReport {
        let report = self.health(now_wall_ms);
        let previous = self.lock().overall.replace(report.status);
        if previous.unwrap_or(Status::Healthy) != report.status {
            let reasons: Vec<String> = report
                .components
                .iter()
                .filter(|c| c.status != Status::Healthy)
                .map(|c| format!("{}: {}", c.name.as_str(), c.reason))
                .collect();
            let severity = match report.status {
                Status::Healthy => Severity::Info,
                Status::Degraded => Severity::Warning,
                Status::Unhealthy => Severity::Critical,
            };
            let mut message = format!("health is {}", report.status.as_str());
            if !reasons.is_empty() {
                message = format!("{message}: {}", reasons.join("; "));
            }
            self.alerts.raise(
                AlertKind::Health,
                report.status.as_str(),
                severity,
                message,
                now_wall_ms,
            );
        }
        report
    }

    /// Samples and checks health on their intervals, and delivers webhook alerts, until
    /// `stop` turns true. `store` gives the open store, if any (none while it is reopened).
    pub async fn run(
        self: Arc<Self>,
        store: impl Fn() -> Option<Arc<Store>> + Send + 'static,
        stop: watch::Receiver<bool>,
    ) {
        let webhook = tokio::spawn({
            let me = self.clone();
            let stop = stop.clone();
            async move {
                if let Err(e) = me.alerts.deliver(Delivery::default(), stop).await {
                    tracing::error!(error = %e, "alert webhook delivery not started");
                }
            }
        });
        let mut stop = stop;
        let mut sample = tokio::time::interval(self.metrics_interval);
        let mut health = tokio::time::interval(self.health_interval);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            tokio::select! {
                _ = sample.tick() => {
                    if let Some(store) = store() {
                        let me = self.clone();
                        let sampled = tokio::task::spawn_blocking(move || {
                            let now = wall_ms();
                            me.sample_store(&store, me.agent_now_ms(now), now);
                        })
                        .await;
                        if let Err(e) = sampled {
                            tracing::error!(error = %e, "metrics sample panicked");
                        }
                    }
                }
                _ = health.tick() => {
                    self.check_health(wall_ms());
                }
                changed = stop.changed() => {
                    // A dropped sender means stop.
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = webhook.await;
    }
}

#[cfg(test)]
mod tests;
