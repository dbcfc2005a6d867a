//! `athena sync verify`: compares what the store says the cloud should hold with what it holds.
//!
//! Checked: every local memory (collection `memories`), every cold index entry
//! (`cold_index`) and every cold segment object. Keys with rows still in the outbox are not yet
//! synced: they are counted as pending, not as differences. Reads bypass the read cache.
//! Numbers compare as numbers (Firestore keeps integers and doubles apart); the sync watermark
//! field and the `_firestore_*` metadata the client adds on reading are ignored.

use crate::coalesce::SEQ_FIELD;
use crate::error::SyncError;
use crate::firestore_sink::FirestoreSink;
use crate::object_sink::ObjectStoreSink;
use athena_storage::memory::MEMORY_COLLECTION;
use athena_storage::memory::cold::COLD_INDEX_COLLECTION;
use athena_storage::{Codec, Store};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::sync::Arc;

/// One thing the cloud has wrong.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Remote key (`collection/doc` or `blob:path`).
    pub key: String,
    /// What differs.
    pub problem: String,
}

/// What verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Documents compared.
    pub documents: usize,
    /// Objects compared.
    pub objects: usize,
    /// Keys skipped because their rows are still in the outbox.
    pub pending: usize,
    /// Differences found.
    pub differences: Vec<Difference>,
}

/// Compares the cloud with `store`. `firestore` and `objects` are the configured sinks (`None`
/// when that role syncs nowhere, and is then not checked).
pub async fn verify(
    store: &Arc<Store>,
    firestore: Option<&FirestoreSink>,
    objects: Option<&ObjectStoreSink>,
) -> Result<VerifyReport, SyncError> {
    let s = store.clone();
    let (pending, memories, cold, segments) = tokio::task::spawn_blocking(move || {
        s.read(|r| {
            let pending: HashSet<String> = r
                .outbox_peek(0, usize::MAX)?
                .into_iter()
                .map(|(_, row)| row.op.remote_key())
                .collect();
            Ok((
                pending,
                r.all_memories()?,
                r.cold_entries()?,
                r.cold_segments()?,
            ))
        })
    })
    .await
    .map_err(|e| SyncError::Task(e.to_string()))??;
    let mut report = VerifyReport::default();
    if let Some(fs) = firestore {
        let mut expected: Vec<(String, String, Value)> = Vec::new();
        for m in &memories {
            expected.push((
                MEMORY_COLLECTION.into(),
                m.id.to_string(),
                serde_json::to_value(m).unwrap_or(Value::Null),
            ));
        }
        for e in &cold {
            expected.push((
                COLD_INDEX_COLLECTION.into(),
                e.id.to_string(),
                serde_json::to_value(e).unwrap_or(Value::Null),
            ));
        }
        for (collection, doc, want) in expected {
            let key = format!("{collection}/{doc}");
            if pending.contains(&key) {
                report.pending += 1;
                continue;
            }
            report.documents += 1;
            match fs.get_fresh(&collection, &doc).await {
                Ok(Some(got)) => {
                    if let Some(problem) =
                        compare(want.as_object().cloned().unwrap_or_default(), got)
                    {
                        report.differences.push(Difference { key, problem });
                    }
                }
                Ok(None) => report.differences.push(Difference {
                    key,
                    problem: "missing in Firestore".into(),
                }),
                Err(e) => report.differences.push(Difference {
                    key,
                    problem: format!("cannot read: {e}"),
                }),
            }
        }
    }
    if let Some(os) = objects {
        for info in &segments {
            let key = format!("blob:{}", info.path);
            if pending.contains(&key) {
                report.pending += 1;
                continue;
            }
            report.objects += 1;
            match os.get(&info.path).await {
                Ok(bytes) => {
                    if let Err(e) = Codec::verify(&bytes) {
                        report.differences.push(Difference {
                            key,
                            problem: format!("object is damaged: {e}"),
                        });
                    } else if bytes.len() as u64 != info.bytes {
                        report.differences.push(Difference {
                            key,
                            problem: format!(
                                "object has {} bytes, expected {}",
                                bytes.len(),
                                info.bytes
                            ),
                        });
                    }
                }
                Err(e) => report.differences.push(Difference {
                    key,
                    problem: format!("missing or unreadable: {e}"),
                }),
            }
        }
    }
    Ok(report)
}

/// The first field that differs, if any.
fn compare(want: Map<String, Value>, mut got: Map<String, Value>) -> Option<String> {
    // The sync watermark and the metadata the Firestore client adds are not document content.
    got.retain(|k, _| k != SEQ_FIELD && !k.starts_with("_firestore_"));
    let keys: std::collections::BTreeSet<&String> = want.keys().chain(got.keys()).collect();
    for k in keys {
        let (a, b) = (
            want.get(k).unwrap_or(&Value::Null),
            got.get(k).unwrap_or(&Value::Null),
        );
        if !same(a, b) {
            return Some(format!("field {k}: local {a}, cloud {b}"));
        }
    }
    None
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w))
        }
        _ => a == b,
    }
}
