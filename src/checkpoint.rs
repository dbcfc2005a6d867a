//! Checkpoints (SPEC.md §4): a consistent snapshot of everything the agent needs to resume,
//! taken from one read transaction, versioned, compressed, with a SHA-256 digest.
//!
//! A checkpoint is stored three ways: a file under `DATA_DIR/checkpoints/` (written aside,
//! synced, renamed) with a store entry, an object in the object store (through the outbox),
//! and a metadata document in Firestore (through the outbox). The file is
//! `MAGIC | SHA-256(payload) | payload`, the payload zstd-compressed msgpack, so a file can be
//! verified on its own and a flipped byte is found.

use crate::agent::state::{AgentState, LedgerEntry, STATE_KEY};
use crate::risk::RiskState;
use athena_storage::tables::{CHECKPOINT_COLLECTION, CHECKPOINT_OBJECT_DIR};
use athena_storage::{KeyedTable, OutboxOp, SeqTable, Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// First bytes of every checkpoint file.
pub const MAGIC: &[u8; 8] = b"ATHCKPT1";
/// Version of the checkpoint contents.
pub const FORMAT_VERSION: u32 = 1;
/// Directory of checkpoint files inside the data directory.
pub const DIR: &str = "checkpoints";

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contents {
    /// Contents version.
    pub format_version: u32,
    /// Id.
    pub id: String,
    /// Agent time taken.
    pub created_ms: u64,
    /// The agent: book, positions, observation start, profiles (strategy state), totals.
    pub agent: Option<AgentState>,
    /// Breakers, trading state, gas budget.
    pub risk: Option<RiskState>,
    /// The ledger, by sequence number.
    pub ledger: Vec<(u64, LedgerEntry)>,
    /// Chain transactions written down (the chain executor's intents).
    pub intents: Vec<(String, crate::chain::send::Intent)>,
    /// Memory index summary: per category, the count and a SHA-256 over the sorted ids.
    pub memories: BTreeMap<String, (u64, String)>,
    /// Outbox watermark: the next sequence number (never reused).
    pub outbox_next_seq: u64,
    /// The journal's next sequence number: entries below it belong to this checkpoint.
    #[serde(default)]
    pub journal_next_seq: u64,
    /// SHA-256 of the configuration in force.
    pub config_digest: String,
}

/// The store entry of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Id.
    pub id: String,
    /// Agent time taken.
    pub created_ms: u64,
    /// Tick the agent was at.
    pub tick: u64,
    /// File size, bytes.
    pub bytes: u64,
    /// SHA-256 of the payload, hex.
    pub digest: String,
    /// File name inside the checkpoint directory.
    pub file: String,
}

use athena_storage::hex;

/// Why a checkpoint cannot be made or used; each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the file failed.
    #[error("{}", .0.display())]
    Io(PathBuf, #[source] std::io::Error),
    /// The contents could not be encoded (a bug: the snapshot holds something msgpack cannot).
    #[error("encoding the checkpoint")]
    Encode(#[source] rmp_serde::encode::Error),
    /// The payload does not decompress: the file is damaged.
    #[error("decompressing the checkpoint")]
    Decompress(#[source] std::io::Error),
    /// The payload does not decode: the file is damaged or of another build.
    #[error("decoding the checkpoint")]
    Decode(#[source] rmp_serde::decode::Error),
    /// The file is not a valid checkpoint (bad magic, digest mismatch, version).
    #[error("{0}")]
    Invalid(String),
}

/// Takes a checkpoint of `store` at agent time `now_ms`: the file, the store entry, and the
/// object and metadata document queued in the outbox, in one transaction after the file.
pub fn create(
    store: &Store,
    data_dir: &Path,
    config: &athena_config::Config,
    now_ms: u64,
) -> Result<Entry, CheckpointError> {
    let config_digest = hex(&Sha256::digest(
        serde_json::to_vec(config)
            .map_err(|e| CheckpointError::Invalid(format!("the configuration: {e}")))?,
    ));
    let mut contents = store.read(|r| {
        let agent: Option<AgentState> = r.get(KeyedTable::Agent, STATE_KEY)?;
        let risk = crate::risk::persist::load(r)?;
        let ledger = r.seq_after::<LedgerEntry>(SeqTable::Ledger, 0, usize::MAX)?;
        let intents = r.all::<crate::chain::send::Intent>(KeyedTable::Intents)?;
        let mut ids: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (category, id) in r.memory_ids_by_category()? {
            ids.entry(category.as_str().to_string())
                .or_default()
                .push(id.to_string());
        }
        let memories = ids
            .into_iter()
            .map(|(c, mut v)| {
                v.sort();
                let digest = hex(&Sha256::digest(v.join("\n").as_bytes()));
                (c, (v.len() as u64, digest))
            })
            .collect();
        let outbox_next_seq = r.meta_u64(SeqTable::Outbox.counter_key())?.unwrap_or(1);
        let journal_next_seq = r.meta_u64(SeqTable::Journal.counter_key())?.unwrap_or(1);
        Ok(Contents {
            format_version: FORMAT_VERSION,
            id: String::new(),
            created_ms: now_ms,
            agent,
            risk,
            ledger,
            intents,
            memories,
            outbox_next_seq,
            journal_next_seq,
            config_digest: config_digest.clone(),
        })
    })?;
    let tick = contents.agent.as_ref().map_or(0, |a| a.next_tick);
    contents.id = format!("ckpt-{now_ms}-{tick}");
    let bytes = encode(&contents)?;
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CheckpointError::Io(dir.clone(), e))?;
    let file = format!("{}.ckpt", contents.id);
    let path = dir.join(&file);
    write_synced(&path, &bytes)?;
    let entry = Entry {
        id: contents.id.clone(),
        created_ms: now_ms,
        tick,
        bytes: bytes.len() as u64,
        digest: hex(&bytes[8..40]),
        file,
    };
    store.write(|w| {
        w.put(KeyedTable::Checkpoints, &entry.id, &entry)?;
        w.outbox_append(
            OutboxOp::PutBlob {
                path: object_path(&entry.file),
                bytes: bytes.clone(),
            },
            now_ms,
        )?;
        w.outbox_append(
            OutboxOp::upsert(CHECKPOINT_COLLECTION, &entry.id, &entry)?,
            now_ms,
        )?;
        Ok(())
    })?;
    Ok(entry)
}

/// The object-store path of a checkpoint file.
pub fn object_path(file: &str) -> String {
    format!("{CHECKPOINT_OBJECT_DIR}/{file}")
}

fn encode(contents: &Contents) -> Result<Vec<u8>, CheckpointError> {
    let packed = rmp_serde::to_vec_named(contents).map_err(CheckpointError::Encode)?;
    // Compressing from memory into memory: the only I/O error is running out of memory.
    let payload = zstd::encode_all(packed.as_slice(), 3)
        .map_err(|e| CheckpointError::Io(PathBuf::from("(zstd in memory)"), e))?;
    let mut out = Vec::with_capacity(40 + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    use std::io::Write;
    let io = |e| CheckpointError::Io(path.to_path_buf(), e);
    let tmp = path.with_extension("ckpt.tmp");
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        // A failed write (a full disk) leaves nothing behind to pile up.
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

/// Decodes and verifies checkpoint bytes: magic, digest, contents, version.
pub fn decode(bytes: &[u8]) -> Result<Contents, CheckpointError> {
    if bytes.len() < 40 || &bytes[..8] != MAGIC {
        return Err(CheckpointError::Invalid(
            "not an Athena checkpoint (bad magic)".into(),
        ));
    }
    let (digest, payload) = (&bytes[8..40], &bytes[40..]);
    if Sha256::digest(payload).as_slice() != digest {
        return Err(CheckpointError::Invalid(format!(
            "digest mismatch: the file says {}, its payload hashes to {}",
            hex(digest),
            hex(&Sha256::digest(payload))
        )));
    }
    let packed = zstd::decode_all(payload).map_err(CheckpointError::Decompress)?;
    let c: Contents = rmp_serde::from_slice(&packed).map_err(CheckpointError::Decode)?;
    if c.format_version != FORMAT_VERSION {
        return Err(CheckpointError::Invalid(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            c.format_version
        )));
    }
    Ok(c)
}

/// Reads and verifies the checkpoint file at `path`.
pub fn verify_file(path: &Path) -> Result<Contents, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| CheckpointError::Io(path.to_path_buf(), e))?;
    decode(&bytes)
}

/// Every checkpoint entry of the store, oldest first.
pub fn list(store: &Store) -> Result<Vec<Entry>, StoreError> {
    let mut v: Vec<Entry> = Vec::new();
    for (_, entry) in store.read(|r| r.each(KeyedTable::Checkpoints))? {
        match entry {
            Ok(e) => v.push(e),
            // Skipped, not fatal: one damaged entry must not stop checkpoints (the scrubber
            // reports it and trips memory_corruption).
            Err(e) => tracing::warn!(error = %e, "a checkpoint entry is corrupt; skipped"),
        }
    }
    v.sort_by_key(|e| (e.created_ms, e.id.clone()));
    Ok(v)
}

/// Retention: every checkpoint of the last `hourly_for_ms`, then the first of each UTC day.
/// Thinned checkpoints lose their file, their store entry, their object and their document
/// (the deletes go through the outbox in one transaction). Returns the ids removed.
pub fn thin(
    store: &Store,
    data_dir: &Path,
    hourly_for_ms: u64,
    now_ms: u64,
) -> Result<Vec<String>, CheckpointError> {
    let mut kept_days = std::collections::BTreeSet::new();
    let mut remove = Vec::new();
    for e in list(store)? {
        if now_ms.saturating_sub(e.created_ms) <= hourly_for_ms {
            continue;
        }
        if !kept_days.insert(e.created_ms / 86_400_000) {
            remove.push(e);
        }
    }
    if remove.is_empty() {
        return Ok(Vec::new());
    }
    store.write(|w| {
        for e in &remove {
            w.remove(KeyedTable::Checkpoints, &e.id)?;
            w.outbox_append(
                OutboxOp::DeleteBlob {
                    path: object_path(&e.file),
                },
                now_ms,
            )?;
            w.outbox_append(
                OutboxOp::Delete {
                    collection: CHECKPOINT_COLLECTION.into(),
                    doc: e.id.clone(),
                },
                now_ms,
            )?;
        }
        Ok(())
    })?;
    for e in &remove {
        let path = data_dir.join(DIR).join(&e.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(CheckpointError::Io(path, err)),
        }
    }
    Ok(remove.into_iter().map(|e| e.id).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_a_week_of_hourlies_then_one_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &athena_config::MemoryConfig::default()).unwrap();
        let config = athena_config::Config::default();
        const H: u64 = 3_600_000;
        let start = 1_767_225_600_000; // a UTC midnight
        for h in 0..(10 * 24) {
            create(&store, dir.path(), &config, start + h * H).unwrap();
        }
        let now = start + 10 * 24 * H;
        let removed = thin(&store, dir.path(), 7 * 24 * H, now).unwrap();
        let left = list(&store).unwrap();
        // Older than 7 days: days 0, 1 and 2 (hours up to 72, the 72nd is exactly 7 days old).
        assert_eq!(
            left.iter()
                .filter(|e| now - e.created_ms > 7 * 24 * H)
                .count(),
            3
        );
        assert_eq!(removed.len() + left.len(), 240);
        for e in &left {
            assert!(dir.path().join(DIR).join(&e.file).exists());
        }
        let files = std::fs::read_dir(dir.path().join(DIR)).unwrap().count();
        assert_eq!(files, left.len(), "thinned files are deleted");
        assert!(
            thin(&store, dir.path(), 7 * 24 * H, now)
                .unwrap()
                .is_empty(),
            "idempotent"
        );
    }
}
