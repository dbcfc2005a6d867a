//! `athena risk status|reset|stop|resume|override`: the risk engine's state from the store, and
//! the operator controls, each journaled with its reason in one store transaction.
//!
//! With an agent running (its `api.json` names a live process) every command goes through its
//! HTTP API ([`super::remote`]); otherwise through the store (redb allows one writer process).
//! Either way the same functions print the same data.

use super::{Exit, open_store, open_store_read_only, parse_duration_arg, remote};
use crate::api::RiskStatus;
use crate::control::Applied;
use crate::risk::controls::Refused;
use crate::risk::persist;
use crate::risk::{
    BreakerKind, Limit, RiskEngine, RiskEvent, RiskJournal, RiskState, TradingState,
};
use athena_config::Config;
use clap::Subcommand;
use serde_json::json;

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

/// What a control did, from the store or from the agent's answer.
struct ControlOutcome {
    /// The journaled events.
    events: Vec<RiskEvent>,
    /// The trading state after it.
    trading_state: TradingState,
    /// Intents waiting in the store (known on the local path only).
    pending_intents: Option<usize>,
}

pub(super) fn run(config: &Config, cmd: &RiskCommand) -> anyhow::Result<()> {
    let now = super::agent_now_ms(config);
    match cmd {
        RiskCommand::Status { json } => {
            let state = match remote::call(config, |a| a.get::<RiskStatus>("/risk/status", &[]))? {
                Some(r) => r.state,
                None => persist::load_or_default(&open_store_read_only(config)?)?,
            };
            if *json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&status_json(&state, now))?
                );
                return Ok(());
            }
            print_status(config, &state, now)
        }
        RiskCommand::Reset { breaker, reason } => {
            let kind = BreakerKind::parse(breaker).map_err(Exit::usage)?;
            let path = format!("/risk/circuit-breakers/{}/reset", kind.as_str());
            let outcome = control(config, &path, json!({ "reason": reason }), &|e, s| {
                e.reset(s, kind, reason, now)
            })?;
            print_control(&outcome, false)
        }
        RiskCommand::Stop { reason } => {
            let outcome = control(
                config,
                "/emergency/stop",
                json!({ "reason": reason }),
                &|e, s| e.stop(s, reason, now),
            )?;
            print_control(&outcome, true)
        }
        RiskCommand::Resume { reason } => {
            let outcome = control(
                config,
                "/emergency/resume",
                json!({ "reason": reason }),
                &|e, s| e.resume(s, reason, now),
            )?;
            print_control(&outcome, false)
        }
        RiskCommand::Override {
            limit,
            value,
            for_,
            reason,
        } => {
            let parsed = Limit::parse(limit).map_err(Exit::usage)?;
            let for_ms = for_.as_millis() as u64;
            let body = json!({
                "limit": parsed.key(),
                "value": value,
                "for": humantime::format_duration(*for_).to_string(),
                "reason": reason,
            });
            let outcome = control(config, "/risk/override", body, &|e, s| {
                e.override_limit(s, parsed, *value, for_ms, reason, now)
            })?;
            print_control(&outcome, false)
        }
    }
}

type Apply<'a> = dyn Fn(&RiskEngine, &mut RiskState) -> Result<Vec<RiskJournal>, Refused> + 'a;

/// Applies a control through the running agent (`path` with `body`), or to the store.
fn control(
    config: &Config,
    path: &str,
    body: serde_json::Value,
    apply: &Apply<'_>,
) -> anyhow::Result<ControlOutcome> {
    match remote::call(config, |a| a.post::<Applied>(path, Some(body)))? {
        Some(applied) => Ok(ControlOutcome {
            events: applied.events,
            trading_state: applied.trading_state,
            pending_intents: None,
        }),
        None => control_local(config, apply),
    }
}

/// A control on the store: tried first on a read-only snapshot, so a refused one (bad reason,
/// limit, duration) never opens the store for writing; then applied for real.
fn control_local(config: &Config, apply: &Apply<'_>) -> anyhow::Result<ControlOutcome> {
    let now = super::agent_now_ms(config);
    let e = engine(config);
    {
        let store = open_store_read_only(config)?;
        apply(&e, &mut persist::load_or_default(&store)?).map_err(Exit::usage)?;
    }
    let store = open_store(config)?;
    let mut state = persist::load_or_default(&store)?;
    let journal = apply(&e, &mut state).map_err(Exit::usage)?;
    store.write(|w| persist::save(w, &state, &journal, now))?;
    let pending_intents = store
        .read(|r| r.all::<crate::chain::send::Intent>(athena_storage::KeyedTable::Intents))?
        .len();
    Ok(ControlOutcome {
        events: journal.into_iter().map(|j| j.event).collect(),
        trading_state: state.computed_state(now),
        pending_intents: Some(pending_intents),
    })
}

fn print_control(outcome: &ControlOutcome, stop: bool) -> anyhow::Result<()> {
    for event in &outcome.events {
        outln!("{}", serde_json::to_string(event)?);
    }
    outln!("trading state: {}", outcome.trading_state.as_str());
    if stop {
        let pending = outcome.pending_intents.map_or_else(
            || "not known through the API".to_string(),
            |n| n.to_string(),
        );
        outln!(
            "pending intents in the store: {pending}; the halt sends no new transaction; one already sent is settled (mined or dropped), not cancelled"
        );
    }
    Ok(())
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
