//! An in-memory sink with fault injection, for tests beside the real sinks: fail after N calls,
//! latency, an outage switch, permanent rejection of documents over Firestore's 1 MiB limit,
//! and "applied but not confirmed" (the reply is lost after the write landed).

use crate::coalesce::{State, Write};
use crate::sink::{ErrorKind, Sink, SinkError, SinkRole, WriteResult};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Firestore's document size limit, bytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// A sink that keeps what it receives in memory.
pub struct MemorySink {
    name: String,
    role: SinkRole,
    state: Mutex<State>,
    calls: AtomicU64,
    writes: AtomicU64,
    /// Calls after which every push fails as transient (`u64::MAX`: never).
    fail_after: AtomicU64,
    down: AtomicBool,
    lose_confirmations: AtomicBool,
    latency: Mutex<Duration>,
}

impl MemorySink {
    /// An empty sink taking `role` writes.
    pub fn new(name: &str, role: SinkRole) -> Self {
        Self {
            name: name.to_string(),
            role,
            state: Mutex::new(State::default()),
            calls: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            fail_after: AtomicU64::new(u64::MAX),
            down: AtomicBool::new(false),
            lose_confirmations: AtomicBool::new(false),
            latency: Mutex::new(Duration::ZERO),
        }
    }

    /// Starts or ends an outage: every push fails as transient while down.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// From the next `n` calls on, every push fails as transient.
    pub fn fail_after(&self, n: u64) {
        self.fail_after
            .store(self.calls.load(Ordering::SeqCst) + n, Ordering::SeqCst);
    }

    /// Apply writes but answer transient, as if the confirmation was lost on the way back.
    pub fn set_lose_confirmations(&self, lose: bool) {
        self.lose_confirmations.store(lose, Ordering::SeqCst);
    }

    /// Wait this long in every push.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().expect("latency lock") = latency;
    }

    /// What the sink holds.
    pub fn state(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }

    /// Pushes received.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Writes applied (a re-sent write counts again).
    pub fn writes_applied(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn role(&self) -> SinkRole {
        self.role
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        let latency = *self.latency.lock().expect("latency lock");
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if self.down.load(Ordering::SeqCst) || call >= self.fail_after.load(Ordering::SeqCst) {
            let e = SinkError::new(ErrorKind::Transient, "injected outage");
            return writes.iter().map(|_| Err(e.clone())).collect();
        }
        let lose = self.lose_confirmations.load(Ordering::SeqCst);
        let mut state = self.state.lock().expect("state lock");
        writes
            .iter()
            .map(|w| {
                if w.is_document() && w.size() > MAX_DOCUMENT_BYTES {
                    return Err(SinkError::new(
                        ErrorKind::Permanent,
                        format!("document of {} bytes exceeds 1 MiB", w.size()),
                    ));
                }
                state.apply(w);
                self.writes.fetch_add(1, Ordering::SeqCst);
                if lose {
                    Err(SinkError::new(ErrorKind::Transient, "confirmation lost"))
                } else {
                    Ok(())
                }
            })
            .collect()
    }
}
