//! The agent's Prometheus metrics: one [`Registry`] with every series the agent exports, the
//! process collector (CPU, memory, file descriptors), and [`Metrics::encode`] for `/metrics`
//! (text format 0.0.4).
//!
//! Naming: prefix `athena_`, base units (`_seconds`, `_bytes`, `_usd`), `_total` on counters.
//! Labels are bounded sets only (breaker names, trading states, tiers, categories, sinks,
//! commands and outcomes the code names, closed enums); never pool ids or free text.
//!
//! Counters that mirror a total persisted in the store (trades, decisions, breaker trips, sync
//! rows and writes) are `IntCounter`s moved by [`mirror`]: they climb by the difference to the
//! persisted value, so after a restart they start at the persisted total and keep climbing; a
//! persisted value that went down (a restored store) shows as a counter reset, which
//! Prometheus' `rate()` handles. The recall cache counters mirror the store's counts since it
//! was opened, the same way.

use athena_storage::{MemoryStats, PruneReport, RecallStats};
use athena_sync::SyncStatus;
use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// A metric could not be created or registered (a programming error: duplicate or bad name).
#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

/// Where an external call failed (a closed set: the label of `athena_api_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureSource {
    /// The cloud (Firestore, object store).
    Cloud,
    /// The chain's JSON-RPC.
    Rpc,
    /// The LLM optimizer.
    Llm,
    /// The market data source.
    Market,
}

impl FailureSource {
    /// Every source.
    pub const ALL: [Self; 4] = [Self::Cloud, Self::Rpc, Self::Llm, Self::Market];

    /// snake_case name (the label value).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cloud => "cloud",
            Self::Rpc => "rpc",
            Self::Llm => "llm",
            Self::Market => "market",
        }
    }
}

/// Tick duration buckets, seconds: 0.5 ms to 10 s.
const TICK_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Operator command and prune duration buckets, seconds: 1 ms to 60 s.
const SLOW_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

/// Moves `counter` to `value` (a mirrored persisted total; see the module doc).
pub fn mirror(counter: &IntCounter, value: u64) {
    let current = counter.get();
    if value >= current {
        counter.inc_by(value - current);
    } else {
        counter.reset();
        counter.inc_by(value);
    }
}

/// Every metric of the agent.
pub struct Metrics {
    registry: Registry,
    /// Tick wall duration.
    pub tick_duration: Histogram,
    /// Ticks run in this process.
    pub ticks: IntCounter,
    /// Agent time of the last tick.
    pub last_tick_timestamp: Gauge,
    /// Equity.
    pub equity: Gauge,
    /// Idle cash.
    pub cash: Gauge,
    /// Equity minus the starting cash.
    pub pnl: Gauge,
    /// Open positions.
    pub positions: IntGauge,
    /// Value of open positions (with unclaimed rewards).
    pub position_value: Gauge,
    /// Trades executed (mirrors the persisted total).
    pub trades: IntCounter,
    /// Decisions made (mirrors the persisted total).
    pub decisions: IntCounter,
    /// 1 for the current trading state, 0 for the others.
    pub trading_state: IntGaugeVec,
    /// 1 while a breaker is tripped.
    pub breaker_tripped: IntGaugeVec,
    /// Trips per breaker (mirrors the persisted count).
    pub breaker_trips: IntCounterVec,
    /// The risk score, 0–100.
    pub risk_score: Gauge,
    /// Its four components, 0–25 each.
    pub risk_score_component: GaugeVec,
    /// Operator command time, request to committed answer.
    pub command_seconds: HistogramVec,
    /// Operator commands by outcome.
    pub commands: IntCounterVec,
    /// Store file size.
    pub store_size: IntGauge,
    /// Used fraction of the data directory's filesystem.
    pub disk_used_ratio: Gauge,
    /// Free bytes on the data directory's filesystem (for unprivileged users).
    pub disk_free: IntGauge,
    /// Memories by tier and category.
    pub memories: IntGaugeVec,
    /// Recall cache hits (since the store was opened).
    pub recall_hits: IntCounter,
    /// Recall cache misses (since the store was opened).
    pub recall_misses: IntCounter,
    /// Outbox rows waiting.
    pub sync_queue_depth: IntGauge,
    /// Age of the oldest waiting change per sink role.
    pub sync_lag: GaugeVec,
    /// Age of the oldest unsynced change.
    pub sync_oldest_unsynced: Gauge,
    /// Rows delivered (mirrors the persisted total).
    pub sync_rows_delivered: IntCounter,
    /// Rows coalesced (mirrors the persisted total).
    pub sync_rows_coalesced: IntCounter,
    /// Document writes (mirrors the persisted total).
    pub sync_document_writes: IntCounter,
    /// Object writes (mirrors the persisted total).
    pub sync_object_writes: IntCounter,
    /// Rows in the dead-letter table.
    pub sync_dead_letters: IntGauge,
    /// Consecutive failed sync passes.
    pub sync_consecutive_failures: IntGauge,
    /// Estimated cost of the writes sent, USD (cumulative since the store was created).
    pub sync_estimated_cost: Gauge,
    /// Prune runs in this process.
    pub prune_runs: IntCounter,
    /// Records removed or moved per prune step.
    pub prune_removed: IntCounterVec,
    /// Bytes of local records removed or shrunk by pruning.
    pub prune_reclaimed: IntCounter,
    /// Prune duration.
    pub prune_duration: Histogram,
    /// Wall time of the last prune.
    pub last_prune_timestamp: Gauge,
    /// External call failures by source.
    pub api_failures: IntCounterVec,
    /// Alerts raised by kind (after deduplication).
    pub alerts: IntCounterVec,
    /// Webhook deliveries by outcome (`delivered`, `failed`, `dropped`).
    pub webhook_deliveries: IntCounterVec,
    /// LLM advisor: entry questions put to it.
    pub llm_questions: IntCounter,
    /// LLM advisor: questions each layer answered or served, by layer.
    pub llm_layer_hits: IntCounterVec,
    /// LLM advisor: questions that went past each layer.
    pub llm_layer_misses: IntCounterVec,
    /// LLM advisor: tokens each layer saved.
    pub llm_tokens_saved: IntCounterVec,
    /// LLM advisor: dollars each layer saved.
    pub llm_saved_usd: GaugeVec,
    /// LLM advisor: model calls and their outcomes, by event.
    pub llm_model_events: IntCounterVec,
    /// LLM advisor: tokens the endpoint counted, by kind (prompt, reply).
    pub llm_tokens: IntCounterVec,
    /// LLM advisor: dollars spent on the model.
    pub llm_spent_usd: Gauge,
    /// LLM advisor: answers cached now.
    pub llm_cache_entries: IntGauge,
    /// LLM advisor: time a tick spent in it (caches and model calls).
    pub llm_advise_seconds: Histogram,
}

/// The advisor's layers, as `athena_llm_*{layer}` labels.
const LLM_LAYERS: [&str; 5] = ["template", "exact", "slot", "compression", "batching"];
/// The model's events, as `athena_llm_model_events_total{event}` labels.
const LLM_EVENTS: [&str; 8] = [
    "calls",
    "batched_calls",
    "batch_fallbacks",
    "answers",
    "timeouts",
    "failures",
    "unanswered",
    "vetoes",
];

/// Builds and registers metrics on one registry.
struct Builder<'a>(&'a Registry);

impl Builder<'_> {
    fn reg<C: Collector + Clone + 'static>(&self, c: C) -> Result<C, MetricsError> {
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        self.reg(IntCounter::new(name, help)?)
    }
    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        self.reg(IntCounterVec::new(Opts::new(name, help), labels)?)
    }
    fn gauge(&self, name: &str, help: &str) -> Result<Gauge, MetricsError> {
        self.reg(Gauge::new(name, help)?)
    }
    fn int_gauge(&self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        self.reg(IntGauge::new(name, help)?)
    }
    fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> Result<GaugeVec, MetricsError> {
        self.reg(GaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn int_gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        self.reg(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }
    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        self.reg(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        )?)
    }
}

impl Metrics {
    /// Registers every metric (and the process collector) on a fresh registry.
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        registry.register(Box::new(ProcessCollector::for_self()))?;
        let b = Builder(&registry);
        let m = Self {
            tick_duration: b.histogram(
                "athena_tick_duration_seconds",
                "Wall time of one agent tick, commit included.",
                &TICK_BUCKETS,
            )?,
            ticks: b.counter("athena_ticks_total", "Ticks run by this process.")?,
            last_tick_timestamp: b.gauge(
                "athena_last_tick_timestamp_seconds",
                "Agent time of the last committed tick, Unix seconds.",
            )?,
            equity: b.gauge("athena_equity_usd", "Equity after the last tick, USD.")?,
            cash: b.gauge("athena_cash_usd", "Idle cash after the last tick, USD.")?,
            pnl: b.gauge("athena_pnl_usd", "Equity minus the starting cash, USD.")?,
            positions: b.int_gauge("athena_positions", "Open positions.")?,
            position_value: b.gauge(
                "athena_position_value_usd",
                "Value of the open positions with their unclaimed rewards, USD.",
            )?,
            trades: b.counter("athena_trades_total", "Trades executed by the run.")?,
            decisions: b.counter("athena_decisions_total", "Decisions made by the run.")?,
            trading_state: b.int_gauge_vec(
                "athena_trading_state",
                "1 for the current trading state, 0 for the others.",
                &["state"],
            )?,
            breaker_tripped: b.int_gauge_vec(
                "athena_breaker_tripped",
                "1 while the circuit breaker is tripped.",
                &["breaker"],
            )?,
            breaker_trips: b.counter_vec(
                "athena_breaker_trips_total",
                "Trips of the circuit breaker over the run.",
                &["breaker"],
            )?,
            risk_score: b.gauge("athena_risk_score", "Portfolio risk score, 0-100.")?,
            risk_score_component: b.gauge_vec(
                "athena_risk_score_component",
                "Component of the portfolio risk score, 0-25.",
                &["component"],
            )?,
            command_seconds: b.reg(HistogramVec::new(
                HistogramOpts::new(
                    "athena_command_seconds",
                    "Operator command time from request to committed answer.",
                )
                .buckets(SLOW_BUCKETS.to_vec()),
                &["command"],
            )?)?,
            commands: b.counter_vec(
                "athena_commands_total",
                "Operator commands by outcome.",
                &["command", "outcome"],
            )?,
            store_size: b.int_gauge("athena_store_size_bytes", "Size of the store file.")?,
            disk_used_ratio: b.gauge(
                "athena_disk_used_ratio",
                "Used fraction of the data directory's filesystem.",
            )?,
            disk_free: b.int_gauge(
                "athena_disk_free_bytes",
                "Bytes free for unprivileged use on the data directory's filesystem.",
            )?,
            memories: b.int_gauge_vec(
                "athena_memories",
                "Memories by tier and category.",
                &["tier", "category"],
            )?,
            recall_hits: b.counter(
                "athena_recall_cache_hits_total",
                "Recall cache hits since the store was opened.",
            )?,
            recall_misses: b.counter(
                "athena_recall_cache_misses_total",
                "Recall cache misses since the store was opened.",
            )?,
            sync_queue_depth: b.int_gauge("athena_sync_queue_depth", "Outbox rows waiting.")?,
            sync_lag: b.gauge_vec(
                "athena_sync_lag_seconds",
                "Age of the oldest change waiting for the sink, wall time.",
                &["sink"],
            )?,
            sync_oldest_unsynced: b.gauge(
                "athena_sync_oldest_unsynced_seconds",
                "Age of the oldest unsynced change, wall time (0 when the outbox is empty).",
            )?,
            sync_rows_delivered: b.counter(
                "athena_sync_rows_delivered_total",
                "Outbox rows delivered since the store was created.",
            )?,
            sync_rows_coalesced: b.counter(
                "athena_sync_rows_coalesced_total",
                "Outbox rows folded into another row's write.",
            )?,
            sync_document_writes: b
                .counter("athena_sync_document_writes_total", "Document writes sent.")?,
            sync_object_writes: b
                .counter("athena_sync_object_writes_total", "Object writes sent.")?,
            sync_dead_letters: b.int_gauge("athena_sync_dead_letters", "Dead-lettered rows.")?,
            sync_consecutive_failures: b.int_gauge(
                "athena_sync_consecutive_failures",
                "Sync passes in a row that failed.",
            )?,
            sync_estimated_cost: b.gauge(
                "athena_sync_estimated_cost_usd",
                "Estimated cost of the cloud writes sent since the store was created, USD.",
            )?,
            prune_runs: b.counter("athena_prune_runs_total", "Prune runs by this process.")?,
            prune_removed: b.counter_vec(
                "athena_prune_removed_total",
                "Memories removed or moved by each prune step.",
                &["step"],
            )?,
            prune_reclaimed: b.counter(
                "athena_prune_reclaimed_bytes_total",
                "Encoded bytes of local records removed or shrunk by pruning.",
            )?,
            prune_duration: b.histogram(
                "athena_prune_duration_seconds",
                "Wall time of one prune run.",
                &SLOW_BUCKETS,
            )?,
            last_prune_timestamp: b.gauge(
                "athena_last_prune_timestamp_seconds",
                "Wall time of the last prune run, Unix seconds.",
            )?,
            api_failures: b.counter_vec(
                "athena_api_failures_total",
                "External call failures by source.",
                &["source"],
            )?,
            alerts: b.counter_vec("athena_alerts_total", "Alerts raised by kind.", &["kind"])?,
            webhook_deliveries: b.counter_vec(
                "athena_alert_webhook_deliveries_total",
                "Alert webhook deliveries by outcome.",
                &["outcome"],
            )?,
            llm_questions: b.counter(
                "athena_llm_questions_total",
                "Entry proposals put to the LLM advisor since the agent opened.",
            )?,
            llm_layer_hits: b.counter_vec(
                "athena_llm_layer_hits_total",
                "Questions an LLM layer answered (template, exact, slot) or served (compression, batching).",
                &["layer"],
            )?,
            llm_layer_misses: b.counter_vec(
                "athena_llm_layer_misses_total",
                "Questions that went past an LLM layer.",
                &["layer"],
            )?,
            llm_tokens_saved: b.counter_vec(
                "athena_llm_tokens_saved_total",
                "Tokens an LLM layer saved.",
                &["layer"],
            )?,
            llm_saved_usd: b.gauge_vec(
                "athena_llm_saved_usd",
                "Dollars an LLM layer saved since the agent opened, at the configured list prices.",
                &["layer"],
            )?,
            llm_model_events: b.counter_vec(
                "athena_llm_model_events_total",
                "LLM model calls and their outcomes.",
                &["event"],
            )?,
            llm_tokens: b.counter_vec(
                "athena_llm_tokens_total",
                "Tokens the LLM endpoint counted, by kind.",
                &["kind"],
            )?,
            llm_spent_usd: b.gauge(
                "athena_llm_spent_usd",
                "Dollars spent on the LLM since the agent opened, at the configured list prices.",
            )?,
            llm_cache_entries: b.int_gauge(
                "athena_llm_cache_entries",
                "LLM answers cached now (memory and store).",
            )?,
            llm_advise_seconds: b.histogram(
                "athena_llm_advise_seconds",
                "Time a tick spent in the LLM advisor (caches and model calls).",
                &TICK_BUCKETS,
            )?,
            registry,
        };
        m.init_labels();
        Ok(m)
    }

    /// Creates the series of every known label value, so they read 0 instead of missing.
    fn init_labels(&self) {
        use crate::risk::{BreakerKind, TradingState};
        for s in [
            TradingState::Active,
            TradingState::ReduceOnly,
            TradingState::Halted,
        ] {
            self.trading_state.with_label_values(&[s.as_str()]).set(0);
        }
        for k in BreakerKind::ALL {
            self.breaker_tripped.with_label_values(&[k.as_str()]).set(0);
            self.breaker_trips.with_label_values(&[k.as_str()]);
        }
        for s in FailureSource::ALL {
            self.api_failures.with_label_values(&[s.as_str()]);
        }
        for k in super::alerts::AlertKind::ALL {
            self.alerts.with_label_values(&[k.as_str()]);
        }
        for o in ["delivered", "failed", "dropped"] {
            self.webhook_deliveries.with_label_values(&[o]);
        }
        for sink in ["documents", "objects"] {
            self.sync_lag.with_label_values(&[sink]).set(0.0);
        }
        for layer in LLM_LAYERS {
            self.llm_layer_hits.with_label_values(&[layer]);
            self.llm_layer_misses.with_label_values(&[layer]);
            self.llm_tokens_saved.with_label_values(&[layer]);
            self.llm_saved_usd.with_label_values(&[layer]).set(0.0);
        }
        for event in LLM_EVENTS {
            self.llm_model_events.with_label_values(&[event]);
        }
        for kind in ["prompt", "reply"] {
            self.llm_tokens.with_label_values(&[kind]);
        }
    }

    /// The LLM advisor's counts since the agent opened (mirrored: a reopened agent starts
    /// again from 0, which reads as a counter reset).
    pub fn set_llm_stats(&self, l: &crate::llm::LlmStats) {
        mirror(&self.llm_questions, l.questions);
        let layers = [l.template, l.exact, l.slot, l.compression, l.batching];
        for (name, layer) in LLM_LAYERS.iter().zip(layers) {
            mirror(&self.llm_layer_hits.with_label_values(&[name]), layer.hits);
            mirror(
                &self.llm_layer_misses.with_label_values(&[name]),
                layer.misses,
            );
            mirror(
                &self.llm_tokens_saved.with_label_values(&[name]),
                layer.tokens_saved,
            );
            self.llm_saved_usd
                .with_label_values(&[name])
                .set(layer.usd_saved);
        }
        let m = &l.model;
        let events = [
            m.calls,
            m.batched_calls,
            m.batch_fallbacks,
            m.answers,
            m.timeouts,
            m.failures,
            l.unanswered,
            l.vetoes,
        ];
        for (name, value) in LLM_EVENTS.iter().zip(events) {
            mirror(&self.llm_model_events.with_label_values(&[name]), value);
        }
        mirror(
            &self.llm_tokens.with_label_values(&["prompt"]),
            m.prompt_tokens,
        );
        mirror(
            &self.llm_tokens.with_label_values(&["reply"]),
            m.reply_tokens,
        );
        self.llm_spent_usd.set(m.usd_spent);
        self.llm_cache_entries.set(l.cached_entries as i64);
    }

    /// The registry (for tests and for anything that adds its own collectors).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in Prometheus text format 0.0.4.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        // Encoding a gathered family into memory fails only on a malformed family, which
        // the registry never produces.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// The risk score and its components.
    pub fn set_risk_score(&self, score: &crate::risk::RiskScore) {
        self.risk_score.set(score.total);
        for (name, v) in [
            ("concentration", score.concentration),
            ("volatility", score.volatility),
            ("liquidity", score.liquidity),
            ("correlation", score.correlation),
        ] {
            self.risk_score_component.with_label_values(&[name]).set(v);
        }
    }

    /// Memories by tier and category.
    pub fn set_memory_stats(&self, stats: &MemoryStats) {
        for (category, c) in &stats.by_category {
            for (tier, n) in [("hot", c.hot), ("warm", c.warm), ("cold", c.cold)] {
                self.memories
                    .with_label_values(&[tier, category.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
    }

    /// Recall cache counts since the store was opened.
    pub fn set_recall_stats(&self, stats: &RecallStats) {
        mirror(&self.recall_hits, stats.cache_hits);
        mirror(&self.recall_misses, stats.cache_misses);
    }

    /// The sync status.
    pub fn set_sync_status(&self, s: &SyncStatus) {
        let secs = |ms: u64| ms as f64 / 1000.0;
        self.sync_queue_depth.set(int(s.queue_depth));
        self.sync_lag
            .with_label_values(&["documents"])
            .set(secs(s.documents.lag_ms));
        self.sync_lag
            .with_label_values(&["objects"])
            .set(secs(s.objects.lag_ms));
        self.sync_oldest_unsynced.set(secs(s.oldest_unsynced_ms));
        mirror(&self.sync_rows_delivered, s.rows_delivered);
        mirror(&self.sync_rows_coalesced, s.rows_coalesced);
        mirror(&self.sync_document_writes, s.document_writes);
        mirror(&self.sync_object_writes, s.object_writes);
        self.sync_dead_letters.set(int(s.dead_letters));
        self.sync_consecutive_failures
            .set(int(s.health.consecutive_failures));
        self.sync_estimated_cost.set(s.estimated_cost_usd);
    }

    /// A prune run that ended at `wall_ms`.
    pub fn record_prune(&self, r: &PruneReport, wall_ms: u64) {
        self.prune_runs.inc();
        for (step, n) in [
            ("low_confidence", r.removed_low_confidence),
            ("merged", r.merged),
            ("compacted", r.compacted),
            ("migrated_cold", r.migrated_cold),
            ("archived", r.archived),
            ("expired", r.expired),
            ("evicted", r.evicted),
        ] {
            self.prune_removed
                .with_label_values(&[step])
                .inc_by(n as u64);
        }
        self.prune_reclaimed.inc_by(r.bytes_reclaimed);
        self.prune_duration.observe(r.duration_ms as f64 / 1000.0);
        self.last_prune_timestamp.set(wall_ms as f64 / 1000.0);
    }
}

/// `u64` → `i64` for gauges, saturating.
fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_follows_totals_and_resets_on_decrease() {
        let c = IntCounter::new("x_total", "x").unwrap();
        mirror(&c, 5);
        mirror(&c, 7);
        assert_eq!(c.get(), 7);
        mirror(&c, 3);
        assert_eq!(c.get(), 3);
    }

    #[test]
    fn encode_has_every_family_with_zeroed_labels() {
        let m = Metrics::new().unwrap();
        let text = m.encode();
        for name in [
            "athena_tick_duration_seconds_bucket",
            "athena_breaker_tripped{breaker=\"rapid_loss\"} 0",
            "athena_trading_state{state=\"halted\"} 0",
            "athena_api_failures_total{source=\"rpc\"} 0",
            "process_cpu_seconds_total",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
