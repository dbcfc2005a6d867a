//! `athena risk status|reset|stop|resume|override`: the risk engine's state from the store, and
//! the operator controls, each journaled with its reason in one store transaction.
//!
//! The controls write the store, so they need the agent stopped (redb allows one writer
//! process); the HTTP API of a later issue calls the same library functions while it runs.

use super::{Exit, now_ms, open_store, open_store_read_only, parse_duration_arg};
use crate::risk::persist;
use crate::risk::{BreakerKind, Limit, RiskEngine, RiskJournal, RiskState};
use athena_config::Config;
use clap::Subcommand;

/// Risk commands.
#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Trading state, breakers (state, trips, last trip), overrides, today's gas spending.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Reset a breaker (the only way to clear memory_corruption and position_mismatch).
    Reset {
        /// Breaker name, e.g. memory_corruption.
        breaker: String,
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
    /// Halt trading: no entries until `athena risk resume`; exits still go through.
    Stop {
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
    /// Lift an operator stop (and a hold kept at restart); tripped breakers keep their effect.
    Resume {
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
    /// Change one limit for a bounded time (at most 24 h); it expires by itself.
    Override {
        /// Limit key, e.g. risk.max_position_fraction.
        limit: String,
        /// Its value while the override lasts.
        value: f64,
        /// How long, e.g. 2h (at most 24h).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration_arg)]
        for_: std::time::Duration,
        /// Why (journaled).
        #[arg(long)]
        reason: String,
    },
}

fn engine(config: &Config) -> RiskEngine {
    RiskEngine::new(config.risk.clone(), config.gas.clone())
}

pub(super) fn run(config: &Config, cmd: &RiskCommand) -> anyhow::Result<()> {
    let now = now_ms();
    let refused = |e: crate::risk::controls::Refused| Exit::usage(e);
    // A control is tried first on a read-only snapshot, so a refused one (bad reason, limit,
    // duration) never opens the store for writing; then applied for real.
    let control = |f: &dyn Fn(&RiskEngine, &mut RiskState) -> anyhow::Result<Vec<RiskJournal>>| -> anyhow::Result<()> {
        let e = engine(config);
        {
            let store = open_store_read_only(config)?;
            f(&e, &mut persist::load_or_default(&store)?)?;
        }
        let store = open_store(config)?;
        let mut state = persist::load_or_default(&store)?;
        let journal = f(&e, &mut state)?;
        store.write(|w| persist::save(w, &state, &journal, now))?;
        for j in &journal {
            outln!("{}", serde_json::to_string(&j.event)?);
        }
        outln!("trading state: {}", state.computed_state(now).as_str());
        Ok(())
    };
    match cmd {
        RiskCommand::Status { json } => {
            let store = open_store_read_only(config)?;
            let state = persist::load_or_default(&store)?;
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&status_json(&state, now))?
                );
            } else {
                print_status(config, &state, now)?;
            }
            Ok(())
        }
        RiskCommand::Reset { breaker, reason } => {
            let kind = BreakerKind::parse(breaker).map_err(Exit::usage)?;
            control(&|e, s| Ok(e.reset(s, kind, reason, now).map_err(refused)?))
        }
        RiskCommand::Stop { reason } => {
            control(&|e, s| Ok(e.stop(s, reason, now).map_err(refused)?))?;
            let store = open_store_read_only(config)?;
            let pending = store
                .read(|r| r.all::<serde_json::Value>(athena_storage::KeyedTable::Intents))?
                .len();
            outln!(
                "pending intents in the store: {pending}; the halt stops new ones (cancelling sent ones is the chain executor's job, not built yet)"
            );
            Ok(())
        }
        RiskCommand::Resume { reason } => {
            control(&|e, s| Ok(e.resume(s, reason, now).map_err(refused)?))
        }
        RiskCommand::Override {
            limit,
            value,
            for_,
            reason,
        } => {
            let limit = Limit::parse(limit).map_err(Exit::usage)?;
            let for_ms = for_.as_millis() as u64;
            control(&|e, s| {
                Ok(e.override_limit(s, limit, *value, for_ms, reason, now)
                    .map_err(refused)?)
            })
        }
    }
}

fn status_json(state: &RiskState, now: u64) -> serde_json::Value {
    serde_json::json!({
        "trading_state": state.computed_state(now).as_str(),
        "operator_stop": state.operator_stop,
        "restart_hold": state.restart_hold,
        "breakers": state.breakers.iter().map(|b| serde_json::json!({
            "name": b.kind.as_str(),
            "tripped": b.is_tripped(now),
            "trip_count": b.trip_count,
            "last_trip": b.last_trip,
        })).collect::<Vec<_>>(),
        "overrides": state.overrides.iter().filter(|o| now < o.until_ms).collect::<Vec<_>>(),
        "gas_spent_today_usd": state.gas_budget.spent_on(now),
        "llm_allowed": state.llm_allowed(now),
    })
}

fn print_status(config: &Config, state: &RiskState, now: u64) -> anyhow::Result<()> {
    let ago = |ms: u64| {
        humantime::format_duration(std::time::Duration::from_secs(
            now.saturating_sub(ms) / 1000,
        ))
    };
    outln!("trading state: {}", state.computed_state(now).as_str());
    if let Some(s) = &state.operator_stop {
        outln!("operator stop: {} ({} ago)", s.reason, ago(s.at_ms));
    }
    if let Some(h) = state.restart_hold {
        outln!(
            "held at restart: {} (athena risk resume releases it)",
            h.as_str()
        );
    }
    outln!("breakers:");
    for b in &state.breakers {
        let status = match &b.tripped {
            Some(t) if b.is_tripped(now) => match t.until_ms {
                Some(u) => format!(
                    "TRIPPED until {} from now",
                    humantime::format_duration(std::time::Duration::from_secs(
                        u.saturating_sub(now) / 1000
                    ))
                ),
                None => "TRIPPED (latched: athena risk reset)".to_string(),
            },
            _ => "armed".to_string(),
        };
        let last = b.last_trip.as_ref().map_or(String::new(), |t| {
            format!("; last trip {} ago: {}", ago(t.at_ms), t.reason)
        });
        outln!(
            "  {:<19} {status}; trips {}{last}",
            b.kind.as_str(),
            b.trip_count
        );
    }
    for o in state.overrides.iter().filter(|o| now < o.until_ms) {
        outln!(
            "override: {} = {} for {} more ({})",
            o.limit.key(),
            o.value,
            humantime::format_duration(std::time::Duration::from_secs((o.until_ms - now) / 1000)),
            o.reason
        );
    }
    outln!(
        "gas spent today: ${:.2} of ${:.2}",
        state.gas_budget.spent_on(now),
        config.gas.daily_budget_usd
    );
    if !state.llm_allowed(now) {
        outln!("LLM advisor off (llm_timeout): rule-based decisions only");
    }
    Ok(())
}
