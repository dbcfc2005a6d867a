//! The read cache in front of cloud reads: moka, entries living `sync.read_cache_ttl` (300 s by
//! default), at most `sync.read_cache_entries`, with hit and miss counters. A write through the
//! same sink invalidates the key it writes, so the cache never serves what we overwrote.
//! Expiry is decided against an injected monotonic clock (the process's by default), not by
//! moka's own timer, so a test moves time instead of sleeping through a TTL.

use moka::future::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A monotonic clock: time since some fixed origin.
pub type Monotonic = Arc<dyn Fn() -> Duration + Send + Sync>;

/// A size- and age-bounded cache of cloud reads.
pub struct ReadCache<V: Clone + Send + Sync + 'static> {
    /// Values with the time they were loaded at.
    cache: Cache<String, (V, Duration)>,
    ttl: Duration,
    now: Monotonic,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<V: Clone + Send + Sync + 'static> ReadCache<V> {
    /// A cache of at most `entries`, each living `ttl` of the process's monotonic time.
    pub fn new(entries: u64, ttl: Duration) -> Self {
        let origin = std::time::Instant::now();
        Self::with_clock(entries, ttl, Arc::new(move || origin.elapsed()))
    }

    /// A cache of at most `entries`, each living `ttl` as `now` measures it.
    pub fn with_clock(entries: u64, ttl: Duration, now: Monotonic) -> Self {
        Self {
            cache: Cache::builder().max_capacity(entries).build(),
            ttl,
            now,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value of `key`, or `load`'s (cached when it succeeds). An entry `ttl` old or
    /// older is expired: loaded again.
    pub async fn get_or_load<E, F>(&self, key: &str, load: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        if let Some((v, loaded)) = self.cache.get(key).await
            && (self.now)().saturating_sub(loaded) < self.ttl
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v = load.await?;
        let loaded = (self.now)();
        self.cache
            .insert(key.to_string(), (v.clone(), loaded))
            .await;
        Ok(v)
    }

    /// Forgets `key` (after writing it).
    pub async fn invalidate(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// (hits, misses) since creation.
    pub fn counters(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hits_misses_expiry_and_invalidation() {
        let ms = Arc::new(AtomicU64::new(0));
        let clock = ms.clone();
        let c: ReadCache<u32> = ReadCache::with_clock(
            100,
            Duration::from_millis(200),
            Arc::new(move || Duration::from_millis(clock.load(Ordering::Relaxed))),
        );
        let load = |v| async move { Ok::<_, ()>(v) };
        assert_eq!(c.get_or_load("a", load(1)).await, Ok(1));
        assert_eq!(
            c.get_or_load("a", load(2)).await,
            Ok(1),
            "served from the cache"
        );
        assert_eq!(c.counters(), (1, 1));
        c.invalidate("a").await;
        assert_eq!(
            c.get_or_load("a", load(3)).await,
            Ok(3),
            "reloaded after a write"
        );
        ms.store(199, Ordering::Relaxed);
        assert_eq!(
            c.get_or_load("a", load(4)).await,
            Ok(3),
            "alive until its TTL"
        );
        ms.store(200, Ordering::Relaxed);
        assert_eq!(
            c.get_or_load("a", load(4)).await,
            Ok(4),
            "expired at its TTL"
        );
        assert_eq!(
            c.get_or_load("a", load(5)).await,
            Ok(4),
            "the reload is cached from its own load time"
        );
        let failed: Result<u32, &str> = c.get_or_load("b", async { Err("down") }).await;
        assert!(failed.is_err());
        assert_eq!(
            c.get_or_load("b", load(6)).await,
            Ok(6),
            "failures are not cached"
        );
    }
}
