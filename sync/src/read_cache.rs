//! The read cache in front of cloud reads: moka, entries living `sync.read_cache_ttl` (300 s by
//! default), at most `sync.read_cache_entries`, with hit and miss counters. A write through the
//! same sink invalidates the key it writes, so the cache never serves what we overwrote.

use moka::future::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A size- and age-bounded cache of cloud reads.
pub struct ReadCache<V: Clone + Send + Sync + 'static> {
    cache: Cache<String, V>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<V: Clone + Send + Sync + 'static> ReadCache<V> {
    /// A cache of at most `entries`, each living `ttl`.
    pub fn new(entries: u64, ttl: Duration) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(entries)
                .time_to_live(ttl)
                .build(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value of `key`, or `load`'s (cached when it succeeds).
    pub async fn get_or_load<E, F>(&self, key: &str, load: F) -> Result<V, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        if let Some(v) = self.cache.get(key).await {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v = load.await?;
        self.cache.insert(key.to_string(), v.clone()).await;
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
        let c: ReadCache<u32> = ReadCache::new(100, Duration::from_millis(200));
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
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            c.get_or_load("a", load(4)).await,
            Ok(4),
            "expired after its TTL"
        );
        let failed: Result<u32, &str> = c.get_or_load("b", async { Err("down") }).await;
        assert!(failed.is_err());
        assert_eq!(
            c.get_or_load("b", load(5)).await,
            Ok(5),
            "failures are not cached"
        );
    }
}
