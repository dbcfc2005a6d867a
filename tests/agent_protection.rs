//! Protective closes do not churn (SPEC.md §1 "Close"): replays written here, run as backtests,
//! counting trades. After a TVL drain, a depeg or a risk reduce the pool is not re-entered for
//! `strategy.reentry_cooldown` nor while its condition holds; a drain is measured against the
//! last TVL seen before a data gap; a run stopped and continued ends like an uninterrupted one.

use athena::agent::state::LedgerEntry;
use athena::agent::strategy::Intent;
use athena::backtest;
use athena::market::{MarketTick, PoolSnapshot};
use athena_storage::{SeqTable, Store};
use std::path::Path;

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const TICK_MS: u64 = 300_000;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

/// A pool of the replay: old (no new-pool cap), its own tokens (no correlation), TVL
/// `tvl`, emission APR `apr` (fees small), its second token at `price`.
fn pool(name: &str, stable: bool, tvl: f64, apr: f64, price: f64) -> PoolSnapshot {
    let (a, b) = name.split_once('/').unwrap();
    let prices = [1.0, price];
    let fee_rate = if stable { 0.0001 } else { 0.003 };
    let volume = tvl * 0.1;
    PoolSnapshot {
        pool: name.into(),
        tokens: [a.into(), b.into()],
        stable,
        fee_rate,
        prices_usd: prices,
        reserves: [tvl / 2.0 / prices[0], tvl / 2.0 / prices[1]],
        tvl_usd: tvl,
        volume_24h_usd: volume,
        fee_apr_pct: volume * fee_rate * 365.0 / tvl * 100.0,
        emission_apr_pct: apr,
        created_ms: T0 - 400 * DAY_MS,
        price_gap_pct: 0.0,
    }
}

/// What the market looks like `i` ticks into the run, given what changes.
type Scene = fn(u64) -> Vec<PoolSnapshot>;

/// Three pools worth opening: A/B (the one that gets hurt), C/D, E/F.
fn calm(i: u64) -> Vec<PoolSnapshot> {
    let _ = i;
    vec![
        pool("A/B", false, 2_000_000.0, 60.0, 1.0),
        pool("C/D", false, 2_000_000.0, 40.0, 1.0),
        pool("E/F", false, 2_000_000.0, 30.0, 1.0),
    ]
}

/// Writes a replay of `days` days of `scene` to `dir/market.jsonl`.
fn write_replay(dir: &Path, days: u64, scene: Scene) -> std::path::PathBuf {
    let path = dir.join("market.jsonl");
    let mut text = String::new();
    for i in 0..days * DAY_MS / TICK_MS {
        let t = MarketTick {
            index: i,
            at_ms: T0 + i * TICK_MS,
            gas_gwei: 0.05,
            eth_usd: 3_000.0,
            pools: scene(i),
        };
        text.push_str(&serde_json::to_string(&t).unwrap());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn config(data: &Path, replay: &Path) -> athena_config::Config {
    let mut c = athena_config::Config::default();
    c.agent.data_dir = data.to_path_buf();
    c.agent.observation_period = std::time::Duration::from_secs(3600);
    c.market.source = athena_config::MarketSource::Replay;
    c.market.replay_path = replay.to_path_buf();
    c
}

struct Run {
    ledger: Vec<LedgerEntry>,
    decisions: Vec<athena::journal::DecisionRecord>,
}

impl Run {
    fn trades(&self) -> usize {
        self.ledger.len()
    }

    fn of(&self, pool: &str, action: &str) -> Vec<u64> {
        self.ledger
            .iter()
            .filter(|e| e.pool == pool && e.action == action)
            .map(|e| e.at_ms)
            .collect()
    }

    fn close_reason(&self, at_ms: u64) -> String {
        self.decisions
            .iter()
            .find_map(|d| match &d.intent {
                Intent::Close { reason, .. } if d.at_ms == at_ms => Some(reason.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }
}

/// Backtests `days` days of `scene` (in one go, or stopped after each day in `stops` and
/// continued from the data directory).
fn run(days: u64, scene: Scene, stops: &[u64]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let replay = write_replay(dir.path(), days, scene);
    let data = dir.path().join("data");
    let config = config(&data, &replay);
    for d in stops.iter().copied().chain([days]) {
        let store = Store::open(&data, &config.memory).unwrap();
        backtest::run(&config, &store, d, |_, _| {}).unwrap();
    }
    let store = Store::open(&data, &config.memory).unwrap();
    let ledger = store
        .read(|r| r.seq_after::<LedgerEntry>(SeqTable::Ledger, 0, usize::MAX))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let decisions = backtest::decisions(&store).unwrap();
    Run { ledger, decisions }
}

/// Hour 6: A/B's TVL halves within the hour and stays down.
fn drain(i: u64) -> Vec<PoolSnapshot> {
    let mut pools = calm(i);
    let t = i * TICK_MS;
    let left = if t < 6 * HOUR_MS {
        1.0
    } else {
        0.5f64.powf(((t - 6 * HOUR_MS) as f64 / HOUR_MS as f64).min(1.0))
    };
    pools[0] = pool("A/B", false, 2_000_000.0 * left, 60.0, 1.0);
    pools
}

#[test]
fn a_drained_pool_that_stays_down_is_closed_once_and_never_reentered() {
    let r = run(2, drain, &[]);
    let closes = r.of("A/B", "close");
    assert_eq!(closes.len(), 1, "{:#?}", r.ledger);
    assert!(r.close_reason(closes[0]).contains("TVL drain"));
    assert_eq!(
        r.of("A/B", "open").len(),
        1,
        "re-entered while its TVL is still down, past the cooldown too: {:#?}",
        r.ledger
    );
    // Three opens and the one close.
    assert_eq!(r.trades(), 4, "{:#?}", r.ledger);
}

/// Hours 6 to 12: the stable pool's second token trades at $0.95, then back at $1.
fn depeg(i: u64) -> Vec<PoolSnapshot> {
    let t = i * TICK_MS;
    let price = if (6 * HOUR_MS..12 * HOUR_MS).contains(&t) {
        0.95
    } else {
        1.0
    };
    let mut pools = calm(i);
    pools[0] = pool("USDC/DAI", true, 3_000_000.0, 60.0, price);
    pools
}

#[test]
fn a_six_hour_depeg_closes_once_and_the_pool_waits_out_the_cooldown() {
    let r = run(2, depeg, &[]);
    let closes = r.of("USDC/DAI", "close");
    assert_eq!(closes.len(), 1, "{:#?}", r.ledger);
    assert_eq!(closes[0], T0 + 6 * HOUR_MS, "closed when the depeg starts");
    assert!(r.close_reason(closes[0]).contains("depeg"));
    let opens = r.of("USDC/DAI", "open");
    assert_eq!(opens.len(), 2, "{:#?}", r.ledger);
    assert_eq!(
        opens[1],
        closes[0] + DAY_MS,
        "re-entered when the 24 h cooldown ends (the peg is back by then)"
    );
    assert_eq!(r.trades(), 5, "{:#?}", r.ledger);
}

/// A/B is missing from hour 6 to hour 9 (longer than the 1 h drain window) and returns at
/// half its TVL.
fn gap(i: u64) -> Vec<PoolSnapshot> {
    let t = i * TICK_MS;
    let mut pools = calm(i);
    if (6 * HOUR_MS..9 * HOUR_MS).contains(&t) {
        pools.remove(0);
    } else if t >= 9 * HOUR_MS {
        pools[0] = pool("A/B", false, 1_000_000.0, 60.0, 1.0);
    }
    pools
}

#[test]
fn a_pool_back_from_a_gap_at_half_its_tvl_is_closed_when_it_returns() {
    let r = run(1, gap, &[]);
    let closes = r.of("A/B", "close");
    assert_eq!(closes, vec![T0 + 9 * HOUR_MS], "{:#?}", r.ledger);
    let reason = r.close_reason(closes[0]);
    assert!(
        reason.contains("TVL drain 50.0% since the last reading before a data gap of 3h 5m"),
        "{reason}"
    );
    assert_eq!(r.of("A/B", "open").len(), 1, "{:#?}", r.ledger);
    assert_eq!(r.trades(), 4, "{:#?}", r.ledger);
}

#[test]
fn a_run_stopped_during_a_cooldown_ends_like_an_uninterrupted_one() {
    for scene in [drain as Scene, depeg] {
        let whole = run(2, scene, &[]);
        let stopped = run(2, scene, &[1]);
        assert_eq!(stopped.ledger, whole.ledger);
        assert_eq!(stopped.decisions, whole.decisions);
    }
}
