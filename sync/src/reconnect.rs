//! Sinks that could not be built at start (the cloud unreachable, credentials not there yet)
//! are built again in the background, so an agent started offline syncs once the cloud
//! returns, without a restart.
//!
//! A [`Reconnecting`] sink tries to build the real sink on each push until one build succeeds;
//! until then every write of the push fails as [`ErrorKind::Transient`] with the build's error
//! in one line, so the worker's own backoff, probing and outbox compaction pace the attempts
//! exactly as they pace an outage of a connected sink. Nothing is dropped: the rows stay in the
//! outbox.

use crate::coalesce::Write;
use crate::error::SyncError;
use crate::sink::{ErrorKind, Sink, SinkError, SinkRole, WriteResult};
use futures::future::BoxFuture;
use std::sync::Arc;
use tokio::sync::{Mutex, OnceCell};

/// Builds the real sink (connecting where that needs the network).
pub type Build =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Arc<dyn Sink>, SyncError>> + Send + Sync>;

/// A sink built on first use; see the module doc.
pub struct Reconnecting {
    name: String,
    role: SinkRole,
    build: Build,
    inner: OnceCell<Arc<dyn Sink>>,
    /// Held while a build runs, so concurrent pushes do not connect twice.
    building: Mutex<()>,
}

impl Reconnecting {
    /// A sink named `name` (for logs and status) in `role`, built by `build` on first use.
    pub fn new(name: &str, role: SinkRole, build: Build) -> Self {
        Self {
            name: name.to_string(),
            role,
            build,
            inner: OnceCell::new(),
            building: Mutex::new(()),
        }
    }

    /// Whether the real sink has been built.
    pub fn is_connected(&self) -> bool {
        self.inner.initialized()
    }

    /// The real sink, building it now if it is not built yet.
    async fn connected(&self) -> Result<Arc<dyn Sink>, SyncError> {
        if let Some(s) = self.inner.get() {
            return Ok(s.clone());
        }
        let _one_at_a_time = self.building.lock().await;
        if let Some(s) = self.inner.get() {
            return Ok(s.clone());
        }
        let sink = (self.build)().await?;
        tracing::info!(sink = %self.name, "sink connected; the outbox drains");
        Ok(self.inner.get_or_init(|| async { sink }).await.clone())
    }
}

#[async_trait::async_trait]
impl Sink for Reconnecting {
    fn name(&self) -> &str {
        &self.name
    }

    fn role(&self) -> SinkRole {
        self.role
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        match self.connected().await {
            Ok(sink) => sink.push(writes).await,
            Err(e) => {
                let e = SinkError::new(ErrorKind::Transient, format!("not connected: {e}"));
                vec![Err(e); writes.len()]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_sink::MemorySink;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn write(doc: &str) -> Write {
        Write::Delete {
            collection: "c".into(),
            doc: doc.into(),
        }
    }

    #[tokio::test]
    async fn fails_transiently_until_a_build_succeeds_then_delegates() {
        let attempts = Arc::new(AtomicU32::new(0));
        let target = Arc::new(MemorySink::new("memory", SinkRole::Documents));
        let (a, t) = (attempts.clone(), target.clone());
        let build: Build = Arc::new(move || {
            let (a, t) = (a.clone(), t.clone());
            Box::pin(async move {
                if a.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(SyncError::Unreachable("connection refused".into()))
                } else {
                    Ok(t as Arc<dyn Sink>)
                }
            })
        });
        let sink = Reconnecting::new("firestore", SinkRole::Documents, build);
        for _ in 0..2 {
            let r = sink.push(&[write("a"), write("b")]).await;
            assert_eq!(r.len(), 2);
            for e in r {
                let e = e.unwrap_err();
                assert_eq!(e.kind, ErrorKind::Transient);
                assert!(e.detail.contains("connection refused"), "{}", e.detail);
            }
            assert!(!sink.is_connected());
        }
        let r = sink.push(&[write("a")]).await;
        assert_eq!(r, vec![Ok(())]);
        assert!(sink.is_connected());
        sink.push(&[write("b")]).await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            3,
            "built once, then reused"
        );
        assert_eq!(target.calls(), 2);
    }
}
