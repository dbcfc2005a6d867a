//! A sink that accepts every write and only counts what it was sent: requests, writes (what
//! Firestore bills per document, or object-store operations), distinct keys and bytes.
//! `athena backtest` drives the real worker against two of them to report what the sync layer
//! would actually send, beside the naive one-write-per-change path.

use crate::coalesce::Write;
use crate::sink::{Sink, SinkRole, WriteResult};
use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a [`CountingSink`] was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sent {
    /// Push calls (one request each).
    pub requests: u64,
    /// Writes (document writes for documents; put and delete operations for objects).
    pub writes: u64,
    /// Puts among them (objects: the billed class-A operations; deletes are free).
    pub puts: u64,
    /// Distinct remote keys written.
    pub keys: u64,
    /// Bytes of the writes (`Write::size`).
    pub bytes: u64,
}

/// Accepts and counts.
pub struct CountingSink {
    role: SinkRole,
    requests: AtomicU64,
    writes: AtomicU64,
    puts: AtomicU64,
    bytes: AtomicU64,
    keys: Mutex<HashSet<String>>,
}

impl CountingSink {
    /// A counting sink taking `role`'s writes.
    pub fn new(role: SinkRole) -> Self {
        Self {
            role,
            requests: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            puts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            keys: Mutex::new(HashSet::new()),
        }
    }

    /// What it was sent so far.
    pub fn sent(&self) -> Sent {
        Sent {
            requests: self.requests.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            puts: self.puts.load(Ordering::Relaxed),
            keys: self.keys.lock().expect("keys lock").len() as u64,
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[async_trait::async_trait]
impl Sink for CountingSink {
    fn name(&self) -> &str {
        "counting"
    }

    fn role(&self) -> SinkRole {
        self.role
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.writes
            .fetch_add(writes.len() as u64, Ordering::Relaxed);
        let puts = writes
            .iter()
            .filter(|w| !matches!(w, Write::Delete { .. } | Write::DeleteBlob { .. }))
            .count();
        self.puts.fetch_add(puts as u64, Ordering::Relaxed);
        self.bytes.fetch_add(
            writes.iter().map(|w| w.size() as u64).sum(),
            Ordering::Relaxed,
        );
        let mut keys = self.keys.lock().expect("keys lock");
        keys.extend(writes.iter().map(Write::key_hint));
        writes.iter().map(|_| Ok(())).collect()
    }
}
