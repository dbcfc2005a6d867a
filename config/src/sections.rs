//! The sections of the schema other than memory and risk: agent, market, strategy, executor,
//! chain, llm, sync, monitor and api.
//!
//! Every field has the default SPEC.md gives; units are in the field docs and durations are
//! human-readable strings ("5s", "24h"). Secrets are never fields here: see [`crate::secret`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `[agent]`: identity, data directory, pace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Stable id of this agent; names its documents and objects in the cloud.
    pub agent_id: String,
    /// Directory of the local store and checkpoint files (relative to the working directory).
    pub data_dir: PathBuf,
    /// Agent cycle period, in agent time. Default 300 s.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Clock: `real` (wall clock) or `simulated` (accelerated by `time_scale`).
    pub clock: ClockKind,
    /// Agent seconds per wall second for the simulated clock (1.0 = real time).
    pub time_scale: f64,
    /// Seed of every random process (simulator, jitter), so a run is reproducible.
    pub seed: u64,
    /// Observation period at first start: trade nothing, only learn. Default 3 days.
    #[serde(with = "humantime_serde")]
    pub observation_period: Duration,
}

/// Which clock drives the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockKind {
    /// The wall clock.
    Real,
    /// A simulated clock, accelerated by `agent.time_scale`.
    Simulated,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            agent_id: "athena-local".into(),
            data_dir: PathBuf::from("data"),
            tick_interval: Duration::from_secs(300),
            clock: ClockKind::Simulated,
            time_scale: 7200.0,
            seed: 42,
            observation_period: Duration::from_secs(3 * 86_400),
        }
    }
}

/// `[market]`: where pool data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MarketConfig {
    /// `sim` (seeded simulator), `replay` (JSONL snapshots) or `chain` (EVM JSON-RPC).
    pub source: MarketSource,
    /// JSONL file of pool snapshots; required when `source = "replay"`.
    pub replay_path: PathBuf,
    /// Pools the simulator lists (`source = "sim"`): the six defaults, then variants of them;
    /// 1 to 1000.
    pub sim_pools: u32,
}

/// Market source kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketSource {
    /// The deterministic simulator.
    Sim,
    /// Snapshots replayed from a JSONL file.
    Replay,
    /// A live EVM chain.
    Chain,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            source: MarketSource::Sim,
            replay_path: PathBuf::new(),
            sim_pools: 6,
        }
    }
}

/// `[strategy]`: the decision rules' thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StrategyConfig {
    /// Open new positions while fewer than this many are held.
    pub max_positions: u32,
    /// How many of the best pools to open per cycle.
    pub open_top_n: u32,
    /// Minimum pool APR to open, in percent.
    pub min_apr_pct: f64,
    /// Minimum pool TVL to open or rebalance into, in USD.
    pub min_tvl_usd: f64,
    /// Rebalance when APR falls below this fraction of the entry APR.
    pub rebalance_apr_drop_ratio: f64,
    /// A rebalance target needs APR above this multiple of the current APR.
    pub rebalance_better_ratio: f64,
    /// Expected gain over the horizon must exceed this multiple of round-trip gas and fees.
    pub rebalance_min_gain_over_cost: f64,
    /// Holding horizon for expected-gain estimates.
    #[serde(with = "humantime_serde")]
    pub holding_horizon: Duration,
    /// Compound when pending rewards exceed this, in USD.
    pub compound_min_rewards_usd: f64,
    /// Compound only when claim gas is below this fraction of the rewards.
    pub compound_max_gas_fraction: f64,
    /// Close on a TVL drop larger than this, in percent, within `tvl_drain_window`.
    pub tvl_drain_pct: f64,
    /// Window of the TVL-drain rule.
    #[serde(with = "humantime_serde")]
    pub tvl_drain_window: Duration,
    /// Close a stable pool whose price leaves its peg by more than this, in percent.
    pub depeg_pct: f64,
    /// After a protective close (TVL drain, depeg, risk reduce) the pool is not re-entered
    /// for this long, nor while its condition still holds. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub reentry_cooldown: Duration,
    /// On chain, a token left in the wallet outside positions (an open or a close cut short)
    /// is swapped back into the quote token when it is worth more than this multiple of the
    /// swap's gas. Default 3.
    pub sweep_min_gas_multiple: f64,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        Self {
            max_positions: 5,
            open_top_n: 3,
            min_apr_pct: 20.0,
            min_tvl_usd: 100_000.0,
            rebalance_apr_drop_ratio: 0.7,
            rebalance_better_ratio: 1.5,
            rebalance_min_gain_over_cost: 2.0,
            holding_horizon: Duration::from_secs(7 * 86_400),
            compound_min_rewards_usd: 50.0,
            compound_max_gas_fraction: 0.10,
            tvl_drain_pct: 30.0,
            tvl_drain_window: Duration::from_secs(3600),
            depeg_pct: 2.0,
            reentry_cooldown: Duration::from_secs(86_400),
            sweep_min_gas_multiple: 3.0,
        }
    }
}

/// `[executor]`: how decisions are carried out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutorConfig {
    /// `paper` (local ledger) or `chain` (signed router transactions).
    pub kind: ExecutorKind,
    /// Starting paper balance, in USD of the stable asset.
    pub paper_starting_usd: f64,
    /// Router transaction deadline. Default 120 s.
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    /// How long to wait for a receipt before looking the transaction up again.
    #[serde(with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// Token symbols or addresses the agent may hold or approve; empty = the pools' tokens.
    pub token_allowlist: Vec<String>,
}

/// Executor kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorKind {
    /// Paper trading against the local ledger.
    Paper,
    /// On-chain execution.
    Chain,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            kind: ExecutorKind::Paper,
            paper_starting_usd: 10_000.0,
            deadline: Duration::from_secs(120),
            receipt_timeout: Duration::from_secs(180),
            token_allowlist: Vec::new(),
        }
    }
}

/// `[chain]`: the EVM endpoint. The signing key is a secret: `ATHENA_CHAIN_PRIVATE_KEY` or the
/// file named by `private_key_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC URL; required when the market source or executor is `chain`.
    pub rpc_url: String,
    /// Chain id (Base = 8453).
    pub chain_id: u64,
    /// The UniswapV2 router (0x…), required for the chain executor: it trades the
    /// `uniswap_v2` pools made by its factory.
    pub router_address: String,
    /// Aerodrome's router (0x…), optional: the chain executor trades the `solidly` pools made
    /// by its default factory; empty = those pools are watched, not traded.
    pub solidly_router_address: String,
    /// File holding the hex private key (alternative to the environment variable).
    pub private_key_file: PathBuf,
    /// RPC request timeout.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The pools the `chain` market source reads; required when it is used.
    pub pools: Vec<ChainPool>,
    /// Symbol of the token counted as exactly $1; every other token is priced through the
    /// pools from it. Default `USDC`.
    pub quote_token: String,
    /// Symbol of the token priced as the chain's native coin (gas is paid in it). Default
    /// `WETH`.
    pub native_token: String,
    /// Most blocks one `eth_getLogs` request spans (swap volume). Default 2,000.
    pub log_range_blocks: u64,
}

/// One pool of the `chain` market source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainPool {
    /// The pair contract (0x…).
    pub address: String,
    /// Which kind of pair it is. Default `uniswap_v2`.
    #[serde(default)]
    pub kind: PairKind,
    /// A pool of two stablecoins (watched for a depeg). A Solidly pool's own `stable()` must
    /// agree.
    #[serde(default)]
    pub stable: bool,
}

/// Pair contract kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairKind {
    /// A UniswapV2 pair: constant product, fee 0.30%.
    #[default]
    UniswapV2,
    /// A Solidly (Aerodrome) pool: constant product when volatile, x³y + xy³ when stable;
    /// the fee is read from its factory.
    Solidly,
}

impl Default for ChainConfig {
    fn default() -> Self {
        Self {
            rpc_url: String::new(),
            chain_id: 8453,
            router_address: String::new(),
            solidly_router_address: String::new(),
            private_key_file: PathBuf::new(),
            request_timeout: Duration::from_secs(10),
            pools: Vec::new(),
            quote_token: "USDC".into(),
            native_token: "WETH".into(),
            log_range_blocks: 2_000,
        }
    }
}

/// `[llm]`: the optional advisor (SPEC.md §5). The API key is a secret: `ATHENA_LLM_API_KEY`
/// or `api_key_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Whether the advisor is consulted at all.
    pub enabled: bool,
    /// OpenAI-compatible base URL (…/v1).
    pub endpoint: String,
    /// Model name sent with each request.
    pub model: String,
    /// File holding the API key (alternative to the environment variable).
    pub api_key_file: PathBuf,
    /// The longest a tick waits for the advisor, retries included. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Retries after a failed call (429, 5xx, a connection error), within `timeout`.
    pub max_retries: u32,
    /// Exact-cache and numeric-slot-cache entry lifetime, agent time. Default 24 h.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Cached answers kept at most (memory and store); the oldest are evicted first.
    pub cache_entries: u32,
    /// Numeric-slot cache: how alike the free text of two prompts must be (word overlap,
    /// 0–1) besides every number being within its tolerance. Numbers never take part.
    pub similarity_threshold: f64,
    /// Numeric-slot cache: how far each number may be from the cached prompt's.
    pub tolerance: SlotTolerance,
    /// Questions combined into one call at most (a tick's questions go together: see
    /// `RETIRED_KEYS` for why there is no batching window).
    pub batch_max: u32,
    /// Prompt token budget after compression.
    pub token_budget: u32,
    /// Reply tokens at most per request in a call.
    pub max_reply_tokens: u32,
    /// Price of a million prompt tokens, USD (cost accounting).
    pub usd_per_million_prompt_tokens: f64,
    /// Price of a million reply tokens, USD.
    pub usd_per_million_reply_tokens: f64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:8080/v1".into(),
            model: String::new(),
            api_key_file: PathBuf::new(),
            timeout: Duration::from_secs(30),
            max_retries: 3,
            cache_ttl: Duration::from_secs(86_400),
            cache_entries: 2_000,
            similarity_threshold: 0.9,
            tolerance: SlotTolerance::default(),
            batch_max: 10,
            token_budget: 2000,
            max_reply_tokens: 96,
            usd_per_million_prompt_tokens: 0.15,
            usd_per_million_reply_tokens: 0.60,
        }
    }
}

/// `[llm.tolerance]`: per numeric field of a prompt, how far a number may be from a cached
/// prompt's for the cached answer to be served. A hit never crosses a sign change, whatever
/// the tolerance. A fraction is of the smaller of the two values; points and dollars are
/// absolute; counts are exact at 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlotTolerance {
    /// Pool APR, fraction.
    pub apr_pct: f64,
    /// APR against the pool's own mean, percentage points.
    pub apr_change_pct: f64,
    /// TVL, fraction.
    pub tvl_usd: f64,
    /// 24 h volume, fraction.
    pub volume_usd: f64,
    /// Entry gas, USD.
    pub gas_usd: f64,
    /// Pool price against the market, percentage points.
    pub price_gap_pct: f64,
    /// Positions held, count.
    pub positions: f64,
}

impl Default for SlotTolerance {
    fn default() -> Self {
        Self {
            apr_pct: 0.02,
            apr_change_pct: 1.0,
            tvl_usd: 0.02,
            volume_usd: 0.05,
            gas_usd: 0.05,
            price_gap_pct: 0.05,
            positions: 0.0,
        }
    }
}

/// `[sync]`: the background cloud mirror.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    /// Document sink: `none` or `firestore`.
    pub documents: DocumentSink,
    /// Object store URL for checkpoints and cold segments: `file://DIR` (relative paths resolve
    /// against the data directory), `gs://BUCKET`, `s3://BUCKET`, `az://CONTAINER`, or empty
    /// for none.
    pub object_store_url: String,
    /// Firestore project id.
    pub firestore_project: String,
    /// Firestore database id.
    pub firestore_database: String,
    /// Flush period.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// The agent's book snapshot (document `agent/book`) is written at most once per this
    /// interval of agent time, and once more at shutdown.
    #[serde(with = "humantime_serde")]
    pub state_interval: Duration,
    /// Writes per batch at most.
    pub batch_max_writes: u32,
    /// Bytes per batch at most.
    pub batch_max_bytes: u64,
    /// Write rate at start, ops/s.
    pub rate_start_ops: f64,
    /// Rate growth per step, as a fraction (0.5 = +50%).
    pub rate_growth: f64,
    /// Period of a rate-growth step.
    #[serde(with = "humantime_serde")]
    pub rate_growth_interval: Duration,
    /// Rate ceiling, ops/s.
    pub rate_ceiling_ops: f64,
    /// First retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// Retry delay multiplier.
    pub retry_multiplier: f64,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Retry jitter, as a fraction (0.3 = ±30%).
    pub retry_jitter: f64,
    /// Read-cache entry lifetime.
    #[serde(with = "humantime_serde")]
    pub read_cache_ttl: Duration,
    /// Read-cache capacity, entries.
    pub read_cache_entries: u64,
    /// Longest wait for one batch's answer from a sink; a sink that does not answer in time
    /// (a hung server) counts as a retriable failure.
    #[serde(with = "humantime_serde")]
    pub push_timeout: Duration,
}

/// Document sink kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentSink {
    /// No document mirror.
    None,
    /// Google Cloud Firestore (or its emulator via `FIRESTORE_EMULATOR_HOST`).
    Firestore,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            documents: DocumentSink::None,
            object_store_url: "file://sync".into(),
            firestore_project: String::new(),
            firestore_database: "(default)".into(),
            flush_interval: Duration::from_secs(60),
            state_interval: Duration::from_secs(3600),
            batch_max_writes: 500,
            batch_max_bytes: 9 * 1024 * 1024,
            rate_start_ops: 500.0,
            rate_growth: 0.5,
            rate_growth_interval: Duration::from_secs(300),
            rate_ceiling_ops: 10_000.0,
            retry_initial: Duration::from_secs(1),
            retry_multiplier: 1.5,
            retry_max: Duration::from_secs(60),
            retry_jitter: 0.3,
            read_cache_ttl: Duration::from_secs(300),
            read_cache_entries: 10_000,
            push_timeout: Duration::from_secs(30),
        }
    }
}

/// `[monitor]`: metrics, health and alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// Metrics collection period.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Health check period.
    #[serde(with = "humantime_serde")]
    pub health_interval: Duration,
    /// CPU use above this, in percent, is degraded.
    pub cpu_pct: f64,
    /// Memory use above this, in percent, is degraded.
    pub memory_pct: f64,
    /// Disk use above this, in percent, is degraded.
    pub disk_pct: f64,
    /// Same alert is not repeated within this period.
    #[serde(with = "humantime_serde")]
    pub alert_dedup: Duration,
    /// Optional webhook URL for alerts; empty = log only.
    pub webhook_url: String,
    /// Sync lag or oldest unsynced change above this is degraded (and alerted).
    #[serde(with = "humantime_serde")]
    pub sync_lag_alert: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            metrics_interval: Duration::from_secs(10),
            health_interval: Duration::from_secs(60),
            cpu_pct: 80.0,
            memory_pct: 85.0,
            disk_pct: 90.0,
            alert_dedup: Duration::from_secs(3600),
            webhook_url: String::new(),
            sync_lag_alert: Duration::from_secs(15 * 60),
        }
    }
}

/// `[api]`: the HTTP API. The admin token is a secret: `ATHENA_API_ADMIN_TOKEN` or
/// `admin_token_file`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Whether the HTTP API is served.
    pub enabled: bool,
    /// Listen address; loopback by default.
    pub bind: String,
    /// Request body limit, bytes.
    pub max_body_bytes: u64,
    /// File holding the admin bearer token (alternative to the environment variable).
    pub admin_token_file: PathBuf,
    /// Live stream period.
    #[serde(with = "humantime_serde")]
    pub stream_interval: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind: "127.0.0.1:8787".into(),
            max_body_bytes: 64 * 1024,
            admin_token_file: PathBuf::new(),
            stream_interval: Duration::from_secs(5),
        }
    }
}
