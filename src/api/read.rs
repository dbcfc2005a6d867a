//! The read endpoints: the agent's view after its last commit, and the store read through
//! read transactions (which never block the agent's writes). Open on loopback.

use super::error::{ApiError, ApiResult};
use super::{ApiState, Params};
use crate::journal::{self, EntryKind, Query};
use crate::live::{EquityPoint, TickTimes, View};
use athena_storage::{Category, MemoryType, RecallQuery, SeqTable, Store};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// The most entries one list request returns.
pub const MAX_LIMIT: usize = 1_000;

fn view(state: &ApiState) -> ApiResult<Arc<View>> {
    state
        .shared
        .view()
        .ok_or_else(|| ApiError::unavailable("the agent is starting: no state published yet"))
}

pub(super) fn store(state: &ApiState) -> ApiResult<Arc<Store>> {
    state
        .shared
        .store()
        .ok_or_else(|| ApiError::unavailable("the store is being reopened after a write failure"))
}

/// Runs a store read on a blocking thread.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

pub(super) fn limit(asked: Option<usize>, default: usize) -> ApiResult<usize> {
    match asked.unwrap_or(default) {
        0 => Err(ApiError::bad_request("limit must be at least 1")),
        n if n > MAX_LIMIT => Err(ApiError::bad_request(format!(
            "limit must be at most {MAX_LIMIT}"
        ))),
        n => Ok(n),
    }
}

/// Parses an age (`2h`, `7days`) of at most ten years.
fn age(s: &Option<String>) -> ApiResult<Option<u64>> {
    s.as_deref()
        .map(|s| {
            crate::clock::parse_duration_arg(s)
                .map(|d| d.as_millis() as u64)
                .map_err(|e| ApiError::bad_request(format!("since: {e}")))
        })
        .transpose()
}

/// The agent's status, as `athena status` shows it.
#[utoipa::path(get, path = "/status", tag = "agent",
    responses((status = 200, description = "The agent after its last commit", body = Object),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn status(State(state): State<ApiState>) -> ApiResult<Json<crate::agent::Status>> {
    let v = view(&state)?;
    let mut status = v.status.clone();
    status.published_wall_ms = crate::clock::wall_ms();
    Ok(Json(status))
}

/// Open positions with their current values.
#[utoipa::path(get, path = "/positions", tag = "agent",
    responses((status = 200, description = "Open positions", body = Vec<Object>),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn positions(
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<crate::agent::state::PaperPosition>>> {
    Ok(Json(view(&state)?.status.positions.clone()))
}

/// Run performance.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Performance {
    /// Equity, USD.
    pub equity_usd: f64,
    /// Equity minus the starting cash, USD.
    pub pnl_usd: f64,
    /// Run totals (trades, fees, gas, realised PnL, peak equity).
    #[schema(value_type = Object)]
    pub totals: crate::agent::state::Totals,
    /// Tick durations over the recent ticks.
    pub ticks: TickTimes,
    /// The same ticks without their store transaction (encoding, writes, durable commit).
    pub ticks_without_write: TickTimes,
    /// Operator commands, request to committed answer, by command.
    pub commands: BTreeMap<String, TickTimes>,
    /// The LLM advisor since the agent opened: questions, each layer's hits, misses, tokens
    /// and dollars saved, the model's calls, tokens and cost, failures (null when it is off).
    pub llm: Option<crate::llm::LlmStats>,
}

/// Equity, PnL, totals, tick durations, command latencies and the LLM advisor's layers.
#[utoipa::path(get, path = "/performance", tag = "agent",
    responses((status = 200, description = "Performance", body = Performance),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn performance(State(state): State<ApiState>) -> ApiResult<Json<Performance>> {
    let v = view(&state)?;
    Ok(Json(Performance {
        equity_usd: v.status.equity_usd,
        pnl_usd: v.status.equity_usd - v.status.starting_usd,
        totals: v.status.totals.clone(),
        ticks: state.shared.tick_times(),
        ticks_without_write: state.shared.tick_times_without_write(),
        commands: state.shared.command_times(),
        llm: v.llm,
    }))
}

/// The memory recall cache and latency since the store was opened.
#[utoipa::path(get, path = "/performance/cache-stats", tag = "agent",
    responses((status = 200, description = "Recall cache statistics", body = Object),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn cache_stats(
    State(state): State<ApiState>,
) -> ApiResult<Json<athena_storage::RecallStats>> {
    Ok(Json(store(&state)?.recall_stats()))
}

/// Query latencies: memory recall percentiles and the tick's.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueryStats {
    /// Memory recalls served.
    pub recalls: u64,
    /// Recall latency median, µs.
    pub recall_p50_us: u64,
    /// Recall latency 95th percentile, µs.
    pub recall_p95_us: u64,
    /// Recall latency 99th percentile, µs.
    pub recall_p99_us: u64,
    /// Slowest recall, µs.
    pub recall_max_us: u64,
    /// Tick durations (observe, remember, decide, risk, learn, commit).
    pub ticks: TickTimes,
}

/// Recall and tick latency percentiles.
#[utoipa::path(get, path = "/performance/query-stats", tag = "agent",
    responses((status = 200, description = "Latencies", body = QueryStats),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn query_stats(State(state): State<ApiState>) -> ApiResult<Json<QueryStats>> {
    let r = store(&state)?.recall_stats();
    Ok(Json(QueryStats {
        recalls: r.count,
        recall_p50_us: r.p50_us,
        recall_p95_us: r.p95_us,
        recall_p99_us: r.p99_us,
        recall_max_us: r.max_us,
        ticks: state.shared.tick_times(),
    }))
}

/// Filters of `/memories/recent` (`athena memory recall`).
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MemoryFilter {
    /// Category, e.g. pool_behavior.
    pub category: Option<String>,
    /// Memory type, e.g. pattern.
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub kind: Option<String>,
    /// Pool id.
    pub pool: Option<String>,
    /// Pattern key.
    pub pattern_key: Option<String>,
    /// Only memories newer than this age (2h, 7days).
    pub since: Option<String>,
    /// Minimum confidence, 0 to 1.
    #[param(minimum = 0.0, maximum = 1.0)]
    pub min_confidence: Option<f64>,
    /// Most results, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// The newest memories matching the filters, newest first.
#[utoipa::path(get, path = "/memories/recent", tag = "memory", params(MemoryFilter),
    responses((status = 200, description = "Memories", body = Vec<Object>),
              (status = 400, description = "Bad filter", body = super::error::ErrorBody),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn memories_recent(
    State(state): State<ApiState>,
    Params(f): Params<MemoryFilter>,
) -> ApiResult<Json<Vec<athena_storage::Memory>>> {
    let parse = |what: &str, s: &Option<String>| -> ApiResult<Option<String>> {
        match s.as_deref() {
            Some("") => Err(ApiError::bad_request(format!("{what} is empty"))),
            other => Ok(other.map(str::to_string)),
        }
    };
    let category = f
        .category
        .as_deref()
        .map(str::parse::<Category>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("category: {e}")))?;
    let kind = f
        .kind
        .as_deref()
        .map(str::parse::<MemoryType>)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("type: {e}")))?;
    if let Some(c) = f.min_confidence
        && !(0.0..=1.0).contains(&c)
    {
        return Err(ApiError::bad_request(format!(
            "min_confidence must be in [0, 1], got {c}"
        )));
    }
    let now = crate::clock::wall_ms();
    let q = RecallQuery {
        category,
        kind,
        pool: parse("pool", &f.pool)?,
        pattern_key: parse("pattern_key", &f.pattern_key)?,
        since_ms: age(&f.since)?.map(|a| now.saturating_sub(a)),
        until_ms: None,
        min_confidence: f.min_confidence,
        limit: limit(f.limit, 50)?,
    };
    let st = store(&state)?;
    blocking(move || Ok(Json(st.recall(&q, now)?.as_ref().clone()))).await
}

/// Memory statistics and the last pruning pass.
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    /// By category and tier, by type, and cold segments.
    #[serde(flatten)]
    pub stats: athena_storage::MemoryStats,
    /// The last pruning pass of this process, if one ran.
    pub last_prune: Option<LastPrune>,
}

/// A pruning pass and when it finished.
#[derive(Debug, Serialize)]
pub struct LastPrune {
    /// Wall time it finished, ms.
    pub at_wall_ms: u64,
    /// What it did.
    pub report: athena_storage::PruneReport,
}

/// Memories by category and tier, by type, and cold segments; the last pruning pass.
#[utoipa::path(get, path = "/memories/stats", tag = "memory",
    responses((status = 200, description = "Memory statistics and the last pruning pass", body = Object),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn memories_stats(State(state): State<ApiState>) -> ApiResult<Json<MemoryReport>> {
    let st = store(&state)?;
    let last_prune = state
        .shared
        .monitor
        .last_prune()
        .map(|(at_wall_ms, report)| LastPrune { at_wall_ms, report });
    blocking(move || {
        Ok(Json(MemoryReport {
            stats: st.memory_stats()?,
            last_prune,
        }))
    })
    .await
}

/// The risk engine's state, as `athena risk status --json` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RiskStatus {
    /// Trading state now.
    pub trading_state: String,
    /// The risk engine's state (breakers, overrides, operator stop, gas budget).
    #[schema(value_type = Object)]
    pub state: crate::risk::RiskState,
    /// The risk score with its four parts.
    #[schema(value_type = Object)]
    pub score: crate::risk::RiskScore,
    /// Agent time it is computed at, ms.
    pub at_ms: u64,
}

/// Trading state, breakers, overrides, risk score.
#[utoipa::path(get, path = "/risk/status", tag = "risk",
    responses((status = 200, description = "Risk status", body = RiskStatus),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn risk_status(State(state): State<ApiState>) -> ApiResult<Json<RiskStatus>> {
    let v = view(&state)?;
    let at = v.status.last_tick_ms;
    Ok(Json(RiskStatus {
        trading_state: v.risk.computed_state(at).as_str().to_string(),
        state: v.risk.clone(),
        score: v.score,
        at_ms: at,
    }))
}

/// Exposure of the book.
#[derive(Debug, Serialize, ToSchema)]
pub struct Exposure {
    /// Equity, USD.
    pub equity_usd: f64,
    /// Value in positions, USD.
    pub invested_usd: f64,
    /// By pool: value, USD.
    pub by_pool: BTreeMap<String, f64>,
    /// By token: value held through positions, USD (half of each position per token).
    pub by_token: BTreeMap<String, f64>,
    /// The risk score's parts.
    #[schema(value_type = Object)]
    pub score: crate::risk::RiskScore,
}

/// The book's exposure by pool and token, and the risk score.
#[utoipa::path(get, path = "/risk/exposure", tag = "risk",
    responses((status = 200, description = "Exposure", body = Exposure),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn risk_exposure(State(state): State<ApiState>) -> ApiResult<Json<Exposure>> {
    let v = view(&state)?;
    let mut by_pool = BTreeMap::new();
    let mut by_token: BTreeMap<String, f64> = BTreeMap::new();
    for p in &v.status.positions {
        *by_pool.entry(p.pool.clone()).or_insert(0.0) += p.value_usd;
        for t in &p.tokens {
            *by_token.entry(t.clone()).or_insert(0.0) += p.value_usd / 2.0;
        }
    }
    Ok(Json(Exposure {
        equity_usd: v.status.equity_usd,
        invested_usd: by_pool.values().fold(0.0, |a, b| a + b),
        by_pool,
        by_token,
        score: v.score,
    }))
}

/// Gas now and what gas protection says about an entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct GasRecommendation {
    /// The last tick's gas price, gwei.
    pub gwei: Option<f64>,
    /// Median of the recorded readings, gwei.
    pub median_gwei: Option<f64>,
    /// proceed, delay, postpone, wait or halt, for an entry now.
    pub action: Option<String>,
    /// Why, with the numbers.
    pub reason: Option<String>,
    /// Gas spent today, USD.
    pub spent_today_usd: f64,
    /// The daily gas budget, USD.
    pub daily_budget_usd: f64,
}

/// Gas now, its median, the day's budget used, and the verdict on an entry.
#[utoipa::path(get, path = "/gas/recommendation", tag = "risk",
    responses((status = 200, description = "Gas", body = GasRecommendation),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn gas(State(state): State<ApiState>) -> ApiResult<Json<GasRecommendation>> {
    let v = view(&state)?;
    let at = v.status.last_tick_ms;
    Ok(Json(GasRecommendation {
        gwei: v.gas_gwei,
        median_gwei: crate::risk::median(v.risk.gas_readings.iter().map(|(_, g)| *g)),
        action: v.gas.as_ref().map(|g| g.action.as_str().to_string()),
        reason: v.gas.as_ref().map(|g| g.reason.clone()),
        spent_today_usd: v.risk.gas_budget.spent_on(at),
        daily_budget_usd: state.config.gas.daily_budget_usd,
    }))
}

/// A pool as the last tick saw it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Opportunity {
    /// Pool id.
    pub pool: String,
    /// Fee plus emission APR, percent.
    pub apr_pct: f64,
    /// TVL, USD.
    pub tvl_usd: f64,
    /// 24 h volume, USD.
    pub volume_24h_usd: f64,
    /// Stable pool.
    pub stable: bool,
    /// Value the agent holds in it, USD.
    pub held_usd: f64,
    /// Closed for protection and not to be re-entered yet.
    pub guarded: bool,
}

/// The last tick's pools, best APR first.
#[utoipa::path(get, path = "/pools/opportunities", tag = "agent",
    responses((status = 200, description = "Pools", body = Vec<Opportunity>),
              (status = 503, description = "Starting", body = super::error::ErrorBody)))]
pub async fn opportunities(State(state): State<ApiState>) -> ApiResult<Json<Vec<Opportunity>>> {
    let v = view(&state)?;
    let mut out: Vec<Opportunity> = v
        .pools
        .iter()
        .map(|p| Opportunity {
            pool: p.pool.clone(),
            apr_pct: p.apr_pct(),
            tvl_usd: p.tvl_usd,
            volume_24h_usd: p.volume_24h_usd,
            stable: p.stable,
            held_usd: v
                .status
                .positions
                .iter()
                .filter(|x| x.pool == p.pool)
                // A fold from 0.0: an empty f64 sum is -0.0.
                .fold(0.0, |sum, x| sum + x.value_usd),
            guarded: v.guarded.contains(&p.pool),
        })
        .collect();
    out.sort_by(|a, b| b.apr_pct.total_cmp(&a.apr_pct));
    Ok(Json(out))
}

/// Queue depth, lag, dead letters, writes, cost and health of the cloud sync.
#[utoipa::path(get, path = "/sync/status", tag = "sync",
    responses((status = 200, description = "Sync status", body = Object),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn sync_status(
    State(state): State<ApiState>,
) -> ApiResult<Json<athena_sync::SyncStatus>> {
    let st = store(&state)?;
    // Outbox rows carry agent time: the lag is measured on the agent's clock.
    let now = state.shared.monitor.agent_now_ms(crate::monitor::wall_ms());
    blocking(move || Ok(Json(athena_sync::status(&st, now)?))).await
}

/// The last recovery (crash restart, restore or reopen) with its steps.
#[utoipa::path(get, path = "/recovery/status", tag = "recovery",
    responses((status = 200, description = "The last recovery, or null", body = Option<Object>),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn recovery_status(
    State(state): State<ApiState>,
) -> ApiResult<Json<Option<crate::recovery::Recovery>>> {
    let st = store(&state)?;
    blocking(move || Ok(Json(crate::recovery::last(&st)?))).await
}

/// The checkpoints, oldest first.
#[utoipa::path(get, path = "/recovery/checkpoints", tag = "recovery",
    responses((status = 200, description = "Checkpoints", body = Vec<Object>),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn checkpoints(
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<crate::checkpoint::Entry>>> {
    let st = store(&state)?;
    blocking(move || Ok(Json(crate::checkpoint::list(&st)?))).await
}

/// Filters of `/journal` (`athena journal`).
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JournalFilter {
    /// decision, risk, control or data.
    pub kind: Option<String>,
    /// Only decisions about this pool.
    pub pool: Option<String>,
    /// Only entries this recent before the agent's last tick (2h, 7days).
    pub since: Option<String>,
    /// Only entries with a sequence number below this one: the next page of a listing is
    /// asked for with the last `seq` it showed.
    /// (An i64, as OpenAPI's int64: larger numbers are refused, not wrapped.)
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// Most entries, 1 to 1000 (default 50).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One journal entry.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JournalEntry {
    /// Sequence number.
    pub seq: u64,
    /// Agent time, ms (absent when unreadable).
    pub at_ms: Option<u64>,
    /// decision, risk, control or data.
    pub kind: Option<String>,
    /// The pool it is about.
    pub pool: Option<String>,
    /// One line: what, why, what came of it.
    pub summary: Option<String>,
    /// The record (the decision with what the agent saw, the verdict with each factor).
    #[schema(value_type = Option<Object>)]
    pub record: Option<journal::JournalRecord>,
    /// Why it cannot be read (a failed checksum).
    pub error: Option<String>,
}

impl JournalEntry {
    /// The entry of `record`; `pools` maps position ids to pools.
    pub fn of(seq: u64, record: journal::JournalRecord, pools: &BTreeMap<String, String>) -> Self {
        Self {
            seq,
            at_ms: Some(record.at_ms()),
            kind: Some(record.kind().as_str().to_string()),
            pool: record.pool(pools).map(str::to_string),
            summary: Some(record.summary(pools)),
            record: Some(record),
            error: None,
        }
    }

    /// An entry that cannot be read, with why.
    fn unreadable(seq: u64, error: &athena_storage::StoreError) -> Self {
        Self {
            seq,
            at_ms: None,
            kind: None,
            pool: None,
            summary: None,
            record: None,
            error: Some(error.to_string()),
        }
    }
}

/// Decisions and risk events with their reasons, newest first.
#[utoipa::path(get, path = "/journal", tag = "journal", params(JournalFilter),
    responses((status = 200, description = "Journal entries", body = Vec<JournalEntry>),
              (status = 400, description = "Bad filter", body = super::error::ErrorBody),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn journal(
    State(state): State<ApiState>,
    Params(f): Params<JournalFilter>,
) -> ApiResult<Json<Vec<JournalEntry>>> {
    let kind = f
        .kind
        .as_deref()
        .map(str::parse::<EntryKind>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let since = age(&f.since)?;
    let limit = limit(f.limit, 50)?;
    let before = match f.before {
        Some(seq @ 1..) => Some(seq as u64),
        Some(seq) => {
            return Err(ApiError::bad_request(format!(
                "before must be a sequence number of 1 or more, got {seq}"
            )));
        }
        None => None,
    };
    let st = store(&state)?;
    let pool = f.pool.clone();
    let cache = state.pools.clone();
    blocking(move || {
        // Only the ledger entries written since the last request are read.
        let pools = cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(&st)?;
        Ok(Json(journal_entries(
            &st, &pools, kind, pool, since, before, limit,
        )?))
    })
    .await
}

/// The journal entries a query selects (also what `athena journal` prints from the store);
/// `pools` maps position ids to pools ([`journal::position_pools`]).
pub fn journal_entries(
    store: &Store,
    pools: &BTreeMap<String, String>,
    kind: Option<EntryKind>,
    pool: Option<String>,
    since: Option<u64>,
    before: Option<u64>,
    limit: usize,
) -> athena_storage::Result<Vec<JournalEntry>> {
    let reference = match since {
        None => 0,
        Some(_) => {
            let last_tick: Option<crate::agent::state::AgentState> = store.read(|r| {
                r.get(
                    athena_storage::KeyedTable::Agent,
                    crate::agent::state::STATE_KEY,
                )
            })?;
            last_tick.map_or_else(crate::clock::wall_ms, |s| s.last_tick_ms)
        }
    };
    let q = Query {
        kind,
        pool,
        since_ms: since.map(|d| reference.saturating_sub(d)),
        before_seq: before,
        limit,
    };
    let mut out = Vec::new();
    journal::query(store, &q, pools, |(seq, record)| {
        out.push(match record {
            Ok(rec) => JournalEntry::of(seq, rec.clone(), pools),
            Err(e) => JournalEntry::unreadable(seq, e),
        });
        true
    })?;
    Ok(out)
}

/// Filters of `/trades`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TradeFilter {
    /// Most trades, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One ledger entry with its sequence number.
#[derive(Debug, Serialize, ToSchema)]
pub struct Trade {
    /// Sequence number.
    pub seq: u64,
    /// The fill (open, close, compound) with its fees, slippage, gas and PnL.
    #[schema(value_type = Object)]
    pub entry: crate::agent::state::LedgerEntry,
}

/// The ledger's fills, newest first.
#[utoipa::path(get, path = "/trades", tag = "journal", params(TradeFilter),
    responses((status = 200, description = "Trades", body = Vec<Trade>),
              (status = 400, description = "Bad filter", body = super::error::ErrorBody),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn trades(
    State(state): State<ApiState>,
    Params(f): Params<TradeFilter>,
) -> ApiResult<Json<Vec<Trade>>> {
    let mut left = limit(f.limit, 100)?;
    let st = store(&state)?;
    blocking(move || {
        let mut out = Vec::new();
        st.read(|r| {
            r.seq_newest_first::<crate::agent::state::LedgerEntry>(SeqTable::Ledger, |seq, e| {
                if let Ok(entry) = e {
                    out.push(Trade { seq, entry });
                    left -= 1;
                }
                left > 0
            })
        })?;
        Ok(Json(out))
    })
    .await
}

/// Filters of `/equity`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EquityFilter {
    /// Only points this recent before the last tick (2h, 7days).
    pub since: Option<String>,
    /// At most this many points, evenly thinned (1 to 10000; default 1000).
    #[param(minimum = 1, maximum = 10000)]
    pub points: Option<usize>,
}

/// Equity, risk score and gas at tick resolution since this process started, downsampled on request.
#[utoipa::path(get, path = "/equity", tag = "agent", params(EquityFilter),
    responses((status = 200, description = "Equity points, oldest first", body = Vec<EquityPoint>),
              (status = 400, description = "Bad filter", body = super::error::ErrorBody)))]
pub async fn equity(
    State(state): State<ApiState>,
    Params(f): Params<EquityFilter>,
) -> ApiResult<Json<Vec<EquityPoint>>> {
    let points = match f.points.unwrap_or(1_000) {
        n @ 1..=10_000 => n,
        n => {
            return Err(ApiError::bad_request(format!(
                "points must be in [1, 10000], got {n}"
            )));
        }
    };
    let since = match age(&f.since)? {
        None => 0,
        Some(a) => state
            .shared
            .last_equity()
            .map_or(0, |p| p.at_ms.saturating_sub(a)),
    };
    Ok(Json(state.shared.equity(since, points)))
}
