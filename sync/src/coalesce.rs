//! Coalescing: outbox rows in sequence order become at most one write per remote key, with the
//! same final state as applying every row in order (proptest below):
//! - an upsert replaces whatever came before (last state wins);
//! - increments are summed, never overwritten: after an upsert they ride along with it, after a
//!   delete they recreate the document with just those fields (what Firestore does);
//! - a delete replaces whatever came before;
//! - blobs: the last put or delete wins.
//!
//! A row whose body is not a JSON object cannot be sent: its key coalesces to an error and the
//! worker dead-letters every row of it.
//!
//! Replays are safe: delivery is at-least-once, so every document write carries the highest
//! outbox sequence number it covers, which the sink keeps in the document ([`SEQ_FIELD`]). Sets
//! and deletes are idempotent as they are; increment-only writes keep their per-row deltas and
//! the sink applies only the rows above the document's watermark, so an increment re-sent after
//! a lost confirmation is not counted twice.

use athena_storage::{OutboxOp, OutboxRow};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Field increments, by field name.
pub type Increments = BTreeMap<String, f64>;

/// The document field holding the outbox sequence number of the last change applied to it.
pub const SEQ_FIELD: &str = "_athena_seq";

/// The net write on one remote key.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Replace the document with `body`, then add `increments` to its fields.
    Set {
        /// Collection under the agent.
        collection: String,
        /// Document id.
        doc: String,
        /// The new document.
        body: Map<String, Value>,
        /// Added after the replace.
        increments: Increments,
        /// Highest outbox sequence number covered (the document's new watermark).
        seq: u64,
    },
    /// Add to fields, creating the document or the fields when missing. Only the parts above
    /// the document's watermark are applied.
    Increment {
        /// Collection under the agent.
        collection: String,
        /// Document id.
        doc: String,
        /// Amounts added, by outbox sequence number.
        parts: BTreeMap<u64, Increments>,
    },
    /// Delete the document.
    Delete {
        /// Collection under the agent.
        collection: String,
        /// Document id.
        doc: String,
    },
    /// Put an object.
    PutBlob {
        /// Path under the agent's prefix.
        path: String,
        /// Content.
        bytes: Bytes,
    },
    /// Delete an object.
    DeleteBlob {
        /// Path under the agent's prefix.
        path: String,
    },
}

impl Write {
    /// Whether a document sink (rather than an object sink) takes it.
    pub fn is_document(&self) -> bool {
        !matches!(self, Self::PutBlob { .. } | Self::DeleteBlob { .. })
    }

    /// Approximate size on the wire, for batch limits.
    pub fn size(&self) -> usize {
        match self {
            Self::Set {
                collection,
                doc,
                body,
                increments,
                ..
            } => {
                collection.len()
                    + doc.len()
                    + Value::Object(body.clone()).to_string().len()
                    + increments.len() * 24
                    + 8
            }
            Self::Increment {
                collection,
                doc,
                parts,
            } => {
                collection.len()
                    + doc.len()
                    + parts.values().map(|p| p.len() * 24 + 8).sum::<usize>()
            }
            Self::Delete { collection, doc } => collection.len() + doc.len(),
            Self::PutBlob { path, bytes } => path.len() + bytes.len(),
            Self::DeleteBlob { path } => path.len(),
        }
    }
}

/// Why outbox rows cannot become a write (they go to the dead letters with it).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unsendable {
    /// An upsert whose body is JSON but not an object.
    #[error("document body is not a JSON object but {0}")]
    BodyNotObject(&'static str),
    /// An upsert whose body is not JSON.
    #[error("document body is not JSON: {0}")]
    BodyNotJson(String),
    /// An increment by NaN or an infinity.
    #[error("increment of {field} by {delta} is not a finite number")]
    NonFiniteIncrement {
        /// The field.
        field: String,
        /// The delta.
        delta: f64,
    },
    /// Compaction was asked to fold no rows (a bug in the caller).
    #[error("nothing to fold")]
    NothingToFold,
    /// A reference to a stored record that was not resolved when read (a bug in the caller:
    /// the store resolves every row it hands out).
    #[error("unresolved reference to a stored record ({0:?})")]
    Unresolved(athena_storage::StoredRecord),
}

/// The coalesced write of one key and the outbox rows it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Coalesced {
    /// The remote key (`collection/doc` or `blob:path`).
    pub key: String,
    /// The net write, or why the key's rows cannot be sent.
    pub write: Result<Write, Unsendable>,
    /// Sequence numbers of the rows it covers, ascending.
    pub seqs: Vec<u64>,
}

/// Coalesces rows (in sequence order) into one entry per remote key, in order of each key's
/// first row.
pub fn coalesce(rows: impl IntoIterator<Item = (u64, OutboxRow)>) -> Vec<Coalesced> {
    let mut out: Vec<Coalesced> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (seq, row) in rows {
        let key = row.op.remote_key();
        match index.get(&key) {
            Some(&i) => {
                let entry = &mut out[i];
                entry.seqs.push(seq);
                if let Ok(prev) = &entry.write {
                    entry.write = merge(prev.clone(), row.op, seq);
                }
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push(Coalesced {
                    key,
                    write: single(row.op, seq),
                    seqs: vec![seq],
                });
            }
        }
    }
    out
}

/// The write of row `seq` alone.
pub fn single(op: OutboxOp, seq: u64) -> Result<Write, Unsendable> {
    Ok(match op {
        OutboxOp::Upsert {
            collection,
            doc,
            body,
        } => {
            let body = match serde_json::from_str::<Value>(&body) {
                Ok(Value::Object(map)) => map,
                Ok(other) => return Err(Unsendable::BodyNotObject(kind_of(&other))),
                Err(e) => return Err(Unsendable::BodyNotJson(e.to_string())),
            };
            Write::Set {
                collection,
                doc,
                body,
                increments: Increments::new(),
                seq,
            }
        }
        OutboxOp::Increment {
            collection,
            doc,
            fields,
        } => {
            if let Some((field, delta)) = fields.iter().find(|(_, d)| !d.is_finite()) {
                return Err(Unsendable::NonFiniteIncrement {
                    field: field.clone(),
                    delta: *delta,
                });
            }
            Write::Increment {
                collection,
                doc,
                parts: BTreeMap::from([(seq, fields)]),
            }
        }
        OutboxOp::Delete { collection, doc } => Write::Delete { collection, doc },
        OutboxOp::PutBlob { path, bytes } => Write::PutBlob {
            path,
            bytes: Bytes::from(bytes),
        },
        OutboxOp::DeleteBlob { path } => Write::DeleteBlob { path },
        OutboxOp::Stored(record) => return Err(Unsendable::Unresolved(record)),
    })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn add(into: &mut Increments, more: Increments) {
    for (field, delta) in more {
        *into.entry(field).or_insert(0.0) += delta;
    }
}

/// Sums per-row increment parts into `into` (a set resets the document, so the parts that
/// follow it are applied whole, whatever the watermark).
pub(crate) fn add_parts(into: &mut Increments, parts: BTreeMap<u64, Increments>) {
    for more in parts.into_values() {
        add(into, more);
    }
}

/// `prev` followed by row `seq` (`op`) on the same key.
fn merge(prev: Write, op: OutboxOp, seq: u64) -> Result<Write, Unsendable> {
    let next = single(op, seq)?;
    Ok(match (prev, next) {
        (
            Write::Set {
                collection,
                doc,
                body,
                mut increments,
                ..
            },
            Write::Increment { parts, .. },
        ) => {
            add_parts(&mut increments, parts);
            Write::Set {
                collection,
                doc,
                body,
                increments,
                seq,
            }
        }
        (
            Write::Increment {
                collection,
                doc,
                mut parts,
            },
            Write::Increment { parts: more, .. },
        ) => {
            parts.extend(more);
            Write::Increment {
                collection,
                doc,
                parts,
            }
        }
        (Write::Delete { collection, doc }, Write::Increment { parts, .. }) => {
            let mut increments = Increments::new();
            add_parts(&mut increments, parts);
            Write::Set {
                collection,
                doc,
                body: Map::new(),
                increments,
                seq,
            }
        }
        // Upserts, deletes and blob writes replace what came before.
        (_, next) => next,
    })
}

/// Documents and objects as a sink holds them: what applying writes produces. Used to check
/// coalescing and by the in-memory sink.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Documents by (collection, doc).
    pub docs: BTreeMap<(String, String), Map<String, Value>>,
    /// Objects by path.
    pub blobs: BTreeMap<String, Bytes>,
}

impl State {
    /// Applies one write the way every sink must: sets and deletes whole, increments only
    /// above the document's watermark.
    pub fn apply(&mut self, w: &Write) {
        match w {
            Write::Set {
                collection,
                doc,
                body,
                increments,
                seq,
            } => {
                self.docs.insert(
                    (collection.clone(), doc.clone()),
                    set_document(body, increments, *seq),
                );
            }
            Write::Increment {
                collection,
                doc,
                parts,
            } => {
                let d = self
                    .docs
                    .entry((collection.clone(), doc.clone()))
                    .or_default();
                let watermark = d.get(SEQ_FIELD).and_then(Value::as_u64).unwrap_or(0);
                for (seq, increments) in parts.range(watermark + 1..) {
                    increment(d, increments);
                    d.insert(SEQ_FIELD.into(), Value::from(*seq));
                }
            }
            Write::Delete { collection, doc } => {
                self.docs.remove(&(collection.clone(), doc.clone()));
            }
            Write::PutBlob { path, bytes } => {
                self.blobs.insert(path.clone(), bytes.clone());
            }
            Write::DeleteBlob { path } => {
                self.blobs.remove(path);
            }
        }
    }
}

/// The document a [`Write::Set`] leaves: the body, its increments added, the watermark set.
pub fn set_document(
    body: &Map<String, Value>,
    increments: &Increments,
    seq: u64,
) -> Map<String, Value> {
    let mut d = body.clone();
    increment(&mut d, increments);
    d.insert(SEQ_FIELD.into(), Value::from(seq));
    d
}

/// Firestore's increment: adds to a number, and sets a missing or non-numeric field.
pub(crate) fn increment(doc: &mut Map<String, Value>, increments: &Increments) {
    for (field, delta) in increments {
        let now = doc
            .get(field)
            .and_then(Value::as_f64)
            .map_or(*delta, |v| v + delta);
        doc.insert(
            field.clone(),
            serde_json::Number::from_f64(now).map_or(Value::Null, Value::Number),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn op() -> impl Strategy<Value = OutboxOp> {
        let coll = || prop_oneof![Just("positions".to_string()), Just("memories".to_string())];
        let doc = || (0u8..3).prop_map(|d| format!("d{d}"));
        prop_oneof![
            (coll(), doc(), 0i64..100, 0i64..5).prop_map(|(collection, doc, v, w)| {
                OutboxOp::Upsert {
                    collection,
                    doc,
                    body: serde_json::json!({ "v": v, "count": w }).to_string(),
                }
            }),
            (
                coll(),
                doc(),
                prop_oneof![Just("count"), Just("pnl")],
                -50i32..50
            )
                .prop_map(|(collection, doc, f, d)| {
                    OutboxOp::increment(&collection, doc, f, f64::from(d) / 4.0)
                }),
            (coll(), doc()).prop_map(|(collection, doc)| OutboxOp::Delete { collection, doc }),
            ((0u8..2), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(|(p, bytes)| {
                OutboxOp::PutBlob {
                    path: format!("segments/{p}.seg"),
                    bytes,
                }
            }),
            (0u8..2).prop_map(|p| OutboxOp::DeleteBlob {
                path: format!("segments/{p}.seg")
            }),
        ]
    }

    proptest! {
        #[test]
        fn numbers_survive_the_outbox_json_exactly(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            // The outbox carries bodies as JSON text; a float must come back bit for bit (the
            // crash test against the emulator found last-digit drift before float_roundtrip).
            let body = serde_json::json!({ "x": x }).to_string();
            let w = single(OutboxOp::Upsert { collection: "c".into(), doc: "d".into(), body }, 1).unwrap();
            let Write::Set { body, .. } = w else { panic!("not a set") };
            prop_assert_eq!(body["x"].as_f64().map(f64::to_bits), Some(x.to_bits()));
        }

        #[test]
        fn a_replay_after_lost_confirmations_counts_nothing_twice(ops in proptest::collection::vec(op(), 0..60), cut in any::<prop::sample::Index>()) {
            let rows: Vec<(u64, OutboxRow)> = ops.into_iter().enumerate().map(|(i, op)| (i as u64 + 1, OutboxRow { created_ms: 0, op })).collect();
            let mut once = State::default();
            for (seq, row) in &rows {
                once.apply(&single(row.op.clone(), *seq).unwrap());
            }
            // The writes of the first k rows land but are never acknowledged; the next pass
            // re-reads every row and sends the coalesced writes again.
            let k = if rows.is_empty() { 0 } else { cut.index(rows.len() + 1) };
            let mut replayed = State::default();
            for c in coalesce(rows[..k].to_vec()) {
                replayed.apply(c.write.as_ref().unwrap());
            }
            for c in coalesce(rows.clone()) {
                replayed.apply(c.write.as_ref().unwrap());
            }
            prop_assert_eq!(replayed, once);
        }

        #[test]
        fn coalesced_batch_equals_every_row_in_order(ops in proptest::collection::vec(op(), 0..60)) {
            let rows: Vec<(u64, OutboxRow)> = ops.into_iter().enumerate().map(|(i, op)| (i as u64 + 1, OutboxRow { created_ms: 0, op })).collect();
            let mut one_by_one = State::default();
            for (seq, row) in &rows {
                one_by_one.apply(&single(row.op.clone(), *seq).unwrap());
            }
            let coalesced = coalesce(rows.clone());
            let mut batched = State::default();
            for c in &coalesced {
                batched.apply(c.write.as_ref().unwrap());
            }
            prop_assert_eq!(batched, one_by_one);
            // One write per key, and every row accounted for exactly once.
            let keys: std::collections::HashSet<_> = coalesced.iter().map(|c| &c.key).collect();
            prop_assert_eq!(keys.len(), coalesced.len());
            let mut seqs: Vec<u64> = coalesced.iter().flat_map(|c| c.seqs.clone()).collect();
            seqs.sort_unstable();
            prop_assert_eq!(seqs, rows.iter().map(|(s, _)| *s).collect::<Vec<_>>());
        }
    }

    #[test]
    fn increments_are_summed_not_overwritten() {
        let row = |op| OutboxRow { created_ms: 0, op };
        let inc = |d| row(OutboxOp::increment("stats", "day", "trades", d));
        let c = coalesce(vec![(1, inc(1.0)), (2, inc(2.0)), (3, inc(4.0))]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].seqs, vec![1, 2, 3]);
        let trades =
            |s: &State| s.docs[&("stats".to_string(), "day".to_string())]["trades"].clone();
        let mut state = State::default();
        state.apply(c[0].write.as_ref().unwrap());
        assert_eq!(trades(&state), serde_json::json!(7.0));
        // Sent again after a lost confirmation: nothing is counted twice.
        state.apply(c[0].write.as_ref().unwrap());
        assert_eq!(trades(&state), serde_json::json!(7.0));
        // A replay that also carries a newer row applies only the newer row.
        let more = coalesce(vec![
            (1, inc(1.0)),
            (2, inc(2.0)),
            (3, inc(4.0)),
            (4, inc(8.0)),
        ]);
        state.apply(more[0].write.as_ref().unwrap());
        assert_eq!(trades(&state), serde_json::json!(15.0));
    }

    #[test]
    fn a_body_that_is_not_an_object_is_an_error_for_its_key_only() {
        let row = |doc: &str, body: &str| OutboxRow {
            created_ms: 0,
            op: OutboxOp::Upsert {
                collection: "c".into(),
                doc: doc.into(),
                body: body.into(),
            },
        };
        let c = coalesce(vec![
            (1, row("bad", "[1,2]")),
            (2, row("good", "{\"a\":1}")),
            (3, row("bad", "{\"a\":2}")),
        ]);
        assert!(
            c[0].write
                .as_ref()
                .unwrap_err()
                .to_string()
                .contains("not a JSON object but an array")
        );
        assert_eq!(
            c[0].seqs,
            vec![1, 3],
            "the later row of a broken key stays with it"
        );
        assert!(c[1].write.is_ok());
    }
}
