//! Outbox compaction: while the cloud is unreachable, rows for the same remote key are folded
//! into one, so the outbox stays at most one row per document (plus the rows a pass may already
//! have sent) however long the outage lasts.
//!
//! Folding uses the coalescer, so a compacted row means exactly what its rows meant in order
//! (last state wins, increments summed). It is safe only for rows that were never sent: a row
//! a sink may have applied without confirming carries a sequence number the document's
//! watermark may already cover, and folding it into a newer row would count its increments
//! twice on the replay. So compaction only touches rows above a **fence**, the highest
//! sequence number the worker has read (and so may have sent); after a restart the fence
//! starts at the highest sequence number ever assigned, since a previous process may have sent
//! any row still waiting.
//!
//! The folded row takes the sequence number of the newest row it covers (per-key order is
//! kept; nothing of it can be under a watermark) and the creation time of the oldest (the
//! "oldest unsynced change" stays honest). Each chunk is one store transaction; memory is one
//! chunk of rows plus one entry per distinct key.

use crate::coalesce::{Increments, Write, add_parts, coalesce, increment};
use athena_storage::{OutboxOp, OutboxRow, Store, StoreError};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CompactReport {
    /// Rows above the fence looked at.
    pub scanned: usize,
    /// Rows folded into a newer row of the same key (and removed).
    pub folded: usize,
}

/// Folds every row above `fence` into the newest row of its key, `chunk` rows per transaction.
pub fn compact_outbox(
    store: &Store,
    fence: u64,
    chunk: usize,
) -> Result<CompactReport, StoreError> {
    let chunk = chunk.max(1);
    let mut newest: HashMap<String, u64> = HashMap::new();
    let mut cursor = fence;
    let mut report = CompactReport::default();
    loop {
        let scanned = store.write(|w| {
            let rows = w.outbox_peek(cursor, chunk)?;
            let mut folded = 0;
            for (seq, row) in &rows {
                cursor = *seq;
                let key = row.op.remote_key();
                if let Some(&older) = newest.get(&key)
                    && let Some((_, older_row)) = w.outbox_row(older)?
                    && let Ok(op) = fold(older_row.op, older, row.op.clone(), *seq)
                {
                    w.outbox_ack(&[older])?; // removes it: its change now rides in `seq`
                    w.outbox_replace(
                        *seq,
                        &OutboxRow {
                            created_ms: older_row.created_ms.min(row.created_ms),
                            op,
                        },
                    )?;
                    folded += 1;
                }
                // A key whose rows cannot be folded (a broken body) keeps them all: the worker
                // dead-letters them together.
                newest.insert(key, *seq);
            }
            if folded > 0 {
                crate::status::record_compaction(w, folded as u64)?;
            }
            report.folded += folded;
            Ok(rows.len())
        })?;
        report.scanned += scanned;
        if scanned < chunk {
            return Ok(report);
        }
    }
}

/// The one op equal to `older` (row `older_seq`) followed by `newer` (row `newer_seq`) on the
/// same key, or why they cannot be folded.
pub fn fold(
    older: OutboxOp,
    older_seq: u64,
    newer: OutboxOp,
    newer_seq: u64,
) -> Result<OutboxOp, crate::coalesce::Unsendable> {
    let row = |op| OutboxRow { created_ms: 0, op };
    let mut merged = coalesce([(older_seq, row(older)), (newer_seq, row(newer))]);
    debug_assert_eq!(merged.len(), 1, "fold is called for one key");
    merged
        .pop()
        .ok_or(crate::coalesce::Unsendable::NothingToFold)?
        .write
        .map(into_op)
}

/// An outbox op that applies like `w` does on a document nobody sent anything for yet.
fn into_op(w: Write) -> OutboxOp {
    match w {
        Write::Set {
            collection,
            doc,
            mut body,
            increments,
            ..
        } => {
            increment(&mut body, &increments);
            OutboxOp::Upsert {
                collection,
                doc,
                body: Value::Object(body).to_string(),
            }
        }
        Write::Increment {
            collection,
            doc,
            parts,
        } => {
            let mut fields = Increments::new();
            add_parts(&mut fields, parts);
            OutboxOp::Increment {
                collection,
                doc,
                fields,
            }
        }
        Write::Delete { collection, doc } => OutboxOp::Delete { collection, doc },
        Write::PutBlob { path, bytes } => OutboxOp::PutBlob {
            path,
            bytes: bytes.to_vec(),
        },
        Write::DeleteBlob { path } => OutboxOp::DeleteBlob { path },
    }
}
