//! Position sizing (SPEC.md §3): base size × the six factors, then every hard cap. Each cap is
//! the most the entry may add without taking its limit past the configured fraction of the
//! portfolio; the size is the smallest of them, and each cap below the factor size is named.

use crate::risk::breakers::BreakerKind;
use crate::risk::model::{Cap, Decision, Factors, Portfolio, Proposal, ProposalKind, Rule, Sizing};
use crate::risk::state::RiskState;
use athena_config::RiskConfig;

/// Sizes below this (USD) are not worth a transaction: the entry is rejected by the rule
/// that bound it.
pub const MIN_SIZE_USD: f64 = 1.0;

/// Pool data an entry needs, checked.
pub(crate) struct EntryData {
    pub tvl_usd: f64,
    pub created_ms: u64,
    pub apr_variance: f64,
    pub entry_gas_usd: f64,
}

/// The pool data of `p`, or a rejection naming what is missing.
pub(crate) fn entry_data(p: &Proposal) -> Result<EntryData, Decision> {
    let missing = |what: &str| {
        Decision::reject(
            Rule::MissingData,
            format!("pool {}: {what} missing or not a number", p.pool.id),
        )
    };
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
    Ok(EntryData {
        tvl_usd: finite(p.pool.tvl_usd).ok_or_else(|| missing("TVL"))?,
        created_ms: p
            .pool
            .created_ms
            .ok_or_else(|| missing("creation time (pool age)"))?,
        apr_variance: finite(p.pool.apr_variance).ok_or_else(|| missing("APR variance"))?,
        entry_gas_usd: finite(p.entry_gas_usd).ok_or_else(|| missing("entry gas estimate"))?,
    })
}

/// Volatility factor from APR variance: < 0.1 → 1.0, < 0.3 → 0.8, < 0.5 → 0.6, else 0.5.
pub fn volatility_factor(apr_variance: f64) -> f64 {
    match apr_variance {
        v if v < 0.1 => 1.0,
        v if v < 0.3 => 0.8,
        v if v < 0.5 => 0.6,
        _ => 0.5,
    }
}

/// Gas factor from entry gas against the size: > 5% → 0.5, > 3% → 0.7, > 1% → 0.9, else 1.
pub fn gas_factor(gas_usd: f64, size_usd: f64) -> f64 {
    let f = if size_usd > 0.0 {
        gas_usd / size_usd
    } else {
        f64::INFINITY
    };
    match f {
        f if f > 0.05 => 0.5,
        f if f > 0.03 => 0.7,
        f if f > 0.01 => 0.9,
        _ => 1.0,
    }
}

/// Correlation factor from held positions sharing a token: 1 → 0.85, 2 → 0.7, ≥ 3 → 0.5.
pub fn correlation_factor(sharing: usize) -> f64 {
    match sharing {
        0 => 1.0,
        1 => 0.85,
        2 => 0.7,
        _ => 0.5,
    }
}

/// Concentration factor: 1 with no exposure to the pool's tokens, falling linearly to 0.5 as
/// the larger exposure reaches the per-token limit.
pub fn concentration_factor(largest_token_fraction: f64, max_token_fraction: f64) -> f64 {
    let used = if max_token_fraction > 0.0 {
        (largest_token_fraction / max_token_fraction).clamp(0.0, 1.0)
    } else {
        1.0
    };
    1.0 - 0.5 * used
}

/// Recovery factor: `factor` right after a recovery, ramping linearly back to 1 over `period`.
pub fn recovery_factor(recovered_at_ms: Option<u64>, now_ms: u64, cfg: &RiskConfig) -> f64 {
    let period = cfg.recovery_period.as_millis() as u64;
    match recovered_at_ms {
        Some(at) if period > 0 && now_ms < at.saturating_add(period) => {
            let elapsed = now_ms.saturating_sub(at) as f64 / period as f64;
            cfg.recovery_factor + (1.0 - cfg.recovery_factor) * elapsed
        }
        _ => 1.0,
    }
}

/// Sizes an entry that passed the state, breaker, data and gas checks.
pub(crate) fn size_entry(
    cfg: &RiskConfig,
    state: &RiskState,
    proposal: &Proposal,
    data: &EntryData,
    portfolio: &Portfolio,
    now_ms: u64,
) -> (Decision, Option<Sizing>) {
    let pool = &proposal.pool;
    // The portfolio the entry lands in: a rebalance closes its `from` position first.
    let (held, freed_cash): (Vec<&crate::risk::model::Position>, f64) = match &proposal.kind {
        ProposalKind::Rebalance { from } => {
            let Some(left) = portfolio.positions.iter().find(|p| &p.id == from) else {
                return (
                    Decision::reject(
                        Rule::InvalidProposal,
                        format!("rebalance from unknown position {from}"),
                    ),
                    None,
                );
            };
            (
                portfolio
                    .positions
                    .iter()
                    .filter(|p| p.id != left.id)
                    .collect(),
                left.value_usd,
            )
        }
        _ => (portfolio.positions.iter().collect(), 0.0),
    };
    if let ProposalKind::Add { position } | ProposalKind::Compound { position } = &proposal.kind {
        match held.iter().find(|p| &p.id == position) {
            Some(p) if p.pool == pool.id => {}
            Some(p) => {
                return (
                    Decision::reject(
                        Rule::InvalidProposal,
                        format!("position {position} holds pool {}, not {}", p.pool, pool.id),
                    ),
                    None,
                );
            }
            None => {
                return (
                    Decision::reject(
                        Rule::InvalidProposal,
                        format!("unknown position {position}"),
                    ),
                    None,
                );
            }
        }
    }
    let opening = matches!(
        proposal.kind,
        ProposalKind::Open | ProposalKind::Rebalance { .. }
    );
    if opening && held.iter().any(|p| p.pool == pool.id) {
        return (
            Decision::reject(
                Rule::InvalidProposal,
                format!(
                    "pool {} is already held: add to that position instead",
                    pool.id
                ),
            ),
            None,
        );
    }
    if opening && held.len() >= cfg.max_positions as usize {
        return (
            Decision::reject(
                Rule::MaxPositions,
                format!(
                    "{} positions held, at most {}",
                    held.len(),
                    cfg.max_positions
                ),
            ),
            None,
        );
    }
    if let Some(s) = proposal.expected_slippage_pct
        && !(s.is_finite() && s <= cfg.max_slippage_pct)
    {
        return (
            Decision::reject(
                Rule::Slippage,
                format!(
                    "expected slippage {s}% above the {}% limit",
                    cfg.max_slippage_pct
                ),
            ),
            None,
        );
    }
    let requested = match proposal.requested_usd {
        Some(r) if !(r.is_finite() && r >= 0.0) => {
            return (
                Decision::reject(
                    Rule::InvalidProposal,
                    format!("requested size {r} is not an amount"),
                ),
                None,
            );
        }
        r => r,
    };

    let cash = portfolio.cash_usd + freed_cash;
    let value: f64 = cash + held.iter().map(|p| p.value_usd).sum::<f64>();
    if let Some(bad) = held
        .iter()
        .find(|p| !(p.value_usd.is_finite() && p.value_usd >= 0.0 && !p.pool_tvl_usd.is_nan()))
    {
        return (
            Decision::reject(
                Rule::MissingData,
                format!(
                    "position {} is not valued (value {}, pool TVL {})",
                    bad.id, bad.value_usd, bad.pool_tvl_usd
                ),
            ),
            None,
        );
    }
    if !(value.is_finite() && value > 0.0 && cash.is_finite() && cash >= 0.0) {
        return (
            Decision::reject(
                Rule::MissingData,
                format!("portfolio value {value} is not a positive amount"),
            ),
            None,
        );
    }
    let exposure = |token: &str| -> f64 {
        held.iter()
            .filter(|p| p.tokens.iter().any(|t| t == token))
            .map(|p| p.value_usd / 2.0)
            .sum()
    };
    let token_exposure = [exposure(&pool.tokens[0]), exposure(&pool.tokens[1])];
    let same_token =
        |p: &&&crate::risk::model::Position| p.tokens.iter().any(|t| pool.tokens.contains(t));
    let others_sharing = held
        .iter()
        .filter(same_token)
        .filter(|p| p.pool != pool.id)
        .count();
    let correlated_usd: f64 = held.iter().filter(same_token).map(|p| p.value_usd).sum();
    let in_pool: f64 = held
        .iter()
        .filter(|p| p.pool == pool.id)
        .map(|p| p.value_usd)
        .sum();

    let base = cfg.base_position_usd;
    let factors = Factors {
        volatility: volatility_factor(data.apr_variance),
        concentration: concentration_factor(
            token_exposure[0].max(token_exposure[1]) / value,
            cfg.max_token_fraction,
        ),
        gas: gas_factor(data.entry_gas_usd, base),
        correlation: correlation_factor(others_sharing),
        recovery: recovery_factor(state.recovered_at_ms, now_ms, cfg),
        slippage: if state.is_tripped(BreakerKind::SlippageHigh, now_ms) {
            0.5
        } else {
            1.0
        },
    };
    let sized = base * factors.product();
    let want = requested.map_or(sized, |r| r.min(sized));

    let mut caps: Vec<(Rule, f64)> = vec![(Rule::Sizing, sized), (Rule::Cash, cash)];
    if now_ms.saturating_sub(data.created_ms) < cfg.new_pool_age.as_millis() as u64 {
        caps.push((Rule::NewPoolCap, cfg.new_pool_cap_usd - in_pool));
    }
    caps.push((
        Rule::PositionFraction,
        cfg.max_position_fraction * value - in_pool,
    ));
    for e in token_exposure {
        caps.push((
            Rule::TokenFraction,
            2.0 * (cfg.max_token_fraction * value - e),
        ));
    }
    let band_used: f64 = held
        .iter()
        .filter(|p| p.stable == pool.stable)
        .map(|p| p.value_usd)
        .sum();
    if pool.stable {
        caps.push((
            Rule::StableBand,
            cfg.max_stable_fraction * value - band_used,
        ));
    } else {
        caps.push((
            Rule::VolatileBand,
            cfg.max_volatile_fraction * value - band_used,
        ));
    }
    if data.tvl_usd < cfg.low_liquidity_tvl_usd {
        let low: f64 = held
            .iter()
            .filter(|p| p.pool_tvl_usd < cfg.low_liquidity_tvl_usd)
            .map(|p| p.value_usd)
            .sum();
        caps.push((
            Rule::LowLiquidity,
            cfg.max_low_liquidity_fraction * value - low,
        ));
    }
    caps.push((
        Rule::CorrelatedExposure,
        cfg.max_correlated_fraction * value - correlated_usd,
    ));

    let size = caps.iter().map(|(_, c)| *c).fold(want, f64::min).max(0.0);
    let mut bounded: Vec<(Rule, f64)> = caps.iter().copied().filter(|(_, c)| *c <= want).collect();
    bounded.sort_by(|a, b| a.1.total_cmp(&b.1));
    let bounded_by: Vec<Rule> = bounded.iter().map(|(r, _)| *r).collect();
    let sizing = Sizing {
        base_usd: base,
        factors,
        caps: caps.iter().map(|&(rule, usd)| Cap { rule, usd }).collect(),
    };

    if size < MIN_SIZE_USD {
        let (rule, cap) = bounded.first().copied().unwrap_or((Rule::Sizing, size));
        return (
            Decision::reject(
                rule,
                format!(
                    "{} leaves ${:.2} (< ${MIN_SIZE_USD:.0})",
                    rule.as_str(),
                    cap.max(0.0)
                ),
            ),
            Some(sizing),
        );
    }
    if data.entry_gas_usd > cfg.max_entry_gas_fraction * size {
        return (
            Decision::reject(
                Rule::EntryGas,
                format!(
                    "entry gas ${:.2} above {:.1}% of the size ${size:.2}",
                    data.entry_gas_usd,
                    cfg.max_entry_gas_fraction * 100.0
                ),
            ),
            Some(sizing),
        );
    }
    let decision = match requested {
        Some(r) if size < r => Decision::Reduce {
            size_usd: size,
            requested_usd: r,
            bounded_by,
        },
        _ => Decision::Approve {
            size_usd: size,
            bounded_by,
        },
    };
    (decision, Some(sizing))
}
