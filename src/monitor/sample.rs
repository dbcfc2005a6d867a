//! The periodic sample: the store (size, memories, recall cache, sync status), the data
//! directory's filesystem (statvfs) and the process (CPU, resident memory, through the
//! prometheus process collector's readings and `/proc/meminfo`). Blocking: call it on
//! `spawn_blocking`. A reading that fails is logged and left out; the rest is still taken.

use super::{AlertKind, Monitor, Severity};
use athena_storage::Store;
use prometheus::core::Collector;
use prometheus::process_collector::ProcessCollector;
use std::path::Path;

/// Disk use of the filesystem holding `path`: (used ratio, bytes free for unprivileged use),
/// as `df` counts them (reserved blocks are neither used nor free).
pub fn disk_usage(path: &Path) -> std::io::Result<(f64, u64)> {
    let s = rustix::fs::statvfs(path)?;
    let used = s.f_blocks.saturating_sub(s.f_bfree);
    let usable = used + s.f_bavail;
    let ratio = if usable == 0 {
        0.0
    } else {
        used as f64 / usable as f64
    };
    Ok((ratio, s.f_bavail.saturating_mul(s.f_frsize)))
}

/// Total memory of the machine, bytes (`MemTotal` of `/proc/meminfo`).
fn machine_memory_bytes() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This process' CPU seconds and resident bytes, as the process collector reads them.
fn process_readings() -> (Option<f64>, Option<f64>) {
    let (mut cpu, mut rss) = (None, None);
    for family in ProcessCollector::for_self().collect() {
        let value = family.get_metric().first();
        match family.name() {
            "process_cpu_seconds_total" => cpu = value.map(|m| m.get_counter().get_value()),
            "process_resident_memory_bytes" => rss = value.map(|m| m.get_gauge().get_value()),
            _ => {}
        }
    }
    (cpu, rss)
}

impl Monitor {
    /// Samples `store` (its directory's filesystem included) and the process at
    /// `now_wall_ms`; `agent_now_ms` is the agent time the sync lag is measured against.
    /// Raises SyncLag when the lag passes `monitor.sync_lag_alert` and DeadLetters when their
    /// count grew.
    pub fn sample_store(&self, store: &Store, agent_now_ms: u64, now_wall_ms: u64) {
        let m = &self.metrics;
        m.store_size
            .set(i64::try_from(store.file_size()).unwrap_or(i64::MAX));
        let dir = store.path().parent().unwrap_or(Path::new("."));
        match disk_usage(dir) {
            Ok((ratio, free)) => {
                m.disk_used_ratio.set(ratio);
                m.disk_free.set(i64::try_from(free).unwrap_or(i64::MAX));
                self.lock().disk_used_ratio = Some(ratio);
            }
            Err(e) => tracing::warn!(error = %e, "disk usage not readable"),
        }
        match store.memory_stats() {
            Ok(stats) => m.set_memory_stats(&stats),
            Err(e) => tracing::warn!(error = %e, "memory stats not readable"),
        }
        m.set_recall_stats(&store.recall_stats());
        match athena_sync::status(store, agent_now_ms) {
            Ok(mut status) => {
                // Outbox rows carry agent time; lags are judged in wall time, what an operator
                // waits for the cloud (they differ on a simulated clock).
                let wall = |agent_ms: u64| (agent_ms as f64 / self.time_scale) as u64;
                status.oldest_unsynced_ms = wall(status.oldest_unsynced_ms);
                status.documents.lag_ms = wall(status.documents.lag_ms);
                status.objects.lag_ms = wall(status.objects.lag_ms);
                m.set_sync_status(&status);
                self.sync_sampled(&status, now_wall_ms);
            }
            Err(e) => tracing::warn!(error = %e, "sync status not readable"),
        }
        self.sample_process(now_wall_ms);
    }

    /// Health inputs and alerts from a sync status.
    fn sync_sampled(&self, status: &athena_sync::SyncStatus, now: u64) {
        let lag = status
            .documents
            .lag_ms
            .max(status.objects.lag_ms)
            .max(status.oldest_unsynced_ms);
        let (grew, new_failures) = {
            let mut s = self.lock();
            // Failed passes since the last sample are the cloud failures the counter counts.
            let new_failures = status
                .health
                .consecutive_failures
                .saturating_sub(s.sync_failures);
            s.sync_failures = status.health.consecutive_failures;
            s.sync_last_error.clone_from(&status.health.last_error);
            s.sync_lag_ms = status.documents.lag_ms.max(status.objects.lag_ms);
            s.sync_oldest_unsynced_ms = status.oldest_unsynced_ms;
            let before = s.dead_letters.replace(status.dead_letters);
            (status.dead_letters > before.unwrap_or(0), new_failures)
        };
        self.metrics
            .api_failures
            .with_label_values(&[super::FailureSource::Cloud.as_str()])
            .inc_by(new_failures);
        if lag > self.thresholds.sync_lag_ms {
            self.alerts.raise(
                AlertKind::SyncLag,
                "lag",
                Severity::Warning,
                format!(
                    "sync lags: the oldest unsynced change is {} old, {} rows waiting",
                    humantime::format_duration(std::time::Duration::from_secs(lag / 1000)),
                    status.queue_depth
                ),
                now,
            );
        }
        if grew {
            self.alerts.raise(
                AlertKind::DeadLetters,
                "dead_letters",
                Severity::Warning,
                format!(
                    "{} outbox rows are dead-lettered (rejected by a sink)",
                    status.dead_letters
                ),
                now,
            );
        }
    }

    /// Process CPU (as a fraction of the machine, since the last sample) and memory.
    fn sample_process(&self, now: u64) {
        let (cpu, rss) = process_readings();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let mut s = self.lock();
        if let Some(cpu) = cpu {
            if let Some((before, at)) = s.cpu_seen
                && now > at
            {
                let wall = (now - at) as f64 / 1000.0;
                s.cpu_ratio = Some(((cpu - before) / wall / cores).max(0.0));
            }
            s.cpu_seen = Some((cpu, now));
        }
        if let (Some(rss), Some(total)) = (rss, machine_memory_bytes()) {
            s.memory_ratio = Some(rss / total as f64);
        }
    }
}
