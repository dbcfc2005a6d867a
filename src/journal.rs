//! The journal: the append-only audit of what the agent decided and why. Each record says
//! which part of the agent wrote it: the risk engine (trips, resets, state changes, operator
//! controls) or the agent loop (every decision with its inputs and the risk verdict, every
//! pool snapshot it refused as bad data).

use crate::agent::strategy::Intent;
use crate::market::{MarketTick, RejectedSnapshot};
use crate::risk::{Decision, GasAction, RiskJournal, TradingState};
use serde::{Deserialize, Serialize};

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
}

/// Every journal record, oldest first, with its sequence number.
pub fn read_all(
    store: &athena_storage::Store,
) -> athena_storage::Result<Vec<(u64, JournalRecord)>> {
    store.read(|r| r.seq_after(athena_storage::SeqTable::Journal, 0, usize::MAX))
}
