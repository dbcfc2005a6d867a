//! The worker: drains the outbox to the sinks in the background.
//!
//! One pass reads at most `max_rows` rows in sequence order (so its memory does not grow with
//! an outage), coalesces them per remote key, sends them in paced batches to the sink of their
//! role, then, in one store transaction, removes the rows the sinks confirmed (or reported as
//! already applied) and moves permanently rejected ones to the dead-letter table. Rows whose
//! writes failed with a retriable error stay in the outbox and are sent again, newest state
//! included, on a later pass after a backoff. A crash between a sink's confirmation and the ack
//! re-sends the same idempotent writes.

use crate::batch::{BatchLimits, batches};
use crate::coalesce::{Write, coalesce};
use crate::compact::{CompactReport, compact_outbox};
use crate::error::SyncError;
use crate::pace::{Backoff, RampLimiter};
use crate::sink::{ErrorKind, Sink, SinkError, SinkRole};
use crate::status::SyncHealth;
use athena_storage::Store;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Agent-time source (ms since the epoch), injected.
pub type Now = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Rows one pass reads at most.
pub const DEFAULT_MAX_ROWS: usize = 20_000;

/// Rows a pass reads while the sinks are failing: a small probe, so the fence stays low and
/// compaction can fold everything written during the outage.
pub const PROBE_ROWS: usize = 100;

/// A coalesced write waiting for its sink, with the outbox rows it covers.
type Pending = (Write, Vec<u64>);

/// Counters since the worker started.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Outbox rows read by passes (a row re-read after a failure counts again).
    pub rows_read: AtomicU64,
    /// Writes sent to sinks (after coalescing).
    pub writes_sent: AtomicU64,
    /// Rows confirmed and removed.
    pub rows_delivered: AtomicU64,
    /// Rows folded into another row's write by coalescing.
    pub rows_coalesced: AtomicU64,
    /// Rows folded by outbox compaction while the sinks were failing.
    pub rows_compacted: AtomicU64,
    /// The compaction fence: the highest outbox seq that may have been sent.
    pub fence: AtomicU64,
    /// Rows moved to dead letters.
    pub rows_dead_lettered: AtomicU64,
    /// Writes that failed retriably.
    pub retriable_failures: AtomicU64,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassReport {
    /// Rows read.
    pub rows: usize,
    /// Writes sent.
    pub writes: usize,
    /// Rows confirmed and removed.
    pub delivered: usize,
    /// Rows dead-lettered.
    pub dead_lettered: usize,
    /// Rows left for a retry.
    pub retry: usize,
    /// Rows folded into another row's write.
    pub coalesced: usize,
    /// Writes sent to the document sink.
    pub document_writes: usize,
    /// Writes sent to the object sink.
    pub object_writes: usize,
    /// The last retriable error, if any.
    pub last_error: Option<String>,
}

/// The background worker.
pub struct Worker {
    store: Arc<Store>,
    documents: Arc<dyn Sink>,
    objects: Arc<dyn Sink>,
    limits: BatchLimits,
    limiter: RampLimiter,
    backoff: Backoff,
    now: Now,
    max_rows: usize,
    flush_interval: Duration,
    push_timeout: Duration,
    /// Rows at or below it may have been sent (see `compact`); `None` until the first pass.
    fence: Option<u64>,
    /// The last pass delivered nothing and left rows for a retry: the next one only probes.
    probing: bool,
    counters: Arc<SyncCounters>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, athena_storage::StoreError> + Send + 'static,
) -> Result<T, SyncError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SyncError::Task(e.to_string()))?
        .map_err(SyncError::from)
}

impl Worker {
    /// A worker draining `store` into `documents` and `objects` under the `[sync]` settings.
    pub fn new(
        store: Arc<Store>,
        documents: Arc<dyn Sink>,
        objects: Arc<dyn Sink>,
        config: &athena_config::SyncConfig,
        seed: u64,
        now: Now,
    ) -> Self {
        let start = now();
        Self {
            store,
            documents,
            objects,
            limits: BatchLimits::from_config(config),
            limiter: RampLimiter::from_config(config, start),
            backoff: Backoff::from_config(config, seed),
            now,
            max_rows: DEFAULT_MAX_ROWS,
            flush_interval: config.flush_interval,
            push_timeout: config.push_timeout,
            fence: None,
            probing: false,
            counters: Arc::new(SyncCounters::default()),
        }
    }

    /// Rows one pass reads at most.
    pub fn with_max_rows(mut self, max_rows: usize) -> Self {
        self.max_rows = max_rows.max(1);
        self
    }

    /// The worker's counters (shared; keep a clone to read them while it runs).
    pub fn counters(&self) -> Arc<SyncCounters> {
        self.counters.clone()
    }

    /// The highest sequence number that may have been sent: at start every waiting row (a
    /// previous process may have sent it), then every row a pass has read.
    async fn fence(&mut self) -> Result<u64, SyncError> {
        if let Some(f) = self.fence {
            return Ok(f);
        }
        let store = self.store.clone();
        let f = blocking(move || store.outbox_high_water()).await?;
        self.fence = Some(f);
        Ok(f)
    }

    /// Folds the outbox rows no pass has sent yet into one row per remote key (see
    /// [`crate::compact`]); the run loop calls it while the sinks are failing.
    pub async fn compact(&mut self) -> Result<CompactReport, SyncError> {
        let fence = self.fence().await?;
        let store = self.store.clone();
        let chunk = self.max_rows;
        let report = blocking(move || compact_outbox(&store, fence, chunk)).await?;
        self.counters
            .rows_compacted
            .fetch_add(report.folded as u64, Ordering::Relaxed);
        Ok(report)
    }

    /// One drain pass.
    pub async fn drain_once(&mut self) -> Result<PassReport, SyncError> {
        let fence = self.fence().await?;
        let store = self.store.clone();
        let max = if self.probing {
            self.max_rows.min(PROBE_ROWS)
        } else {
            self.max_rows
        };
        let rows = blocking(move || store.outbox_peek(0, max)).await?;
        if let Some((last, _)) = rows.last() {
            self.fence = Some(fence.max(*last));
        }
        self.counters
            .fence
            .store(self.fence.unwrap_or(fence), Ordering::Relaxed);
        let mut report = PassReport {
            rows: rows.len(),
            ..PassReport::default()
        };
        if rows.is_empty() {
            return Ok(report);
        }
        let coalesced = coalesce(rows);
        self.counters
            .rows_read
            .fetch_add(report.rows as u64, Ordering::Relaxed);
        self.counters
            .rows_coalesced
            .fetch_add((report.rows - coalesced.len()) as u64, Ordering::Relaxed);

        let mut acks: Vec<u64> = Vec::new();
        let mut dead: Vec<(Vec<u64>, String)> = Vec::new();
        let mut by_role: [(SinkRole, Vec<Pending>); 2] = [
            (SinkRole::Documents, Vec::new()),
            (SinkRole::Objects, Vec::new()),
        ];
        for c in coalesced {
            match c.write {
                Err(reason) => dead.push((c.seqs, format!("{}: {reason}", c.key))),
                Ok(w) => by_role[usize::from(!w.is_document())].1.push((w, c.seqs)),
            }
        }
        for (role, items) in by_role {
            let sink = match role {
                SinkRole::Documents => self.documents.clone(),
                SinkRole::Objects => self.objects.clone(),
            };
            let writes: Vec<Write> = items.iter().map(|(w, _)| w.clone()).collect();
            for range in batches(&writes, self.limits) {
                let wait = self.limiter.acquire(range.len() as u32, (self.now)());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                let results = match tokio::time::timeout(
                    self.push_timeout,
                    sink.push(&writes[range.clone()]),
                )
                .await
                {
                    Ok(results) => results,
                    Err(_) => vec![
                        Err(SinkError::new(
                            ErrorKind::Transient,
                            format!(
                                "sink {} did not answer within {:?}",
                                sink.name(),
                                self.push_timeout
                            ),
                        ));
                        range.len()
                    ],
                };
                report.writes += range.len();
                match role {
                    SinkRole::Documents => report.document_writes += range.len(),
                    SinkRole::Objects => report.object_writes += range.len(),
                }
                self.counters
                    .writes_sent
                    .fetch_add(range.len() as u64, Ordering::Relaxed);
                let mut all_retriable = true;
                for (i, (_, seqs)) in range.clone().zip(&items[range.clone()]) {
                    let result = results.get(i - range.start).cloned().unwrap_or_else(|| {
                        Err(SinkError::new(
                            ErrorKind::Transient,
                            format!("sink {} returned no result for this write", sink.name()),
                        ))
                    });
                    match result {
                        Ok(()) => {
                            all_retriable = false;
                            acks.extend(seqs);
                        }
                        Err(e) if e.kind == ErrorKind::AlreadyApplied => {
                            all_retriable = false;
                            acks.extend(seqs);
                        }
                        Err(e) if e.kind.is_retriable() => {
                            if e.kind == ErrorKind::RateLimited {
                                self.limiter.on_rate_limited((self.now)());
                            }
                            report.retry += seqs.len();
                            self.counters
                                .retriable_failures
                                .fetch_add(1, Ordering::Relaxed);
                            report.last_error = Some(format!("{}: {e}", sink.name()));
                        }
                        Err(e) => {
                            all_retriable = false;
                            tracing::error!(sink = sink.name(), key = %writes[i].key_hint(), error = %e, "write rejected for good; moved to dead letters");
                            dead.push((seqs.clone(), format!("{}: {e}", sink.name())));
                        }
                    }
                }
                if all_retriable {
                    // The sink is failing as a whole: leave the rest of this role for later.
                    let left: usize = items[range.end..].iter().map(|(_, s)| s.len()).sum();
                    report.retry += left;
                    break;
                }
            }
        }
        report.delivered = acks.len();
        self.probing = report.retry > 0 && report.delivered == 0;
        report.dead_lettered = dead.iter().map(|(s, _)| s.len()).sum();
        self.counters
            .rows_delivered
            .fetch_add(report.delivered as u64, Ordering::Relaxed);
        self.counters
            .rows_dead_lettered
            .fetch_add(report.dead_lettered as u64, Ordering::Relaxed);
        if !acks.is_empty() || !dead.is_empty() {
            let store = self.store.clone();
            let now = (self.now)();
            let r = report.clone();
            blocking(move || {
                store.write(|w| {
                    w.outbox_ack(&acks)?;
                    crate::status::record_pass(w, &r, now)?;
                    for (seqs, reason) in &dead {
                        for seq in seqs {
                            w.outbox_dead_letter(*seq, reason, now)?;
                        }
                    }
                    Ok(())
                })
            })
            .await?;
        }
        Ok(report)
    }

    /// Passes until the outbox is empty or a pass makes no progress; returns the last report.
    pub async fn drain(&mut self) -> Result<PassReport, SyncError> {
        loop {
            let r = self.drain_once().await?;
            if r.rows == 0 || r.delivered + r.dead_lettered == 0 {
                return Ok(r);
            }
        }
    }

    /// The health the previous run left (a restart during an outage keeps its "since").
    async fn load_health(&self) -> SyncHealth {
        let store = self.store.clone();
        blocking(move || SyncHealth::load(&store))
            .await
            .unwrap_or_default()
    }

    /// Counts a failed pass (one that left rows for a retry because a sink or the store failed)
    /// and persists the health when it changes, so `athena sync status` shows consecutive
    /// failures, since when and the last error; says once when sync works again.
    async fn track_health(&self, health: &mut SyncHealth, pass: &Result<PassReport, SyncError>) {
        let failure = match pass {
            Ok(r) if r.retry > 0 => Some(
                r.last_error
                    .clone()
                    .unwrap_or_else(|| "a sink failed".into()),
            ),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        match failure {
            Some(error) => {
                if health.consecutive_failures == 0 {
                    tracing::warn!(%error, "sync cannot deliver; changes stay in the outbox");
                }
                health.failed(error, (self.now)());
            }
            None if health.recovered() => {
                tracing::info!("sync delivers again");
            }
            None => return,
        }
        let (store, h) = (self.store.clone(), health.clone());
        if let Err(e) = blocking(move || h.save(&store)).await {
            tracing::warn!(error = %e, "cannot record the sync health");
        }
    }

    /// Runs until `stop` turns true: a pass every flush interval, at once when `flush` is
    /// notified or the last pass left work it could do, and after a backoff when the sinks
    /// fail. On stop it drains for at most `deadline`; what is left stays in the outbox.
    pub async fn run(
        mut self,
        mut stop: watch::Receiver<bool>,
        flush: Arc<Notify>,
        deadline: Duration,
    ) {
        let mut attempt = 0u32;
        let mut health = self.load_health().await;
        loop {
            let pass = self.drain_once().await;
            self.track_health(&mut health, &pass).await;
            let wait = match pass {
                Ok(r) if r.retry > 0 => {
                    tracing::warn!(retry = r.retry, error = ?r.last_error, "sync pass left rows for a retry");
                    // Offline: keep the outbox at one row per document while we wait.
                    match self.compact().await {
                        Ok(c) if c.folded > 0 => tracing::info!(?c, "outbox compacted"),
                        Ok(_) => {}
                        Err(e) => tracing::error!(error = %e, "outbox compaction failed"),
                    }
                    attempt += 1;
                    self.backoff.delay(attempt - 1)
                }
                Ok(r) if r.rows >= self.max_rows => Duration::ZERO, // more is waiting
                Ok(_) => {
                    attempt = 0;
                    self.flush_interval
                }
                Err(e) => {
                    tracing::error!(error = %e, "sync pass failed");
                    attempt += 1;
                    self.backoff.delay(attempt - 1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = flush.notified() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        match tokio::time::timeout(deadline, self.drain()).await {
            Ok(Ok(r)) => tracing::info!(?r, "sync drained at shutdown"),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "sync drain at shutdown failed; rows stay in the outbox")
            }
            Err(_) => {
                tracing::warn!("sync drain hit the shutdown deadline; rows stay in the outbox")
            }
        }
    }
}

impl Write {
    /// The remote key, for logs.
    pub fn key_hint(&self) -> String {
        match self {
            Write::Set {
                collection, doc, ..
            }
            | Write::Increment {
                collection, doc, ..
            }
            | Write::Delete { collection, doc } => {
                format!("{collection}/{doc}")
            }
            Write::PutBlob { path, .. } | Write::DeleteBlob { path } => format!("blob:{path}"),
        }
    }
}
