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
use std::path::PathBuf;

/// `athena backtest` arguments.
#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Days to simulate (1 to 3650).
    #[arg(long, value_parser = parse_days)]
    pub days: u64,
    /// Seed (overrides agent.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
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

pub(super) fn backtest(config: &Config, args: &BacktestArgs) -> anyhow::Result<()> {
    let mut config = config.clone();
    if let Some(seed) = args.seed {
        config.agent.seed = seed;
    }
    super::remote::require_stopped(&config, "athena backtest")?;
    let store = open_store(&config)?;
    let mut last_pct = u64::MAX;
    let interactive = !args.json;
    let report = backtest::run(&config, &store, args.days, |t, total| {
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
        "backtest: {} days, seed {}, {} ticks in {:.2} s",
        r.days,
        r.seed,
        r.ticks_run,
        r.wall_secs
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
    outln!(
        "store: {:.1} MB; sync: {} outbox rows (the naive path's remote writes) → {} writes coalesced per {} flush",
        r.store_bytes as f64 / 1e6,
        r.naive_remote_writes,
        r.coalesced_remote_writes,
        humantime::format_duration(config.sync.flush_interval)
    );
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
    let mut sim = crate::market::sim::Sim::new(
        seed.unwrap_or(config.agent.seed),
        backtest::BACKTEST_START_MS,
        tick_ms,
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
