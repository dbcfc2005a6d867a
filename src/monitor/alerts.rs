//! Alerts: raised by the monitor, deduplicated by key within `monitor.alert_dedup`, written to
//! the log and to stdout (`athena: alert: <message>`), kept in a ring of the last
//! [`RING_CAPACITY`] for `/alerts`, broadcast to live subscribers, and, when
//! `monitor.webhook_url` is set, POSTed as JSON by [`Alerts::deliver`].
//!
//! Bounded everywhere: the ring drops its oldest; the broadcast channel holds
//! [`BROADCAST_CAPACITY`] and a subscriber that falls behind gets `Lagged` and skips ahead; the
//! webhook queue holds [`QUEUE_CAPACITY`] and, when full, drops its oldest and counts it in
//! `athena_alert_webhook_deliveries_total{outcome="dropped"}`. [`Alerts::raise`] never waits
//! on the network. The webhook URL may hold a token: it is never logged.

use super::metrics::Metrics;
use athena_config::MonitorConfig;
use prometheus::IntCounterVec;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};

/// Alerts kept for [`Alerts::recent`].
pub const RING_CAPACITY: usize = 200;
/// Alerts waiting for the webhook.
pub const QUEUE_CAPACITY: usize = 256;
/// Alerts a live subscriber may fall behind by.
pub const BROADCAST_CAPACITY: usize = 64;

/// What an alert is about (a closed set: the label of `athena_alerts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A circuit breaker tripped.
    BreakerTrip,
    /// The trading state changed.
    TradingState,
    /// Sync lags behind.
    SyncLag,
    /// Rows were dead-lettered.
    DeadLetters,
    /// A store write failed (or works again).
    StoreWrite,
    /// The overall health changed.
    Health,
}

impl AlertKind {
    /// Every kind.
    pub const ALL: [Self; 6] = [
        Self::BreakerTrip,
        Self::TradingState,
        Self::SyncLag,
        Self::DeadLetters,
        Self::StoreWrite,
        Self::Health,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BreakerTrip => "breaker_trip",
            Self::TradingState => "trading_state",
            Self::SyncLag => "sync_lag",
            Self::DeadLetters => "dead_letters",
            Self::StoreWrite => "store_write",
            Self::Health => "health",
        }
    }
}

/// How bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing (a recovery).
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Sequence number in this process, from 1.
    pub seq: u64,
    /// When, wall ms.
    pub at_wall_ms: u64,
    /// What about.
    pub kind: AlertKind,
    /// Deduplication key (with the kind): the same key is not raised twice within the window.
    pub key: String,
    /// How bad.
    pub severity: Severity,
    /// One line for a human.
    pub message: String,
}

/// Webhook delivery settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// Per-request timeout.
    pub timeout: Duration,
    /// Attempts per alert.
    pub attempts: u32,
    /// Wait after the first failed attempt; doubled after each further one.
    pub backoff_base: Duration,
}

impl Default for Delivery {
    /// 5 s timeout, 3 attempts, waits of 1 s then 2 s.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempts: 3,
            backoff_base: Duration::from_secs(1),
        }
    }
}

/// The webhook client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("alert webhook client: {0}")]
pub struct WebhookError(#[from] reqwest::Error);

#[derive(Default)]
struct Inner {
    next_seq: u64,
    /// (kind, key) → wall ms it was last raised.
    last_raised: HashMap<(AlertKind, String), u64>,
    ring: VecDeque<Alert>,
    queue: VecDeque<Alert>,
}

/// The alert hub.
pub struct Alerts {
    dedup_ms: u64,
    webhook_url: Option<String>,
    inner: Mutex<Inner>,
    queued: Notify,
    live: broadcast::Sender<Alert>,
    by_kind: IntCounterVec,
    deliveries: IntCounterVec,
}

impl Alerts {
    /// Alerts under `cfg`, counted in `metrics`.
    pub fn new(cfg: &MonitorConfig, metrics: &Metrics) -> Self {
        let (live, _) = broadcast::channel(BROADCAST_CAPACITY);
        Self {
            dedup_ms: cfg.alert_dedup.as_millis() as u64,
            webhook_url: Some(cfg.webhook_url.clone()).filter(|u| !u.is_empty()),
            inner: Mutex::new(Inner {
                next_seq: 1,
                ..Inner::default()
            }),
            queued: Notify::new(),
            live,
            by_kind: metrics.alerts.clone(),
            deliveries: metrics.webhook_deliveries.clone(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Raises an alert at `now_wall_ms` unless the same `kind` and `key` was raised within the
    /// dedup window. Returns the alert raised, or `None` when it was a duplicate.
    pub fn raise(
        &self,
        kind: AlertKind,
        key: impl Into<String>,
        severity: Severity,
        message: impl Into<String>,
        now_wall_ms: u64,
    ) -> Option<Alert> {
        let key = key.into();
        let alert = {
            let mut inner = self.lock();
            let dedup = (kind, key.clone());
            if let Some(&last) = inner.last_raised.get(&dedup)
                && now_wall_ms < last.saturating_add(self.dedup_ms)
            {
                return None;
            }
            inner.last_raised.insert(dedup, now_wall_ms);
            let dedup_ms = self.dedup_ms;
            inner
                .last_raised
                .retain(|_, at| now_wall_ms < at.saturating_add(dedup_ms));
            let alert = Alert {
                seq: inner.next_seq,
                at_wall_ms: now_wall_ms,
                kind,
                key,
                severity,
                message: message.into(),
            };
            inner.next_seq += 1;
            if inner.ring.len() == RING_CAPACITY {
                inner.ring.pop_front();
            }
            inner.ring.push_back(alert.clone());
            if self.webhook_url.is_some() {
                if inner.queue.len() == QUEUE_CAPACITY {
                    inner.queue.pop_front();
                    self.deliveries.with_label_values(&["dropped"]).inc();
                }
                inner.queue.push_back(alert.clone());
            }
            alert
        };
        self.queued.notify_one();
        self.by_kind.with_label_values(&[kind.as_str()]).inc();
        // One line on stdout for the operator; the structured event for a log at info.
        tracing::info!(
            kind = kind.as_str(),
            key = %alert.key,
            severity = ?severity,
            message = %alert.message,
            "alert"
        );
        println!("athena: alert: {}", alert.message);
        // No subscriber is not an error.
        let _ = self.live.send(alert.clone());
        Some(alert)
    }

    /// The last alerts, oldest first (at most [`RING_CAPACITY`]).
    pub fn recent(&self) -> Vec<Alert> {
        self.lock().ring.iter().cloned().collect()
    }

    /// A live stream of alerts raised from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.live.subscribe()
    }

    /// Alerts waiting for the webhook.
    pub fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// Delivers queued alerts to the webhook until `stop` turns true (returns at once when no
    /// webhook is configured). Each alert is POSTed as JSON, up to `opts.attempts` times with
    /// doubling waits; an alert that fails every attempt is counted `failed` and dropped, and
    /// the next one is tried.
    pub async fn deliver(
        &self,
        opts: Delivery,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), WebhookError> {
        let Some(url) = self.webhook_url.as_deref() else {
            return Ok(());
        };
        let client = reqwest::Client::builder().timeout(opts.timeout).build()?;
        loop {
            if *stop.borrow_and_update() {
                return Ok(());
            }
            let next = self.lock().queue.pop_front();
            let Some(alert) = next else {
                tokio::select! {
                    () = self.queued.notified() => continue,
                    changed = stop.changed() => {
                        // A dropped sender means stop.
                        if changed.is_err() { return Ok(()) }
                        continue;
                    }
                }
            };
            let outcome = tokio::select! {
                ok = post(&client, url, &alert, opts) => if ok { "delivered" } else { "failed" },
                // Stopping abandons the alert in flight.
                _ = stop.changed() => return Ok(()),
            };
            self.deliveries.with_label_values(&[outcome]).inc();
        }
    }
}

/// POSTs `alert` with retries; whether it was accepted (a 2xx).
async fn post(client: &reqwest::Client, url: &str, alert: &Alert, opts: Delivery) -> bool {
    let mut wait = opts.backoff_base;
    for attempt in 1..=opts.attempts.max(1) {
        let error = match client.post(url).json(alert).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => format!("status {}", r.status()),
            // Without the URL: it may carry a token.
            Err(e) => e.without_url().to_string(),
        };
        tracing::debug!(seq = alert.seq, attempt, %error, "alert webhook attempt failed");
        if attempt < opts.attempts {
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2);
        } else {
            tracing::warn!(seq = alert.seq, attempts = attempt, %error, "alert webhook delivery failed");
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Json, Router, extract::State, routing::post};
    use std::sync::Arc;
    use tokio::sync::mpsc;

    const HOUR: u64 = 3_600_000;

    fn alerts(url: &str) -> (Arc<Alerts>, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new().unwrap());
        let cfg = MonitorConfig {
            webhook_url: url.into(),
            ..MonitorConfig::default()
        };
        (Arc::new(Alerts::new(&cfg, &metrics)), metrics)
    }

    fn fast() -> Delivery {
        Delivery {
            timeout: Duration::from_secs(2),
            attempts: 3,
            backoff_base: Duration::from_millis(10),
        }
    }

    /// A receiver on `listener` sending every body it gets to the returned channel.
    fn receive(listener: tokio::net::TcpListener) -> mpsc::Receiver<serde_json::Value> {
        let (tx, rx) = mpsc::channel(16);
        let app = Router::new()
            .route(
                "/hook",
                post(
                    |State(tx): State<mpsc::Sender<serde_json::Value>>,
                     Json(v): Json<serde_json::Value>| async move {
                        let _ = tx.send(v).await;
                    },
                ),
            )
            .with_state(tx);
        tokio::spawn(async move { axum::serve(listener, app).await });
        rx
    }

    async fn wait_for(metrics: &Metrics, outcome: &str, n: u64) {
        for _ in 0..500 {
            if metrics
                .webhook_deliveries
                .with_label_values(&[outcome])
                .get()
                >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no {n} {outcome} deliveries");
    }

    #[test]
    fn dedup_within_the_window_and_again_after_it() {
        let (a, metrics) = alerts("");
        let t0 = 1_000_000;
        let raise = |at| {
            a.raise(
                AlertKind::BreakerTrip,
                "rapid_loss",
                Severity::Critical,
                "breaker rapid_loss tripped",
                at,
            )
        };
        assert_eq!(raise(t0).unwrap().seq, 1);
        assert!(raise(t0 + HOUR - 1).is_none());
        // Another key is not a duplicate.
        assert!(
            a.raise(
                AlertKind::BreakerTrip,
                "slippage_high",
                Severity::Critical,
                "x",
                t0
            )
            .is_some()
        );
        assert_eq!(raise(t0 + HOUR).unwrap().seq, 3);
        assert_eq!(a.recent().len(), 3);
        assert_eq!(metrics.alerts.with_label_values(&["breaker_trip"]).get(), 3);
        // No webhook: nothing queued.
        assert_eq!(a.queued(), 0);
    }

    #[test]
    fn ring_and_queue_are_bounded_and_count_drops() {
        let (a, metrics) = alerts("http://127.0.0.1:9/hook");
        for i in 0..300u64 {
            a.raise(AlertKind::Health, format!("k{i}"), Severity::Info, "m", i);
        }
        let recent = a.recent();
        assert_eq!(recent.len(), RING_CAPACITY);
        assert_eq!(recent[0].seq, 101);
        assert_eq!(a.queued(), QUEUE_CAPACITY);
        assert_eq!(
            metrics
                .webhook_deliveries
                .with_label_values(&["dropped"])
                .get(),
            44
        );
    }

    #[tokio::test]
    async fn subscribers_get_alerts_live() {
        let (a, _) = alerts("");
        let mut rx = a.subscribe();
        a.raise(AlertKind::SyncLag, "sync", Severity::Warning, "lag", 1);
        assert_eq!(rx.recv().await.unwrap().kind, AlertKind::SyncLag);
    }

    #[tokio::test]
    async fn webhook_receives_the_alert_as_json() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let mut bodies = receive(listener);
        let (a, metrics) = alerts(&url);
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn({
            let a = a.clone();
            async move { a.deliver(fast(), stop).await }
        });
        a.raise(
            AlertKind::TradingState,
            "halted",
            Severity::Critical,
            "trading state active -> halted",
            42,
        );
        let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body["kind"], "trading_state");
        assert_eq!(body["key"], "halted");
        assert_eq!(body["severity"], "critical");
        assert_eq!(body["message"], "trading state active -> halted");
        assert_eq!(body["at_wall_ms"], 42);
        assert_eq!(body["seq"], 1);
        wait_for(&metrics, "delivered", 1).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_down_receiver_fails_after_retries_and_later_alerts_arrive() {
        // A port nobody listens on (bound, then closed), later reused by the receiver.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (a, metrics) = alerts(&format!("http://{addr}/hook"));
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn({
            let a = a.clone();
            async move { a.deliver(fast(), stop).await }
        });
        // `raise` returns without waiting for the network.
        assert!(
            a.raise(
                AlertKind::StoreWrite,
                "store",
                Severity::Critical,
                "down",
                1
            )
            .is_some()
        );
        wait_for(&metrics, "failed", 1).await;
        assert_eq!(
            metrics
                .webhook_deliveries
                .with_label_values(&["delivered"])
                .get(),
            0
        );

        let mut bodies = receive(tokio::net::TcpListener::bind(addr).await.unwrap());
        a.raise(
            AlertKind::Health,
            "overall",
            Severity::Info,
            "healthy again",
            2,
        );
        let body = tokio::time::timeout(Duration::from_secs(10), bodies.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(body["message"], "healthy again");
        wait_for(&metrics, "delivered", 1).await;
        assert_eq!(
            metrics
                .webhook_deliveries
                .with_label_values(&["failed"])
                .get(),
            1
        );
        stop_tx.send(true).unwrap();
        task.await.unwrap().unwrap();
    }
}
