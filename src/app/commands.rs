//! Operator commands applied by the agent loop between ticks ([`crate::control`]): each in its
//! own store transaction with its journal entry, answered after the commit.
//!
//! A risk control (stop, resume, reset, override, exit-all) changes the agent in memory only
//! when its commit succeeds. A maintenance command (checkpoint, sync flush, prune) does its
//! work, then journals what came of it. A command the store cannot take is answered with the
//! error; when the store needs a reopen, the loop ends the session after answering.

use crate::agent::Agent;
use crate::control::{Applied, Command, Rejected, Request};
use crate::journal::{JournalRecord, Operation, OperatorRecord};
use crate::live::Shared;
use crate::risk::{RiskJournal, controls::Refused};
use athena_config::Config;
use athena_storage::{CorruptRecord, SeqTable, Store, StoreError};
use std::sync::Arc;

/// What the loop needs to apply a command.
pub(super) struct Context<'a> {
    pub store: &'a Arc<Store>,
    pub config: &'a Config,
    pub shared: &'a Arc<Shared>,
    /// Agent time now.
    pub now_ms: u64,
}

/// What applying a command left for the loop.
pub(super) struct Outcome {
    /// The agent (changed only by a committed control).
    pub agent: Agent,
    /// The store failed in a way that needs a reopen.
    pub store_failed: Option<StoreError>,
    /// Corrupt records a pruning pass skipped (the loop reports them).
    pub corrupt: Vec<CorruptRecord>,
}

/// Applies `request` to `agent` and answers it. Runs the store work on a blocking thread.
pub(super) async fn apply(agent: Agent, request: Request, cx: Context<'_>) -> Outcome {
    let Request {
        command,
        received,
        reply,
    } = request;
    let name = command.name();
    if command == Command::Checkpoint
        && let Err(wait) = cx.shared.claim_checkpoint()
    {
        let _ = reply.send(Err(Rejected::TooSoon(format!(
            "a checkpoint was taken on demand less than {}s ago; the next one in {}s",
            crate::control::MIN_CHECKPOINT_GAP.as_secs(),
            wait.as_secs() + 1
        ))));
        cx.shared
            .record_command(name, "refused", received.elapsed().as_secs_f64());
        return Outcome {
            agent,
            store_failed: None,
            corrupt: Vec::new(),
        };
    }
    let (store, config, shared, now) = (
        cx.store.clone(),
        cx.config.clone(),
        cx.shared.clone(),
        cx.now_ms,
    );
    let (agent, result, corrupt) = tokio::task::spawn_blocking(move || {
        let mut agent = agent;
        let mut corrupt = Vec::new();
        let result = run(
            &mut agent,
            &store,
            &config,
            &shared,
            now,
            command,
            &mut corrupt,
        );
        (agent, result, corrupt)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    let (answer, store_failed) = match result {
        Ok(Ok(applied)) => (Ok(applied), None),
        Ok(Err(refused)) => (Err(Rejected::Refused(refused.0)), None),
        Err(e) => {
            let answer = Err(Rejected::Store(athena_sync::one_line(&e)));
            (answer, e.needs_reopen().then_some(e))
        }
    };
    let outcome = if answer.is_ok() { "applied" } else { "refused" };
    tracing::info!(
        command = name,
        outcome,
        micros = received.elapsed().as_micros() as u64,
        "operator command"
    );
    if let Ok(applied) = &answer {
        println!("athena: operator {name}: {}", applied.message);
    }
    cx.shared
        .record_command(name, outcome, received.elapsed().as_secs_f64());
    // The caller may have given up waiting; the command is applied either way.
    let _ = reply.send(answer);
    Outcome {
        agent,
        store_failed,
        corrupt,
    }
}

type Result<T> = std::result::Result<std::result::Result<T, Refused>, StoreError>;

fn run(
    agent: &mut Agent,
    store: &Store,
    config: &Config,
    shared: &Shared,
    now: u64,
    command: Command,
    corrupt: &mut Vec<CorruptRecord>,
) -> Result<Applied> {
    let name = command.name();
    let control = |agent: &mut Agent, journal: Result<Vec<RiskJournal>>| -> Result<Applied> {
        Ok(journal?.map(|journal| risk_applied(name, agent, &journal, now)))
    };
    match command {
        Command::Stop { reason } => {
            let j = agent.control(store, now, |e, s| e.stop(s, &reason, now));
            control(agent, j)
        }
        Command::Resume { reason } => {
            let j = agent.control(store, now, |e, s| e.resume(s, &reason, now));
            control(agent, j)
        }
        Command::ResetBreaker { breaker, reason } => {
            let j = agent.control(store, now, |e, s| e.reset(s, breaker, &reason, now));
            control(agent, j)
        }
        Command::Override {
            limit,
            value,
            for_ms,
            reason,
        } => {
            let j = agent.control(store, now, |e, s| {
                e.override_limit(s, limit, value, for_ms, &reason, now)
            });
            control(agent, j)
        }
        Command::ExitAll { confirm, reason } => {
            let j = agent.exit_all(store, now, confirm, &reason);
            control(agent, j)
        }
        Command::Checkpoint => checkpoint(agent, store, config, now).map(Ok),
        Command::SyncFlush => sync_flush(agent, store, shared, now).map(Ok),
        Command::Prune => prune(agent, store, &shared.monitor, now, corrupt).map(Ok),
    }
}

fn risk_applied(name: &str, agent: &Agent, journal: &[RiskJournal], now: u64) -> Applied {
    let pools = std::collections::BTreeMap::new();
    let message = journal
        .iter()
        .map(|j| JournalRecord::Risk(j.clone()).summary(&pools))
        .collect::<Vec<_>>()
        .join("; ");
    Applied {
        command: name.to_string(),
        at_ms: now,
        trading_state: agent.risk.computed_state(now),
        events: journal.iter().map(|j| j.event.clone()).collect(),
        message,
        detail: None,
    }
}

/// Journals a maintenance command's outcome and builds its answer.
fn operated(
    agent: &Agent,
    store: &Store,
    now: u64,
    operation: Operation,
    outcome: String,
    detail: Option<serde_json::Value>,
) -> std::result::Result<Applied, StoreError> {
    let record = JournalRecord::Operator(OperatorRecord {
        at_ms: now,
        operation,
        outcome: outcome.clone(),
    });
    store.write(|w| w.append(SeqTable::Journal, &record).map(|_| ()))?;
    Ok(Applied {
        command: operation.as_str().to_string(),
        at_ms: now,
        trading_state: agent.risk.computed_state(now),
        events: Vec::new(),
        message: outcome,
        detail,
    })
}

fn checkpoint(
    agent: &Agent,
    store: &Store,
    config: &Config,
    now: u64,
) -> std::result::Result<Applied, StoreError> {
    let dir = &config.agent.data_dir;
    let taken = crate::checkpoint::create(store, dir, config, now).and_then(|entry| {
        let keep = config.recovery.checkpoint_hourly_retention.as_millis() as u64;
        crate::checkpoint::thin(store, dir, keep, now)?;
        Ok(entry)
    });
    let (outcome, detail) = match taken {
        Ok(entry) => (
            format!("checkpoint {} ({} bytes)", entry.id, entry.bytes),
            serde_json::to_value(&entry).ok(),
        ),
        Err(crate::checkpoint::CheckpointError::Store(e)) => return Err(e),
        Err(e) => (
            format!("checkpoint failed: {}", athena_sync::one_line(&e)),
            None,
        ),
    };
    operated(agent, store, now, Operation::Checkpoint, outcome, detail)
}

fn sync_flush(
    agent: &Agent,
    store: &Store,
    shared: &Shared,
    now: u64,
) -> std::result::Result<Applied, StoreError> {
    let waiting = store.outbox_len()?;
    shared.flush.notify_one();
    let outcome = format!("sync pass asked for with {waiting} rows in the outbox");
    let detail = serde_json::json!({ "outbox_rows": waiting });
    operated(
        agent,
        store,
        now,
        Operation::SyncFlush,
        outcome,
        Some(detail),
    )
}

fn prune(
    agent: &Agent,
    store: &Store,
    monitor: &crate::monitor::Monitor,
    now: u64,
    corrupt: &mut Vec<CorruptRecord>,
) -> std::result::Result<Applied, StoreError> {
    // Memories age on the agent's time: the last committed tick.
    let at = match agent.state.last_tick_ms {
        0 => now,
        t => t,
    };
    let mut report = store.prune(at)?;
    monitor.on_prune(&report);
    corrupt.append(&mut report.corrupt);
    let outcome = format!(
        "pruned: {} removed, {} merged, {} compacted, {} moved cold, {} evicted",
        report.removed_low_confidence,
        report.merged,
        report.compacted,
        report.migrated_cold,
        report.evicted
    );
    let detail = serde_json::to_value(&report).ok();
    operated(agent, store, now, Operation::Prune, outcome, detail)
}
