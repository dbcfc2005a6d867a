//! Athena's configuration: one typed schema, loaded once, validated, passed down.
//!
//! Invariants:
//! - every key has a default (SPEC.md's numbers) and the shipped `config/athena.toml` lists every
//!   key with its unit and default (a test holds both to that);
//! - loading reports every problem at once, each with its key path and reason;
//! - unknown keys are errors; durations are human-readable ("5s", "24h");
//! - secrets come only from the environment or from files the config names, and every print of
//!   them is redacted ([`Secret`]).

mod load;
mod memory;
mod risk;
mod secret;
mod sections;
mod validate;

pub use load::{DEFAULT_CONFIG_TOML, load, load_with_env};
pub use memory::MemoryConfig;
pub use risk::{GasConfig, RecoveryConfig, RiskConfig};
pub use secret::{SECRET_SLOTS, Secret, SecretSlot};
pub use sections::{
    AgentConfig, ApiConfig, ChainConfig, ChainPool, ClockKind, DocumentSink, ExecutorConfig,
    ExecutorKind, LlmConfig, MarketConfig, MarketSource, MonitorConfig, PairKind, SlotTolerance,
    StrategyConfig, SyncConfig,
};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Memory types a retention or quota key may name (the storage crate's `MemoryType`).
pub const MEMORY_TYPE_NAMES: &[&str] = &[
    "observation",
    "pattern",
    "learning",
    "decision",
    "outcome",
    "error",
];

/// Categories a retention or quota key may name (the storage crate's `Category`).
pub const MEMORY_CATEGORY_NAMES: &[&str] = &[
    "pool_behavior",
    "apr_anomaly",
    "high_yield_pool",
    "high_volume_pool",
    "gas_optimization",
    "cross_pool_correlation",
    "strategy_performance",
    "error_learning",
    "market_analysis",
    "risk_event",
    "trade_execution",
];

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[agent]`
    pub agent: AgentConfig,
    /// `[market]`
    pub market: MarketConfig,
    /// `[strategy]`
    pub strategy: StrategyConfig,
    /// `[executor]`
    pub executor: ExecutorConfig,
    /// `[memory]`
    pub memory: MemoryConfig,
    /// `[risk]`
    pub risk: RiskConfig,
    /// `[gas]`
    pub gas: GasConfig,
    /// `[recovery]`
    pub recovery: RecoveryConfig,
    /// `[llm]`
    pub llm: LlmConfig,
    /// `[sync]`
    pub sync: SyncConfig,
    /// `[monitor]`
    pub monitor: MonitorConfig,
    /// `[api]`
    pub api: ApiConfig,
    /// `[chain]`
    pub chain: ChainConfig,
    /// Secrets resolved at load time; never read from or written to TOML.
    #[serde(skip)]
    pub secrets: Secrets,
}

/// The secrets resolved at load time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Secrets {
    /// Bearer token of the mutating API endpoints.
    pub api_admin_token: Option<Secret>,
    /// API key of the LLM endpoint.
    pub llm_api_key: Option<Secret>,
    /// Signing key of the chain executor.
    pub chain_private_key: Option<Secret>,
}

impl Config {
    /// Checks every semantic rule and returns every violation (empty when valid).
    pub fn validate(&self) -> Vec<Problem> {
        validate::validate(self)
    }

    /// The effective configuration as TOML, secrets redacted (`config show`).
    pub fn to_redacted_toml(&self) -> String {
        let mut text = toml::to_string_pretty(self).unwrap_or_else(|e| format!("# {e}\n"));
        let set = |s: &Option<Secret>| if s.is_some() { "set" } else { "not set" };
        text.push_str(&format!(
            "\n# secrets (from the environment or *_file keys): api.admin_token {}, \
             llm.api_key {}, chain.private_key {}\n",
            set(&self.secrets.api_admin_token),
            set(&self.secrets.llm_api_key),
            set(&self.secrets.chain_private_key),
        ));
        text
    }
}

/// One problem with a configuration: where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `risk.max_position_fraction`, or the file or variable at fault.
    pub path: String,
    /// What is wrong, including the value seen.
    pub reason: String,
}

/// The most characters of a path or reason a problem keeps: a bad value is quoted by its
/// beginning and end, never echoed whole (a 10 MB value stays one short line).
pub const MAX_PROBLEM_CHARS: usize = 200;

impl Problem {
    /// A problem at `path`; both are cut to [`MAX_PROBLEM_CHARS`].
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: shorten(path.into()),
            reason: shorten(reason.into()),
        }
    }
}

/// `text` if short, else its first and last characters around the number of bytes left out.
/// Line breaks become spaces so a problem stays on one line.
pub fn shorten(text: String) -> String {
    let chars = text.chars().count();
    let text = if text.contains(['\n', '\r']) {
        text.replace(['\n', '\r'], " ")
    } else {
        text
    };
    if chars <= MAX_PROBLEM_CHARS {
        return text;
    }
    let head: String = text.chars().take(MAX_PROBLEM_CHARS * 3 / 4).collect();
    let tail_chars = MAX_PROBLEM_CHARS / 4;
    let tail: String = text.chars().skip(chars - tail_chars).collect();
    let cut = text.len() - head.len() - tail.len();
    format!("{head}…[{cut} bytes]…{tail}")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read: fix the path or its permissions.
    #[error("cannot read config file {path}: {source}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid: every problem is listed; reject the start.
    #[error("{} configuration problem(s):\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}
