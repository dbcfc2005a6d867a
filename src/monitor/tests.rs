//! The monitor fed by a real agent tick on a temporary store, and its exposition checked by
//! `promtool`.

use super::*;
use crate::agent::Agent;
use crate::backtest::BACKTEST_START_MS;
use crate::market::sim::Sim;
use crate::risk::{BreakerKind, RiskJournal};

const MIN: u64 = 60_000;

struct Fixture {
    _dir: tempfile::TempDir,
    config: Config,
    store: Store,
    agent: Agent,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.agent.data_dir = dir.path().to_path_buf();
    config.agent.clock = ClockKind::Real;
    let tick_ms = config.agent.tick_interval.as_millis() as u64;
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let agent = Agent::open(&store, &config, BACKTEST_START_MS, |start, seed| {
        Ok(Box::new(Sim::new(seed, start, tick_ms)))
    })
    .unwrap();
    Fixture {
        _dir: dir,
        config,
        store,
        agent,
    }
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing"))
        .parse()
        .unwrap()
}

#[test]
fn a_tick_sets_the_tick_metrics() {
    let mut f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let report = f.agent.tick(&f.store).unwrap();
    monitor.on_tick_at(&report, &f.agent, 0.012, 1_000);
    let text = monitor.metrics.encode();
    assert_eq!(value(&text, "athena_ticks_total"), 1.0);
    assert_eq!(value(&text, "athena_equity_usd"), report.equity_usd);
    assert_eq!(
        value(&text, "athena_pnl_usd"),
        report.equity_usd - f.config.executor.paper_starting_usd
    );
    assert_eq!(
        value(&text, "athena_last_tick_timestamp_seconds"),
        report.at_ms as f64 / 1000.0
    );
    assert_eq!(value(&text, "athena_trading_state{state=\"active\"}"), 1.0);
    assert_eq!(value(&text, "athena_trading_state{state=\"halted\"}"), 0.0);
    assert_eq!(
        value(&text, "athena_tick_duration_seconds_bucket{le=\"0.025\"}"),
        1.0
    );
    assert_eq!(value(&text, "athena_risk_score"), 0.0);
    assert!(report.pools_seen > 0);
    // The first tick sets the trading state without an alert.
    assert!(monitor.alerts.recent().is_empty());
}

#[test]
fn trips_and_state_changes_raise_alerts_once() {
    let mut f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let mut report = f.agent.tick(&f.store).unwrap();
    monitor.on_tick_at(&report, &f.agent, 0.01, 1_000);
    report.trading_state = TradingState::Halted;
    report.risk_events = vec![RiskJournal {
        at_ms: report.at_ms,
        event: RiskEvent::Trip {
            breaker: BreakerKind::RapidLoss,
            reason: "pnl -6% over 1h".into(),
            until_ms: None,
        },
    }];
    monitor.on_tick_at(&report, &f.agent, 0.01, 2_000);
    // The same trip again within the dedup window: no new alert.
    monitor.on_tick_at(&report, &f.agent, 0.01, 3_000);
    let alerts = monitor.alerts.recent();
    let kinds: Vec<AlertKind> = alerts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [AlertKind::BreakerTrip, AlertKind::TradingState]);
    assert!(alerts[0].message.contains("rapid_loss") && alerts[0].message.contains("-6%"));
    assert_eq!(alerts[1].message, "trading state active -> halted");
    assert_eq!(alerts[1].severity, Severity::Critical);
}

#[test]
fn store_failure_is_unhealthy_until_a_write_works() {
    let f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let now = wall_ms();
    monitor.store_failed("No space left on device (os error 28)");
    let h = monitor.health(now);
    assert_eq!(h.status, Status::Unhealthy);
    assert_eq!(monitor.liveness(now).status, Status::Unhealthy);
    monitor.store_writable();
    assert_eq!(monitor.liveness(now).status, Status::Healthy);
    let kinds: Vec<(AlertKind, String)> = monitor
        .alerts
        .recent()
        .into_iter()
        .map(|a| (a.kind, a.key))
        .collect();
    assert_eq!(
        kinds,
        [
            (AlertKind::StoreWrite, "failed".to_string()),
            (AlertKind::StoreWrite, "recovered".to_string())
        ]
    );
}

#[test]
fn health_transitions_raise_one_alert_each() {
    let mut f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let report = f.agent.tick(&f.store).unwrap();
    let t0 = wall_ms();
    monitor.on_tick_at(&report, &f.agent, 0.01, t0);
    monitor.on_prune(&PruneReport::default());
    assert_eq!(monitor.check_health(t0).status, Status::Healthy);
    monitor.failure(FailureSource::Cloud, "firestore unavailable");
    let h = monitor.check_health(t0 + 1);
    assert_eq!(h.status, Status::Degraded);
    monitor.check_health(t0 + 2);
    // The loop stops ticking: 3 × 5 min + 30 s later it is unhealthy.
    let late = t0 + 16 * MIN;
    assert_eq!(monitor.check_health(late).status, Status::Unhealthy);
    assert_eq!(monitor.liveness(late).status, Status::Unhealthy);
    let health: Vec<String> = monitor
        .alerts
        .recent()
        .into_iter()
        .filter(|a| a.kind == AlertKind::Health)
        .map(|a| a.message)
        .collect();
    assert_eq!(health.len(), 2, "{health:?}");
    assert!(health[0].contains("degraded") && health[0].contains("firestore unavailable"));
    assert!(health[1].contains("has not ticked for 16m"), "{health:?}");
    let text = monitor.metrics.encode();
    assert_eq!(
        value(&text, "athena_api_failures_total{source=\"cloud\"}"),
        1.0
    );
    assert_eq!(value(&text, "athena_prune_runs_total"), 1.0);
}

#[test]
fn a_sample_reads_the_store_and_alerts_on_sync_lag() {
    let mut f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let report = f.agent.tick(&f.store).unwrap();
    let now = wall_ms();
    monitor.on_tick_at(&report, &f.agent, 0.01, now);
    // Agent time 20 minutes after the tick: its unsynced rows are older than 15 minutes.
    monitor.sample_store(&f.store, report.at_ms + 20 * MIN, now);
    let text = monitor.metrics.encode();
    assert!(value(&text, "athena_store_size_bytes") > 0.0);
    let ratio = value(&text, "athena_disk_used_ratio");
    assert!(ratio > 0.0 && ratio <= 1.0, "{ratio}");
    assert!(value(&text, "athena_disk_free_bytes") > 0.0);
    assert!(value(&text, "athena_sync_queue_depth") > 0.0);
    assert!(value(&text, "athena_sync_oldest_unsynced_seconds") >= 20.0 * 60.0);
    assert!(text.contains("athena_memories{category="), "{text}");
    let alerts = monitor.alerts.recent();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, AlertKind::SyncLag);
    let h = monitor.health(now);
    let sync = h
        .components
        .iter()
        .find(|c| c.name == ComponentName::Sync)
        .unwrap();
    assert_eq!(sync.status, Status::Degraded);
    assert!(sync.reason.contains("20m"), "{}", sync.reason);
}

#[tokio::test]
async fn run_samples_on_its_interval_until_stopped() {
    let f = fixture();
    let mut config = f.config.clone();
    config.monitor.metrics_interval = std::time::Duration::from_millis(20);
    config.monitor.health_interval = std::time::Duration::from_millis(20);
    let monitor = Monitor::new(&config).unwrap();
    let store = Arc::new(f.store);
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(monitor.clone().run(move || Some(store.clone()), stop));
    let mut sampled = false;
    for _ in 0..500 {
        if monitor.metrics.store_size.get() > 0 {
            sampled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(sampled, "no sample taken");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("run stops")
        .unwrap();
}

/// `promtool check metrics` on the exposition after a tick, a sample, a command, a failure,
/// a prune and an alert: any problem it reports fails the test.
#[test]
fn promtool_accepts_the_exposition() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut f = fixture();
    let monitor = Monitor::new(&f.config).unwrap();
    let report = f.agent.tick(&f.store).unwrap();
    let now = wall_ms();
    monitor.on_tick_at(&report, &f.agent, 0.003, now);
    monitor.sample_store(&f.store, report.at_ms, now);
    monitor.on_command("emergency_stop", "ok", 0.02);
    monitor.failure(FailureSource::Market, "timeout");
    monitor.on_prune(&PruneReport::default());
    monitor.store_failed("disk full");
    let text = monitor.metrics.encode();

    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!(
            "promtool not runnable ({e}): install it with `apt-get install prometheus` \
             (Debian's prometheus package ships promtool)"
        ),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics failed ({}):\n{said}\n--- exposition ---\n{text}",
        out.status
    );
}
