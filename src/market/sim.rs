//! The seeded market simulator (SPEC.md §1): the six default pools, token prices on a random
//! walk with regime switches (calm, trending, volatile), TVL, volume, fee and emission APR
//! moving with them, a gas process with spikes and deliberate manipulation episodes, and
//! incidents at seeded times: a TVL drain, an APR spike and a depeg.
//!
//! The simulator is a sequence: tick `n` is computed from tick `n − 1`. Asking for a later
//! tick fast-forwards (a restarted agent replays the ticks it already saw in microseconds), so
//! the same seed always gives the same ticks.

use crate::market::{MarketError, MarketSource, MarketTick, PoolSnapshot};
use athena_storage::Rng;

/// Gas units of the operations the paper executor models.
pub const GAS_UNITS_ENTRY: f64 = 350_000.0;
/// Gas units of an exit.
pub const GAS_UNITS_EXIT: f64 = 300_000.0;
/// Gas units of a reward claim.
pub const GAS_UNITS_CLAIM: f64 = 150_000.0;
/// Gas units of a swap and its approval.
pub const GAS_UNITS_SWAP: f64 = 200_000.0;

const DAY_MS: u64 = 86_400_000;

/// A default pool: tokens, stable, starting TVL, base emission APR, age at start (days).
const POOLS: [(&str, &str, bool, f64, f64, u64); 6] = [
    ("WETH", "USDC", false, 5_000_000.0, 12.0, 400),
    ("WETH", "DAI", false, 1_500_000.0, 18.0, 300),
    ("AERO", "USDC", false, 900_000.0, 45.0, 200),
    ("AERO", "WETH", false, 2_000_000.0, 35.0, 2),
    ("USDC", "DAI", true, 3_000_000.0, 6.0, 500),
    ("USDC", "USDbC", true, 400_000.0, 9.0, 150),
];

/// Tokens with a price process (stables start at $1 and only leave it in a depeg).
const TOKENS: [(&str, f64); 5] = [
    ("WETH", 3_000.0),
    ("AERO", 1.2),
    ("USDC", 1.0),
    ("DAI", 1.0),
    ("USDbC", 1.0),
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Regime {
    Calm,
    Trending(f64),
    Volatile,
}

/// An incident scheduled at a seeded time.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    /// What.
    pub kind: IncidentKind,
    /// First tick affected.
    pub start: u64,
    /// Ticks it lasts.
    pub ticks: u64,
    /// Pool (or token for a depeg) concerned.
    pub target: String,
}

/// Incident kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentKind {
    /// TVL falls by half within an hour and stays low.
    TvlDrain,
    /// Emission APR ×5 for a few hours.
    AprSpike,
    /// A stable token trades at $0.95.
    Depeg,
    /// Gas ×40 for a few ticks (manipulation episode).
    GasManipulation,
    /// AERO loses 45% within an hour (and stays there).
    Crash,
}

/// A pool the simulator lists.
#[derive(Debug, Clone)]
struct SimPool {
    id: String,
    tokens: [&'static str; 2],
    stable: bool,
    age_days: u64,
}

/// Most pools the simulator lists (`market.sim_pools`).
pub const MAX_SIM_POOLS: usize = 1000;

/// The `n` pools of a simulator: the six defaults, then variants of them in turn (`WETH/USDC
/// #7`, ...) with the same tokens and their own TVL, emissions and age.
fn pool_list(n: usize) -> Vec<(SimPool, f64, f64)> {
    (0..n.clamp(1, MAX_SIM_POOLS))
        .map(|i| {
            let (a, b, stable, tvl, emission, age) = POOLS[i % POOLS.len()];
            let variant = i / POOLS.len();
            let id = if variant == 0 {
                format!("{a}/{b}")
            } else {
                format!("{a}/{b} #{}", i + 1)
            };
            // Variants spread TVL over 0.2×–2× and emissions over 0.5×–1.5× of the default's,
            // deterministically by index.
            let spread = ((i * 7919) % 100) as f64 / 100.0;
            let (tvl, emission) = if variant == 0 {
                (tvl, emission)
            } else {
                (tvl * (0.2 + 1.8 * spread), emission * (0.5 + spread))
            };
            let pool = SimPool {
                id,
                tokens: [a, b],
                stable,
                age_days: age + variant as u64 * 17,
            };
            (pool, tvl, emission)
        })
        .collect()
}

/// The simulator.
#[derive(Debug, Clone)]
pub struct Sim {
    pools: Vec<SimPool>,
    start_ms: u64,
    tick_ms: u64,
    next: u64,
    rng: Rng,
    regime: Regime,
    prices: Vec<f64>,
    tvl: Vec<f64>,
    turnover: Vec<f64>,
    emission: Vec<f64>,
    gas: f64,
    incidents: Vec<Incident>,
    /// The last tick given (asked again after a tick that failed).
    last: Option<MarketTick>,
}

impl Sim {
    /// A simulator of the six default pools from `seed`, starting at `start_ms`, one tick every
    /// `tick_ms`.
    pub fn new(seed: u64, start_ms: u64, tick_ms: u64) -> Self {
        Self::with_pools(seed, start_ms, tick_ms, POOLS.len())
    }

    /// A simulator of `pools` pools (1 to [`MAX_SIM_POOLS`]): the six defaults, then variants
    /// of them. Incidents fall on the six defaults; with six pools it is [`Sim::new`].
    pub fn with_pools(seed: u64, start_ms: u64, tick_ms: u64, pools: usize) -> Self {
        let tick_ms = tick_ms.max(1);
        let list = pool_list(pools);
        let mut plan = Rng::stream(seed, "incidents");
        let ticks_per_day = (DAY_MS / tick_ms).max(1);
        let mut incidents = Vec::new();
        // Per 30 days: two TVL drains, two APR spikes, one depeg; a gas manipulation episode
        // every two to four days. The first ones fall after the 3-day observation period.
        let month = 30 * ticks_per_day;
        for m in 0..24u64 {
            let base = m * month;
            let at = |r: &mut Rng, lo: u64| {
                base + lo * ticks_per_day + r.below(month - lo * ticks_per_day)
            };
            for _ in 0..2 {
                let pool = POOLS[plan.below(4) as usize];
                incidents.push(Incident {
                    kind: IncidentKind::TvlDrain,
                    start: at(&mut plan, 4),
                    ticks: (3_600_000 / tick_ms).max(1),
                    target: format!("{}/{}", pool.0, pool.1),
                });
                let pool = POOLS[plan.below(6) as usize];
                incidents.push(Incident {
                    kind: IncidentKind::AprSpike,
                    start: at(&mut plan, 4),
                    ticks: (6 * 3_600_000 / tick_ms).max(1),
                    target: format!("{}/{}", pool.0, pool.1),
                });
            }
            incidents.push(Incident {
                kind: IncidentKind::Crash,
                start: at(&mut plan, 5),
                ticks: (3_600_000 / tick_ms).max(1),
                target: "AERO".into(),
            });
            let token = ["DAI", "USDbC"][plan.below(2) as usize];
            incidents.push(Incident {
                kind: IncidentKind::Depeg,
                start: at(&mut plan, 4),
                ticks: (12 * 3_600_000 / tick_ms).max(1),
                target: token.into(),
            });
            let mut t = base + 3 * ticks_per_day + plan.below(ticks_per_day);
            while t < base + month {
                incidents.push(Incident {
                    kind: IncidentKind::GasManipulation,
                    start: t,
                    ticks: 3,
                    target: String::new(),
                });
                t += 2 * ticks_per_day + plan.below(2 * ticks_per_day);
            }
        }
        incidents.sort_by_key(|i| i.start);
        Self {
            start_ms,
            tick_ms,
            next: 0,
            rng: Rng::stream(seed, "market"),
            regime: Regime::Calm,
            prices: TOKENS.iter().map(|(_, p)| *p).collect(),
            tvl: list.iter().map(|(_, tvl, _)| *tvl).collect(),
            turnover: list
                .iter()
                .map(|(p, _, _)| if p.stable { 0.8 } else { 0.5 })
                .collect(),
            emission: list.iter().map(|(_, _, e)| *e).collect(),
            pools: list.into_iter().map(|(p, _, _)| p).collect(),
            gas: 0.05,
            incidents,
            last: None,
        }
    }

    /// The scheduled incidents.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }

    fn active(&self, index: u64, kind: IncidentKind) -> impl Iterator<Item = &Incident> {
        self.incidents
            .iter()
            .filter(move |i| i.kind == kind && index >= i.start && index < i.start + i.ticks)
    }

    fn token_price(&self, token: &str) -> f64 {
        let i = TOKENS.iter().position(|(t, _)| *t == token).unwrap_or(0);
        self.prices[i]
    }

    /// Computes the next tick.
    fn step(&mut self) -> MarketTick {
        let index = self.next;
        self.next += 1;
        let r = &mut self.rng;
        let day_fraction = self.tick_ms as f64 / DAY_MS as f64;
        // Regime switches about once a day.
        if r.chance(day_fraction) {
            self.regime = match r.below(3) {
                0 => Regime::Calm,
                1 => Regime::Trending(if r.chance(0.5) { 0.02 } else { -0.02 }),
                _ => Regime::Volatile,
            };
        }
        let (drift_day, vol_day) = match self.regime {
            Regime::Calm => (0.0, 0.02),
            Regime::Trending(d) => (d, 0.03),
            Regime::Volatile => (0.0, 0.08),
        };
        for (i, (token, _)) in TOKENS.iter().enumerate() {
            if matches!(*token, "WETH" | "AERO") {
                let scale = if *token == "AERO" { 1.5 } else { 1.0 };
                let ret =
                    drift_day * day_fraction + scale * vol_day * day_fraction.sqrt() * r.normal();
                self.prices[i] *= ret.exp();
            } else {
                // Stables: a tiny wobble around $1.
                self.prices[i] = 1.0 + 0.0005 * r.normal();
            }
        }
        let crash_ticks = (3_600_000 / self.tick_ms).max(1) as f64;
        let crashing: Vec<String> = self
            .active(index, IncidentKind::Crash)
            .map(|i| i.target.clone())
            .collect();
        for t in crashing {
            if let Some(i) = TOKENS.iter().position(|(x, _)| *x == t) {
                self.prices[i] *= 0.55f64.powf(1.0 / crash_ticks);
            }
        }
        let depegged: Vec<String> = self
            .active(index, IncidentKind::Depeg)
            .map(|i| i.target.clone())
            .collect();
        for t in depegged {
            if let Some(i) = TOKENS.iter().position(|(x, _)| *x == t) {
                self.prices[i] = 0.95;
            }
        }
        let r = &mut self.rng;
        for i in 0..self.pools.len() {
            self.tvl[i] *= (0.01 * day_fraction.sqrt() * r.normal()).exp();
            self.turnover[i] = (self.turnover[i] * (0.05 * r.normal()).exp()).clamp(0.1, 3.0);
            self.emission[i] = (self.emission[i] * (0.03 * day_fraction.sqrt() * r.normal()).exp())
                .clamp(1.0, 150.0);
        }
        let drains: Vec<String> = self
            .active(index, IncidentKind::TvlDrain)
            .map(|i| i.target.clone())
            .collect();
        let spikes: Vec<String> = self
            .active(index, IncidentKind::AprSpike)
            .map(|i| i.target.clone())
            .collect();
        let drain_ticks = (3_600_000 / self.tick_ms).max(1) as f64;
        let listed = std::mem::take(&mut self.pools);
        let pools = listed
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (id, [a, b], stable, age_days) =
                    (p.id.clone(), p.tokens, &p.stable, &p.age_days);
                if drains.contains(&id) {
                    // Half the TVL leaves over the hour.
                    self.tvl[i] *= 0.5f64.powf(1.0 / drain_ticks);
                }
                let prices = [self.token_price(a), self.token_price(b)];
                let tvl = self.tvl[i];
                let reserves = [tvl / 2.0 / prices[0], tvl / 2.0 / prices[1]];
                let fee_rate = if *stable { 0.0001 } else { 0.003 };
                let regime_boost = if matches!(self.regime, Regime::Volatile) && !stable {
                    2.0
                } else {
                    1.0
                };
                let volume =
                    tvl * self.turnover[i] * regime_boost * if *stable { 4.0 } else { 1.0 };
                let emission = self.emission[i] * if spikes.contains(&id) { 5.0 } else { 1.0 };
                PoolSnapshot {
                    pool: id,
                    tokens: [a.to_string(), b.to_string()],
                    stable: *stable,
                    fee_rate,
                    prices_usd: prices,
                    reserves,
                    tvl_usd: tvl,
                    volume_24h_usd: volume,
                    fee_apr_pct: volume * fee_rate * 365.0 / tvl * 100.0,
                    emission_apr_pct: emission,
                    created_ms: self.start_ms.saturating_sub(age_days * DAY_MS),
                    price_gap_pct: 0.0,
                }
            })
            .collect();
        self.pools = listed;
        // Gas: log-normal noise around a slowly moving base, rare spikes, manipulation episodes.
        let r = &mut self.rng;
        self.gas = (self.gas * (0.05 * r.normal()).exp()).clamp(0.01, 0.5);
        let mut gas = self.gas * (0.1 * r.normal()).exp();
        if r.chance(0.002) {
            gas *= 4.0;
        }
        if self
            .active(index, IncidentKind::GasManipulation)
            .next()
            .is_some()
        {
            gas *= 40.0;
        }
        MarketTick {
            index,
            at_ms: self.start_ms + index * self.tick_ms,
            gas_gwei: gas,
            eth_usd: self.token_price("WETH"),
            pools,
        }
    }
}

impl MarketSource for Sim {
    fn tick(&mut self, index: u64) -> Result<MarketTick, MarketError> {
        if let Some(t) = self.last.as_ref().filter(|t| t.index == index) {
            return Ok(t.clone());
        }
        if index < self.next {
            return Err(MarketError::Behind {
                at: self.next,
                index,
            });
        }
        loop {
            let t = self.step();
            if t.index == index {
                self.last = Some(t.clone());
                return Ok(t);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_ticks_and_fast_forward_matches() {
        let mut a = Sim::new(7, 1_000, 300_000);
        let mut b = Sim::new(7, 1_000, 300_000);
        let ta: Vec<MarketTick> = (0..50).map(|i| a.tick(i).unwrap()).collect();
        assert_eq!(b.tick(49).unwrap(), ta[49]);
        assert_ne!(Sim::new(8, 1_000, 300_000).tick(10).unwrap(), ta[10]);
        assert!(a.tick(3).is_err(), "ticks go forward");
        assert_eq!(
            a.tick(49).unwrap(),
            ta[49],
            "the last tick can be asked again"
        );
        for t in &ta {
            for p in &t.pools {
                assert!(
                    p.tvl_usd > 0.0 && p.apr_pct() > 0.0 && p.fee_apr_pct.is_finite(),
                    "{p:?}"
                );
            }
        }
    }
}
