//! `athena backtest`, `athena status` and `athena sim record`. `status` asks the running
//! agent's API when there is one ([`super::remote`]), else reads the store (or `status.json`
//! when a running agent holds the store without an API); one function prints either.

use super::{now_ms, open_store, open_store_read_only, parse_days, remote};
use crate::agent::state::{AgentState, STATE_KEY};
use crate::agent::{STATUS_FILE, Status};
use crate::backtest;
use athena_config::Config;
use athena_storage::KeyedTable;
use clap::{Args, Subcommand};
use std::io::Write;
use std::num::NonZeroU64;
use std::path::PathBuf;

/// `athena backtest` arguments.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Days to simulate (1 to 3650).
    #[arg(long, value_parser = parse_days)]
    pub days: u64,
    /// Seed (overrides agent.seed).
    #[arg(long, conflicts_with = "seeds")]
    pub seed: Option<u64>,
    /// Several seeds, `A..B` with both ends included (at most 256): each runs in its own
    /// directory `seed-<S>` under the data directory, as many at once as there are cores, and
    /// one table compares them.
    #[arg(long, value_parser = parse_seeds, value_name = "A..B")]
    pub seeds: Option<std::ops::RangeInclusive<u64>>,
    /// Print the report as JSON (with `--seeds`, an array of reports).
    #[arg(long)]
    pub json: bool,
    /// Make the commits durable (fsync) every this many ticks and at the end; 1 is every
    /// tick. A run killed in between continues from the last durable tick, identically.
    #[arg(
        long,
        default_value_t = NonZeroU64::new(288).expect("not zero"),
        value_name = "TICKS",
        value_parser = parse_ticks
    )]
    pub durable_every: NonZeroU64,
    /// Do not drive the sync worker against counting sinks (faster; no cloud figures).
    #[arg(long)]
    pub no_sync: bool,
}

/// `athena sim` commands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Write the simulator's ticks to a JSONL file (the `replay` source reads it).
    Record {
        /// Days to record (1 to 3650).
        #[arg(long, value_parser = parse_days)]
        days: u64,
        /// Seed (overrides agent.seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Parses `--durable-every`: a count of ticks, at least 1.
fn parse_ticks(s: &str) -> Result<NonZeroU64, String> {
    match s.parse::<u64>() {
        Ok(n) => NonZeroU64::new(n).ok_or_else(|| "must be at least 1 (1: every tick)".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses `--seeds A..B` (both ends included, A ≤ B, at most [`MAX_SEEDS`] seeds).
fn parse_seeds(s: &str) -> Result<std::ops::RangeInclusive<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("expected A..B (e.g. 1..8), got {s:?}"))?;
    let number = |x: &str| {
        x.trim()
            .parse::<u64>()
            .map_err(|e| format!("{x:?} in {s:?}: {e}"))
    };
    let (a, b) = (number(a)?, number(b)?);
    if a > b {
        return Err(format!(
            "the first seed must not exceed the last, got {s:?}"
        ));
    }
    if b - a >= MAX_SEEDS {
        return Err(format!(
            "at most {MAX_SEEDS} seeds at once, got {}",
            b - a + 1
        ));
    }
    Ok(a..=b)
}

/// Most seeds one `--seeds` runs.
const MAX_SEEDS: u64 = 256;

pub(super) fn backtest(config: &Config, args: &BacktestArgs) -> anyhow::Result<()> {
    if let Some(seeds) = &args.seeds {
        return backtest_seeds(config, args, seeds.clone());
    }
    let mut config = config.clone();
    if let Some(seed) = args.seed {
        config.agent.seed = seed;
    }
    super::remote::require_stopped(&config, "athena backtest")?;
    let store = std::sync::Arc::new(open_store(&config)?);
    let mut last_pct = u64::MAX;
    let interactive = !args.json;
    let options = backtest::Options {
        durable_every: args.durable_every,
        count_sync: !args.no_sync,
    };
    let report = backtest::run_with(&config, &store, args.days, options, |t, total| {
        let pct = (t.tick + 1) * 100 / total.max(1);
        if interactive && pct != last_pct {
            last_pct = pct;
            let bar = "#".repeat((pct / 4) as usize);
            eprint!(
                "\r[{bar:<25}] {pct:>3}%  day {:>3}  equity ${:>10.2}  {}",
                (t.tick * config.agent.tick_interval.as_millis() as u64) / 86_400_000 + 1,
                t.equity_usd,
                t.trading_state.as_str()
            );
            let _ = std::io::stderr().flush();
        }
    })
    .map_err(|e| anyhow::Error::new(e).context("backtest"))?;
    if interactive {
        eprintln!();
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let r = &report;
    outln!(
        "backtest: {} days, seed {}, {} ticks in {:.2} s{}",
        r.days,
        r.seed,
        r.ticks_run,
        r.wall_secs,
        match r.ticks_before {
            0 => String::new(),
            n => format!(" (continued: the first {n} ticks were run by an earlier process)"),
        }
    );
    outln!(
        "equity: ${:.2} → ${:.2} (PnL ${:+.2}, realised ${:+.2}); max drawdown {:.2}%",
        r.start_equity_usd,
        r.end_equity_usd,
        r.pnl_usd,
        r.realised_pnl_usd,
        r.max_drawdown_pct
    );
    outln!(
        "trades: {} ({} decisions, {} positions open); fees ${:.2}, gas ${:.4}",
        r.trades,
        r.decisions,
        r.open_positions,
        r.fees_usd,
        r.gas_usd
    );
    if r.breaker_trips.is_empty() {
        outln!("breaker trips: none");
    }
    for (b, reasons) in &r.breaker_trips {
        outln!(
            "breaker {b}: {} trips; first: {}",
            reasons.len(),
            reasons[0]
        );
    }
    let rejections: Vec<String> = r
        .rejections
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    outln!(
        "risk rejections by rule: {}",
        if rejections.is_empty() {
            "none".into()
        } else {
            rejections.join(", ")
        }
    );
    let tiers: Vec<String> = r
        .memories_by_tier
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    outln!("memories: {}", tiers.join(", "));
    outln!("store: {:.1} MB", r.store_bytes as f64 / 1e6);
    if let Some(s) = r.sync.as_ref().filter(|_| r.ticks_run == 0) {
        outln!(
            "sync: the run had already ended; this process sent {} document writes and {} object puts (the final book snapshot)",
            s.documents.writes,
            s.objects.puts
        );
    } else if let Some(s) = &r.sync {
        let scope = match r.ticks_before {
            0 => String::new(),
            _ => format!(", this process's {} ticks only", r.ticks_run),
        };
        outln!(
            "sync (the real worker against counting sinks, a flush every {} of agent time{scope}): {} document writes in {} requests to {} documents, {} object puts ({} KB); the naive path: {} document writes and {} object operations, one per change",
            humantime::format_duration(config.sync.flush_interval),
            s.documents.writes,
            s.documents.requests,
            s.documents.keys,
            s.objects.puts,
            s.objects.bytes / 1000,
            s.naive.documents,
            s.naive.objects,
        );
        let days =
            (r.ticks_run as f64 * config.agent.tick_interval.as_secs_f64() / 86_400.0).max(1e-9);
        outln!(
            "cloud bill at list prices: ${:.5} a day sent (${:.5} naive); {:.1}% fewer document writes ({:.0} a day, naive {:.0})",
            s.sent_usd / days,
            s.naive_usd / days,
            s.fewer_document_writes_pct(),
            s.documents.writes as f64 / days,
            s.naive.documents as f64 / days,
        );
    }
    if let Some(l) = &r.llm {
        let m = &l.model;
        outln!(
            "llm advisor: {} questions (one model call each without the layers); {} answered without the model (templates {}, exact cache {}, slot cache {}); {} answered by the model in {} calls ({} batched, {} batch replies asked again one by one); {} left to the rules ({} timeouts, {} failed or refused calls); {} vetoes",
            l.questions,
            l.template.hits + l.exact.hits + l.slot.hits,
            l.template.hits,
            l.exact.hits,
            l.slot.hits,
            m.answers,
            m.calls,
            m.batched_calls,
            m.batch_fallbacks,
            l.unanswered,
            m.timeouts,
            m.failures,
            l.vetoes,
        );
        outln!(
            "llm cost: {} prompt and {} reply tokens, ${:.4} spent, ${:.4} saved by the layers; time in the advisor {:.1} ms a tick on average, {:.0} ms at most",
            m.prompt_tokens,
            m.reply_tokens,
            m.usd_spent,
            l.exact.usd_saved + l.slot.usd_saved + l.compression.usd_saved + l.batching.usd_saved,
            r.advise_ms_per_tick,
            r.advise_ms_max,
        );
    }
    Ok(())
}

pub(super) fn status(config: &Config, json: bool) -> anyhow::Result<()> {
    let fetched = match remote::call(config, |a| a.get::<Status>("/status", &[]))? {
        Some(status) => Some((status, true)),
        None => status_local(config)?,
    };
    match fetched {
        Some((status, live)) => print_status(&status, live, json),
        None => {
            outln!("no agent run in {} yet", config.agent.data_dir.display());
            Ok(())
        }
    }
}

/// The status from the store, or from `status.json` when a running agent holds the store
/// (its API off or not answering); `None` before the first run.
fn status_local(config: &Config) -> anyhow::Result<Option<(Status, bool)>> {
    let dir = &config.agent.data_dir;
    match athena_storage::Store::open_read_only(dir, &config.memory) {
        Err(athena_storage::StoreError::Refused { reason, .. })
            if reason == athena_storage::ALREADY_OPEN =>
        {
            // The agent is running and holds the store: read what it publishes each tick.
            let path = dir.join(STATUS_FILE);
            let bytes = std::fs::read(&path).map_err(|e| {
                anyhow::anyhow!(
                    "the agent is running but publishes no status ({}: {e}); its store may be \
                     unwritable: see its output",
                    path.display()
                )
            })?;
            Ok(Some((serde_json::from_slice::<Status>(&bytes)?, true)))
        }
        _ => {
            let store = open_store_read_only(config)?;
            let state: Option<AgentState> = store.read(|r| r.get(KeyedTable::Agent, STATE_KEY))?;
            let Some(state) = state else {
                return Ok(None);
            };
            let risk = crate::risk::persist::load_or_default(&store)?;
            let mut status = Status::of(&state, &risk, config);
            status.last_recovery = crate::recovery::last(&store)?;
            Ok(Some((status, false)))
        }
    }
}

fn print_status(status: &Status, live: bool, json: bool) -> anyhow::Result<()> {
    let now = now_ms();
    // A running agent republishes every tick: a file past its due time is not live data.
    let stale = live && status.stale_after_wall_ms > 0 && now > status.stale_after_wall_ms;
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "running": live, "stale": stale, "status": status })
            )?
        );
        return Ok(());
    }
    let s = status;
    outln!(
        "trading state: {}{}",
        s.trading_state.as_str(),
        match (live, stale) {
            (true, false) => " (agent running)".to_string(),
            (true, true) => format!(
                " (STALE: the running agent last published its status {} ago and is overdue; \
                 see its output)",
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(s.published_wall_ms) / 1000
                ))
            ),
            (false, _) => String::new(),
        }
    );
    outln!(
        "last tick: #{} at agent time {} ({} ago on the wall clock)",
        s.last_tick,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(s.last_tick_ms)
        ),
        humantime::format_duration(std::time::Duration::from_secs(
            now.saturating_sub(s.last_tick_ms) / 1000
        ))
    );
    if s.last_tick_ms < s.observation_end_ms {
        outln!(
            "observing: {} of agent time left",
            humantime::format_duration(std::time::Duration::from_secs(
                (s.observation_end_ms - s.last_tick_ms) / 1000
            ))
        );
    }
    outln!(
        "equity ${:.2}: cash ${:.2} + {} positions",
        s.equity_usd,
        s.cash_usd,
        s.positions.len()
    );
    for p in &s.positions {
        outln!(
            "  {:<8} {:<11} ${:>10.2}  rewards ${:>7.2}  entry APR {:.1}%",
            p.id,
            p.pool,
            p.value_usd,
            p.rewards_usd,
            p.entry_apr_pct
        );
    }
    outln!(
        "breakers tripped: {}",
        if s.tripped.is_empty() {
            "none".into()
        } else {
            s.tripped.join(", ")
        }
    );
    let t = &s.totals;
    outln!(
        "trades {}, fees ${:.2}, gas ${:.4}, realised PnL ${:+.2}, max drawdown {:.2}%",
        t.trades,
        t.fees_paid_usd,
        t.gas_paid_usd,
        t.realised_pnl_usd,
        t.max_drawdown_pct
    );
    match &s.last_recovery {
        None => outln!("last recovery: none"),
        Some(r) => {
            outln!(
                "last recovery: {} ago, {:.1} ms: {}",
                humantime::format_duration(std::time::Duration::from_secs(
                    now.saturating_sub(r.wall_ms) / 1000
                )),
                r.total_ms,
                r.cause
            );
            for step in &r.steps {
                outln!("  {:<28} {:>9.1} ms  {}", step.name, step.ms, step.detail);
            }
        }
    }
    Ok(())
}

pub(super) fn sim(config: &Config, cmd: &SimCommand) -> anyhow::Result<()> {
    let SimCommand::Record { days, seed, out } = cmd;
    let tick_ms = config.agent.tick_interval.as_millis().max(1) as u64;
    let mut sim = crate::market::sim::Sim::with_pools(
        seed.unwrap_or(config.agent.seed),
        backtest::BACKTEST_START_MS,
        tick_ms,
        config.market.sim_pools as usize,
    );
    let ticks = days * 86_400_000 / tick_ms;
    let bytes = crate::market::replay::record(&mut sim, ticks, out)?;
    outln!(
        "wrote {ticks} ticks ({:.1} MB) to {}",
        bytes as f64 / 1e6,
        out.display()
    );
    Ok(())
}

/// `athena backtest --seeds A..B`: every seed in its own directory under the data directory,
/// on as many threads as there are cores, then one comparative table (or a JSON array).
fn backtest_seeds(
    config: &Config,
    args: &BacktestArgs,
    seeds: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<()> {
    super::remote::require_stopped(config, "athena backtest")?;
    let seeds: Vec<u64> = seeds.collect();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(seeds.len());
    if !args.json {
        eprintln!(
            "backtest: {} seeds of {} days on {workers} threads",
            seeds.len(),
            args.days
        );
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<(u64, anyhow::Result<backtest::Report>)>> =
        std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else { break };
                    let result = backtest_one_seed(config, args, seed);
                    results.lock().expect("results lock").push((seed, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock");
    results.sort_by_key(|(seed, _)| *seed);
    let mut reports = Vec::new();
    for (seed, result) in results {
        reports.push(result.map_err(|e| e.context(format!("backtest of seed {seed}")))?);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print_seed_table(&reports)?;
    }
    Ok(())
}

/// One seed's run in `<data dir>/seed-<seed>`.
fn backtest_one_seed(
    config: &Config,
    args: &BacktestArgs,
    seed: u64,
) -> anyhow::Result<backtest::Report> {
    let mut config = config.clone();
    config.agent.seed = seed;
    config.agent.data_dir = config.agent.data_dir.join(format!("seed-{seed}"));
    std::fs::create_dir_all(&config.agent.data_dir)?;
    let store = std::sync::Arc::new(open_store(&config)?);
    let options = backtest::Options {
        durable_every: args.durable_every,
        count_sync: !args.no_sync,
    };
    Ok(backtest::run_with(
        &config,
        &store,
        args.days,
        options,
        |_, _| {},
    )?)
}

fn print_seed_table(reports: &[backtest::Report]) -> anyhow::Result<()> {
    outln!(
        "{:>8} {:>12} {:>10} {:>7} {:>14} {:>12} {:>8}",
        "seed",
        "PnL $",
        "max DD %",
        "trades",
        "breaker trips",
        "cost $",
        "wall s"
    );
    for r in reports {
        let trips: usize = r.breaker_trips.values().map(Vec::len).sum();
        outln!(
            "{:>8} {:>12.2} {:>10.2} {:>7} {:>14} {:>12.2} {:>8.2}",
            r.seed,
            r.pnl_usd,
            r.max_drawdown_pct,
            r.trades,
            trips,
            r.fees_usd + r.gas_usd,
            r.wall_secs
        );
    }
    let n = reports.len().max(1) as f64;
    let mean = |f: fn(&backtest::Report) -> f64| reports.iter().map(f).sum::<f64>() / n;
    outln!(
        "{:>8} {:>12.2} {:>10.2} {:>7.1} {:>14.1} {:>12.2}",
        "mean",
        mean(|r| r.pnl_usd),
        mean(|r| r.max_drawdown_pct),
        mean(|r| r.trades as f64),
        mean(|r| r.breaker_trips.values().map(Vec::len).sum::<usize>() as f64),
        mean(|r| r.fees_usd + r.gas_usd)
    );
    let worst = reports
        .iter()
        .max_by(|a, b| a.max_drawdown_pct.total_cmp(&b.max_drawdown_pct));
    if let Some(w) = worst {
        outln!(
            "worst drawdown: seed {} ({:.2}%); cost is swap fees plus gas",
            w.seed,
            w.max_drawdown_pct
        );
    }
    Ok(())
}
