//! `athena sync verify`: compares what the store says the cloud should hold with what it holds.
//!
//! Checked: every local memory but observations (collection `memories`; an observation is checked
//! by the presence of its hour's pack, `observations/<hour ms>.json`), every cold index entry
//! (`cold_index`) and every checkpoint entry (`checkpoints`) as documents; every cold segment
//! and checkpoint file the store knows, and every object the manifest lists (everything the
//! sync layer uploaded and has not deleted), as objects: present, of the right size and
//! SHA-256, segments with intact records. Keys with rows still in the outbox are not yet
//! synced: they are counted as pending, not as differences. Reads bypass the read cache.
//! Numbers compare as numbers (Firestore keeps integers and doubles apart); the sync watermark
//! field and the `_firestore_*` metadata the client adds on reading are ignored.

use crate::coalesce::SEQ_FIELD;
use crate::error::SyncError;
use crate::firestore_sink::FirestoreSink;
use crate::manifest::{MANIFEST_PATH, ManifestEntry};
use crate::object_sink::ObjectStoreSink;
use athena_storage::memory::MEMORY_COLLECTION;
use athena_storage::memory::cold::COLD_INDEX_COLLECTION;
use athena_storage::tables::{CHECKPOINT_COLLECTION, CHECKPOINT_OBJECT_DIR};
use athena_storage::{Codec, KeyedTable, Store, StoreError};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
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

/// What the store says the cloud should hold, read in one snapshot.
struct Local {
    /// Remote keys with rows still in the outbox.
    pending: HashSet<String>,
    /// Documents: (collection, doc id, content).
    documents: Vec<(String, String, Value)>,
    /// Objects: path → what the store knows of it.
    objects: BTreeMap<String, Expected>,
}

/// What an object should be.
#[derive(Debug, Clone, Default)]
struct Expected {
    /// Size from the store's record (segment info, checkpoint entry).
    bytes: Option<u64>,
    /// A cold segment: its records must pass their checksums.
    segment: bool,
    /// Size and SHA-256 the manifest lists.
    listed: Option<ManifestEntry>,
}

/// Compares the cloud with `store`. `firestore` and `objects` are the configured sinks (`None`
/// when that role syncs nowhere, and is then not checked).
pub async fn verify(
    store: &Arc<Store>,
    firestore: Option<&FirestoreSink>,
    objects: Option<&ObjectStoreSink>,
) -> Result<VerifyReport, SyncError> {
    let s = store.clone();
    let local = tokio::task::spawn_blocking(move || read_local(&s))
        .await
        .map_err(|e| SyncError::Task(e.to_string()))??;
    let mut report = VerifyReport::default();
    if let Some(fs) = firestore {
        verify_documents(fs, &local, &mut report).await;
    }
    if let Some(os) = objects {
        verify_objects(os, local, &mut report).await;
    }
    Ok(report)
}

/// Memories (but observations), cold index entries and checkpoint entries as documents; cold
/// segments, checkpoint files and the observations' hourly packs as objects.
fn read_local(store: &Store) -> Result<Local, StoreError> {
    store.read(|r| {
        let pending: HashSet<String> = r
            .outbox_peek(0, usize::MAX)?
            .into_iter()
            .map(|(_, row)| row.op.remote_key())
            .collect();
        let mut documents = Vec::new();
        let mut objects = BTreeMap::new();
        for m in r.all_memories()? {
            if athena_storage::has_document(&m) {
                documents.push((MEMORY_COLLECTION.into(), m.id.to_string(), json(&m)));
            } else {
                // An observation travels in its hour's pack, written when it was new; its
                // local compaction since is not sent, so only the pack's presence is checked.
                let hour = m.created_ms - m.created_ms % 3_600_000;
                objects.insert(
                    athena_storage::observation_pack_path(hour),
                    Expected {
                        bytes: None,
                        segment: false,
                        listed: None,
                    },
                );
            }
        }
        for e in r.cold_entries()? {
            documents.push((COLD_INDEX_COLLECTION.into(), e.id.to_string(), json(&e)));
        }
        for info in r.cold_segments()? {
            objects.insert(
                info.path.clone(),
                Expected {
                    bytes: Some(info.bytes),
                    segment: true,
                    listed: None,
                },
            );
        }
        for (id, entry) in r.all::<Value>(KeyedTable::Checkpoints)? {
            if let Some(file) = entry.get("file").and_then(Value::as_str) {
                objects.insert(
                    format!("{CHECKPOINT_OBJECT_DIR}/{file}"),
                    Expected {
                        bytes: entry.get("bytes").and_then(Value::as_u64),
                        segment: false,
                        listed: None,
                    },
                );
            }
            documents.push((CHECKPOINT_COLLECTION.into(), id, entry));
        }
        Ok(Local {
            pending,
            documents,
            objects,
        })
    })
}

fn json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Every expected document, read fresh and compared field by field.
async fn verify_documents(fs: &FirestoreSink, local: &Local, report: &mut VerifyReport) {
    for (collection, doc, want) in &local.documents {
        let key = format!("{collection}/{doc}");
        if local.pending.contains(&key) {
            report.pending += 1;
            continue;
        }
        report.documents += 1;
        let problem = match fs.get_fresh(collection, doc).await {
            Ok(Some(got)) => compare(want.as_object().cloned().unwrap_or_default(), got),
            Ok(None) => Some("missing in Firestore".into()),
            Err(e) => Some(format!("cannot read: {e}")),
        };
        if let Some(problem) = problem {
            report.differences.push(Difference { key, problem });
        }
    }
}

/// Every object the store expects and every object the manifest lists (what the sync layer
/// uploaded and has not deleted), each read once and checked for size, SHA-256 and, for
/// segments, record checksums.
async fn verify_objects(os: &ObjectStoreSink, local: Local, report: &mut VerifyReport) {
    let mut objects = local.objects;
    match os.manifest().await {
        Ok(manifest) => {
            for (path, entry) in manifest.objects {
                objects.entry(path).or_default().listed = Some(entry);
            }
        }
        Err(e) => report.differences.push(Difference {
            key: format!("blob:{MANIFEST_PATH}"),
            problem: format!("cannot read the manifest: {e}"),
        }),
    }
    for (path, expected) in objects {
        let key = format!("blob:{path}");
        if local.pending.contains(&key) {
            report.pending += 1;
            continue;
        }
        report.objects += 1;
        let problem = match os.get(&path).await {
            Ok(bytes) => object_problem(&bytes, &expected),
            Err(e) => Some(format!("missing or unreadable: {e}")),
        };
        if let Some(problem) = problem {
            report.differences.push(Difference { key, problem });
        }
    }
}

/// What is wrong with an object's content, if anything.
fn object_problem(bytes: &[u8], expected: &Expected) -> Option<String> {
    if expected.segment
        && let Err(e) = Codec::verify(bytes)
    {
        return Some(format!("object is damaged: {e}"));
    }
    if let Some(want) = expected.bytes.filter(|b| *b != bytes.len() as u64) {
        return Some(format!("object has {} bytes, expected {want}", bytes.len()));
    }
    if let Some(listed) = &expected.listed {
        let got = ManifestEntry::of(bytes);
        if got != *listed {
            return Some(format!(
                "object differs from the manifest: {} bytes sha256 {}, listed {} bytes sha256 {}",
                got.bytes, got.sha256, listed.bytes, listed.sha256
            ));
        }
    }
    None
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
