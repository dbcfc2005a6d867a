//! The memory model: what the agent remembers, its closed category set, its tiers, and who
//! wrote it.
//!
//! Invariants: a category is one of a closed set (an unknown name is an error, never
//! "general"); confidence lies in [0, 1]; text fields are bounded; ids are ULIDs whose time part
//! is the creation time, so id order is time order.

use crate::error::{Result, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use ulid::Ulid;

/// Longest content accepted, bytes.
pub const MAX_CONTENT_BYTES: usize = 16 * 1024;
/// Longest pool id, pattern key or metadata key/value accepted, bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Most free-form metadata entries accepted.
pub const MAX_EXTRA_ENTRIES: usize = 32;

macro_rules! closed_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The snake_case name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Position in [`Self::ALL`].
            pub fn index(self) -> u8 {
                self as u8
            }

            /// The value at `index` in [`Self::ALL`].
            pub fn from_index(index: u8) -> Option<Self> {
                Self::ALL.get(usize::from(index)).copied()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = StoreError;
            fn from_str(s: &str) -> Result<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let known: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    StoreError::Invalid(format!(concat!("unknown ", $what, " {:?}; known: {}"), s, known.join(", ")))
                })
            }
        }
    };
}

closed_enum!(
    /// What kind of memory this is.
    MemoryType, "memory type" {
        /// A market observation.
        Observation = "observation",
        /// A detected pattern.
        Pattern = "pattern",
        /// A lesson learned from outcomes.
        Learning = "learning",
        /// A decision taken.
        Decision = "decision",
        /// The outcome of a decision.
        Outcome = "outcome",
        /// An error seen.
        Error = "error",
    }
);

closed_enum!(
    /// What a memory is about. Closed: an unknown category is rejected.
    Category, "category" {
        /// How a pool behaves over time.
        PoolBehavior = "pool_behavior",
        /// An APR outlier.
        AprAnomaly = "apr_anomaly",
        /// A pool with high yield.
        HighYieldPool = "high_yield_pool",
        /// A pool with high volume.
        HighVolumePool = "high_volume_pool",
        /// Gas timing and cost.
        GasOptimization = "gas_optimization",
        /// Pools that move together.
        CrossPoolCorrelation = "cross_pool_correlation",
        /// How a strategy performed.
        StrategyPerformance = "strategy_performance",
        /// A lesson from an error.
        ErrorLearning = "error_learning",
        /// A market-wide analysis.
        MarketAnalysis = "market_analysis",
        /// A risk event (breaker trip, incident).
        RiskEvent = "risk_event",
        /// A trade and its execution.
        TradeExecution = "trade_execution",
    }
);

closed_enum!(
    /// Who wrote a memory; decides how far it is trusted.
    Source, "memory source" {
        /// Derived from market data.
        MarketData = "market_data",
        /// Written by a deterministic rule.
        Rule = "rule",
        /// Written from LLM output (untrusted).
        Llm = "llm",
        /// Written by an operator.
        Operator = "operator",
    }
);

closed_enum!(
    /// Where a memory lives.
    Tier, "tier" {
        /// 0–24 h: full record, local.
        Hot = "hot",
        /// 24 h–7 d: compacted metadata, dictionary-compressed, local.
        Warm = "warm",
        /// 7–30 d: object-store segment, local index entry.
        Cold = "cold",
        /// > 30 d: summaries in the object store.
        Archive = "archive",
    }
);

impl Source {
    /// Trust in [0, 1]: operator > market data > rule > LLM.
    pub fn trust(self) -> f64 {
        match self {
            Self::Operator => 1.0,
            Self::MarketData => 0.9,
            Self::Rule => 0.8,
            Self::Llm => 0.5,
        }
    }
}

/// Structured metadata. Compaction may shorten it but never empties the structured fields.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metadata {
    /// Pool id (pair address or symbol pair).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// APR, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apr: Option<f64>,
    /// TVL, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tvl: Option<f64>,
    /// 24 h volume, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<f64>,
    /// Structured key of a pattern (same key + similar content = same pattern).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern_key: Option<String>,
    /// Free-form attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// One memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// ULID; its time part is `created_ms`.
    pub id: Ulid,
    /// Type.
    #[serde(rename = "type")]
    pub kind: MemoryType,
    /// Category.
    pub category: Category,
    /// Text.
    pub content: String,
    /// Structured metadata.
    pub metadata: Metadata,
    /// Confidence, 0–1.
    pub confidence: f64,
    /// Evidence count.
    pub occurrences: u32,
    /// Creation time, ms since the epoch (agent clock).
    pub created_ms: u64,
    /// Last access, ms since the epoch.
    pub accessed_ms: u64,
    /// Number of recalls that returned it.
    pub access_count: u32,
    /// Who wrote it.
    pub source: Source,
    /// Where it lives.
    pub tier: Tier,
}

impl Memory {
    /// A new hot memory with id `id`, created at the id's time part. Make the id with
    /// `Ulid::from_parts(now_ms, random)` from the injected clock and seeded RNG.
    pub fn new(
        kind: MemoryType,
        category: Category,
        content: impl Into<String>,
        metadata: Metadata,
        confidence: f64,
        source: Source,
        id: Ulid,
    ) -> Self {
        let now_ms = id.timestamp_ms();
        Self {
            id,
            kind,
            category,
            content: content.into(),
            metadata,
            confidence,
            occurrences: 1,
            created_ms: now_ms,
            accessed_ms: now_ms,
            access_count: 0,
            source,
            tier: Tier::Hot,
        }
    }

    /// Checks the bounds every stored memory must meet.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(StoreError::Invalid(format!("memory {}: {m}", self.id)));
        if !(0.0..=1.0).contains(&self.confidence) {
            return bad(format!(
                "confidence must be in [0, 1], got {}",
                self.confidence
            ));
        }
        if self.content.len() > MAX_CONTENT_BYTES {
            return bad(format!(
                "content of {} bytes exceeds {MAX_CONTENT_BYTES}",
                self.content.len()
            ));
        }
        if self.id.timestamp_ms() != self.created_ms {
            return bad("id time part differs from created_ms".into());
        }
        let m = &self.metadata;
        for (name, v) in [("pool", &m.pool), ("pattern_key", &m.pattern_key)] {
            if v.as_ref()
                .is_some_and(|v| v.is_empty() || v.len() > MAX_KEY_BYTES)
            {
                return bad(format!("{name} must be 1–{MAX_KEY_BYTES} bytes"));
            }
        }
        for (name, v) in [("apr", m.apr), ("tvl", m.tvl), ("volume", m.volume)] {
            if v.is_some_and(|v| !v.is_finite()) {
                return bad(format!("{name} must be finite"));
            }
        }
        if m.extra.len() > MAX_EXTRA_ENTRIES
            || m.extra
                .iter()
                .any(|(k, v)| k.len() > MAX_KEY_BYTES || v.len() > MAX_KEY_BYTES)
        {
            return bad(format!(
                "extra metadata exceeds {MAX_EXTRA_ENTRIES} entries of {MAX_KEY_BYTES} bytes"
            ));
        }
        if matches!(self.tier, Tier::Cold | Tier::Archive) {
            return bad("only hot or warm memories are stored as records".into());
        }
        Ok(())
    }

    /// Age at `now_ms`, in ms (0 for a memory from the future).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.created_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_category_is_an_error_not_general() {
        let err = "general".parse::<Category>().unwrap_err().to_string();
        assert!(err.contains("unknown category \"general\""), "{err}");
        assert_eq!(
            "pool_behavior".parse::<Category>().unwrap(),
            Category::PoolBehavior
        );
    }

    #[test]
    fn names_match_the_config_crate() {
        let types: Vec<&str> = MemoryType::ALL.iter().map(|t| t.as_str()).collect();
        let cats: Vec<&str> = Category::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(types, athena_config::MEMORY_TYPE_NAMES);
        assert_eq!(cats, athena_config::MEMORY_CATEGORY_NAMES);
    }

    #[test]
    fn index_round_trips() {
        for c in Category::ALL {
            assert_eq!(Category::from_index(c.index()), Some(*c));
        }
        assert!(
            Category::ALL.len() <= 64,
            "categories are tracked in a u64 bitset"
        );
    }
}
