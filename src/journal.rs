//! The journal: the append-only audit of what the agent decided and why. Each record says
//! which part of the agent wrote it; the risk engine's trips, resets, state changes and
//! operator controls are the first kind (the agent's decisions join with the agent loop).

use crate::risk::RiskJournal;
use serde::{Deserialize, Serialize};

/// One journal record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalRecord {
    /// From the risk engine.
    Risk(RiskJournal),
}
