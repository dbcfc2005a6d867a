//! Learning: pool profiles (an exponentially weighted APR mean and variance, the TVL window of
//! the drain rule, hourly and daily APR statistics), gas by hour of day, and the memories the
//! agent writes: hourly pool behaviour, APR anomalies, the day's cheapest gas window,
//! cross-pool APR correlation, trade outcomes, and pattern confidence moved by outcomes.

use crate::agent::state::{AgentState, LedgerEntry};
use crate::market::MarketTick;
use athena_storage::Rng;
use athena_storage::{Category, Memory, MemoryType, Metadata, Source};

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 86_400_000;
/// An APR above this multiple of its mean is an anomaly.
pub const ANOMALY_MULTIPLE: f64 = 2.0;
/// Correlation of daily APR above which two pools are recorded as correlated.
pub const CORRELATED: f64 = 0.8;

/// Updates the profiles and the gas statistics with this tick.
pub fn observe(state: &mut AgentState, tick: &MarketTick, tick_ms: u64, drain_window_ms: u64) {
    let alpha = (tick_ms as f64 / DAY_MS as f64).clamp(1e-4, 1.0);
    let hour = ((tick.at_ms % DAY_MS) / HOUR_MS) as usize;
    let new_day = tick.at_ms % DAY_MS < tick_ms;
    for pool in &tick.pools {
        let prof = state.profiles.entry(pool.pool.clone()).or_default();
        let apr = pool.apr_pct();
        if prof.samples == 0 {
            prof.apr_mean = apr;
            prof.apr_var = 0.0;
            prof.hourly_apr = vec![(0.0, 0); 24];
        } else {
            let d = apr - prof.apr_mean;
            prof.apr_mean += alpha * d;
            prof.apr_var = (1.0 - alpha) * (prof.apr_var + alpha * d * d);
        }
        prof.samples += 1;
        prof.recent_tvl.push_back((tick.at_ms, pool.tvl_usd));
        // Keep the newest reading older than the window: after a data gap it is the last TVL
        // seen before the gap, which the drain of a returning pool is measured against.
        while prof
            .recent_tvl
            .get(1)
            .is_some_and(|(t, _)| tick.at_ms.saturating_sub(*t) > drain_window_ms)
        {
            prof.recent_tvl.pop_front();
        }
        let (m, n) = &mut prof.hourly_apr[hour];
        *m += (apr - *m) / f64::from(*n + 1);
        *n += 1;
        if new_day && prof.today.1 > 0 {
            prof.daily_apr
                .push_back(prof.today.0 / f64::from(prof.today.1));
            while prof.daily_apr.len() > 30 {
                prof.daily_apr.pop_front();
            }
            prof.today = (0.0, 0);
        }
        prof.today.0 += apr;
        prof.today.1 += 1;
    }
    let (s, n) = &mut state.gas_by_hour[hour];
    *s += tick.gas_gwei;
    *n += 1;
}

fn memory(
    rng: &mut Rng,
    at_ms: u64,
    what: (MemoryType, Category, Source),
    content: String,
    metadata: Metadata,
    confidence: f64,
) -> Memory {
    let (kind, category, source) = what;
    Memory::new(
        kind,
        category,
        content,
        metadata,
        confidence,
        source,
        ulid::Ulid::from_parts(at_ms, u128::from(rng.next_u64())),
    )
}

/// The memories this tick produces (after [`observe`]).
pub fn memories(state: &mut AgentState, tick: &MarketTick, tick_ms: u64, seed: u64) -> Vec<Memory> {
    let mut rng = Rng::stream(seed ^ tick.index.wrapping_mul(0x9E37_79B9), "memories");
    let mut out = Vec::new();
    let hourly = tick.at_ms % HOUR_MS < tick_ms;
    for pool in &tick.pools {
        let apr = pool.apr_pct();
        let prof = state.profiles.get_mut(&pool.pool).expect("observed");
        if hourly {
            out.push(memory(
                &mut rng,
                tick.at_ms,
                (MemoryType::Observation, Category::PoolBehavior, Source::MarketData),
                format!(
                    "{}: APR {apr:.1}% (fees {:.1}%, emissions {:.1}%), TVL ${:.0}, 24h volume ${:.0}; APR mean {:.1}%",
                    pool.pool, pool.fee_apr_pct, pool.emission_apr_pct, pool.tvl_usd, pool.volume_24h_usd, prof.apr_mean
                ),
                Metadata { pool: Some(pool.pool.clone()), apr: Some(apr), tvl: Some(pool.tvl_usd), volume: Some(pool.volume_24h_usd), ..Metadata::default() },
                0.8,
            ));
        }
        if prof.samples >= 12
            && apr > ANOMALY_MULTIPLE * prof.apr_mean
            && tick.at_ms.saturating_sub(prof.last_anomaly_ms) >= 6 * HOUR_MS
        {
            prof.last_anomaly_ms = tick.at_ms;
            out.push(memory(
                &mut rng,
                tick.at_ms,
                (MemoryType::Pattern, Category::AprAnomaly, Source::Rule),
                format!(
                    "{}: APR {apr:.1}% is {:.1}× its mean {:.1}%",
                    pool.pool,
                    apr / prof.apr_mean,
                    prof.apr_mean
                ),
                Metadata {
                    pool: Some(pool.pool.clone()),
                    apr: Some(apr),
                    pattern_key: Some(format!("apr_anomaly:{}", pool.pool)),
                    ..Metadata::default()
                },
                0.6,
            ));
        }
    }
    if tick.at_ms % DAY_MS < tick_ms && tick.index > 0 {
        if let Some((hour, (sum, n))) = state
            .gas_by_hour
            .iter()
            .enumerate()
            .filter(|(_, (_, n))| *n > 0)
            .min_by(|a, b| (a.1.0 / f64::from(a.1.1)).total_cmp(&(b.1.0 / f64::from(b.1.1))))
        {
            out.push(memory(
                &mut rng,
                tick.at_ms,
                (MemoryType::Pattern, Category::GasOptimization, Source::Rule),
                format!(
                    "gas is lowest around {hour:02}:00 UTC (mean {:.4} gwei)",
                    sum / f64::from(*n)
                ),
                Metadata {
                    pattern_key: Some(format!("gas_window:{hour:02}")),
                    ..Metadata::default()
                },
                0.6,
            ));
        }
        let pools: Vec<(&String, Vec<f64>)> = state
            .profiles
            .iter()
            .map(|(k, p)| (k, p.daily_apr.iter().copied().collect()))
            .collect();
        for (i, (a, xa)) in pools.iter().enumerate() {
            for (b, xb) in &pools[i + 1..] {
                if let Some(c) = correlation(xa, xb).filter(|c| *c > CORRELATED) {
                    out.push(memory(
                        &mut rng,
                        tick.at_ms,
                        (
                            MemoryType::Pattern,
                            Category::CrossPoolCorrelation,
                            Source::Rule,
                        ),
                        format!(
                            "{a} and {b}: daily APR correlation {c:.2} over {} days",
                            xa.len().min(xb.len())
                        ),
                        Metadata {
                            pattern_key: Some(format!("apr_correlation:{a}:{b}")),
                            ..Metadata::default()
                        },
                        c.min(0.95),
                    ));
                }
            }
        }
    }
    out
}

/// Pearson correlation of the common tail of two series (at least 5 points).
pub fn correlation(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len().min(b.len());
    if n < 5 {
        return None;
    }
    let (a, b) = (&a[a.len() - n..], &b[b.len() - n..]);
    let (ma, mb) = (
        a.iter().sum::<f64>() / n as f64,
        b.iter().sum::<f64>() / n as f64,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// The outcome memory of a close, and the pool's pattern memory with its confidence moved:
/// up after a profit, down after a loss (`pattern` is the pool's current pattern, if any).
pub fn outcome(
    close: &LedgerEntry,
    pattern: Option<Memory>,
    seed: u64,
) -> (Memory, Option<Memory>) {
    let mut rng = Rng::stream(seed ^ close.tick.wrapping_mul(0x51_7CC1), &close.position);
    let pnl = close.pnl_usd.unwrap_or(0.0);
    let success = pnl > 0.0;
    let outcome = memory(
        &mut rng,
        close.at_ms,
        (
            MemoryType::Outcome,
            Category::StrategyPerformance,
            Source::Rule,
        ),
        format!(
            "closed {} in {}: realised PnL ${pnl:.2}",
            close.position, close.pool
        ),
        Metadata {
            pool: Some(close.pool.clone()),
            pattern_key: Some(format!("high_yield_pool:{}", close.pool)),
            ..Metadata::default()
        },
        if success { 0.8 } else { 0.6 },
    );
    let pattern = pattern.map(|mut p| {
        p.confidence = (p.confidence + if success { 0.1 } else { -0.1 }).clamp(0.05, 0.99);
        p.occurrences += 1;
        p.accessed_ms = close.at_ms;
        p
    });
    (outcome, pattern)
}

/// The pattern memory an open creates for its pool (a high-yield pool worth entering).
pub fn entry_pattern(pool: &str, apr: f64, at_ms: u64, tick: u64, seed: u64) -> Memory {
    let mut rng = Rng::stream(seed ^ tick.wrapping_mul(0x2545_F491), pool);
    memory(
        &mut rng,
        at_ms,
        (MemoryType::Pattern, Category::HighYieldPool, Source::Rule),
        format!("{pool}: entered at APR {apr:.1}%"),
        Metadata {
            pool: Some(pool.to_string()),
            apr: Some(apr),
            pattern_key: Some(format!("high_yield_pool:{pool}")),
            ..Metadata::default()
        },
        0.5,
    )
}

/// The learning memory of an entry the LLM advisor vetoed (its source is the LLM: untrusted,
/// and merging never launders it).
pub fn advisor_veto(pool: &str, reason: &str, at_ms: u64, tick: u64, seed: u64) -> Memory {
    let mut rng = Rng::stream(seed ^ tick.wrapping_mul(0x6C8E_9CF5), pool);
    memory(
        &mut rng,
        at_ms,
        (MemoryType::Learning, Category::MarketAnalysis, Source::Llm),
        format!("the advisor vetoed entering {pool}: {reason}"),
        Metadata {
            pool: Some(pool.to_string()),
            pattern_key: Some(format!("advisor_veto:{pool}")),
            ..Metadata::default()
        },
        0.5,
    )
}
