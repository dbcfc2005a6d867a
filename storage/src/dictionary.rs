//! zstd dictionaries trained from the store's own records, per record kind.
//!
//! Invariants: a dictionary is stored (meta table, versioned by id) before any record uses it;
//! dictionaries are never deleted, so every record stays readable; `store verify` checks that
//! every dictionary a record names exists. Training runs after pruning, for each kind of
//! [`TRAINED_KINDS`], once it has `dictionary_min_samples` records, and again when its count has
//! grown fourfold (samples are capped, so retraining stops once a kind is large).

use crate::codec::{Codec, Compression, RecordKind};
use crate::error::Result;
use crate::store::{Store, corrupt};
use crate::tables::{MEMORIES, META};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};

const DICT_PREFIX: &str = "dict/";
/// Most samples a training run reads.
const MAX_TRAINING_SAMPLES: usize = 20_000;

/// A stored dictionary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DictionaryRecord {
    /// Id (never reused).
    pub id: u32,
    /// Record kind it compresses (as its `u8`).
    pub kind: u8,
    /// When trained, agent ms.
    pub created_ms: u64,
    /// Samples it was trained on.
    pub samples: u32,
    /// The dictionary.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

fn current_key(kind: RecordKind) -> String {
    format!("dict_current/{}", kind as u8)
}

/// Every stored dictionary.
pub fn list(store: &Store) -> Result<Vec<DictionaryRecord>> {
    let read = store.db.begin_read()?;
    let meta = read.open_table(META)?;
    let mut out = Vec::new();
    for row in meta.range(DICT_PREFIX..)? {
        let (k, v) = row?;
        if !k.value().starts_with(DICT_PREFIX) {
            break;
        }
        out.push(
            store
                .codec
                .decode(v.value())
                .map_err(|r| corrupt("meta", k.value(), r))?,
        );
    }
    Ok(out)
}

pub(crate) fn load_dictionaries(store: &Store) -> Result<()> {
    let dicts = list(store)?;
    let current: Vec<(u8, u32)> = store.read(|r| {
        RecordKind::ALL
            .iter()
            .filter_map(|k| {
                r.meta_u64(&current_key(*k))
                    .transpose()
                    .map(|v| v.map(|id| (*k as u8, id as u32)))
            })
            .collect()
    })?;
    for d in dicts {
        let Some(kind) = RecordKind::ALL.into_iter().find(|k| *k as u8 == d.kind) else {
            continue;
        };
        let is_current = current.contains(&(d.kind, d.id));
        store.codec.add_dictionary(d.id, kind, &d.bytes, is_current);
    }
    Ok(())
}

/// Record kinds that get a trained dictionary. Outbox rows (transient, stored plain), cold
/// segments (large, compressed whole) and meta entries do not.
pub const TRAINED_KINDS: [RecordKind; 8] = [
    RecordKind::MemoryWarm,
    RecordKind::Journal,
    RecordKind::Ledger,
    RecordKind::Position,
    RecordKind::Intent,
    RecordKind::Risk,
    RecordKind::Checkpoint,
    RecordKind::LlmCache,
];

/// What [`samples`] does with the records of a kind.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sampling {
    /// Only counts them, from their headers (nothing is decompressed or decoded), and only up
    /// to `enough`: whether a training is due, checked at every pruning pass. A table with
    /// fewer rows than `enough` is not read at all (its count is reported as 0).
    Count { enough: usize },
    /// Collects the newest [`MAX_TRAINING_SAMPLES`] as msgpack, for a training.
    Collect,
}

/// The newest records of `kind`: their count, and with [`Sampling::Collect`] their msgpack
/// bytes.
fn samples(store: &Store, kind: RecordKind, sampling: Sampling) -> Result<(usize, Vec<Vec<u8>>)> {
    fn newest<K: redb::Key + 'static>(
        codec: &Codec,
        table: &impl ReadableTable<K, &'static [u8]>,
        kind: RecordKind,
        sampling: Sampling,
    ) -> Result<(usize, Vec<Vec<u8>>)> {
        let (mut count, mut out) = (0, Vec::new());
        let limit = match sampling {
            Sampling::Count { enough } if table.len()? < enough as u64 => return Ok((0, out)),
            Sampling::Count { enough } => enough,
            Sampling::Collect => MAX_TRAINING_SAMPLES,
        };
        for row in table.iter()?.rev() {
            let (_, v) = row?;
            if Codec::kind_of(v.value()) != Some(kind) {
                continue;
            }
            if sampling == Sampling::Collect {
                // A corrupt record is no sample; the scrubber and pruning report it by key.
                let Ok((_, raw)) = codec.decode_bytes(v.value()) else {
                    continue;
                };
                out.push(raw);
            }
            count += 1;
            if count >= limit {
                break;
            }
        }
        Ok((count, out))
    }
    use crate::tables::{KeyedTable as K, LLM_CACHE, SeqTable as S};
    store.read(|r| {
        let (c, s) = (r.codec, sampling);
        match kind {
            RecordKind::MemoryWarm => newest(c, &r.tx.open_table(MEMORIES)?, kind, s),
            RecordKind::Journal => newest(c, &r.tx.open_table(S::Journal.def())?, kind, s),
            RecordKind::Ledger => newest(c, &r.tx.open_table(S::Ledger.def())?, kind, s),
            RecordKind::Position => newest(c, &r.tx.open_table(K::Positions.def())?, kind, s),
            RecordKind::Intent => newest(c, &r.tx.open_table(K::Intents.def())?, kind, s),
            RecordKind::Risk => newest(c, &r.tx.open_table(K::Risk.def())?, kind, s),
            RecordKind::Checkpoint => newest(c, &r.tx.open_table(K::Checkpoints.def())?, kind, s),
            RecordKind::LlmCache => newest(c, &r.tx.open_table(LLM_CACHE)?, kind, s),
            _ => Ok((0, Vec::new())),
        }
    })
}

/// Trains a new dictionary for every kind where one is due; returns (kind, id) of each.
pub(crate) fn train_if_due(store: &Store, now_ms: u64) -> Result<Vec<(RecordKind, u32)>> {
    let mut trained = Vec::new();
    let stored = list(store)?;
    for kind in TRAINED_KINDS {
        let min = store.memory.dictionary_min_samples as usize;
        let current = store.codec.current_dictionary(kind);
        let last_samples = stored
            .iter()
            .find(|d| d.id == current)
            .map_or(0, |d| d.samples as usize);
        // Due at `min` records, then again at four times the last training's samples; counts
        // stop at the sample cap, so past it a kind is never due again.
        let needed = if current == 0 {
            min
        } else {
            min.max(last_samples.saturating_mul(4))
        };
        if needed > MAX_TRAINING_SAMPLES {
            continue;
        }
        let (count, _) = samples(store, kind, Sampling::Count { enough: needed })?;
        if count < needed {
            continue;
        }
        let (_, samples) = samples(store, kind, Sampling::Collect)?;
        let bytes = match zstd::dict::from_samples(
            &samples,
            store.memory.dictionary_size_bytes as usize,
        ) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, ?kind, samples = samples.len(), "dictionary training failed; keeping plain zstd");
                continue;
            }
        };
        let id = store.write(|w| {
            let id = w.meta_u64("dict_next_id")?.unwrap_or(1);
            w.set_meta_u64("dict_next_id", id + 1)?;
            let record = DictionaryRecord {
                id: id as u32,
                kind: kind as u8,
                created_ms: now_ms,
                samples: samples.len() as u32,
                bytes: bytes.clone(),
            };
            let encoded = w
                .codec
                .encode(RecordKind::Meta, Compression::None, &record)?;
            w.tx.open_table(META)?.insert(
                format!("{DICT_PREFIX}{id:010}").as_str(),
                encoded.as_slice(),
            )?;
            w.set_meta_u64(&current_key(kind), id)?;
            Ok(id as u32)
        })?;
        store.codec.add_dictionary(id, kind, &bytes, true);
        tracing::info!(
            id,
            ?kind,
            samples = samples.len(),
            size = bytes.len(),
            "trained a compression dictionary"
        );
        trained.push((kind, id));
    }
    Ok(trained)
}

/// Trains every dictionary that is due; when the warm-memory one is new, re-encodes the warm
/// records with it (other kinds keep their records; new ones use the new dictionary). Returns
/// the dictionaries trained and the warm records re-encoded.
pub fn train_and_recompress(store: &Store, now_ms: u64) -> Result<(Vec<(RecordKind, u32)>, usize)> {
    let trained = train_if_due(store, now_ms)?;
    let recompressed = if trained.iter().any(|(k, _)| *k == RecordKind::MemoryWarm) {
        recompress_warm(store)?
    } else {
        0
    };
    Ok((trained, recompressed))
}

/// Re-encodes warm records that use an older (or no) dictionary with the current one.
pub(crate) fn recompress_warm(store: &Store) -> Result<usize> {
    let kind = RecordKind::MemoryWarm;
    let current = store.codec.current_dictionary(kind);
    if current == 0 {
        return Ok(0);
    }
    store.write(|w| {
        let stale: Vec<(u128, Vec<u8>)> = {
            let t = w.tx.open_table(MEMORIES)?;
            let mut out = Vec::new();
            for row in t.iter()? {
                let (k, v) = row?;
                // A corrupt record is skipped (pruning reports it); the rest are re-encoded.
                let Ok(header) = Codec::verify(v.value()) else {
                    continue;
                };
                if header.kind == kind && header.dictionary != current {
                    let Ok((_, raw)) = w.codec.decode_bytes(v.value()) else {
                        continue;
                    };
                    out.push((k.value(), raw));
                }
            }
            out
        };
        let mut t = w.tx.open_table(MEMORIES)?;
        for (k, raw) in &stale {
            let bytes = w.codec.encode_bytes(kind, Compression::ZstdDict, raw)?;
            t.insert(*k, bytes.as_slice())?;
        }
        Ok(stale.len())
    })
}
