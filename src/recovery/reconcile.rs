//! Reconciliation: the book the agent resumes with, compared with its source of truth.
//!
//! The source of truth is a [`TruthSource`]: the paper ledger now (the cash after the last fill
//! and the positions its fills opened and did not close), the chain at a pinned block once the
//! chain executor exists. A difference up to `recovery.reconcile_tolerance_usd` is logged; any
//! difference is reported to the risk engine, which trips position_mismatch above
//! `risk.position_mismatch_usd`. Reconciliation never trades to fix a difference.

use crate::agent::state::{AgentState, LedgerEntry};
use athena_storage::{ReadTx, SeqTable, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Holdings as a source of truth sees them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Holdings {
    /// Idle cash, USD.
    pub cash_usd: f64,
    /// Open positions: id → USD put in (deposits and compounds).
    pub positions: BTreeMap<String, f64>,
}

/// Where the truth about balances and positions comes from.
pub trait TruthSource {
    /// Its name, for the recovery record.
    fn name(&self) -> &str;
    /// The holdings it reports (`None` when it has no record yet: nothing to compare).
    fn holdings(&self, r: &ReadTx<'_>) -> Result<Option<Holdings>, StoreError>;
}

/// The paper executor's ledger as the source of truth.
pub struct PaperLedger {
    /// Cash the paper book starts with, USD (the truth before any fill).
    pub starting_usd: f64,
}

impl TruthSource for PaperLedger {
    fn name(&self) -> &str {
        "paper ledger"
    }

    fn holdings(&self, r: &ReadTx<'_>) -> Result<Option<Holdings>, StoreError> {
        let entries = r.seq_after::<LedgerEntry>(SeqTable::Ledger, 0, usize::MAX)?;
        let mut h = Holdings {
            cash_usd: self.starting_usd,
            positions: BTreeMap::new(),
        };
        for (_, e) in &entries {
            h.cash_usd = e.cash_after_usd;
            match e.action.as_str() {
                "close" => {
                    h.positions.remove(&e.position);
                }
                _ => *h.positions.entry(e.position.clone()).or_default() += e.usd,
            }
        }
        Ok(Some(h))
    }
}

/// What reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The source of truth.
    pub source: String,
    /// Cash difference (book minus truth), USD.
    pub cash_difference_usd: f64,
    /// Positions the book holds that the truth does not.
    pub unknown_positions: Vec<String>,
    /// Positions the truth holds that the book does not.
    pub missing_positions: Vec<String>,
    /// Total absolute difference, USD: the cash difference plus the value of every position
    /// held on one side only.
    pub difference_usd: f64,
    /// Whether the difference is within the tolerance.
    pub within_tolerance: bool,
}

/// Compares `book` with `truth`.
pub fn compare(book: &AgentState, truth: &Holdings, source: &str, tolerance_usd: f64) -> Report {
    let cash = book.cash_usd - truth.cash_usd;
    let mut difference = cash.abs();
    let mut unknown = Vec::new();
    for p in &book.positions {
        if !truth.positions.contains_key(&p.id) {
            unknown.push(p.id.clone());
            difference += p.value_usd.abs();
        }
    }
    let mut missing = Vec::new();
    for (id, usd) in &truth.positions {
        if !book.positions.iter().any(|p| &p.id == id) {
            missing.push(id.clone());
            difference += usd.abs();
        }
    }
    Report {
        source: source.to_string(),
        cash_difference_usd: cash,
        unknown_positions: unknown,
        missing_positions: missing,
        difference_usd: difference,
        within_tolerance: difference <= tolerance_usd,
    }
}
