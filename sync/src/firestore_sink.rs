//! The Firestore sink: documents under `agents/{agent_id}/{collection}/{doc}`.
//!
//! A push is one BatchWrite (one write request), which is not atomic and answers per write:
//! sets (with any increments folded into the known body) and deletes as they are, and
//! increment-only writes prepared first: the document is read (reads run concurrently), only
//! the parts above its `_athena_seq` watermark are applied, and the write carries a
//! precondition on the update time read (or on non-existence), so a replay counts nothing
//! twice and a concurrent change makes that one write retry instead of losing an update.
//!
//! Credentials come through the standard Google mechanisms; with `FIRESTORE_EMULATOR_HOST` set
//! the client talks to the emulator with a stub token.

use crate::coalesce::{Increments, SEQ_FIELD, Write, increment as increment_fields, set_document};
use crate::error::SyncError;
use crate::read_cache::ReadCache;
use crate::sink::{ErrorKind, Sink, SinkError, SinkRole, WriteResult};
use firestore::errors::FirestoreError;
use firestore::{FirestoreDb, FirestoreDbOptions, FirestoreWritePrecondition};
use serde_json::{Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// How long the client keeps retrying a failed BatchWrite by itself: not at all (see
/// `write_batch`).
const NO_RETRY: std::time::Duration = std::time::Duration::ZERO;

/// Firestore's collection of agents; each agent's documents live under its own document.
pub const AGENTS_COLLECTION: &str = "agents";

/// A sink writing documents to Firestore.
pub struct FirestoreSink {
    db: FirestoreDb,
    parent: String,
    cache: ReadCache<Option<Map<String, Value>>>,
    requests: RequestCounters,
}

/// What this sink asked of Firestore: the cost accounting behind `sync status` and the sync
/// benchmark. A commit is one write request (a BatchWrite of one or more documents); Firestore
/// bills each document written, and each document read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RequestCounts {
    /// Document reads sent (the increment path reads before it writes; cached reads excluded).
    pub reads: u64,
    /// Write requests sent (BatchWrite calls).
    pub commits: u64,
    /// Documents those write requests carried.
    pub documents_written: u64,
}

#[derive(Debug, Default)]
struct RequestCounters {
    reads: AtomicU64,
    commits: AtomicU64,
    documents_written: AtomicU64,
}

impl RequestCounters {
    fn commit(&self, documents: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.documents_written
            .fetch_add(documents as u64, Ordering::Relaxed);
    }
}

impl FirestoreSink {
    /// Connects to `project`/`database`, writing under `agents/{agent_id}`, with the default
    /// read cache (300 s, 10,000 entries).
    pub async fn connect(project: &str, database: &str, agent_id: &str) -> Result<Self, SyncError> {
        let d = athena_config::SyncConfig::default();
        Self::connect_with_cache(
            project,
            database,
            agent_id,
            d.read_cache_entries,
            d.read_cache_ttl,
        )
        .await
    }

    /// Connects with a read cache of `entries` entries living `ttl`.
    pub async fn connect_with_cache(
        project: &str,
        database: &str,
        agent_id: &str,
        entries: u64,
        ttl: std::time::Duration,
    ) -> Result<Self, SyncError> {
        let options =
            FirestoreDbOptions::new(project.to_string()).with_database_id(database.to_string());
        let db = FirestoreDb::with_options(options).await.map_err(|e| {
            SyncError::Unreachable(format!(
                "firestore project {project:?} unreachable: {}",
                describe(&e)
            ))
        })?;
        let parent: String = db
            .parent_path(AGENTS_COLLECTION, agent_id)
            .map_err(|e| SyncError::Config(format!("agent id {agent_id:?}: {e}")))?
            .into();
        Ok(Self {
            db,
            parent,
            cache: ReadCache::new(entries, ttl),
            requests: RequestCounters::default(),
        })
    }

    /// Reads a document through the read cache, `None` when it does not exist.
    pub async fn get(
        &self,
        collection: &str,
        doc: &str,
    ) -> Result<Option<Map<String, Value>>, SinkError> {
        let key = format!("{collection}/{doc}");
        self.cache
            .get_or_load(&key, async {
                Ok(self.read(collection, doc).await?.map(|(map, _)| map))
            })
            .await
    }

    /// Reads a document from Firestore itself, bypassing the cache (`sync verify`).
    pub async fn get_fresh(
        &self,
        collection: &str,
        doc: &str,
    ) -> Result<Option<Map<String, Value>>, SinkError> {
        Ok(self.read(collection, doc).await?.map(|(map, _)| map))
    }

    /// Every document of `collection` under the agent, as (document id, fields), the sync
    /// watermark included (a restore reads the highest sequence the cloud has seen from it).
    pub async fn list(
        &self,
        collection: &str,
    ) -> Result<Vec<(String, Map<String, Value>)>, SinkError> {
        use futures::TryStreamExt;
        // One streamed query (RunQuery), not paged listing: a page token makes the server (the
        // emulator at least) skip all earlier documents again, quadratic at 100k documents.
        let stream = self
            .db
            .fluent()
            .select()
            .from(collection)
            .parent(&self.parent)
            .stream_query_with_errors()
            .await
            .map_err(classify)?;
        let docs: Vec<firestore::gcloud_sdk::google::firestore::v1::Document> =
            stream.try_collect().await.map_err(classify)?;
        self.requests
            .reads
            .fetch_add(docs.len() as u64, Ordering::Relaxed);
        docs.iter()
            .map(|d| {
                let id = d.name.rsplit('/').next().unwrap_or_default().to_string();
                match FirestoreDb::deserialize_doc_to::<Value>(d) {
                    Ok(Value::Object(m)) => Ok((id, m)),
                    Ok(_) => Ok((id, Map::new())),
                    Err(e) => Err(SinkError::new(
                        ErrorKind::Invalid,
                        format!("reading {collection}/{}: {e}", d.name),
                    )),
                }
            })
            .collect()
    }

    /// Read-cache (hits, misses).
    pub fn cache_counters(&self) -> (u64, u64) {
        self.cache.counters()
    }

    /// The requests sent so far.
    pub fn requests(&self) -> RequestCounts {
        RequestCounts {
            reads: self.requests.reads.load(Ordering::Relaxed),
            commits: self.requests.commits.load(Ordering::Relaxed),
            documents_written: self.requests.documents_written.load(Ordering::Relaxed),
        }
    }

    async fn read(
        &self,
        collection: &str,
        doc: &str,
    ) -> Result<Option<(Map<String, Value>, FirestoreWritePrecondition)>, SinkError> {
        self.requests.reads.fetch_add(1, Ordering::Relaxed);
        match self
            .db
            .fluent()
            .select()
            .by_id_in(collection)
            .parent(&self.parent)
            .one(doc)
            .await
        {
            Ok(None) => Ok(None),
            Ok(Some(d)) => {
                let map = match FirestoreDb::deserialize_doc_to::<Value>(&d) {
                    Ok(Value::Object(m)) => m,
                    Ok(_) => Map::new(),
                    Err(e) => {
                        return Err(SinkError::new(
                            ErrorKind::Invalid,
                            format!("reading {collection}/{doc}: {e}"),
                        ));
                    }
                };
                let ts = d.update_time.ok_or_else(|| {
                    SinkError::new(ErrorKind::Transient, "document without update time")
                })?;
                let at = firestore::timestamp_utils::from_timestamp(ts).map_err(classify)?;
                Ok(Some((map, FirestoreWritePrecondition::UpdateTime(at))))
            }
            Err(FirestoreError::DataNotFoundError(_)) => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// Queues one write on `batch`.
    fn queue(
        &self,
        batch: &mut firestore::FirestoreBatch<'_, firestore::FirestoreSimpleBatchWriter>,
        write: &Queued<'_>,
    ) -> Result<(), SinkError> {
        let queued = match write {
            Queued::Plain(Write::Set {
                collection,
                doc,
                body,
                increments,
                seq,
            }) => batch.update_object_at(
                &self.parent,
                collection,
                doc,
                &Value::Object(set_document(body, increments, *seq)),
                None,
                None,
                vec![],
            ),
            Queued::Plain(Write::Delete { collection, doc }) => {
                batch.delete_by_id_at(&self.parent, collection, doc, None)
            }
            Queued::Plain(other) => {
                return Err(SinkError::new(
                    ErrorKind::Invalid,
                    format!("document sink got an object write for {}", other.key_hint()),
                ));
            }
            Queued::Guarded {
                collection,
                doc,
                body,
                fields,
                precondition,
            } => batch.update_object_at(
                &self.parent,
                collection,
                doc,
                &Value::Object(body.clone()),
                Some(fields.clone()),
                Some(precondition.clone()),
                vec![],
            ),
        };
        queued
            .map(|_| ())
            .map_err(|e| SinkError::new(ErrorKind::Invalid, e.to_string()))
    }

    /// Sends `writes` as one BatchWrite (one write request); fills `results` at their indices.
    async fn write_batch(
        &self,
        writes: &[(usize, Queued<'_>)],
        results: &mut [Option<WriteResult>],
    ) {
        // No retries inside the client: a failed BatchWrite comes straight back, so the worker's
        // backoff, its ramp limiter (on RESOURCE_EXHAUSTED) and its outage handling decide.
        let options = firestore::FirestoreSimpleBatchWriteOptions::new()
            .with_retry_max_elapsed_time(NO_RETRY);
        let writer = match self
            .db
            .create_simple_batch_writer_with_options(options)
            .await
        {
            Ok(w) => w,
            Err(e) => {
                let e = classify(e);
                writes
                    .iter()
                    .for_each(|(i, _)| results[*i] = Some(Err(e.clone())));
                return;
            }
        };
        let mut batch = writer.new_batch();
        let mut sent = Vec::new();
        for (i, w) in writes {
            match self.queue(&mut batch, w) {
                Ok(()) => sent.push(*i),
                Err(e) => results[*i] = Some(Err(e)),
            }
        }
        if sent.is_empty() {
            return;
        }
        self.requests.commit(sent.len());
        match batch.write().await {
            Ok(resp) => {
                for (k, i) in sent.iter().enumerate() {
                    results[*i] = Some(match resp.statuses.get(k) {
                        Some(s) if s.code != 0 => {
                            Err(SinkError::new(kind_of_code(s.code), s.message.clone()))
                        }
                        _ => Ok(()),
                    });
                }
            }
            Err(e) => {
                let e = classify(e);
                if matches!(e.kind, ErrorKind::Permanent | ErrorKind::Invalid) && sent.len() > 1 {
                    // The service refused the whole request for one bad write (an oversized
                    // document does this): send each alone, so only that one is rejected.
                    for (i, w) in writes.iter().filter(|(i, _)| sent.contains(i)) {
                        let one = [(*i, w.clone())];
                        Box::pin(self.write_batch(&one, results)).await;
                    }
                } else {
                    sent.iter().for_each(|i| results[*i] = Some(Err(e.clone())));
                }
            }
        }
    }

    /// Prepares an increment-only write: reads the document, applies the parts above its
    /// watermark, and guards the write with the update time read (or non-existence). `None`
    /// when every part was applied by an earlier, unconfirmed send.
    async fn prepare_increment<'a>(
        &self,
        collection: &'a str,
        doc: &'a str,
        parts: &std::collections::BTreeMap<u64, Increments>,
    ) -> Result<Option<Queued<'a>>, SinkError> {
        let (mut current, precondition) = match self.read(collection, doc).await? {
            Some((map, pre)) => (map, pre),
            None => (Map::new(), FirestoreWritePrecondition::Exists(false)),
        };
        let watermark = current.get(SEQ_FIELD).and_then(Value::as_u64).unwrap_or(0);
        let mut fields: Vec<String> = Vec::new();
        let mut last = watermark;
        for (seq, inc) in parts.range(watermark + 1..) {
            increment_fields(&mut current, inc);
            fields.extend(inc.keys().cloned());
            last = *seq;
        }
        if last == watermark {
            return Ok(None);
        }
        current.insert(SEQ_FIELD.into(), Value::from(last));
        fields.push(SEQ_FIELD.into());
        fields.sort();
        fields.dedup();
        Ok(Some(Queued::Guarded {
            collection,
            doc,
            body: current,
            fields,
            precondition,
        }))
    }
}

/// A document write ready for a BatchWrite.
#[derive(Clone)]
enum Queued<'a> {
    /// A set or a delete, sent as it is.
    Plain(&'a Write),
    /// An increment applied to the document read, written only if it has not changed since.
    Guarded {
        collection: &'a str,
        doc: &'a str,
        body: Map<String, Value>,
        fields: Vec<String>,
        precondition: FirestoreWritePrecondition,
    },
}

/// gRPC status code → what the worker does.
fn kind_of_code(code: i32) -> ErrorKind {
    match code {
        6 => ErrorKind::AlreadyApplied,    // ALREADY_EXISTS
        7 | 16 => ErrorKind::Unauthorized, // PERMISSION_DENIED, UNAUTHENTICATED
        8 => ErrorKind::RateLimited,       // RESOURCE_EXHAUSTED
        1 | 2 | 4 | 9 | 10 | 13 | 14 => ErrorKind::Transient, // CANCELLED, UNKNOWN, DEADLINE, FAILED_PRECONDITION, ABORTED, INTERNAL, UNAVAILABLE
        3 | 11 => ErrorKind::Permanent, // INVALID_ARGUMENT (e.g. over 1 MiB), OUT_OF_RANGE
        _ => ErrorKind::Permanent,
    }
}

fn classify(e: FirestoreError) -> SinkError {
    let kind = match &e {
        FirestoreError::DatabaseError(d) => match d.public.code.as_str() {
            "PermissionDenied" | "Unauthenticated" => ErrorKind::Unauthorized,
            "ResourceExhausted" => ErrorKind::RateLimited,
            "InvalidArgument" | "OutOfRange" => ErrorKind::Permanent,
            "AlreadyExists" => ErrorKind::AlreadyApplied,
            _ if d.retry_possible => ErrorKind::Transient,
            _ => ErrorKind::Transient,
        },
        FirestoreError::InvalidParametersError(_) | FirestoreError::SerializeError(_) => {
            ErrorKind::Invalid
        }
        FirestoreError::DataNotFoundError(_) => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    SinkError::new(kind, describe(&e))
}

/// `e` in one short line. The client renders transport failures as a nested debug dump
/// (`GrpcStatus(tonic::transport::Error(… message: "Connection refused" …))`): keep its
/// innermost message.
fn describe(e: &FirestoreError) -> String {
    let full = e.to_string();
    let innermost = full
        .rsplit("message: \"")
        .next()
        .filter(|_| full.contains("message: \""))
        .and_then(|tail| tail.split('"').next());
    match innermost {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => crate::error::one_line(e),
    }
}

#[async_trait::async_trait]
impl Sink for FirestoreSink {
    fn name(&self) -> &str {
        "firestore"
    }

    fn role(&self) -> SinkRole {
        SinkRole::Documents
    }

    async fn push(&self, writes: &[Write]) -> Vec<WriteResult> {
        for w in writes {
            self.cache.invalidate(&w.key_hint()).await;
        }
        let mut results: Vec<Option<WriteResult>> = vec![None; writes.len()];
        // Increments read their documents first (concurrently), then every write goes out in
        // one BatchWrite, which answers per write.
        let reads =
            futures::future::join_all(writes.iter().enumerate().filter_map(|(i, w)| match w {
                Write::Increment {
                    collection,
                    doc,
                    parts,
                } => Some(async move { (i, self.prepare_increment(collection, doc, parts).await) }),
                _ => None,
            }))
            .await;
        let mut queued: Vec<(usize, Queued<'_>)> = Vec::with_capacity(writes.len());
        for (i, prepared) in reads {
            match prepared {
                Ok(Some(q)) => queued.push((i, q)),
                Ok(None) => results[i] = Some(Ok(())),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        queued.extend(
            writes
                .iter()
                .enumerate()
                .filter(|(_, w)| !matches!(w, Write::Increment { .. }))
                .map(|(i, w)| (i, Queued::Plain(w))),
        );
        queued.sort_by_key(|(i, _)| *i);
        self.write_batch(&queued, &mut results).await;
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SinkError::new(ErrorKind::Transient, "no result"))))
            .collect()
    }
}
