//! `[memory]`: tiers, retention, quotas, pruning, recall cache and compression.
//!
//! Retention and quota tables are keyed by a memory type (`observation`, `pattern`, …) or a
//! category (`pool_behavior`, …); a memory is bound by both its type's and its category's entry.
//! The names are checked by the storage crate's validator hook, [`crate::Config::validate`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// `[memory]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Age at which a memory leaves the hot tier (full record) for warm. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub hot_max_age: Duration,
    /// Age at which a memory leaves the warm tier for cold (object-store segment). Default 7 d.
    #[serde(with = "humantime_serde")]
    pub warm_max_age: Duration,
    /// Age at which a cold memory is archived (patterns, learnings) or dropped. Default 30 d.
    #[serde(with = "humantime_serde")]
    pub cold_max_age: Duration,
    /// Memories below this confidence are removed once older than `low_confidence_min_age`.
    pub min_confidence: f64,
    /// Age after which low-confidence memories are removed. Default 48 h.
    #[serde(with = "humantime_serde")]
    pub low_confidence_min_age: Duration,
    /// Content similarity (0–1) at which two patterns with the same key are merged.
    pub merge_similarity: f64,
    /// Pruning service period. Default 1 h.
    #[serde(with = "humantime_serde")]
    pub prune_interval: Duration,
    /// Half-life of the recency decay used to rank memories for quota eviction.
    #[serde(with = "humantime_serde")]
    pub recency_half_life: Duration,
    /// Warm-tier content is cut to this many characters when compacted.
    pub warm_content_max_chars: u32,
    /// Recall query cache capacity, entries. Default 500.
    pub query_cache_entries: u64,
    /// Recall query cache entry lifetime. Default 300 s.
    #[serde(with = "humantime_serde")]
    pub query_cache_ttl: Duration,
    /// The store's page cache (redb's read and write cache), bytes: the bound on the memory the
    /// store takes for caching. Default 1 GiB (redb's default).
    pub store_cache_bytes: u64,
    /// zstd compression level (1–22).
    pub compression_level: i32,
    /// Records of one kind needed before a zstd dictionary is trained for it.
    pub dictionary_min_samples: u32,
    /// Size of a trained dictionary, bytes.
    pub dictionary_size_bytes: u32,
    /// Memories per cold segment at most.
    pub cold_segment_max_records: u32,
    /// Retention per type or category: older memories leave the live tiers.
    #[serde(with = "duration_map")]
    pub retention: BTreeMap<String, Duration>,
    /// Quota per type or category: local (hot + warm) memories at most.
    pub quotas: BTreeMap<String, u64>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        let retention = [
            ("observation", 7),
            ("pattern", 30),
            ("pool_behavior", 30),
            ("cross_pool_correlation", 14),
            ("strategy_performance", 90),
            ("error_learning", 7),
        ]
        .into_iter()
        .map(|(k, d)| (k.to_string(), Duration::from_secs(d * DAY)))
        .collect();
        let quotas = [
            ("observation", 1000),
            ("pattern", 500),
            ("pool_behavior", 200),
            ("cross_pool_correlation", 100),
            ("strategy_performance", 300),
            ("error_learning", 50),
        ]
        .into_iter()
        .map(|(k, n)| (k.to_string(), n))
        .collect();
        Self {
            hot_max_age: Duration::from_secs(DAY),
            warm_max_age: Duration::from_secs(7 * DAY),
            cold_max_age: Duration::from_secs(30 * DAY),
            min_confidence: 0.3,
            low_confidence_min_age: Duration::from_secs(2 * DAY),
            merge_similarity: 0.9,
            prune_interval: Duration::from_secs(3600),
            recency_half_life: Duration::from_secs(7 * DAY),
            warm_content_max_chars: 280,
            query_cache_entries: 500,
            query_cache_ttl: Duration::from_secs(300),
            store_cache_bytes: 1024 * 1024 * 1024,
            compression_level: 3,
            dictionary_min_samples: 1000,
            dictionary_size_bytes: 32 * 1024,
            cold_segment_max_records: 5000,
            retention,
            quotas,
        }
    }
}

/// Serde for a map of human-readable durations.
mod duration_map {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<String, Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    humantime_serde::re::humantime::format_duration(*v).to_string(),
                )
            })
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        BTreeMap::<String, String>::deserialize(d)?
            .into_iter()
            .map(|(k, v)| {
                humantime_serde::re::humantime::parse_duration(&v)
                    .map(|d| (k.clone(), d))
                    .map_err(|e| serde::de::Error::custom(format!("{k}: {e}")))
            })
            .collect()
    }
}
