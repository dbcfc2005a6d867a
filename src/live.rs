//! What a running agent shares with its HTTP API: a [`View`] of the agent after each commit
//! (published on a watch channel, so a reader never waits for the loop and never sees half a
//! tick), the store of the current session (`None` while it is being reopened), the sync
//! worker's flush bell, the operator command queue, and bounded in-memory series of equity
//! and tick durations for charts and `/performance`.
//!
//! The agent loop is the only writer of the store; API handlers read it through read
//! transactions (redb readers never block the writer) and change it only through
//! [`crate::control`].

use crate::agent::Agent;
use crate::agent::Status;
use crate::control::Commands;
use crate::market::PoolSnapshot;
use crate::monitor::Monitor;
use crate::risk::{GasDecision, RiskScore, RiskState};
use athena_storage::Store;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{Notify, watch};

/// Equity points kept in memory: a point per tick, 100,000 ticks (about 347 days at 5 min).
pub const EQUITY_POINTS: usize = 100_000;

/// Tick durations kept for `/performance` percentiles.
pub const TICK_SAMPLES: usize = 4_096;

/// The agent after its last commit.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// What `athena status` shows.
    pub status: Status,
    /// The risk engine's state.
    pub risk: RiskState,
    /// The portfolio's risk score.
    pub score: RiskScore,
    /// Gas protection's verdict on an entry at the last tick's gas price.
    pub gas: Option<GasDecision>,
    /// The last tick's gas price, gwei, and ETH price, USD.
    pub gas_gwei: Option<f64>,
    /// ETH price, USD.
    pub eth_usd: Option<f64>,
    /// The last tick's pools (bad snapshots left out).
    pub pools: Vec<PoolSnapshot>,
    /// An exit-all waits for the next tick.
    pub exit_all_pending: bool,
    /// Pools closed for protection and not to be re-entered yet.
    pub guarded: Vec<String>,
    /// The LLM advisor's layers and model since the agent opened (`None`: the advisor is off).
    pub llm: Option<crate::llm::LlmStats>,
}

impl View {
    /// The view of `agent` now.
    pub fn of(agent: &Agent) -> Self {
        let market = agent.last_market();
        Self {
            status: agent.status(),
            risk: agent.risk.clone(),
            score: agent.risk_score(),
            gas: agent.gas_verdict(),
            gas_gwei: market.map(|m| m.gas_gwei),
            eth_usd: market.map(|m| m.eth_usd),
            pools: market.map_or_else(Vec::new, |m| m.pools.clone()),
            exit_all_pending: agent.exit_all_pending(),
            guarded: agent.state.reentry_guards.keys().cloned().collect(),
            llm: agent.llm_stats(),
        }
    }
}

/// One point per committed tick: equity, and the risk score and gas price beside it (the
/// dashboard's charts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EquityPoint {
    /// Tick.
    pub tick: u64,
    /// Agent time, ms.
    pub at_ms: u64,
    /// Equity, USD.
    pub equity_usd: f64,
    /// The portfolio's risk score after the tick, 0–100.
    pub risk_score: f64,
    /// The tick's gas price, gwei (absent when the tick had none).
    pub gas_gwei: Option<f64>,
}

/// Duration percentiles over the last [`TICK_SAMPLES`] ticks (or commands), µs.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct TickTimes {
    /// Ticks measured.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
}

/// Shared between the agent loop (writer of the view) and the API (reader).
pub struct Shared {
    view: watch::Sender<Option<Arc<View>>>,
    store: RwLock<Option<Arc<Store>>>,
    equity: Mutex<VecDeque<EquityPoint>>,
    ticks: Mutex<VecDeque<u32>>,
    ticks_without_write: Mutex<VecDeque<u32>>,
    commands_applied: Mutex<VecDeque<(&'static str, u32)>>,
    last_checkpoint: Mutex<Option<std::time::Instant>>,
    /// The last recovery, shown in every published status.
    last_recovery: Mutex<Option<crate::recovery::Recovery>>,
    /// Rings the sync worker for a pass now.
    pub flush: Arc<Notify>,
    /// The operator command queue.
    pub commands: Commands,
    /// Metrics, health and alerts.
    pub monitor: Arc<Monitor>,
}

impl Shared {
    /// Nothing published yet.
    pub fn new(commands: Commands, monitor: Arc<Monitor>) -> Arc<Self> {
        Arc::new(Self {
            view: watch::channel(None).0,
            store: RwLock::new(None),
            equity: Mutex::new(VecDeque::new()),
            ticks: Mutex::new(VecDeque::new()),
            ticks_without_write: Mutex::new(VecDeque::new()),
            commands_applied: Mutex::new(VecDeque::new()),
            last_checkpoint: Mutex::new(None),
            last_recovery: Mutex::new(None),
            flush: Arc::new(Notify::new()),
            commands,
            monitor,
        })
    }

    /// Publishes the agent after a commit.
    pub fn publish(&self, agent: &Agent) -> Arc<View> {
        let mut view = View::of(agent);
        view.status.last_recovery = self.last_recovery.lock().expect("never poisoned").clone();
        let view = Arc::new(view);
        self.view.send_replace(Some(view.clone()));
        view
    }

    /// Sets the last recovery the published status shows (read once at start).
    pub fn set_last_recovery(&self, recovery: Option<crate::recovery::Recovery>) {
        *self.last_recovery.lock().expect("never poisoned") = recovery;
    }

    /// Records a committed tick: its equity point, how long it took, and how long its store
    /// transaction took (`write_micros`, the durable commit included).
    pub fn record_tick(&self, point: EquityPoint, micros: u64, write_micros: u64) {
        let clamp = |us: u64| us.min(u64::from(u32::MAX)) as u32;
        push_bounded(&self.equity, point, EQUITY_POINTS);
        push_bounded(&self.ticks, clamp(micros), TICK_SAMPLES);
        let without = micros.saturating_sub(write_micros);
        push_bounded(&self.ticks_without_write, clamp(without), TICK_SAMPLES);
    }

    /// The agent after its last commit (`None` before the first).
    pub fn view(&self) -> Option<Arc<View>> {
        self.view.borrow().clone()
    }

    /// Wakes on each publish.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<View>>> {
        self.view.subscribe()
    }

    /// Sets the store of the current session (`None` while it is closed for a reopen).
    pub fn set_store(&self, store: Option<Arc<Store>>) {
        *self.store.write().unwrap_or_else(|p| p.into_inner()) = store;
    }

    /// The store of the current session.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.store.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Equity points from `since_ms` on, at most `points` of them: evenly thinned when there
    /// are more (the last point always kept).
    pub fn equity(&self, since_ms: u64, points: usize) -> Vec<EquityPoint> {
        let series = self.equity.lock().unwrap_or_else(|p| p.into_inner());
        let from = series.partition_point(|p| p.at_ms < since_ms);
        let selected: Vec<EquityPoint> = series.range(from..).copied().collect();
        downsample(&selected, points)
    }

    /// The newest equity point.
    pub fn last_equity(&self) -> Option<EquityPoint> {
        let series = self.equity.lock().unwrap_or_else(|p| p.into_inner());
        series.back().copied()
    }

    /// Records an operator command's time from request to committed answer.
    pub fn record_command(&self, command: &'static str, outcome: &'static str, seconds: f64) {
        self.monitor.on_command(command, outcome, seconds);
        let micros = (seconds * 1e6).min(f64::from(u32::MAX)) as u32;
        push_bounded(&self.commands_applied, (command, micros), TICK_SAMPLES);
    }

    /// Claims an on-demand checkpoint: `Err(wait)` when the last one was taken less than
    /// [`crate::control::MIN_CHECKPOINT_GAP`] ago.
    pub fn claim_checkpoint(&self) -> Result<(), std::time::Duration> {
        let gap = crate::control::MIN_CHECKPOINT_GAP;
        let mut last = self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(at) = *last
            && at.elapsed() < gap
        {
            return Err(gap - at.elapsed());
        }
        *last = Some(std::time::Instant::now());
        Ok(())
    }

    /// Tick duration percentiles over the recent ticks.
    pub fn tick_times(&self) -> TickTimes {
        let ticks = self.ticks.lock().unwrap_or_else(|p| p.into_inner());
        percentiles(ticks.iter().copied().collect())
    }

    /// Percentiles of the recent ticks without their store transaction (what CPU contention
    /// slows; the durable commit's time is the disk's).
    pub fn tick_times_without_write(&self) -> TickTimes {
        let ticks = self
            .ticks_without_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        percentiles(ticks.iter().copied().collect())
    }

    /// Request-to-commit percentiles of the recent operator commands, by command.
    pub fn command_times(&self) -> std::collections::BTreeMap<String, TickTimes> {
        let applied = self
            .commands_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let mut by: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
        for (name, micros) in applied.iter() {
            by.entry((*name).to_string()).or_default().push(*micros);
        }
        by.into_iter().map(|(k, v)| (k, percentiles(v))).collect()
    }
}

/// Percentiles of durations in µs.
fn percentiles(mut v: Vec<u32>) -> TickTimes {
    {
        if v.is_empty() {
            return TickTimes::default();
        }
        v.sort_unstable();
        let at = |q: f64| u64::from(v[((v.len() - 1) as f64 * q).round() as usize]);
        TickTimes {
            count: v.len() as u64,
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: u64::from(v[v.len() - 1]),
        }
    }
}

fn push_bounded<T>(ring: &Mutex<VecDeque<T>>, value: T, capacity: usize) {
    let mut ring = ring.lock().unwrap_or_else(|p| p.into_inner());
    if ring.len() == capacity {
        ring.pop_front();
    }
    ring.push_back(value);
}

/// At most `points` of `series`, evenly spaced by index, the last one always kept.
fn downsample(series: &[EquityPoint], points: usize) -> Vec<EquityPoint> {
    if points == 0 || series.len() <= points {
        return series.to_vec();
    }
    let step = series.len() as f64 / points as f64;
    let mut out: Vec<EquityPoint> = (0..points)
        .map(|i| series[((i as f64 + 1.0) * step).ceil() as usize - 1])
        .collect();
    out.dedup_by_key(|p| p.tick);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: u64) -> Vec<EquityPoint> {
        (0..n)
            .map(|i| EquityPoint {
                tick: i,
                at_ms: i * 1000,
                equity_usd: i as f64,
                risk_score: 0.0,
                gas_gwei: None,
            })
            .collect()
    }

    #[test]
    fn downsampling_keeps_the_count_asked_for_the_order_and_the_last_point() {
        for (n, points) in [(10, 3), (1000, 7), (5, 5), (5, 10), (100_000, 500)] {
            let s = series(n);
            let d = downsample(&s, points);
            assert_eq!(d.len(), points.min(n as usize), "{n} {points}");
            assert_eq!(d.last(), s.last());
            assert!(d.windows(2).all(|w| w[0].tick < w[1].tick));
        }
    }

    #[test]
    fn the_rings_are_bounded() {
        let (commands, _q) = crate::control::queue();
        let monitor = Monitor::new(&athena_config::Config::default()).unwrap();
        let shared = Shared::new(commands, monitor);
        for i in 0..(TICK_SAMPLES as u64 + 10) {
            shared.record_tick(
                EquityPoint {
                    tick: i,
                    at_ms: i,
                    equity_usd: 1.0,
                    risk_score: 0.0,
                    gas_gwei: None,
                },
                i,
                0,
            );
        }
        let t = shared.tick_times();
        assert_eq!(t.count, TICK_SAMPLES as u64);
        assert_eq!(t.max_us, TICK_SAMPLES as u64 + 9);
        assert_eq!(shared.equity(0, 0).len(), TICK_SAMPLES + 10);
        assert_eq!(shared.equity(TICK_SAMPLES as u64, 0).len(), 10);
    }
}
