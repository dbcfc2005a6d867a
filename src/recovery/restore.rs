//! Writing a restore: a new store built aside (`athena.redb.restoring`) from a checkpoint's
//! contents plus the memories, cold segments, journal and outbox rows found elsewhere, then
//! renamed over `athena.redb` once complete. A restore killed half-way leaves only the aside
//! file, which the next restore replaces: the data directory never holds a half store.
//!
//! Invariant (ARCHITECTURE.md 11–12): the outbox counter of the new store is above every
//! sequence number the cloud may have seen: the checkpoint's watermark, the quarantined
//! store's counter, every replayed row and every watermark read from Firestore.

use crate::agent::state::STATE_KEY;
use crate::checkpoint::{Contents, Entry};
use crate::journal::JournalRecord;
use athena_config::Config;
use athena_storage::{
    DeadLetter, KeyedTable, Memory, OutboxRow, STORE_FILE, SeqTable, Store, StoreError,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Memories imported per write transaction (one progress step).
const MEMORY_CHUNK: usize = 20_000;

/// Everything a restore writes into the new store.
#[derive(Default)]
pub struct Restoration {
    /// The checkpoint (or the rebuilt contents): agent, risk, ledger, intents, watermarks.
    pub contents: Option<Contents>,
    /// Hot and warm memories.
    pub memories: Vec<Memory>,
    /// Cold segment objects (path, bytes).
    pub cold_segments: Vec<(String, Vec<u8>)>,
    /// Ids of live cold memories, when the cloud's cold index is known.
    pub cold_live: Option<HashSet<ulid::Ulid>>,
    /// Journal entries (those up to the checkpoint).
    pub journal: Vec<(u64, JournalRecord)>,
    /// Outbox rows still owed to the cloud.
    pub outbox: Vec<(u64, OutboxRow)>,
    /// Dead letters.
    pub dead_letters: Vec<(u64, DeadLetter)>,
    /// Checkpoint entries to list in the new store.
    pub checkpoints: Vec<Entry>,
    /// The outbox counter must be at least this.
    pub min_outbox_next_seq: u64,
}

/// What a restore wrote.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Written {
    /// Memories.
    pub memories: u64,
    /// Cold memories indexed.
    pub cold: u64,
    /// Ledger entries.
    pub ledger: u64,
    /// Journal entries.
    pub journal: u64,
    /// Outbox rows kept for the cloud.
    pub outbox: u64,
    /// The new outbox counter.
    pub outbox_next_seq: u64,
    /// Where the store it replaced was quarantined.
    pub replaced: Option<String>,
}

/// Builds the store of `config`'s data directory from `r`. `progress` gets (done, total) memory
/// counts. An existing store is quarantined just before the new one takes its place when
/// `replace` is set (a restore that fails leaves it where it was), else refused.
pub fn write(
    config: &Config,
    r: &Restoration,
    progress: &dyn Fn(u64, u64),
    replace: bool,
) -> Result<Written, StoreError> {
    let dir = &config.agent.data_dir;
    let target = dir.join(STORE_FILE);
    let refused = |path: &Path, reason: String| StoreError::Refused {
        path: path.to_path_buf(),
        reason,
    };
    if target.exists() && !replace {
        return Err(StoreError::Invalid(format!(
            "{} exists: a restore builds a new store and never overwrites one (move it aside)",
            target.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| refused(dir, format!("cannot create the data directory: {e}")))?;
    let aside = dir.join(format!("{STORE_FILE}.restoring"));
    if aside.exists() {
        std::fs::remove_file(&aside)
            .map_err(|e| refused(&aside, format!("cannot remove an unfinished restore: {e}")))?;
    }
    let mut written = {
        let store = Store::open_file(&aside, &config.memory)?;
        fill(&store, r, progress)?
    };
    if replace {
        written.replaced = quarantine(dir)
            .map_err(|e| refused(&target, e))?
            .map(|p| p.display().to_string());
    }
    std::fs::rename(&aside, &target)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| {
            refused(
                &target,
                format!("cannot move the restored store into place: {e}"),
            )
        })?;
    Ok(written)
}

/// Moves the store file of `dir` aside (`athena.redb.quarantined-{unix ms}`), never deleting
/// it; `None` when there is none.
pub fn quarantine(dir: &Path) -> Result<Option<PathBuf>, String> {
    let from = dir.join(STORE_FILE);
    if !from.exists() {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let to = dir.join(format!("{STORE_FILE}.quarantined-{stamp}"));
    std::fs::rename(&from, &to)
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| format!("cannot quarantine {}: {e}", from.display()))?;
    Ok(Some(to))
}

fn fill(
    store: &Store,
    r: &Restoration,
    progress: &dyn Fn(u64, u64),
) -> Result<Written, StoreError> {
    let mut written = Written::default();
    let total = r.memories.len() as u64;
    progress(0, total);
    for chunk in r.memories.chunks(MEMORY_CHUNK) {
        store.write(|w| w.import_memories(chunk))?;
        written.memories += chunk.len() as u64;
        progress(written.memories, total);
    }
    store.write(|w| {
        for (path, bytes) in &r.cold_segments {
            written.cold += w.import_cold_segment(path, bytes, r.cold_live.as_ref())? as u64;
        }
        let mut outbox_next = r.min_outbox_next_seq.max(1);
        let mut journal_next = 1;
        let mut ledger_next = 1;
        if let Some(c) = &r.contents {
            if let Some(agent) = &c.agent {
                w.put(KeyedTable::Agent, STATE_KEY, agent)?;
                for p in &agent.positions {
                    w.put(KeyedTable::Positions, &p.id, p)?;
                }
            }
            if let Some(risk) = &c.risk {
                w.put(KeyedTable::Risk, crate::risk::persist::STATE_KEY, risk)?;
            }
            for (seq, e) in &c.ledger {
                w.replace_seq(SeqTable::Ledger, *seq, e)?;
                ledger_next = ledger_next.max(seq + 1);
            }
            for (id, intent) in &c.intents {
                w.put(KeyedTable::Intents, id, intent)?;
            }
            outbox_next = outbox_next.max(c.outbox_next_seq);
            journal_next = journal_next.max(c.journal_next_seq);
            written.ledger = c.ledger.len() as u64;
        }
        for (seq, j) in &r.journal {
            w.replace_seq(SeqTable::Journal, *seq, j)?;
            journal_next = journal_next.max(seq + 1);
        }
        written.journal = r.journal.len() as u64;
        for (seq, row) in &r.outbox {
            w.outbox_replace(*seq, row)?;
            outbox_next = outbox_next.max(seq + 1);
        }
        written.outbox = r.outbox.len() as u64;
        let mut dead_next = 1;
        for (seq, d) in &r.dead_letters {
            w.replace_seq(SeqTable::DeadLetters, *seq, d)?;
            dead_next = dead_next.max(seq + 1);
        }
        for e in &r.checkpoints {
            w.put(KeyedTable::Checkpoints, &e.id, e)?;
        }
        w.set_meta_u64(SeqTable::Outbox.counter_key(), outbox_next)?;
        w.set_meta_u64(SeqTable::Journal.counter_key(), journal_next)?;
        w.set_meta_u64(SeqTable::Ledger.counter_key(), ledger_next)?;
        w.set_meta_u64(SeqTable::DeadLetters.counter_key(), dead_next)?;
        written.outbox_next_seq = outbox_next;
        Ok(())
    })?;
    Ok(written)
}
