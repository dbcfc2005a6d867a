//! The journal: the append-only audit of what the agent decided and why. Each record says
//! which part of the agent wrote it: the risk engine (trips, resets, state changes, operator
//! controls) or the agent loop (every decision with its inputs and the risk verdict, every
//! pool snapshot it refused as bad data).
//!
//! [`query`] reads it for `athena journal`: newest first, filtered by kind, pool and age,
//! streamed through one read transaction (memory does not grow with the journal).

use crate::agent::state::LedgerEntry;
use crate::agent::strategy::Intent;
use crate::market::{MarketTick, RejectedSnapshot};
use crate::risk::{Decision, GasAction, RiskEvent, RiskJournal, Sizing, TradingState};
use athena_storage::{SeqTable, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalRecord {
    /// From the risk engine.
    Risk(RiskJournal),
    /// A decision of the agent loop.
    Decision(DecisionRecord),
    /// A pool snapshot the agent loop refused for one tick (bad data).
    Rejected(RejectedRecord),
    /// An operator's maintenance command applied by a running agent (checkpoint, sync flush,
    /// prune); the risk controls are journaled by the risk engine.
    Operator(OperatorRecord),
}

/// An operator's maintenance command and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperatorRecord {
    /// Agent time.
    pub at_ms: u64,
    /// What was asked.
    pub operation: Operation,
    /// What came of it.
    pub outcome: String,
}

/// An operator's maintenance command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// A checkpoint now.
    Checkpoint,
    /// A sync pass now.
    SyncFlush,
    /// A pruning pass now.
    Prune,
}

impl Operation {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Checkpoint => "checkpoint",
            Self::SyncFlush => "sync_flush",
            Self::Prune => "prune",
        }
    }
}

/// A pool left out of one tick because its snapshot cannot be used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedRecord {
    /// Tick.
    pub tick: u64,
    /// Agent time.
    pub at_ms: u64,
    /// The pool and why.
    pub snapshot: RejectedSnapshot,
}

impl RejectedRecord {
    /// The record of `snapshot`, rejected from `tick`.
    pub fn of(tick: &MarketTick, snapshot: RejectedSnapshot) -> Self {
        Self {
            tick: tick.index,
            at_ms: tick.at_ms,
            snapshot,
        }
    }
}

/// One decision: what the rules proposed, what they saw, what the risk engine said, what
/// was done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Tick.
    pub tick: u64,
    /// Agent time.
    pub at_ms: u64,
    /// What the rules proposed.
    pub intent: Intent,
    /// The pool's APR (percent) and TVL (USD) the rules saw.
    pub apr_pct: f64,
    /// TVL.
    pub tvl_usd: f64,
    /// The trading state.
    pub trading_state: TradingState,
    /// The risk verdict.
    pub decision: Decision,
    /// Gas protection's verdict.
    pub gas: GasAction,
    /// Whether it was executed (and the size, USD).
    pub executed_usd: Option<f64>,
    /// Why an allowed decision was not executed.
    pub note: Option<String>,
    /// The rule that proposed it, with the numbers it compared (absent in older journals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Gas price the agent saw, gwei.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_gwei: Option<f64>,
    /// The transaction's estimated gas cost, USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gas_usd: Option<f64>,
    /// How the risk engine sized an entry: base, each factor and each cap (boxed, so a
    /// record without one, an exit or an entry refused before sizing, stays small).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<Box<Sizing>>,
    /// What the LLM advisor said of it, and which layer answered (absent when it was not
    /// asked: the advisor off, an exit, no answer in time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advice: Option<Box<crate::llm::Answered>>,
}

/// Every journal record, oldest first, with its sequence number.
pub fn read_all(
    store: &athena_storage::Store,
) -> athena_storage::Result<Vec<(u64, JournalRecord)>> {
    store.read(|r| r.seq_after(athena_storage::SeqTable::Journal, 0, usize::MAX))
}

/// What a journal entry is about, as `athena journal --kind` selects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A decision of the agent loop (with the risk verdict and what was done).
    Decision,
    /// Something the risk engine did by itself: trips, re-arms, state changes, holds,
    /// expiries, recoveries.
    Risk,
    /// An operator control: stop, resume, reset, override, exit-all, and the maintenance
    /// commands a running agent applies (checkpoint, sync flush, prune).
    Control,
    /// A pool snapshot left out of its tick as bad data.
    Data,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [Self::Decision, Self::Risk, Self::Control, Self::Data];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Decision => "decision",
            Self::Risk => "risk",
            Self::Control => "control",
            Self::Data => "data",
        }
    }
}

impl std::str::FromStr for EntryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown kind {s:?} (decision, risk, control or data)"))
    }
}

impl JournalRecord {
    /// What it is about.
    pub fn kind(&self) -> EntryKind {
        match self {
            Self::Decision(_) => EntryKind::Decision,
            Self::Rejected(_) => EntryKind::Data,
            Self::Operator(_) => EntryKind::Control,
            Self::Risk(j) => match j.event {
                RiskEvent::Stop { .. }
                | RiskEvent::Resume { .. }
                | RiskEvent::Reset { .. }
                | RiskEvent::Override { .. }
                | RiskEvent::ExitAll { .. } => EntryKind::Control,
                _ => EntryKind::Risk,
            },
        }
    }

    /// When (agent time; operator controls: the wall clock of the command).
    pub fn at_ms(&self) -> u64 {
        match self {
            Self::Decision(d) => d.at_ms,
            Self::Rejected(r) => r.at_ms,
            Self::Risk(j) => j.at_ms,
            Self::Operator(o) => o.at_ms,
        }
    }

    /// The pool a decision or a rejected snapshot is about (`pools` maps position ids to their
    /// pools); `None` for risk events, which are about the whole book.
    pub fn pool<'a>(&'a self, pools: &'a BTreeMap<String, String>) -> Option<&'a str> {
        let d = match self {
            Self::Decision(d) => d,
            Self::Rejected(r) => return Some(&r.snapshot.pool),
            Self::Risk(_) | Self::Operator(_) => return None,
        };
        match &d.intent {
            Intent::Open { pool }
            | Intent::Rebalance { to: pool, .. }
            | Intent::Sweep { pool, .. } => Some(pool),
            Intent::Close { position, .. } | Intent::Compound { position } => {
                pools.get(position).map(String::as_str)
            }
        }
    }

    /// One line for an operator: what, why, and what came of it.
    pub fn summary(&self, pools: &BTreeMap<String, String>) -> String {
        match self {
            Self::Decision(d) => decision_summary(d, pools),
            Self::Rejected(r) => format!(
                "{} left out of tick {} as bad data: {}",
                r.snapshot.pool, r.tick, r.snapshot.problem
            ),
            Self::Risk(j) => risk_summary(&j.event),
            Self::Operator(o) => format!("operator {}: {}", o.operation.as_str(), o.outcome),
        }
    }
}

fn decision_summary(d: &DecisionRecord, pools: &BTreeMap<String, String>) -> String {
    let in_pool = |position: &str| {
        pools
            .get(position)
            .map_or(String::new(), |p| format!(" in {p}"))
    };
    let what = match &d.intent {
        Intent::Open { pool } => format!("open {pool}"),
        Intent::Close {
            position, reason, ..
        } => {
            format!("close {position}{}: {reason}", in_pool(position))
        }
        Intent::Rebalance { from, to } => format!("rebalance {from}{} into {to}", in_pool(from)),
        Intent::Compound { position } => format!("compound {position}{}", in_pool(position)),
        Intent::Sweep { token, pool } => format!("sweep {token} back into cash through {pool}"),
    };
    let verdict = match &d.decision {
        // An exit is approved as asked: it has no size of its own.
        Decision::Approve { size_usd, .. } if *size_usd == 0.0 => "approved".to_string(),
        Decision::Approve { size_usd, .. } => format!("approved ${size_usd:.2}"),
        Decision::Reduce {
            size_usd,
            requested_usd,
            bounded_by,
        } => format!(
            "reduced to ${size_usd:.2} of ${requested_usd:.2} by {}",
            bounded_by
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Decision::Reject { rule, reason } => format!("rejected by {}: {reason}", rule.as_str()),
    };
    let advice = match &d.advice {
        Some(a) => format!(
            " · advisor ({}): {} ×{} priority {}{}",
            a.source.as_str(),
            a.advice.verdict.as_str(),
            a.advice.size_factor,
            a.advice.priority,
            if a.advice.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", a.advice.reason)
            }
        ),
        None => String::new(),
    };
    let done = match (d.executed_usd, &d.note) {
        (Some(usd), _) => format!("; executed ${usd:.2}"),
        (None, Some(note)) => format!("; not executed: {note}"),
        (None, None) => String::new(),
    };
    format!(
        "{what} (APR {:.1}%, TVL ${:.0}, {}, gas {}) → {verdict}{advice}{done}",
        d.apr_pct,
        d.tvl_usd,
        d.trading_state.as_str(),
        d.gas.as_str()
    )
}

fn risk_summary(e: &RiskEvent) -> String {
    match e {
        RiskEvent::Trip {
            breaker,
            reason,
            until_ms,
        } => format!(
            "breaker {} tripped{}: {reason}",
            breaker.as_str(),
            if until_ms.is_none() { " (latched)" } else { "" }
        ),
        RiskEvent::Rearm { breaker } => format!("breaker {} re-armed", breaker.as_str()),
        RiskEvent::Reset {
            breaker,
            reason,
            was_tripped,
        } => format!(
            "operator reset {}{}: {reason}",
            breaker.as_str(),
            if *was_tripped { " (was tripped)" } else { "" }
        ),
        RiskEvent::StateChange { from, to, cause } => {
            format!("trading state {} → {}: {cause}", from.as_str(), to.as_str())
        }
        RiskEvent::Stop { reason } => format!("operator stop: {reason}"),
        RiskEvent::Resume { reason } => format!("operator resume: {reason}"),
        RiskEvent::RestartHold {
            persisted,
            computed,
        } => format!(
            "restart kept {} (breakers imply {})",
            persisted.as_str(),
            computed.as_str()
        ),
        RiskEvent::Override { change } => format!(
            "operator override {} = {} until {}: {}",
            change.limit.key(),
            change.value,
            rfc3339(change.until_ms),
            change.reason
        ),
        RiskEvent::OverrideExpired { limit } => format!("override of {} expired", limit.key()),
        RiskEvent::ExitAll { positions, reason } => {
            format!("exit all ({}): {reason}", positions.join(", "))
        }
        RiskEvent::Recovered => "recovered: sizes ramp back over 24 h".into(),
    }
}

/// `ms` as an RFC 3339 time, seconds precision.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
        .to_string()
}

/// What `athena journal` selects.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Only this kind.
    pub kind: Option<EntryKind>,
    /// Only decisions about this pool.
    pub pool: Option<String>,
    /// Only entries at or after this time.
    pub since_ms: Option<u64>,
    /// Only entries with a sequence number below this one (the next page).
    pub before_seq: Option<u64>,
    /// At most this many.
    pub limit: usize,
}

/// One entry of a [`query`]: its sequence number, and the record or why it cannot be read.
pub type Found<'a> = (u64, Result<&'a JournalRecord, &'a StoreError>);

/// Streams the entries matching `q`, newest first, to `f` (which returns whether to go on, so
/// a closed output ends the scan); `pools` maps position ids to pools. A record that fails its
/// checksum is passed on as its error and the scan goes on.
pub fn query(
    store: &Store,
    q: &Query,
    pools: &BTreeMap<String, String>,
    mut f: impl FnMut(Found<'_>) -> bool,
) -> athena_storage::Result<()> {
    let mut left = q.limit;
    let before = q.before_seq.unwrap_or(u64::MAX);
    store.read(|r| {
        r.seq_newest_before::<JournalRecord>(SeqTable::Journal, before, |seq, record| {
            if left == 0 {
                return false;
            }
            let keep = match &record {
                Ok(rec) => {
                    q.kind.is_none_or(|k| rec.kind() == k)
                        && q.since_ms.is_none_or(|t| rec.at_ms() >= t)
                        && q.pool.as_deref().is_none_or(|p| rec.pool(pools) == Some(p))
                }
                Err(_) => true,
            };
            if !keep {
                return true;
            }
            left -= 1;
            f((seq, record.as_ref()))
        })
    })
}

/// Which pool each position was opened in, from the ledger (streamed).
pub fn position_pools(store: &Store) -> athena_storage::Result<BTreeMap<String, String>> {
    let mut pools = PositionPools::default();
    pools.refresh(store)?;
    Ok(std::sync::Arc::unwrap_or_clone(pools.pools))
}

/// [`position_pools`] kept up to date by reading only the ledger entries written since the
/// last refresh (a running agent's API answers `/journal` without reading the whole ledger).
#[derive(Debug, Default, Clone)]
pub struct PositionPools {
    /// The last ledger sequence number read.
    after: u64,
    /// Position id → pool.
    pools: std::sync::Arc<BTreeMap<String, String>>,
}

impl PositionPools {
    /// Reads the ledger entries written since the last refresh; returns the map.
    pub fn refresh(
        &mut self,
        store: &Store,
    ) -> athena_storage::Result<std::sync::Arc<BTreeMap<String, String>>> {
        let mut added: Vec<(String, String)> = Vec::new();
        let mut last = self.after;
        store.read(|r| {
            r.seq_each_after::<LedgerEntry>(SeqTable::Ledger, self.after, |seq, entry| {
                last = seq;
                if let Ok(e) = entry {
                    added.push((e.position, e.pool));
                }
                true
            })
        })?;
        self.after = last;
        if !added.is_empty() {
            let pools = std::sync::Arc::make_mut(&mut self.pools);
            for (position, pool) in added {
                pools.entry(position).or_insert(pool);
            }
        }
        Ok(self.pools.clone())
    }
}
