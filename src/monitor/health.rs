//! Health per component (SPEC.md §7): healthy, degraded or unhealthy, each with a reason.
//!
//! [`evaluate`] is pure: every reading comes in an [`Inputs`] (times in wall ms, passed by
//! the caller), so the rules are tested without clocks. The overall status is the worst
//! component's; [`liveness`] looks only at what a restart could fix (the loop heartbeat and
//! the store).

use athena_config::MonitorConfig;
use serde::{Deserialize, Serialize};

/// A component's (or the whole agent's) health, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Working.
    Healthy,
    /// Working, but something needs attention.
    Degraded,
    /// Not working.
    Unhealthy,
}

impl Status {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
        }
    }
}

/// What is checked (a closed set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentName {
    /// The agent loop's heartbeat.
    Loop,
    /// The store: writable, disk room.
    Store,
    /// Cloud sync.
    Sync,
    /// The market data source.
    Market,
    /// The process: CPU and memory.
    Process,
    /// Memory pruning.
    Pruning,
    /// The LLM advisor (listed only when it is on).
    Llm,
}

impl ComponentName {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Loop => "loop",
            Self::Store => "store",
            Self::Sync => "sync",
            Self::Market => "market",
            Self::Process => "process",
            Self::Pruning => "pruning",
            Self::Llm => "llm",
        }
    }
}

/// One component's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Component {
    /// Which.
    pub name: ComponentName,
    /// Its status.
    pub status: Status,
    /// Why (empty when healthy).
    pub reason: String,
}

/// The health of every component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// The worst component's status.
    pub status: Status,
    /// Each component.
    pub components: Vec<Component>,
    /// When it was checked, wall ms.
    pub checked_wall_ms: u64,
}

/// Thresholds, from `[monitor]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// CPU above this fraction of the machine is degraded.
    pub cpu_ratio: f64,
    /// Resident memory above this fraction of the machine's is degraded.
    pub memory_ratio: f64,
    /// Disk use above this fraction is degraded.
    pub disk_ratio: f64,
    /// Sync lag or oldest unsynced change above this is degraded, ms.
    pub sync_lag_ms: u64,
}

impl Thresholds {
    /// From the `[monitor]` section.
    pub fn of(cfg: &MonitorConfig) -> Self {
        Self {
            cpu_ratio: cfg.cpu_pct / 100.0,
            memory_ratio: cfg.memory_pct / 100.0,
            disk_ratio: cfg.disk_pct / 100.0,
            sync_lag_ms: cfg.sync_lag_alert.as_millis() as u64,
        }
    }
}

/// Margin added to three tick intervals before a silent loop is unhealthy.
pub const HEARTBEAT_MARGIN_MS: u64 = 30_000;

/// Every reading health is decided on. Times are wall ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Inputs {
    /// Now.
    pub now_wall_ms: u64,
    /// When monitoring started (the reference before the first tick and the first prune).
    pub started_wall_ms: u64,
    /// The last committed tick (`None`: none yet).
    pub last_tick_wall_ms: Option<u64>,
    /// The last tick that failed reading the market (`None`: none): the loop is alive and
    /// retrying, so a restart would not help.
    pub last_failed_tick_wall_ms: Option<u64>,
    /// Expected wall time between ticks.
    pub tick_interval_wall_ms: u64,
    /// The last store write error, until a write succeeds again.
    pub store_error: Option<String>,
    /// Used fraction of the data directory's filesystem (`None`: not sampled yet).
    pub disk_used_ratio: Option<f64>,
    /// Sync passes (or cloud calls) in a row that failed.
    pub sync_failures: u64,
    /// The last sync error.
    pub sync_last_error: String,
    /// The largest sink lag, ms.
    pub sync_lag_ms: u64,
    /// Age of the oldest unsynced change, ms.
    pub sync_oldest_unsynced_ms: u64,
    /// Pools in the last tick and how many of them were rejected (`None`: no tick yet).
    pub pools: Option<(usize, usize)>,
    /// Why the market could not be read at the last attempt (`None`: the last tick read it).
    pub market_error: Option<String>,
    /// Process CPU as a fraction of the machine (`None`: not sampled yet).
    pub cpu_ratio: Option<f64>,
    /// Process resident memory as a fraction of the machine's.
    pub memory_ratio: Option<f64>,
    /// The last prune (`None`: none by this process yet).
    pub last_prune_wall_ms: Option<u64>,
    /// Prune interval in wall time.
    pub prune_interval_wall_ms: u64,
    /// The LLM advisor, when it is on.
    pub llm: Option<LlmInputs>,
}

/// What the LLM advisor's health reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmInputs {
    /// Questions put to it since the agent opened.
    pub questions: u64,
    /// Share of them answered without the model (templates and caches), 0–1.
    pub hit_rate: f64,
    /// Why the last consultation failed, until one answers again (`None`: it did not).
    pub last_failure: Option<String>,
    /// The llm_timeout breaker is tripped: rule-based decisions only.
    pub rule_based_only: bool,
}

/// Questions before the hit rate counts for health.
pub const LLM_HIT_RATE_MIN_QUESTIONS: u64 = 20;
/// A hit rate below this is degraded (SPEC.md §7).
pub const LLM_HIT_RATE_FLOOR: f64 = 0.3;

/// Human duration of `ms`, to the second.
fn ago(ms: u64) -> String {
    humantime::format_duration(std::time::Duration::from_secs(ms / 1000)).to_string()
}

fn component(name: ComponentName, status: Status, reason: impl Into<String>) -> Component {
    Component {
        name,
        status,
        reason: reason.into(),
    }
}

fn healthy(name: ComponentName) -> Component {
    component(name, Status::Healthy, "")
}

/// The loop's heartbeat: a tick committed or, while the market cannot be read, a tick tried
/// within three intervals and the margin. A loop that only retries is degraded (a restart
/// would not bring the market back); a silent one is unhealthy.
fn heartbeat(i: &Inputs) -> Component {
    let last = i.last_tick_wall_ms.unwrap_or(i.started_wall_ms);
    let silent = i.now_wall_ms.saturating_sub(last);
    let limit = 3 * i.tick_interval_wall_ms + HEARTBEAT_MARGIN_MS;
    if silent <= limit {
        return healthy(ComponentName::Loop);
    }
    let what = if i.last_tick_wall_ms.is_some() {
        "the agent loop has not ticked for"
    } else {
        "the agent loop has not ticked since start-up,"
    };
    let retrying = i
        .last_failed_tick_wall_ms
        .is_some_and(|t| i.now_wall_ms.saturating_sub(t) <= limit);
    if retrying {
        component(
            ComponentName::Loop,
            Status::Degraded,
            format!(
                "{what} {}: it retries each tick, the market cannot be read (see market)",
                ago(silent)
            ),
        )
    } else {
        component(
            ComponentName::Loop,
            Status::Unhealthy,
            format!("{what} {}", ago(silent)),
        )
    }
}

fn store(i: &Inputs, t: &Thresholds) -> Component {
    if let Some(e) = &i.store_error {
        return component(
            ComponentName::Store,
            Status::Unhealthy,
            format!("store write failed: {e}"),
        );
    }
    match i.disk_used_ratio {
        Some(r) if r > t.disk_ratio => component(
            ComponentName::Store,
            Status::Degraded,
            format!(
                "disk {:.1}% used, above {:.1}%",
                100.0 * r,
                100.0 * t.disk_ratio
            ),
        ),
        _ => healthy(ComponentName::Store),
    }
}

fn sync(i: &Inputs, t: &Thresholds) -> Component {
    if i.sync_failures > 0 {
        return component(
            ComponentName::Sync,
            Status::Degraded,
            format!(
                "{} failed sync attempts in a row: {}",
                i.sync_failures, i.sync_last_error
            ),
        );
    }
    let lag = i.sync_lag_ms.max(i.sync_oldest_unsynced_ms);
    if lag > t.sync_lag_ms {
        return component(
            ComponentName::Sync,
            Status::Degraded,
            format!("the oldest unsynced change is {} old", ago(lag)),
        );
    }
    healthy(ComponentName::Sync)
}

fn market(i: &Inputs) -> Component {
    if let Some(e) = &i.market_error {
        return component(
            ComponentName::Market,
            Status::Degraded,
            format!("the market could not be read: {e}"),
        );
    }
    match i.pools {
        Some((seen, rejected)) if seen > 0 && rejected >= seen => component(
            ComponentName::Market,
            Status::Degraded,
            format!("all {seen} pool snapshots of the last tick were rejected as bad data"),
        ),
        _ => healthy(ComponentName::Market),
    }
}

fn process(i: &Inputs, t: &Thresholds) -> Component {
    let mut reasons = Vec::new();
    if let Some(c) = i.cpu_ratio.filter(|c| *c > t.cpu_ratio) {
        reasons.push(format!("CPU {:.1}% of the machine", 100.0 * c));
    }
    if let Some(m) = i.memory_ratio.filter(|m| *m > t.memory_ratio) {
        reasons.push(format!("memory {:.1}% of the machine", 100.0 * m));
    }
    if reasons.is_empty() {
        healthy(ComponentName::Process)
    } else {
        component(ComponentName::Process, Status::Degraded, reasons.join(", "))
    }
}

fn pruning(i: &Inputs) -> Component {
    let last = i.last_prune_wall_ms.unwrap_or(i.started_wall_ms);
    let since = i.now_wall_ms.saturating_sub(last);
    let interval = i.prune_interval_wall_ms;
    let status = if interval == 0 || 2 * since <= 3 * interval {
        Status::Healthy
    } else if since <= 2 * interval {
        Status::Degraded
    } else {
        Status::Unhealthy
    };
    if status == Status::Healthy {
        return healthy(ComponentName::Pruning);
    }
    component(
        ComponentName::Pruning,
        status,
        format!("no prune for {} (interval {})", ago(since), ago(interval)),
    )
}

/// The health of every component from `i` under `t`.
pub fn evaluate(i: &Inputs, t: &Thresholds) -> HealthReport {
    report(
        vec![
            heartbeat(i),
            store(i, t),
            sync(i, t),
            market(i),
            process(i, t),
            pruning(i),
        ]
        .into_iter()
        .chain(i.llm.as_ref().map(llm))
        .collect(),
        i.now_wall_ms,
    )
}

/// The LLM advisor: degraded while its breaker keeps it off, after a failed consultation
/// (the rules decided alone), or with a hit rate under the floor once enough questions were
/// asked. Never unhealthy: the agent trades without it.
fn llm(l: &LlmInputs) -> Component {
    let degraded = |why: String| component(ComponentName::Llm, Status::Degraded, why);
    if l.rule_based_only {
        return degraded("llm_timeout is tripped: the rules decide alone".into());
    }
    if let Some(why) = &l.last_failure {
        return degraded(format!(
            "the last consultation failed ({why}): the rules decided alone"
        ));
    }
    if l.questions >= LLM_HIT_RATE_MIN_QUESTIONS && l.hit_rate < LLM_HIT_RATE_FLOOR {
        return degraded(format!(
            "{:.0}% of {} questions answered without the model, below {:.0}%",
            100.0 * l.hit_rate,
            l.questions,
            100.0 * LLM_HIT_RATE_FLOOR
        ));
    }
    healthy(ComponentName::Llm)
}

/// Liveness: unhealthy only when the loop heartbeat or the store is; nothing else counts.
pub fn liveness(i: &Inputs, t: &Thresholds) -> HealthReport {
    let mut parts = vec![heartbeat(i), store(i, t)];
    for c in &mut parts {
        if c.status == Status::Degraded {
            c.status = Status::Healthy;
        }
    }
    report(parts, i.now_wall_ms)
}

fn report(components: Vec<Component>, now: u64) -> HealthReport {
    HealthReport {
        status: components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Healthy),
        components,
        checked_wall_ms: now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn t() -> Thresholds {
        Thresholds::of(&MonitorConfig::default())
    }

    fn fine() -> Inputs {
        Inputs {
            now_wall_ms: 1000 * MIN,
            started_wall_ms: 0,
            last_tick_wall_ms: Some(1000 * MIN - 1000),
            tick_interval_wall_ms: MIN,
            disk_used_ratio: Some(0.5),
            pools: Some((10, 1)),
            cpu_ratio: Some(0.1),
            memory_ratio: Some(0.1),
            last_prune_wall_ms: Some(999 * MIN),
            prune_interval_wall_ms: 60 * MIN,
            ..Inputs::default()
        }
    }

    fn status_of(r: &HealthReport, name: ComponentName) -> (Status, String) {
        let c = r.components.iter().find(|c| c.name == name).unwrap();
        (c.status, c.reason.clone())
    }

    #[test]
    fn the_llm_is_listed_when_on_and_only_ever_degraded() {
        let with = |l: LlmInputs| {
            let r = evaluate(
                &Inputs {
                    llm: Some(l),
                    ..fine()
                },
                &t(),
            );
            (r.status, status_of(&r, ComponentName::Llm))
        };
        let fine_llm = LlmInputs {
            questions: 100,
            hit_rate: 0.8,
            ..LlmInputs::default()
        };
        assert_eq!(with(fine_llm.clone()).1.0, Status::Healthy);
        let (overall, (status, why)) = with(LlmInputs {
            rule_based_only: true,
            ..fine_llm.clone()
        });
        assert_eq!((overall, status), (Status::Degraded, Status::Degraded));
        assert!(why.contains("llm_timeout"), "{why}");
        let failed = with(LlmInputs {
            last_failure: Some("HTTP 500".into()),
            ..fine_llm.clone()
        });
        assert!(failed.1.1.contains("HTTP 500"));
        let low = with(LlmInputs {
            hit_rate: 0.1,
            ..fine_llm.clone()
        });
        assert_eq!(low.1.0, Status::Degraded);
        // Too few questions for the hit rate to mean anything.
        let early = with(LlmInputs {
            questions: 5,
            hit_rate: 0.0,
            ..fine_llm
        });
        assert_eq!(early.1.0, Status::Healthy);
    }

    #[test]
    fn all_fine_is_healthy() {
        let r = evaluate(&fine(), &t());
        assert_eq!(r.status, Status::Healthy, "{r:?}");
        assert_eq!(r.components.len(), 6);
    }

    #[test]
    fn heartbeat_allows_three_intervals_and_the_margin() {
        let mut i = fine();
        i.last_tick_wall_ms = Some(i.now_wall_ms - 3 * MIN - HEARTBEAT_MARGIN_MS);
        assert_eq!(evaluate(&i, &t()).status, Status::Healthy);
        i.last_tick_wall_ms = Some(i.now_wall_ms - 3 * MIN - HEARTBEAT_MARGIN_MS - 1000);
        let r = evaluate(&i, &t());
        let (s, why) = status_of(&r, ComponentName::Loop);
        assert_eq!(s, Status::Unhealthy);
        assert!(why.contains("has not ticked for 3m 31s"), "{why}");
        assert_eq!(liveness(&i, &t()).status, Status::Unhealthy);
    }

    #[test]
    fn a_loop_that_retries_an_unreadable_market_is_degraded_and_alive() {
        let mut i = fine();
        i.last_tick_wall_ms = Some(i.now_wall_ms - 10 * MIN);
        i.market_error = Some("eth_blockNumber: connection refused".into());
        i.last_failed_tick_wall_ms = Some(i.now_wall_ms - MIN);
        let r = evaluate(&i, &t());
        let (s, why) = status_of(&r, ComponentName::Loop);
        assert_eq!(s, Status::Degraded, "{why}");
        assert!(
            why.contains("has not ticked for 10m") && why.contains("retries"),
            "{why}"
        );
        assert_eq!(status_of(&r, ComponentName::Market).0, Status::Degraded);
        assert_eq!(
            liveness(&i, &t()).status,
            Status::Healthy,
            "a restart would not help"
        );
        // Once the retries stop too, the loop is silent: unhealthy.
        i.last_failed_tick_wall_ms = Some(i.now_wall_ms - 4 * MIN);
        assert_eq!(liveness(&i, &t()).status, Status::Unhealthy);
    }

    #[test]
    fn store_error_is_unhealthy_and_full_disk_degraded() {
        let mut i = fine();
        i.disk_used_ratio = Some(0.95);
        let r = evaluate(&i, &t());
        assert_eq!(status_of(&r, ComponentName::Store).0, Status::Degraded);
        assert_eq!(liveness(&i, &t()).status, Status::Healthy);
        i.store_error = Some("No space left on device".into());
        let r = evaluate(&i, &t());
        assert_eq!(r.status, Status::Unhealthy);
        assert!(status_of(&r, ComponentName::Store).1.contains("No space"));
        assert_eq!(liveness(&i, &t()).status, Status::Unhealthy);
    }

    #[test]
    fn sync_failures_and_lag_degrade() {
        let mut i = fine();
        i.sync_failures = 2;
        i.sync_last_error = "unavailable".into();
        let (s, why) = status_of(&evaluate(&i, &t()), ComponentName::Sync);
        assert_eq!(s, Status::Degraded);
        assert!(why.contains("unavailable"), "{why}");
        i.sync_failures = 0;
        i.sync_oldest_unsynced_ms = 15 * MIN;
        assert_eq!(evaluate(&i, &t()).status, Status::Healthy);
        i.sync_oldest_unsynced_ms = 16 * MIN;
        assert_eq!(evaluate(&i, &t()).status, Status::Degraded);
        assert_eq!(liveness(&i, &t()).status, Status::Healthy);
    }

    #[test]
    fn all_pools_rejected_degrades_the_market() {
        let mut i = fine();
        i.pools = Some((4, 4));
        assert_eq!(
            status_of(&evaluate(&i, &t()), ComponentName::Market).0,
            Status::Degraded
        );
        i.pools = Some((0, 0));
        assert_eq!(evaluate(&i, &t()).status, Status::Healthy);
    }

    #[test]
    fn a_market_that_cannot_be_read_degrades_the_market_with_its_error() {
        let mut i = fine();
        i.market_error = Some("RPC eth_getBlockByNumber: connection refused".into());
        let (status, reason) = status_of(&evaluate(&i, &t()), ComponentName::Market);
        assert_eq!(status, Status::Degraded);
        assert!(reason.contains("connection refused"), "{reason}");
    }

    #[test]
    fn cpu_and_memory_thresholds() {
        let mut i = fine();
        i.cpu_ratio = Some(0.81);
        i.memory_ratio = Some(0.86);
        let (s, why) = status_of(&evaluate(&i, &t()), ComponentName::Process);
        assert_eq!(s, Status::Degraded);
        assert!(why.contains("CPU") && why.contains("memory"), "{why}");
    }

    #[test]
    fn prune_overdue_by_half_degrades_and_double_is_unhealthy() {
        let mut i = fine();
        i.last_prune_wall_ms = Some(i.now_wall_ms - 90 * MIN);
        assert_eq!(evaluate(&i, &t()).status, Status::Healthy);
        i.last_prune_wall_ms = Some(i.now_wall_ms - 91 * MIN);
        assert_eq!(evaluate(&i, &t()).status, Status::Degraded);
        i.last_prune_wall_ms = Some(i.now_wall_ms - 121 * MIN);
        assert_eq!(evaluate(&i, &t()).status, Status::Unhealthy);
        assert_eq!(liveness(&i, &t()).status, Status::Healthy);
    }

    #[test]
    fn status_serializes_snake_case_and_orders() {
        assert_eq!(
            serde_json::to_string(&Status::Unhealthy).unwrap(),
            "\"unhealthy\""
        );
        assert!(Status::Healthy < Status::Degraded && Status::Degraded < Status::Unhealthy);
    }
}
