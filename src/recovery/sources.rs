//! Where a restore finds its state: checkpoint files in the data directory, checkpoint objects
//! in the object store, or the Firestore documents (a rebuild when no checkpoint is left), plus
//! what can be salvaged from a quarantined store and what the cloud holds of memories.
//!
//! Every checkpoint is verified before use (magic, digest, version); an invalid one is skipped
//! with its reason and the next older one tried.

use crate::agent::state::{AgentState, LedgerEntry, PaperPosition, Totals};
use crate::checkpoint::{self, Contents};
use crate::journal::JournalRecord;
use athena_storage::{DeadLetter, Memory, OutboxRow, SeqTable, Store, StoreError};
use athena_sync::{FirestoreSink, ObjectStoreSink};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// A place a checkpoint is restored from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Checkpoint files in `DATA_DIR/checkpoints`.
    Local,
    /// Checkpoint objects in the object store (`sync.object_store_url`; GCS in production).
    Gcs,
    /// The Firestore documents (a rebuild: book snapshot, ledger, memories).
    Firestore,
}

impl Source {
    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Gcs => "gcs",
            Self::Firestore => "firestore",
        }
    }
}

impl std::str::FromStr for Source {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "gcs" => Ok(Self::Gcs),
            "firestore" => Ok(Self::Firestore),
            other => Err(format!(
                "unknown restore source {other:?} (expected local, gcs or firestore)"
            )),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a source could not be read: a restore records it and tries the next source.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The local checkpoint folder cannot be listed.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The cloud failed to answer (or refused): retry later.
    #[error("the cloud")]
    Cloud(#[from] athena_sync::SinkError),
    /// A sink for the source could not be built.
    #[error(transparent)]
    Sync(#[from] athena_sync::SyncError),
    /// A cloud document does not decode into what it should hold.
    #[error("{what}")]
    Document {
        /// Which document.
        what: String,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The source holds nothing usable, or is not configured.
    #[error("{0}")]
    Missing(String),
}

/// A verified checkpoint and where it came from.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its contents.
    pub contents: Contents,
    /// Where it was read (file path or object path).
    pub location: String,
}

/// What a search for a checkpoint found: the newest valid one, and the newer ones skipped.
#[derive(Debug, Clone, Default)]
pub struct Lookup {
    /// The newest valid checkpoint, if any.
    pub found: Option<Found>,
    /// Newer checkpoints skipped, each with why.
    pub skipped: Vec<String>,
}

/// `(created ms, tick)` of a checkpoint file name `ckpt-{ms}-{tick}.ckpt`: newest first order.
fn order_key(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".ckpt")?.strip_prefix("ckpt-")?;
    let (ms, tick) = stem.split_once('-')?;
    Some((ms.parse().ok()?, tick.parse().ok()?))
}

/// Picks `wanted` (an id, or the newest when `None`) among `names`, newest first.
fn candidates<'a>(names: impl Iterator<Item = &'a str>, wanted: Option<&str>) -> Vec<String> {
    let mut v: Vec<(u64, u64, String)> = names
        .filter_map(|n| order_key(n).map(|(ms, t)| (ms, t, n.to_string())))
        .filter(|(_, _, n)| wanted.is_none_or(|w| n.trim_end_matches(".ckpt") == w))
        .collect();
    v.sort();
    v.into_iter().rev().map(|(_, _, n)| n).collect()
}

/// The newest valid checkpoint file in `data_dir` (or the one named `wanted`).
pub fn local(data_dir: &Path, wanted: Option<&str>) -> Result<Lookup, SourceError> {
    let dir = data_dir.join(checkpoint::DIR);
    let names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(SourceError::Io(dir, e)),
    };
    let mut skipped = Vec::new();
    for name in candidates(names.iter().map(String::as_str), wanted) {
        let path: PathBuf = dir.join(&name);
        match checkpoint::verify_file(&path) {
            Ok(contents) => {
                let location = path.display().to_string();
                return Ok(Lookup {
                    found: Some(Found { contents, location }),
                    skipped,
                });
            }
            Err(e) => skipped.push(format!("{name}: {}", athena_sync::one_line(&e))),
        }
    }
    Ok(Lookup {
        found: None,
        skipped,
    })
}

/// The newest valid checkpoint object in the object store (or the one named `wanted`), found
/// through the manifest.
pub async fn object_store(
    sink: &ObjectStoreSink,
    wanted: Option<&str>,
) -> Result<Lookup, SourceError> {
    let manifest = sink.manifest().await?;
    let prefix = format!("{}/", checkpoint::DIR);
    let names = manifest
        .objects
        .keys()
        .filter_map(|p| p.strip_prefix(&prefix));
    let mut skipped = Vec::new();
    for name in candidates(names, wanted) {
        let path = format!("{prefix}{name}");
        match sink.get(&path).await {
            Ok(bytes) => match checkpoint::decode(&bytes) {
                Ok(contents) => {
                    let location = format!("{}:{path}", sink_name(sink));
                    return Ok(Lookup {
                        found: Some(Found { contents, location }),
                        skipped,
                    });
                }
                Err(e) => skipped.push(format!("{path}: {}", athena_sync::one_line(&e))),
            },
            Err(e) => skipped.push(format!("{path}: {e}")),
        }
    }
    Ok(Lookup {
        found: None,
        skipped,
    })
}

fn sink_name(sink: &ObjectStoreSink) -> String {
    athena_sync::Sink::name(sink).to_string()
}

/// The observations of every hourly pack the manifest lists for an hour at or after
/// `since_ms` (observations travel packed, not as documents; see `athena_storage::outbox`).
pub async fn observation_packs(
    sink: &ObjectStoreSink,
    since_ms: u64,
) -> Result<Vec<Memory>, String> {
    let manifest = sink.manifest().await.map_err(|e| e.to_string())?;
    let dir = format!("{}/", athena_storage::outbox::OBSERVATION_PACK_DIR);
    let mut out = Vec::new();
    for path in manifest.objects.keys() {
        let Some(hour) = path
            .strip_prefix(&dir)
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|ms| ms.parse::<u64>().ok())
        else {
            continue;
        };
        if hour + 3_600_000 <= since_ms {
            continue;
        }
        let bytes = sink.get(path).await.map_err(|e| format!("{path}: {e}"))?;
        let pack: Vec<Memory> =
            serde_json::from_slice(&bytes).map_err(|e| format!("{path}: {e}"))?;
        out.extend(pack);
    }
    Ok(out)
}

/// Every cold segment object the manifest lists, with its bytes.
pub async fn cold_segments(sink: &ObjectStoreSink) -> Result<Vec<(String, Vec<u8>)>, String> {
    let manifest = sink.manifest().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for path in manifest
        .objects
        .keys()
        .filter(|p| p.starts_with("segments/"))
    {
        let bytes = sink.get(path).await.map_err(|e| format!("{path}: {e}"))?;
        out.push((path.clone(), bytes.to_vec()));
    }
    Ok(out)
}

/// Documents of one collection, with the highest sync watermark among them.
async fn documents(
    fs: &FirestoreSink,
    collection: &str,
    max_seq: &mut u64,
) -> Result<Vec<(String, Map<String, Value>)>, SourceError> {
    let mut docs = fs.list(collection).await?;
    for (_, d) in &mut docs {
        if let Some(seq) = d
            .remove(athena_sync::coalesce::SEQ_FIELD)
            .and_then(|v| v.as_u64())
        {
            *max_seq = (*max_seq).max(seq);
        }
        d.retain(|k, _| !k.starts_with("_firestore_"));
    }
    Ok(docs)
}

fn parse<T: serde::de::DeserializeOwned>(
    what: &str,
    doc: Map<String, Value>,
) -> Result<T, SourceError> {
    serde_json::from_value(Value::Object(doc)).map_err(|source| SourceError::Document {
        what: what.to_string(),
        source,
    })
}

/// What the Firestore mirror holds of the agent's memories: every memory and the ids of the
/// cold index (the live cold memories), with the highest sync watermark seen.
pub struct CloudMemories {
    /// Hot and warm memories.
    pub memories: Vec<Memory>,
    /// Ids of live cold memories.
    pub cold_live: std::collections::HashSet<ulid::Ulid>,
    /// Highest outbox sequence the documents carry.
    pub max_seq: u64,
}

/// Reads the memories and the cold index from Firestore.
pub async fn firestore_memories(fs: &FirestoreSink) -> Result<CloudMemories, SourceError> {
    let mut max_seq = 0;
    let mut memories = Vec::new();
    for (id, doc) in documents(fs, athena_storage::memory::MEMORY_COLLECTION, &mut max_seq).await? {
        memories.push(parse::<Memory>(&format!("memory {id}"), doc)?);
    }
    let cold_live = documents(
        fs,
        athena_storage::memory::cold::COLD_INDEX_COLLECTION,
        &mut max_seq,
    )
    .await?
    .into_iter()
    .filter_map(|(id, _)| id.parse().ok())
    .collect();
    Ok(CloudMemories {
        memories,
        cold_live,
        max_seq,
    })
}

/// The book snapshot as stored in Firestore (every `sync.state_interval`, and at shutdown).
#[derive(Deserialize)]
struct BookDoc {
    tick: u64,
    at_ms: u64,
    cash_usd: f64,
    positions: Vec<PaperPosition>,
    seed: u64,
    started_ms: u64,
    observation_start_ms: u64,
    next_position: u64,
    totals: Totals,
}

/// Rebuilds checkpoint-like contents from the Firestore documents, when no checkpoint is left:
/// the agent from the last book snapshot (profiles and the gas pattern are relearned), the
/// ledger up to that snapshot, no risk history (the caller holds trading for an operator), and
/// the outbox watermark above every sequence the documents carry. Returns the contents and the
/// highest sequence seen.
pub async fn firestore_rebuild(fs: &FirestoreSink) -> Result<(Contents, u64), SourceError> {
    let mut max_seq = 0;
    let book = documents(fs, "agent", &mut max_seq)
        .await?
        .into_iter()
        .find(|(id, _)| id == "book")
        .ok_or_else(|| {
            SourceError::Missing(
                "Firestore holds no book snapshot (agent/book): nothing to rebuild from".into(),
            )
        })?;
    let book: BookDoc = parse("agent/book", book.1)?;
    let mut ledger: Vec<(u64, LedgerEntry)> = Vec::new();
    for (id, doc) in documents(fs, "ledger", &mut max_seq).await? {
        let seq: u64 = id.parse().map_err(|_| {
            SourceError::Missing(format!("ledger document {id:?} is not a sequence number"))
        })?;
        let e: LedgerEntry = parse(&format!("ledger/{id}"), doc)?;
        if e.at_ms <= book.at_ms {
            ledger.push((seq, e));
        }
    }
    ledger.sort_by_key(|(s, _)| *s);
    let _ = documents(fs, "checkpoints", &mut max_seq).await?;
    let _ = documents(fs, "positions", &mut max_seq).await?;
    let _ = documents(fs, "risk", &mut max_seq).await?;
    let mut agent = AgentState::new(book.started_ms, 0.0, book.seed);
    agent.next_tick = book.tick + 1;
    agent.observation_start_ms = book.observation_start_ms;
    agent.cash_usd = book.cash_usd;
    agent.positions = book.positions;
    agent.next_position = book.next_position;
    agent.totals = book.totals;
    agent.last_tick_ms = book.at_ms;
    let contents = Contents {
        format_version: checkpoint::FORMAT_VERSION,
        id: format!("firestore-rebuild-{}", book.at_ms),
        created_ms: book.at_ms,
        agent: Some(agent),
        risk: None,
        ledger,
        intents: Vec::new(),
        memories: Default::default(),
        outbox_next_seq: max_seq + 1,
        journal_next_seq: 1,
        config_digest: String::new(),
    };
    Ok((contents, max_seq))
}

/// What could be read back from a quarantined store.
#[derive(Default)]
pub struct Salvage {
    /// Memories that decode.
    pub memories: Vec<Memory>,
    /// Keys of memories that did not.
    pub bad_memories: Vec<String>,
    /// Journal entries that decode.
    pub journal: Vec<(u64, JournalRecord)>,
    /// Outbox rows that decode (changes the cloud may not have yet).
    pub outbox: Vec<(u64, OutboxRow)>,
    /// Dead letters that decode.
    pub dead_letters: Vec<(u64, DeadLetter)>,
    /// The outbox counter the quarantined store had reached.
    pub outbox_next_seq: u64,
    /// How it was opened (read-only, or repaired).
    pub note: String,
}

/// Reads what still decodes from the quarantined store file at `path`, opening it read-only
/// when it can (a store that needs repair is opened read-write, which repairs the quarantined
/// copy, never the new store).
pub fn salvage(path: &Path, memory: &athena_config::MemoryConfig) -> Result<Salvage, StoreError> {
    let (store, note) = match Store::open_file_read_only(path, memory) {
        Ok(s) => (s, "opened read-only".to_string()),
        Err(_) => (
            Store::open_file(path, memory)?,
            "opened read-write (redb repaired the quarantined file)".to_string(),
        ),
    };
    store.read(|r| {
        let (memories, bad_memories) = r.salvage_memories()?;
        Ok(Salvage {
            memories,
            bad_memories,
            journal: salvage_seq(r, SeqTable::Journal),
            outbox: salvage_seq(r, SeqTable::Outbox),
            dead_letters: salvage_seq(r, SeqTable::DeadLetters),
            outbox_next_seq: r
                .meta_u64(SeqTable::Outbox.counter_key())
                .ok()
                .flatten()
                .unwrap_or(1),
            note,
        })
    })
}

/// Every entry of a sequence table that decodes, read one at a time so a corrupt entry costs
/// only itself.
fn salvage_seq<T: serde::de::DeserializeOwned>(
    r: &athena_storage::ReadTx<'_>,
    table: SeqTable,
) -> Vec<(u64, T)> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        match r.seq_after::<T>(table, after, 1) {
            Ok(v) if v.is_empty() => return out,
            Ok(mut v) => {
                let (seq, e) = v.remove(0);
                after = seq;
                out.push((seq, e));
            }
            Err(StoreError::Corrupt { key, .. }) => match key.parse::<u64>() {
                Ok(seq) => after = seq,
                Err(_) => return out,
            },
            Err(_) => return out,
        }
    }
}
