//! `/chain/transactions`: the transactions the chain executor signed, newest first, as the
//! store keeps them (each written down before it was broadcast), with where each stands and
//! the step of the position it is for. Empty with the paper executor.

use super::ApiState;
use super::Params;
use super::error::ApiResult;
use super::read::{blocking, limit, store};
use crate::chain::book::Step;
use crate::chain::send::{Intent, IntentState};
use athena_storage::KeyedTable;
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Filters of `/chain/transactions`.
#[derive(Debug, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionFilter {
    /// Most transactions, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

/// One signed transaction and where it stands.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Transaction {
    /// Its nonce.
    pub nonce: u64,
    /// Its hash.
    pub hash: String,
    /// What it is for, in words.
    pub purpose: String,
    /// signed (written down, not known to be broadcast), sent, mined, reverted or dropped
    /// (another transaction used its nonce).
    pub state: String,
    /// The block it was mined in.
    pub block: Option<u64>,
    /// Gas its receipt says it used.
    pub gas_used: Option<u64>,
    /// The position it opens, closes or feeds.
    pub position: Option<String>,
    /// Its step: approve, swap_in, add_liquidity, claim_fees, remove_liquidity or swap_out.
    #[schema(value_type = Option<String>)]
    pub step: Option<Step>,
    /// When it was signed, wall clock, ms since the epoch.
    pub signed_ms: u64,
    /// Its fee cap, gwei per gas.
    pub max_fee_gwei: f64,
    /// Its gas limit.
    pub gas_limit: u64,
}

impl From<Intent> for Transaction {
    fn from(i: Intent) -> Self {
        let (state, block, gas_used) = match i.state {
            IntentState::Signed => ("signed", None, None),
            IntentState::Sent => ("sent", None, None),
            IntentState::Mined {
                block,
                success,
                gas_used,
            } => (
                if success { "mined" } else { "reverted" },
                Some(block),
                Some(gas_used),
            ),
            IntentState::Dropped => ("dropped", None, None),
        };
        Self {
            nonce: i.nonce,
            hash: i.hash.to_string(),
            purpose: i.purpose,
            state: state.to_string(),
            block,
            gas_used,
            position: i.leg.as_ref().map(|l| l.position.clone()),
            step: i.leg.map(|l| l.step),
            signed_ms: i.signed_ms,
            max_fee_gwei: i.max_fee_per_gas as f64 / 1e9,
            gas_limit: i.gas_limit,
        }
    }
}

/// The chain executor's transactions, newest first (none with the paper executor).
#[utoipa::path(get, path = "/chain/transactions", tag = "journal", params(TransactionFilter),
    responses((status = 200, description = "Transactions, newest first", body = Vec<Transaction>),
              (status = 400, description = "Bad filter", body = super::error::ErrorBody),
              (status = 503, description = "Store closed", body = super::error::ErrorBody)))]
pub async fn transactions(
    State(state): State<ApiState>,
    Params(f): Params<TransactionFilter>,
) -> ApiResult<Json<Vec<Transaction>>> {
    let mut left = limit(f.limit, 100)?;
    let st = store(&state)?;
    blocking(move || {
        let mut out = Vec::new();
        st.read(|r| {
            r.keyed_newest_first::<Intent>(KeyedTable::Intents, |_, intent| {
                if let Ok(i) = intent {
                    out.push(Transaction::from(i));
                    left -= 1;
                }
                left > 0
            })
        })?;
        Ok(Json(out))
    })
    .await
}
