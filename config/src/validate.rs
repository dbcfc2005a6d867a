//! Semantic validation: ranges, orderings and cross-field rules that types cannot express.
//! Every violation is collected with its key path; nothing stops at the first.

use crate::{
    ClockKind, Config, ExecutorKind, MEMORY_CATEGORY_NAMES, MEMORY_TYPE_NAMES, MarketSource,
    Problem,
};
use std::time::Duration;

struct Checker(Vec<Problem>);

impl Checker {
    fn fail(&mut self, path: &str, reason: String) {
        self.0.push(Problem::new(path, reason));
    }

    /// `lo < v <= hi`
    fn open_closed(&mut self, path: &str, v: f64, lo: f64, hi: f64) {
        if !(v > lo && v <= hi) {
            self.fail(path, format!("must be in ({lo}, {hi}], got {v}"));
        }
    }

    /// `lo <= v <= hi`
    fn closed(&mut self, path: &str, v: f64, lo: f64, hi: f64) {
        if !(v >= lo && v <= hi) {
            self.fail(path, format!("must be in [{lo}, {hi}], got {v}"));
        }
    }

    fn positive(&mut self, path: &str, v: f64) {
        if !(v > 0.0 && v.is_finite()) {
            self.fail(path, format!("must be a positive number, got {v}"));
        }
    }

    fn at_least(&mut self, path: &str, v: u64, min: u64) {
        if v < min {
            self.fail(path, format!("must be at least {min}, got {v}"));
        }
    }

    fn nonzero(&mut self, path: &str, d: Duration) {
        if d.is_zero() {
            self.fail(path, "must be a positive duration, got 0s".into());
        }
    }
}

pub(crate) fn validate(c: &Config) -> Vec<Problem> {
    let mut k = Checker(Vec::new());
    agent_and_market(c, &mut k);
    strategy(c, &mut k);
    memory(c, &mut k);
    risk(c, &mut k);
    services(c, &mut k);
    k.0
}

/// The longest agent id: it names a Firestore document (`agents/{id}`, at most 1,500 bytes) and
/// the object-store prefix of every object (keys of at most 1,024 bytes), with room to spare.
pub const MAX_AGENT_ID_LEN: usize = 128;

/// What Firestore document ids and object keys both accept: 1 to [`MAX_AGENT_ID_LEN`] of
/// `[A-Za-z0-9_-]` (so no `/`, `.` or `..`), and not `__…__`, which Firestore reserves.
fn check_agent_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_AGENT_ID_LEN {
        return Err(format!("must be 1 to {MAX_AGENT_ID_LEN} characters"));
    }
    if !id
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err("must be made of [A-Za-z0-9_-]".into());
    }
    if id.len() >= 4 && id.starts_with("__") && id.ends_with("__") {
        return Err("must not be __…__ (reserved by Firestore)".into());
    }
    Ok(())
}

fn agent_and_market(c: &Config, k: &mut Checker) {
    let a = &c.agent;
    if let Err(why) = check_agent_id(&a.agent_id) {
        k.fail("agent.agent_id", format!("{why}, got {:?}", a.agent_id));
    }
    if a.data_dir.as_os_str().is_empty() {
        k.fail("agent.data_dir", "must not be empty".into());
    }
    k.nonzero("agent.tick_interval", a.tick_interval);
    k.closed("agent.time_scale", a.time_scale, 0.001, 1_000_000.0);
    if !(1..=1000).contains(&c.market.sim_pools) {
        k.fail(
            "market.sim_pools",
            format!("must be in [1, 1000], got {}", c.market.sim_pools),
        );
    }
    if c.market.source == MarketSource::Replay && c.market.replay_path.as_os_str().is_empty() {
        k.fail(
            "market.replay_path",
            "is required when market.source = \"replay\"".into(),
        );
    }
    if c.market.source == MarketSource::Chain {
        chain_pools(c, k);
        if c.agent.clock != ClockKind::Real {
            k.fail(
                "agent.clock",
                "must be \"real\" with market.source = \"chain\": a live chain cannot be \
                 accelerated"
                    .into(),
            );
        }
    }
    if c.executor.kind == ExecutorKind::Chain && c.market.source != MarketSource::Chain {
        k.fail(
            "executor.kind",
            "\"chain\" trades the pools the chain source reads: set market.source = \"chain\""
                .into(),
        );
    }
    let needs_chain =
        c.market.source == MarketSource::Chain || c.executor.kind == ExecutorKind::Chain;
    if needs_chain && c.chain.rpc_url.is_empty() {
        k.fail(
            "chain.rpc_url",
            "is required when the market source or executor is chain".into(),
        );
    } else if needs_chain && !is_http_url(&c.chain.rpc_url) {
        k.fail(
            "chain.rpc_url",
            format!(
                "must be an http:// or https:// URL with a host, got {:?}",
                c.chain.rpc_url
            ),
        );
    }
    if c.executor.kind == ExecutorKind::Chain {
        if !is_address(&c.chain.router_address) {
            k.fail(
                "chain.router_address",
                format!(
                    "must be a 0x-prefixed 20-byte address, got {:?}",
                    c.chain.router_address
                ),
            );
        }
        if !c.chain.solidly_router_address.is_empty()
            && !is_address(&c.chain.solidly_router_address)
        {
            k.fail(
                "chain.solidly_router_address",
                format!(
                    "must be empty or a 0x-prefixed 20-byte address, got {:?}",
                    c.chain.solidly_router_address
                ),
            );
        }
        match &c.secrets.chain_private_key {
            None => k.fail(
                "chain.private_key_file",
                "the chain executor needs ATHENA_CHAIN_PRIVATE_KEY or chain.private_key_file"
                    .into(),
            ),
            Some(key) => {
                if let Some(why) = signing_key_problem(key.expose()) {
                    k.fail(
                        "chain.private_key_file",
                        format!(
                            "the signing key (ATHENA_CHAIN_PRIVATE_KEY or the file) {why}; \
                             it is not repeated here"
                        ),
                    );
                }
            }
        }
    }
    k.positive("executor.paper_starting_usd", c.executor.paper_starting_usd);
    k.nonzero("executor.deadline", c.executor.deadline);
    k.nonzero("executor.receipt_timeout", c.executor.receipt_timeout);
    k.nonzero("chain.request_timeout", c.chain.request_timeout);
}

/// What the `chain` market source needs: pools with addresses, a quote and a native token,
/// a log range.
fn chain_pools(c: &Config, k: &mut Checker) {
    let chain = &c.chain;
    if chain.pools.is_empty() {
        k.fail(
            "chain.pools",
            "lists no pool; the chain market source needs at least one".into(),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for (i, p) in chain.pools.iter().enumerate() {
        if !is_address(&p.address) {
            k.fail(
                &format!("chain.pools[{i}].address"),
                format!("must be a 0x-prefixed 20-byte address, got {:?}", p.address),
            );
        } else if !seen.insert(p.address.to_ascii_lowercase()) {
            k.fail(
                &format!("chain.pools[{i}].address"),
                format!("{} is listed twice", p.address),
            );
        }
    }
    for (key, symbol) in [
        ("chain.quote_token", &chain.quote_token),
        ("chain.native_token", &chain.native_token),
    ] {
        if symbol.trim().is_empty() {
            k.fail(key, "must name a token symbol".into());
        }
    }
    k.at_least("chain.log_range_blocks", chain.log_range_blocks, 1);
}

fn is_http_url(s: &str) -> bool {
    ["http://", "https://"].iter().any(|scheme| {
        s.strip_prefix(scheme)
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(' '))
    })
}

fn is_address(s: &str) -> bool {
    s.len() == 42 && s.starts_with("0x") && s[2..].chars().all(|c| c.is_ascii_hexdigit())
}

fn strategy(c: &Config, k: &mut Checker) {
    let s = &c.strategy;
    k.at_least("strategy.max_positions", s.max_positions.into(), 1);
    k.at_least("strategy.open_top_n", s.open_top_n.into(), 1);
    k.closed("strategy.min_apr_pct", s.min_apr_pct, 0.0, 100_000.0);
    k.closed("strategy.min_tvl_usd", s.min_tvl_usd, 0.0, 1e15);
    k.open_closed(
        "strategy.rebalance_apr_drop_ratio",
        s.rebalance_apr_drop_ratio,
        0.0,
        1.0,
    );
    k.positive("strategy.rebalance_better_ratio", s.rebalance_better_ratio);
    k.positive(
        "strategy.rebalance_min_gain_over_cost",
        s.rebalance_min_gain_over_cost,
    );
    k.nonzero("strategy.holding_horizon", s.holding_horizon);
    k.closed(
        "strategy.compound_min_rewards_usd",
        s.compound_min_rewards_usd,
        0.0,
        1e12,
    );
    k.open_closed(
        "strategy.compound_max_gas_fraction",
        s.compound_max_gas_fraction,
        0.0,
        1.0,
    );
    k.open_closed("strategy.tvl_drain_pct", s.tvl_drain_pct, 0.0, 100.0);
    k.nonzero("strategy.tvl_drain_window", s.tvl_drain_window);
    k.open_closed("strategy.depeg_pct", s.depeg_pct, 0.0, 100.0);
    k.closed(
        "strategy.sweep_min_gas_multiple",
        s.sweep_min_gas_multiple,
        1.0,
        1e6,
    );
}

fn memory(c: &Config, k: &mut Checker) {
    let m = &c.memory;
    if !(m.hot_max_age < m.warm_max_age && m.warm_max_age < m.cold_max_age) {
        k.fail(
            "memory.warm_max_age",
            format!(
                "tiers must be ordered hot_max_age < warm_max_age < cold_max_age, got {} < {} < {}",
                humantime_serde::re::humantime::format_duration(m.hot_max_age),
                humantime_serde::re::humantime::format_duration(m.warm_max_age),
                humantime_serde::re::humantime::format_duration(m.cold_max_age)
            ),
        );
    }
    k.nonzero("memory.hot_max_age", m.hot_max_age);
    k.closed("memory.min_confidence", m.min_confidence, 0.0, 1.0);
    k.open_closed("memory.merge_similarity", m.merge_similarity, 0.0, 1.0);
    k.nonzero("memory.prune_interval", m.prune_interval);
    k.nonzero("memory.recency_half_life", m.recency_half_life);
    k.at_least(
        "memory.warm_content_max_chars",
        m.warm_content_max_chars.into(),
        16,
    );
    k.at_least("memory.query_cache_entries", m.query_cache_entries, 1);
    k.at_least("memory.store_cache_bytes", m.store_cache_bytes, 1024 * 1024);
    k.nonzero("memory.query_cache_ttl", m.query_cache_ttl);
    if !(1..=22).contains(&m.compression_level) {
        k.fail(
            "memory.compression_level",
            format!("must be in [1, 22], got {}", m.compression_level),
        );
    }
    k.at_least(
        "memory.dictionary_min_samples",
        m.dictionary_min_samples.into(),
        10,
    );
    if !(1024..=1 << 20).contains(&m.dictionary_size_bytes) {
        k.fail(
            "memory.dictionary_size_bytes",
            format!(
                "must be in [1024, 1048576], got {}",
                m.dictionary_size_bytes
            ),
        );
    }
    k.at_least(
        "memory.cold_segment_max_records",
        m.cold_segment_max_records.into(),
        1,
    );
    let known =
        |name: &str| MEMORY_TYPE_NAMES.contains(&name) || MEMORY_CATEGORY_NAMES.contains(&name);
    for (name, d) in &m.retention {
        let path = format!("memory.retention.{name}");
        if !known(name) {
            k.fail(&path, "names no memory type or category".into());
        }
        k.nonzero(&path, *d);
    }
    for (name, n) in &m.quotas {
        let path = format!("memory.quotas.{name}");
        if !known(name) {
            k.fail(&path, "names no memory type or category".into());
        }
        k.at_least(&path, *n, 1);
    }
}

fn risk(c: &Config, k: &mut Checker) {
    let r = &c.risk;
    k.open_closed("risk.rapid_loss_pct", r.rapid_loss_pct, 0.0, 100.0);
    k.open_closed("risk.drawdown_pct", r.drawdown_pct, 0.0, 100.0);
    k.open_closed("risk.slippage_high_pct", r.slippage_high_pct, 0.0, 100.0);
    k.open_closed("risk.max_slippage_pct", r.max_slippage_pct, 0.0, 50.0);
    for (path, d) in [
        ("risk.rapid_loss_window", r.rapid_loss_window),
        ("risk.rapid_loss_cooldown", r.rapid_loss_cooldown),
        ("risk.drawdown_window", r.drawdown_window),
        ("risk.drawdown_cooldown", r.drawdown_cooldown),
        ("risk.gas_manipulation_window", r.gas_manipulation_window),
        (
            "risk.gas_manipulation_cooldown",
            r.gas_manipulation_cooldown,
        ),
        ("risk.api_failures_window", r.api_failures_window),
        ("risk.api_failures_cooldown", r.api_failures_cooldown),
        ("risk.slippage_high_cooldown", r.slippage_high_cooldown),
        ("risk.llm_timeout_window", r.llm_timeout_window),
        ("risk.llm_timeout_cooldown", r.llm_timeout_cooldown),
        ("risk.recovery_period", r.recovery_period),
    ] {
        k.nonzero(path, d);
    }
    k.at_least(
        "risk.api_failures_threshold",
        r.api_failures_threshold.into(),
        1,
    );
    k.at_least(
        "risk.slippage_high_trades",
        r.slippage_high_trades.into(),
        1,
    );
    k.at_least(
        "risk.llm_timeout_threshold",
        r.llm_timeout_threshold.into(),
        1,
    );
    k.at_least("risk.max_positions", r.max_positions.into(), 1);
    k.positive("risk.position_mismatch_usd", r.position_mismatch_usd);
    k.positive("risk.base_position_usd", r.base_position_usd);
    k.positive("risk.new_pool_cap_usd", r.new_pool_cap_usd);
    k.closed(
        "risk.low_liquidity_tvl_usd",
        r.low_liquidity_tvl_usd,
        0.0,
        1e15,
    );
    for (path, v) in [
        ("risk.max_position_fraction", r.max_position_fraction),
        ("risk.max_token_fraction", r.max_token_fraction),
        ("risk.max_stable_fraction", r.max_stable_fraction),
        ("risk.max_volatile_fraction", r.max_volatile_fraction),
        (
            "risk.max_low_liquidity_fraction",
            r.max_low_liquidity_fraction,
        ),
        ("risk.max_correlated_fraction", r.max_correlated_fraction),
        ("risk.max_entry_gas_fraction", r.max_entry_gas_fraction),
        ("risk.recovery_factor", r.recovery_factor),
    ] {
        k.open_closed(path, v, 0.0, 1.0);
    }
    if c.risk.position_mismatch_usd < c.recovery.reconcile_tolerance_usd {
        k.fail(
            "risk.position_mismatch_usd",
            format!(
                "must be at least recovery.reconcile_tolerance_usd ({}), got {}",
                c.recovery.reconcile_tolerance_usd, r.position_mismatch_usd
            ),
        );
    }
    let g = &c.gas;
    k.positive("gas.hard_cap_gwei", g.hard_cap_gwei);
    k.positive("gas.daily_budget_usd", g.daily_budget_usd);
    k.open_closed(
        "gas.max_tx_budget_fraction",
        g.max_tx_budget_fraction,
        0.0,
        1.0,
    );
    if !(g.spike_multiplier > 1.0 && g.spike_multiplier.is_finite()) {
        k.fail(
            "gas.spike_multiplier",
            format!("must be greater than 1, got {}", g.spike_multiplier),
        );
    }
    k.at_least(
        "gas.percentile_min_readings",
        g.percentile_min_readings.into(),
        1,
    );
    k.open_closed(
        "gas.rapid_change_fraction",
        g.rapid_change_fraction,
        0.0,
        100.0,
    );
    k.at_least(
        "gas.rapid_change_lookback",
        g.rapid_change_lookback.into(),
        2,
    );
}

fn services(c: &Config, k: &mut Checker) {
    let rc = &c.recovery;
    k.nonzero("recovery.checkpoint_interval", rc.checkpoint_interval);
    k.nonzero(
        "recovery.checkpoint_hourly_retention",
        rc.checkpoint_hourly_retention,
    );
    k.closed(
        "recovery.reconcile_tolerance_usd",
        rc.reconcile_tolerance_usd,
        0.0,
        1e12,
    );
    k.at_least(
        "recovery.scrub_records_per_sec",
        rc.scrub_records_per_sec.into(),
        1,
    );
    k.nonzero("recovery.shutdown_deadline", rc.shutdown_deadline);
    k.nonzero("recovery.store_retry_deadline", rc.store_retry_deadline);

    let l = &c.llm;
    if l.enabled && l.model.is_empty() {
        k.fail("llm.model", "is required when llm.enabled = true".into());
    }
    let host = l
        .endpoint
        .strip_prefix("http://")
        .or_else(|| l.endpoint.strip_prefix("https://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if l.enabled && !host.is_some_and(|h| !h.is_empty() && !h.starts_with(':')) {
        k.fail(
            "llm.endpoint",
            format!(
                "must be an http(s) URL with a host (e.g. http://127.0.0.1:8080/v1), got {:?}",
                l.endpoint
            ),
        );
    }
    k.nonzero("llm.timeout", l.timeout);
    k.closed("llm.similarity_threshold", l.similarity_threshold, 0.0, 1.0);
    k.at_least("llm.batch_max", l.batch_max.into(), 1);
    k.at_least("llm.token_budget", l.token_budget.into(), 64);
    k.at_least("llm.max_reply_tokens", l.max_reply_tokens.into(), 16);
    k.at_least("llm.cache_entries", l.cache_entries.into(), 1);
    if l.max_retries > 10 {
        k.fail(
            "llm.max_retries",
            format!("must be at most 10, got {}", l.max_retries),
        );
    }
    for (key, price) in [
        (
            "llm.usd_per_million_prompt_tokens",
            l.usd_per_million_prompt_tokens,
        ),
        (
            "llm.usd_per_million_reply_tokens",
            l.usd_per_million_reply_tokens,
        ),
    ] {
        k.closed(key, price, 0.0, 1_000.0);
    }
    let t = &l.tolerance;
    for (key, v, hi) in [
        ("llm.tolerance.apr_pct", t.apr_pct, 1.0),
        ("llm.tolerance.apr_change_pct", t.apr_change_pct, 100.0),
        ("llm.tolerance.tvl_usd", t.tvl_usd, 1.0),
        ("llm.tolerance.volume_usd", t.volume_usd, 1.0),
        ("llm.tolerance.gas_usd", t.gas_usd, 100.0),
        ("llm.tolerance.price_gap_pct", t.price_gap_pct, 100.0),
        ("llm.tolerance.positions", t.positions, 5.0),
    ] {
        k.closed(key, v, 0.0, hi);
    }

    let s = &c.sync;
    if s.documents == crate::DocumentSink::Firestore && s.firestore_project.is_empty() {
        k.fail(
            "sync.firestore_project",
            "is required when sync.documents = \"firestore\"".into(),
        );
    }
    let url = &s.object_store_url;
    if !url.is_empty()
        && !["file://", "gs://", "s3://", "az://"]
            .iter()
            .any(|p| url.starts_with(p))
    {
        k.fail(
            "sync.object_store_url",
            format!("must start with file://, gs://, s3:// or az://, or be empty; got {url:?}"),
        );
    }
    k.nonzero("sync.flush_interval", s.flush_interval);
    k.nonzero("sync.state_interval", s.state_interval);
    if !(1..=500).contains(&s.batch_max_writes) {
        k.fail(
            "sync.batch_max_writes",
            format!(
                "must be in [1, 500] (Firestore's limit), got {}",
                s.batch_max_writes
            ),
        );
    }
    if !(1024..=10 * 1024 * 1024).contains(&s.batch_max_bytes) {
        k.fail(
            "sync.batch_max_bytes",
            format!("must be in [1024, 10485760], got {}", s.batch_max_bytes),
        );
    }
    k.positive("sync.rate_start_ops", s.rate_start_ops);
    k.closed("sync.rate_growth", s.rate_growth, 0.0, 10.0);
    k.nonzero("sync.rate_growth_interval", s.rate_growth_interval);
    if s.rate_ceiling_ops < s.rate_start_ops {
        k.fail(
            "sync.rate_ceiling_ops",
            format!(
                "must be at least sync.rate_start_ops ({}), got {}",
                s.rate_start_ops, s.rate_ceiling_ops
            ),
        );
    }
    k.nonzero("sync.retry_initial", s.retry_initial);
    if s.retry_multiplier.is_nan() || s.retry_multiplier < 1.0 {
        k.fail(
            "sync.retry_multiplier",
            format!("must be at least 1, got {}", s.retry_multiplier),
        );
    }
    if s.retry_max < s.retry_initial {
        k.fail(
            "sync.retry_max",
            "must be at least sync.retry_initial".into(),
        );
    }
    k.closed("sync.retry_jitter", s.retry_jitter, 0.0, 1.0);
    k.nonzero("sync.read_cache_ttl", s.read_cache_ttl);
    k.at_least("sync.read_cache_entries", s.read_cache_entries, 1);
    k.nonzero("sync.push_timeout", s.push_timeout);

    let mo = &c.monitor;
    k.nonzero("monitor.metrics_interval", mo.metrics_interval);
    k.nonzero("monitor.health_interval", mo.health_interval);
    k.open_closed("monitor.cpu_pct", mo.cpu_pct, 0.0, 100.0);
    k.open_closed("monitor.memory_pct", mo.memory_pct, 0.0, 100.0);
    k.open_closed("monitor.disk_pct", mo.disk_pct, 0.0, 100.0);
    k.nonzero("monitor.sync_lag_alert", mo.sync_lag_alert);
    if !mo.webhook_url.is_empty() && !mo.webhook_url.starts_with("http") {
        k.fail(
            "monitor.webhook_url",
            format!("must be an http(s) URL or empty, got {:?}", mo.webhook_url),
        );
    }

    let a = &c.api;
    if a.bind.parse::<std::net::SocketAddr>().is_err() {
        k.fail(
            "api.bind",
            format!("must be an IP:port address, got {:?}", a.bind),
        );
    }
    if !(1024..=16 * 1024 * 1024).contains(&a.max_body_bytes) {
        k.fail(
            "api.max_body_bytes",
            format!("must be in [1024, 16777216], got {}", a.max_body_bytes),
        );
    }
    k.nonzero("api.stream_interval", a.stream_interval);
}

/// What is wrong with a secp256k1 private key given as hex, if anything: it must be 64 hex
/// digits (`0x` optional), not zero, and below the curve's group order. Never repeats it.
fn signing_key_problem(key: &str) -> Option<&'static str> {
    /// secp256k1's group order n.
    const ORDER: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
    let hex = key.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex).to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some("is not 64 hex digits (32 bytes, 0x optional)");
    }
    if hex.bytes().all(|b| b == b'0') {
        return Some("is zero, which is no key");
    }
    // Same length: the text order is the numeric order.
    (hex.as_str() >= ORDER).then_some("is not below the secp256k1 group order, which is no key")
}
