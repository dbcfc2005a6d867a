//! The risk state in the store: one record (`risk_state/state`), its journal entries in the
//! journal table, and a summary document in the outbox for the cloud, all written by the
//! caller's transaction, so a decision and the state it changed commit together.

use crate::journal::JournalRecord;
use crate::risk::state::{RiskJournal, RiskState};
use athena_storage::{KeyedTable, OutboxOp, ReadTx, Result, SeqTable, Store, WriteTx};
use serde::Serialize;

/// Key of the risk state record.
pub const STATE_KEY: &str = "state";

/// What the cloud gets of the risk state: breakers and trading state, not the series.
#[derive(Debug, Serialize)]
struct Summary<'a> {
    trading_state: &'a str,
    operator_stop: Option<&'a str>,
    tripped: Vec<&'a str>,
    trip_counts: std::collections::BTreeMap<&'a str, u32>,
}

/// The persisted state (`None` when the store has none yet).
pub fn load(r: &ReadTx<'_>) -> Result<Option<RiskState>> {
    r.get(KeyedTable::Risk, STATE_KEY)
}

/// The persisted state of `store`, or a fresh one (every breaker armed, active) when it has none.
pub fn load_or_default(store: &Store) -> Result<RiskState> {
    Ok(store.read(load)?.unwrap_or_default())
}

/// Writes the state, appends `journal` to the journal, and queues the summary for sync when
/// `journal` is not empty.
pub fn save(
    w: &mut WriteTx<'_>,
    state: &RiskState,
    journal: &[RiskJournal],
    now_ms: u64,
) -> Result<()> {
    w.put(KeyedTable::Risk, STATE_KEY, state)?;
    for j in journal {
        w.append(SeqTable::Journal, &JournalRecord::Risk(j.clone()))?;
    }
    if journal.is_empty() {
        // The summary only changes with a journaled event (trip, re-arm, reset, state change,
        // control): an unchanged state costs the cloud nothing.
        return Ok(());
    }
    let summary = Summary {
        trading_state: state.trading_state.as_str(),
        operator_stop: state.operator_stop.as_ref().map(|s| s.reason.as_str()),
        tripped: state
            .breakers
            .iter()
            .filter(|b| b.is_tripped(now_ms))
            .map(|b| b.kind.as_str())
            .collect(),
        trip_counts: state
            .breakers
            .iter()
            .map(|b| (b.kind.as_str(), b.trip_count))
            .collect(),
    };
    w.outbox_append(OutboxOp::upsert("risk", "state", &summary)?, now_ms)?;
    Ok(())
}

/// The risk journal entries, oldest first.
pub fn journal(store: &Store) -> Result<Vec<(u64, RiskJournal)>> {
    Ok(crate::journal::read_all(store)?
        .into_iter()
        .filter_map(|(seq, rec)| match rec {
            JournalRecord::Risk(j) => Some((seq, j)),
            JournalRecord::Decision(_)
            | JournalRecord::Rejected(_)
            | JournalRecord::Operator(_) => None,
        })
        .collect())
}
