//! The decision rules of SPEC.md §1, every threshold from `[strategy]`: close on a TVL drain,
//! a depeg or when risk says reduce; compound rewards worth their gas; rebalance out of a pool
//! whose APR fell when a better one pays for the move; open the best pools while fewer than
//! the maximum are held; on chain, swap a token left in the wallet outside positions back
//! into the quote token when it is worth the gas. The rules only propose; the risk engine
//! decides.
//!
//! A protective close (drain, depeg, risk reduce) leaves a [`ReentryGuard`] on its pool: the
//! pool is neither opened nor rebalanced into for `strategy.reentry_cooldown`, nor while its
//! condition holds (TVL not back within `tvl_drain_pct` of the TVL before the drain, price
//! still off its peg). A drain is measured against the oldest TVL within the window or, after
//! a data gap, the last one seen before the gap.

use crate::agent::paper::swap_costs;
use crate::agent::state::{AgentState, LedgerEntry, PoolProfile, Protection, ReentryGuard};
use crate::market::sim::{GAS_UNITS_CLAIM, GAS_UNITS_ENTRY, GAS_UNITS_EXIT, GAS_UNITS_SWAP};
use crate::market::{MarketTick, PoolSnapshot};
use athena_config::StrategyConfig;
use serde::{Deserialize, Serialize};

/// What the rules want done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Open a position in `pool`.
    Open {
        /// Pool.
        pool: String,
    },
    /// Close `position`.
    Close {
        /// Position.
        position: String,
        /// Rule that asked.
        reason: String,
        /// Set when the close protects the book: its pool is then guarded against re-entry.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protection: Option<Protection>,
    },
    /// Move `from` into `to`.
    Rebalance {
        /// Position left.
        from: String,
        /// Pool entered.
        to: String,
    },
    /// Claim and reinvest `position`'s rewards.
    Compound {
        /// Position.
        position: String,
    },
    /// Swap the wallet's loose `token` (held outside positions: an open or a close cut short)
    /// back into the quote token through `pool`.
    Sweep {
        /// The token's symbol.
        token: String,
        /// The pool it is sold in.
        pool: String,
    },
}

/// An intent and the rule that proposed it, with the numbers it compared (journaled with the
/// decision, so "why did it do that?" has an answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed {
    /// What the rules want done.
    pub intent: Intent,
    /// Which rule asked and why, in one line.
    pub rule: String,
}

const YEAR_MS: f64 = 365.0 * 86_400_000.0;

/// The proposals of this tick, exits first. `reduce`: risk says reduce (reduce-only state).
pub fn decide(
    cfg: &StrategyConfig,
    state: &AgentState,
    tick: &MarketTick,
    reduce: bool,
) -> Vec<Proposed> {
    let propose = |intent: Intent, rule: String| Proposed { intent, rule };
    let mut out = sweeps(cfg, state, tick);
    let mut closing: Vec<&str> = Vec::new();
    for p in &state.positions {
        let Some(pool) = tick.pool(&p.pool) else {
            continue;
        };
        let close = protective_close(cfg, state, tick, pool);
        if let Some((reason, protection)) = close {
            closing.push(&p.id);
            let rule = format!("protective close of {}: {reason}", p.pool);
            out.push(propose(
                Intent::Close {
                    position: p.id.clone(),
                    reason,
                    protection: Some(protection),
                },
                rule,
            ));
        }
    }
    if reduce {
        // Risk says reduce: close the lowest-yielding position not already closing.
        let worst = state
            .positions
            .iter()
            .filter(|p| !closing.contains(&p.id.as_str()))
            .filter_map(|p| tick.pool(&p.pool).map(|pool| (p, pool.apr_pct())))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((p, apr)) = worst {
            closing.push(&p.id);
            out.push(propose(
                Intent::Close {
                    position: p.id.clone(),
                    reason: "risk says reduce".into(),
                    protection: Some(Protection::RiskReduce),
                },
                format!(
                    "reduce-only: close the lowest-yielding position, {} at APR {apr:.1}%",
                    p.pool
                ),
            ));
        }
        return out;
    }
    let held: Vec<&str> = state.positions.iter().map(|p| p.pool.as_str()).collect();
    let mut candidates: Vec<_> = tick
        .pools
        .iter()
        .filter(|p| p.apr_pct() > cfg.min_apr_pct && p.tvl_usd > cfg.min_tvl_usd)
        .filter(|p| !state.reentry_guards.contains_key(&p.pool))
        // Never into a pool it would close at once (a stable pool off its peg, a drain).
        .filter(|p| protective_close(cfg, state, tick, p).is_none())
        .collect();
    candidates.sort_by(|a, b| {
        b.apr_pct()
            .total_cmp(&a.apr_pct())
            .then(a.pool.cmp(&b.pool))
    });
    let mut taken: Vec<&str> = Vec::new();
    for p in state
        .positions
        .iter()
        .filter(|p| !closing.contains(&p.id.as_str()))
    {
        let Some(pool) = tick.pool(&p.pool) else {
            continue;
        };
        let claim_gas = tick.gas_usd(GAS_UNITS_CLAIM);
        if p.rewards_usd > cfg.compound_min_rewards_usd
            && claim_gas < cfg.compound_max_gas_fraction * p.rewards_usd
        {
            out.push(propose(
                Intent::Compound {
                    position: p.id.clone(),
                },
                format!(
                    "compound: rewards ${:.2} above ${:.2}, claim gas ${claim_gas:.2} below {:.0}% of them",
                    p.rewards_usd,
                    cfg.compound_min_rewards_usd,
                    100.0 * cfg.compound_max_gas_fraction
                ),
            ));
        }
        let apr = pool.apr_pct();
        if apr < cfg.rebalance_apr_drop_ratio * p.entry_apr_pct {
            let better = candidates.iter().find(|c| {
                !held.contains(&c.pool.as_str())
                    && !taken.contains(&c.pool.as_str())
                    && c.apr_pct() > cfg.rebalance_better_ratio * apr
            });
            if let Some(to) = better {
                let horizon = cfg.holding_horizon.as_millis() as f64 / YEAR_MS;
                let gain = p.value_usd * (to.apr_pct() - apr) / 100.0 * horizon;
                let (f1, s1) = swap_costs(pool, p.value_usd / 2.0);
                let (f2, s2) = swap_costs(to, p.value_usd / 2.0);
                let cost = tick.gas_usd(GAS_UNITS_EXIT + GAS_UNITS_ENTRY) + f1 + s1 + f2 + s2;
                if gain > cfg.rebalance_min_gain_over_cost * cost {
                    taken.push(&to.pool);
                    out.push(propose(
                        Intent::Rebalance {
                            from: p.id.clone(),
                            to: to.pool.clone(),
                        },
                        format!(
                            "rebalance: {} APR {apr:.1}% fell below {:.0}% of its entry {:.1}%; \
                             {} pays {:.1}% (> {}×); gain ${gain:.2} over {} above {}× the cost ${cost:.2}",
                            p.pool,
                            100.0 * cfg.rebalance_apr_drop_ratio,
                            p.entry_apr_pct,
                            to.pool,
                            to.apr_pct(),
                            cfg.rebalance_better_ratio,
                            humantime::format_duration(cfg.holding_horizon),
                            cfg.rebalance_min_gain_over_cost
                        ),
                    ));
                }
            }
        }
    }
    let open_now = state.positions.len() - closing.len();
    let room = (cfg.max_positions as usize).saturating_sub(open_now + taken.len());
    let ranked = candidates.len();
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| !held.contains(&c.pool.as_str()) && !taken.contains(&c.pool.as_str()))
        .take((cfg.open_top_n as usize).min(room))
        .for_each(|(rank, c)| {
            out.push(propose(
                Intent::Open {
                    pool: c.pool.clone(),
                },
                format!(
                    "open: APR {:.1}% above {}%, TVL ${:.0} above ${:.0}; #{} of {ranked} by APR, {room} slots free",
                    c.apr_pct(),
                    cfg.min_apr_pct,
                    c.tvl_usd,
                    cfg.min_tvl_usd,
                    rank + 1
                ),
            ))
        });
    out
}
/// A sweep for each token the wallet holds outside positions and cash worth more than
/// `strategy.sweep_min_gas_multiple` × a swap's gas, sold through the deepest pool of `tick`
/// that pairs it with the quote token (none on paper: paper holds no loose tokens).
pub fn sweeps(cfg: &StrategyConfig, state: &AgentState, tick: &MarketTick) -> Vec<Proposed> {
    let Some(book) = &state.wallet else {
        return Vec::new();
    };
    let Some(quote) = book.tokens.get(&book.quote).map(|t| t.symbol.as_str()) else {
        return Vec::new();
    };
    let gas = tick.gas_usd(GAS_UNITS_SWAP);
    let mut out = Vec::new();
    for (address, info) in &book.tokens {
        if info.pair || *address == book.quote || address.is_zero() {
            continue;
        }
        let deepest = tick
            .pools
            .iter()
            .filter(|p| p.tokens.iter().any(|t| t == &info.symbol))
            .filter(|p| p.tokens.iter().any(|t| t == quote))
            .max_by(|a, b| a.tvl_usd.total_cmp(&b.tvl_usd));
        let Some(pool) = deepest else {
            continue;
        };
        let i = usize::from(pool.tokens[1] == info.symbol);
        let held = crate::chain::pair::whole(book.balance(*address), info.decimals);
        let usd = held * pool.prices_usd[i];
        if usd > cfg.sweep_min_gas_multiple * gas {
            out.push(Proposed {
                intent: Intent::Sweep {
                    token: info.symbol.clone(),
                    pool: pool.pool.clone(),
                },
                rule: format!(
                    "sweep: {held:.6} {} (${usd:.2}) held outside positions, above {}× the swap's gas ${gas:.2}: sold for {quote} in {}",
                    info.symbol, cfg.sweep_min_gas_multiple, pool.pool
                ),
            });
        }
    }
    out
}

/// Whether the position in `pool` must be closed to protect the book, why and what guards
/// its re-entry: a TVL drain above `tvl_drain_pct` against [`drain_reference`], or a stable
/// pool off its peg by more than `depeg_pct`.
fn protective_close(
    cfg: &StrategyConfig,
    state: &AgentState,
    tick: &MarketTick,
    pool: &PoolSnapshot,
) -> Option<(String, Protection)> {
    let window = cfg.tvl_drain_window.as_millis() as u64;
    let drained = state
        .profiles
        .get(&pool.pool)
        .and_then(|prof| drain_reference(prof, tick.at_ms, window))
        .map(|(at, tvl)| (at, tvl, 100.0 * (1.0 - pool.tvl_usd / tvl)))
        .filter(|(_, _, d)| *d > cfg.tvl_drain_pct);
    if let Some((at, tvl, d)) = drained {
        let since = std::time::Duration::from_secs(tick.at_ms.saturating_sub(at) / 1000);
        let reason = if since > cfg.tvl_drain_window {
            format!(
                "TVL drain {d:.1}% since the last reading before a data gap of {}",
                humantime::format_duration(since)
            )
        } else {
            format!(
                "TVL drain {d:.1}% within {}",
                humantime::format_duration(cfg.tvl_drain_window)
            )
        };
        let protection = Protection::TvlDrain {
            reference_tvl_usd: tvl,
        };
        return Some((reason, protection));
    }
    (pool.depeg_pct() > cfg.depeg_pct).then(|| {
        (
            format!("depeg {:.2}% of a stable pool", pool.depeg_pct()),
            Protection::Depeg,
        )
    })
}

/// The (time, TVL) reading a drain of the pool is measured against at `now_ms`: the oldest
/// earlier reading within `window_ms`, or, when there is none (a data gap), the last one seen
/// before the gap. `None` before a first earlier reading, or when it is not above 0.
pub fn drain_reference(profile: &PoolProfile, now_ms: u64, window_ms: u64) -> Option<(u64, f64)> {
    let earlier = || profile.recent_tvl.iter().filter(|(t, _)| *t < now_ms);
    earlier()
        .find(|(t, _)| now_ms - t <= window_ms)
        .or_else(|| earlier().next_back())
        .copied()
        .filter(|(_, tvl)| *tvl > 0.0)
}

/// Whether the condition a pool was closed for still holds at `pool`'s snapshot.
fn condition_holds(cfg: &StrategyConfig, protection: &Protection, pool: &PoolSnapshot) -> bool {
    match protection {
        Protection::TvlDrain { reference_tvl_usd } => {
            pool.tvl_usd < reference_tvl_usd * (1.0 - cfg.tvl_drain_pct / 100.0)
        }
        Protection::Depeg => pool.depeg_pct() > cfg.depeg_pct,
        Protection::RiskReduce => false,
    }
}

/// Lifts the guard of every pool of `tick` whose cooldown has passed and whose condition no
/// longer holds (a pool missing from the tick keeps its guard).
pub fn release_guards(cfg: &StrategyConfig, state: &mut AgentState, tick: &MarketTick) {
    let cooldown = cfg.reentry_cooldown.as_millis() as u64;
    state.reentry_guards.retain(|pool, guard| {
        let Some(snapshot) = tick.pool(pool) else {
            return true;
        };
        tick.at_ms < guard.closed_ms.saturating_add(cooldown)
            || condition_holds(cfg, &guard.protection, snapshot)
    });
}

/// Guards the pool of a protective close that was executed (`fills` holds its close).
pub fn guard_after_close(
    state: &mut AgentState,
    intent: &Intent,
    fills: &[LedgerEntry],
    now_ms: u64,
) {
    let Intent::Close {
        protection: Some(protection),
        ..
    } = intent
    else {
        return;
    };
    for f in fills.iter().filter(|f| f.action == "close") {
        state.reentry_guards.insert(
            f.pool.clone(),
            ReentryGuard {
                closed_ms: now_ms,
                protection: protection.clone(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::paper;
    use crate::market::MarketSource;

    fn opens(cfg: &StrategyConfig, state: &AgentState, tick: &MarketTick, pool: &str) -> bool {
        decide(cfg, state, tick, false)
            .iter()
            .any(|p| p.intent == Intent::Open { pool: pool.into() })
    }

    #[test]
    fn a_stable_pool_off_its_peg_is_not_opened_only_to_be_closed() {
        let cfg = StrategyConfig::default();
        let mut tick = crate::market::sim::Sim::new(1, 0, 300_000).tick(0).unwrap();
        let state = AgentState::new(0, 10_000.0, 1);
        let stable = tick.pools.iter_mut().find(|p| p.stable).unwrap();
        stable.fee_apr_pct = 500.0;
        let name = stable.pool.clone();
        assert!(
            opens(&cfg, &state, &tick, &name),
            "the best candidate on its peg"
        );
        let stable = tick.pools.iter_mut().find(|p| p.pool == name).unwrap();
        stable.prices_usd[1] = 1.0 + (cfg.depeg_pct + 0.5) / 100.0;
        assert!(!opens(&cfg, &state, &tick, &name), "opened off its peg");
    }

    #[test]
    fn a_risk_reduce_close_guards_its_pool_for_the_cooldown() {
        let cfg = StrategyConfig::default();
        let tick = crate::market::sim::Sim::new(1, 0, 300_000).tick(0).unwrap();
        let mut state = AgentState::new(0, 10_000.0, 1);
        let pool = tick.pool("AERO/USDC").unwrap().clone();
        let opened = paper::open(&mut state, &tick, &pool, 1_000.0).unwrap();
        let proposed = decide(&cfg, &state, &tick, true);
        let [
            Proposed {
                intent: close,
                rule,
            },
        ] = proposed.as_slice()
        else {
            panic!("{proposed:?}")
        };
        assert!(rule.starts_with("reduce-only: "), "{rule}");
        assert!(matches!(
            close,
            Intent::Close {
                protection: Some(Protection::RiskReduce),
                ..
            }
        ));
        let closed = paper::close(&mut state, &tick, &opened.position).unwrap();
        assert!(opens(&cfg, &state, &tick, "AERO/USDC"), "a candidate");
        guard_after_close(&mut state, close, &[closed], tick.at_ms);
        assert!(!opens(&cfg, &state, &tick, "AERO/USDC"), "guarded");
        let mut later = tick.clone();
        later.at_ms = cfg.reentry_cooldown.as_millis() as u64 - 1;
        release_guards(&cfg, &mut state, &later);
        assert!(
            !opens(&cfg, &state, &later, "AERO/USDC"),
            "still cooling down"
        );
        later.at_ms += 1;
        release_guards(&cfg, &mut state, &later);
        assert!(state.reentry_guards.is_empty());
        assert!(opens(&cfg, &state, &later, "AERO/USDC"), "released");
    }

    #[test]
    fn a_token_left_outside_positions_is_swept_back_when_worth_the_gas_and_dust_is_not() {
        use crate::agent::state::WalletBook;
        use alloy::primitives::{Address, U256};
        let cfg = StrategyConfig::default();
        let tick = crate::market::sim::Sim::new(1, 0, 300_000).tick(0).unwrap();
        let (usdc, aero, lp) = (
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        );
        let mut book = WalletBook {
            quote: usdc,
            quote_decimals: 6,
            ..WalletBook::default()
        };
        book.learn(usdc, "USDC", 6, false);
        book.learn(aero, "AERO", 18, false);
        book.learn(lp, "AERO/USDC", 18, true);
        book.balances.insert(usdc, U256::from(5_000_000_000u64));
        book.balances.insert(lp, U256::from(10u128.pow(21)));
        let mut state = AgentState::new(0, 10_000.0, 1);
        let price = tick.pool("AERO/USDC").unwrap().prices_usd[0];
        let gas = tick.gas_usd(GAS_UNITS_SWAP);
        let sweeps_with = |state: &mut AgentState, usd: f64| {
            let raw = (usd / price * 1e18) as u128;
            let mut b = book.clone();
            b.balances.insert(aero, U256::from(raw));
            state.wallet = Some(b);
            sweeps(&cfg, state, &tick)
        };
        // Worth well more than 3× the gas: swept through the pool pairing it with USDC.
        let proposed = sweeps_with(&mut state, 10.0 * gas);
        assert_eq!(proposed.len(), 1, "{proposed:?}");
        assert_eq!(
            proposed[0].intent,
            Intent::Sweep {
                token: "AERO".into(),
                pool: "AERO/USDC".into()
            }
        );
        assert!(
            proposed[0].rule.starts_with("sweep: "),
            "{}",
            proposed[0].rule
        );
        // Risk says reduce: a sweep reduces too, so it is still proposed.
        assert!(
            decide(&cfg, &state, &tick, true)
                .iter()
                .any(|p| p.intent == proposed[0].intent)
        );
        // Dust (an add's remainder) is not worth the gas; the quote and LP tokens never are swept.
        assert!(sweeps_with(&mut state, 2.0 * gas).is_empty());
        // Paper holds no wallet: nothing to sweep.
        state.wallet = None;
        assert!(sweeps(&cfg, &state, &tick).is_empty());
    }
}
