//! The scrubber: a background task that walks every stored record at
//! `recovery.scrub_records_per_sec`, verifying each one's checksum, and reports each corrupt
//! record once, by table and key, to the agent loop, which trips memory_corruption through the
//! risk engine (the agent owns the risk state, so the trip is journaled with its next write).

use athena_storage::{CorruptRecord, ScrubCursor, Store};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, watch};

/// Scrubber counters, for the status line and tests.
#[derive(Debug, Default)]
pub struct ScrubStats {
    /// Records verified.
    pub records: AtomicU64,
    /// Completed rounds over the whole store.
    pub rounds: AtomicU64,
    /// Corrupt records found.
    pub corrupt: AtomicU64,
}

/// Runs until `stop`: each second verifies up to `per_sec` records and sends every corrupt
/// record not reported before to `findings`.
pub async fn run(
    store: Arc<Store>,
    per_sec: u64,
    findings: mpsc::UnboundedSender<CorruptRecord>,
    stats: Arc<ScrubStats>,
    mut stop: watch::Receiver<bool>,
) {
    if per_sec == 0 {
        return;
    }
    let mut cursor = ScrubCursor::default();
    let mut reported: HashSet<(String, String)> = HashSet::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let st = store.clone();
        let mut c = cursor.clone();
        let result = tokio::task::spawn_blocking(move || {
            let slice = st.scrub(&mut c, per_sec as usize);
            (c, slice)
        })
        .await;
        let (next, slice) = match result {
            Ok((c, Ok(slice))) => (c, slice),
            Ok((_, Err(e))) => {
                tracing::error!(error = %e, "scrubber could not read the store");
                continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "scrubber task panicked");
                continue;
            }
        };
        cursor = next;
        stats.records.fetch_add(slice.records, Ordering::Relaxed);
        stats.rounds.store(cursor.rounds, Ordering::Relaxed);
        for bad in slice.corrupt {
            if reported.insert((bad.table.clone(), bad.key.clone())) {
                stats.corrupt.fetch_add(1, Ordering::Relaxed);
                tracing::error!(table = %bad.table, key = %bad.key, reason = %bad.reason, "scrubber found a corrupt record");
                if findings.send(bad).is_err() {
                    return;
                }
            }
        }
    }
}
