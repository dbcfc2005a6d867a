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

use athena_storage::{OutboxOp, OutboxRow};
use bytes::Bytes;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};

/// Field increments, by field name.
pub type Increments = BTreeMap<String, f64>;

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
    },
    /// Add to fields, creating the document or the fields when missing.
    Increment {
        /// Collection under the agent.
        collection: String,
        /// Document id.
        doc: String,
        /// Amounts added.
        increments: Increments,
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
            } => {
                collection.len()
                    + doc.len()
                    + Value::Object(body.clone()).to_string().len()
                    + increments.len() * 24
            }
            Self::Increment {
                collection,
                doc,
                increments,
            } => collection.len() + doc.len() + increments.len() * 24,
            Self::Delete { collection, doc } => collection.len() + doc.len(),
            Self::PutBlob { path, bytes } => path.len() + bytes.len(),
            Self::DeleteBlob { path } => path.len(),
        }
    }
}

/// The coalesced write of one key and the outbox rows it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Coalesced {
    /// The remote key (`collection/doc` or `blob:path`).
    pub key: String,
    /// The net write, or why the key's rows cannot be sent.
    pub write: Result<Write, String>,
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
                    entry.write = merge(prev.clone(), row.op);
                }
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push(Coalesced {
                    key,
                    write: single(row.op),
                    seqs: vec![seq],
                });
            }
        }
    }
    out
}

/// The write of one row alone.
pub fn single(op: OutboxOp) -> Result<Write, String> {
    Ok(match op {
        OutboxOp::Upsert {
            collection,
            doc,
            body,
        } => {
            let body = match serde_json::from_str::<Value>(&body) {
                Ok(Value::Object(map)) => map,
                Ok(other) => {
                    return Err(format!(
                        "document body is not a JSON object but {}",
                        kind_of(&other)
                    ));
                }
                Err(e) => return Err(format!("document body is not JSON: {e}")),
            };
            Write::Set {
                collection,
                doc,
                body,
                increments: Increments::new(),
            }
        }
        OutboxOp::Increment {
            collection,
            doc,
            field,
            delta,
        } => {
            if !delta.is_finite() {
                return Err(format!(
                    "increment of {field} by {delta} is not a finite number"
                ));
            }
            Write::Increment {
                collection,
                doc,
                increments: Increments::from([(field, delta)]),
            }
        }
        OutboxOp::Delete { collection, doc } => Write::Delete { collection, doc },
        OutboxOp::PutBlob { path, bytes } => Write::PutBlob {
            path,
            bytes: Bytes::from(bytes),
        },
        OutboxOp::DeleteBlob { path } => Write::DeleteBlob { path },
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

/// `prev` followed by `op` on the same key.
fn merge(prev: Write, op: OutboxOp) -> Result<Write, String> {
    let next = single(op)?;
    Ok(match (prev, next) {
        (
            Write::Set {
                collection,
                doc,
                body,
                mut increments,
            },
            Write::Increment {
                increments: more, ..
            },
        ) => {
            add(&mut increments, more);
            Write::Set {
                collection,
                doc,
                body,
                increments,
            }
        }
        (
            Write::Increment {
                collection,
                doc,
                mut increments,
            },
            Write::Increment {
                increments: more, ..
            },
        ) => {
            add(&mut increments, more);
            Write::Increment {
                collection,
                doc,
                increments,
            }
        }
        (Write::Delete { collection, doc }, Write::Increment { increments, .. }) => Write::Set {
            collection,
            doc,
            body: Map::new(),
            increments,
        },
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
    /// Applies one write.
    pub fn apply(&mut self, w: &Write) {
        match w {
            Write::Set {
                collection,
                doc,
                body,
                increments,
            } => {
                let mut d = body.clone();
                increment(&mut d, increments);
                self.docs.insert((collection.clone(), doc.clone()), d);
            }
            Write::Increment {
                collection,
                doc,
                increments,
            } => {
                increment(
                    self.docs
                        .entry((collection.clone(), doc.clone()))
                        .or_default(),
                    increments,
                );
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

/// Firestore's increment: adds to a number, and sets a missing or non-numeric field.
fn increment(doc: &mut Map<String, Value>, increments: &Increments) {
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
                    OutboxOp::Increment {
                        collection,
                        doc,
                        field: f.to_string(),
                        delta: f64::from(d) / 4.0,
                    }
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
        fn coalesced_batch_equals_every_row_in_order(ops in proptest::collection::vec(op(), 0..60)) {
            let rows: Vec<(u64, OutboxRow)> = ops.into_iter().enumerate().map(|(i, op)| (i as u64 + 1, OutboxRow { created_ms: 0, op })).collect();
            let mut one_by_one = State::default();
            for (_, row) in &rows {
                one_by_one.apply(&single(row.op.clone()).unwrap());
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
        let inc = |d| {
            row(OutboxOp::Increment {
                collection: "stats".into(),
                doc: "day".into(),
                field: "trades".into(),
                delta: d,
            })
        };
        let c = coalesce(vec![(1, inc(1.0)), (2, inc(2.0)), (3, inc(4.0))]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].seqs, vec![1, 2, 3]);
        assert_eq!(
            c[0].write,
            Ok(Write::Increment {
                collection: "stats".into(),
                doc: "day".into(),
                increments: Increments::from([("trades".into(), 7.0)])
            })
        );
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
