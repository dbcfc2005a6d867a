//! The store: opening (or refusing) a file, the one write path, read snapshots, generic record
//! accessors and meta entries.
//!
//! Invariants:
//! - every write goes through [`Store::write`]: one redb write transaction, quick-repair on, and
//!   a change that must reach the cloud appends its outbox row inside the same transaction, so
//!   the row exists if and only if the change committed;
//! - every call here blocks on disk: async code runs it on a writer thread or `spawn_blocking`;
//! - a file that is not an Athena store, or of another schema version, is refused with one
//!   clear message, never modified.

use crate::codec::{Codec, Compression, RecordKind};
use crate::error::{Result, StoreError};
use crate::memory::recall::RecallState;
use crate::tables::{self, KeyedTable, META, SeqTable};
use athena_config::MemoryConfig;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableHandle};
use serde::{Serialize, de::DeserializeOwned};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The refusal reason when another process (a running agent) has the store open.
pub const ALREADY_OPEN: &str = "another process has the store open (is an athena agent running?)";

/// The refusal reason of a read-only open of a store that was not closed cleanly.
pub const NEEDS_REPAIR: &str =
    "the store was not closed cleanly and needs repair; a read-write open repairs it";

/// Number of tables a complete store has (see [`Store::ensure_tables`]).
const ALL_TABLES: usize = 17;

/// File name of the store inside the data directory.
pub const STORE_FILE: &str = "athena.redb";

/// The local store. Share it as `Arc<Store>`; all methods take `&self` except integrity checks.
pub struct Store {
    pub(crate) db: Db,
    path: PathBuf,
    pub(crate) codec: Arc<Codec>,
    pub(crate) recall: RecallState,
    pub(crate) memory: MemoryConfig,
    /// Whether commits record redb's allocator state (see [`Store::set_quick_repair`]).
    quick_repair: bool,
    /// Whether [`Store::write`] commits without an fsync (see [`Store::set_deferred_durability`]).
    deferred: std::sync::atomic::AtomicBool,
    /// Changes for the cloud committed since the store was opened.
    changes: std::sync::Mutex<CloudChanges>,
    /// Memories the last pruning pass decoded (see [`crate::memory::decoded`]).
    pub(crate) decoded: std::sync::Mutex<crate::memory::decoded::DecodedMemories>,
    /// How long the open took, and whether redb had to repair the file.
    pub open_report: OpenReport,
}

/// The redb handle: read-write, read-only, or read-write over an in-memory overlay of the file
/// (see [`Store::open_file_overlay`]); the last two never modify the file.
pub(crate) enum Db {
    ReadWrite(Database),
    ReadOnly(redb::ReadOnlyDatabase),
    Overlay(Database),
}

impl Db {
    pub(crate) fn begin_read(
        &self,
    ) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Db::ReadWrite(d) | Db::Overlay(d) => d.begin_read(),
            Db::ReadOnly(d) => d.begin_read(),
        }
    }

    fn begin_write(&self) -> Result<redb::WriteTransaction> {
        match self {
            Db::ReadWrite(d) | Db::Overlay(d) => Ok(d.begin_write()?),
            Db::ReadOnly(_) => Err(StoreError::Invalid("the store was opened read-only".into())),
        }
    }

    fn read_write(&mut self) -> Result<&mut Database> {
        match self {
            Db::ReadWrite(d) | Db::Overlay(d) => Ok(d),
            Db::ReadOnly(_) => Err(StoreError::Invalid("the store was opened read-only".into())),
        }
    }
}

/// What happened while opening.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenReport {
    /// Wall time of the open, including any repair.
    pub micros: u128,
    /// Whether redb repaired the file (it was not closed cleanly).
    pub repaired: bool,
    /// Whether the file was created by this open.
    pub created: bool,
}

impl Store {
    /// Opens (or creates) the store in `data_dir`.
    pub fn open(data_dir: &Path, memory: &MemoryConfig) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| StoreError::Refused {
            path: data_dir.to_path_buf(),
            reason: format!("cannot create the data directory: {e}"),
        })?;
        Self::open_file(&data_dir.join(STORE_FILE), memory)
    }

    /// Opens an existing store in `data_dir` without ever writing to it. A store that needs
    /// crash repair is refused (`StoreError::Refused`, reason mentions repair).
    pub fn open_read_only(data_dir: &Path, memory: &MemoryConfig) -> Result<Self> {
        Self::open_file_read_only(&data_dir.join(STORE_FILE), memory)
    }

    /// Opens the existing store file at `path` without ever writing to it (see
    /// [`Store::open_read_only`]).
    pub fn open_file_read_only(path: &Path, memory: &MemoryConfig) -> Result<Self> {
        let path = path.to_path_buf();
        let started = Instant::now();
        let refused = |reason: String| StoreError::Refused {
            path: path.clone(),
            reason,
        };
        check_file_header(&path).map_err(refused)?;
        let db = redb::Builder::new()
            .open_read_only(&path)
            .map_err(|e| match e {
                redb::DatabaseError::RepairAborted => refused(NEEDS_REPAIR.into()),
                redb::DatabaseError::DatabaseAlreadyOpen => refused(ALREADY_OPEN.into()),
                other => StoreError::Storage(other.into()),
            })?;
        Self::finish_open(Db::ReadOnly(db), &path, memory, started, false, false)
    }

    /// Opens the existing store in `data_dir` over an in-memory overlay (see
    /// [`Store::open_file_overlay`]).
    pub fn open_overlay(data_dir: &Path, memory: &MemoryConfig) -> Result<Self> {
        Self::open_file_overlay(&data_dir.join(STORE_FILE), memory)
    }

    /// Opens the existing store file at `path` read-write over an in-memory overlay: reads come
    /// from the file, every write (redb's crash repair of an unclean file, its repairing
    /// integrity check, a schema fix-up) stays in memory and is lost when the store is dropped.
    /// The file is never modified and never copied; memory grows only with what redb writes.
    /// A running agent is refused as by [`Store::open_file`].
    pub fn open_file_overlay(path: &Path, memory: &MemoryConfig) -> Result<Self> {
        let started = Instant::now();
        let refused = |reason: String| StoreError::Refused {
            path: path.to_path_buf(),
            reason,
        };
        check_file_header(path).map_err(refused)?;
        let backend = crate::overlay::OverlayBackend::open(path)
            .map_err(|e| refused(format!("cannot read the file: {e}")))?;
        let (builder, repaired) = builder_noting_repair(memory);
        let db = builder
            .create_with_backend(backend)
            .map_err(|e| open_error(e, refused))?;
        let repaired = repaired.load(std::sync::atomic::Ordering::Relaxed);
        Self::finish_open(Db::Overlay(db), path, memory, started, repaired, false)
    }

    /// Opens (or creates) the store file at `path`.
    pub fn open_file(path: &Path, memory: &MemoryConfig) -> Result<Self> {
        let started = Instant::now();
        let refused = |reason: String| StoreError::Refused {
            path: path.to_path_buf(),
            reason,
        };
        let created = std::fs::metadata(path)
            .map(|m| m.len() == 0)
            .unwrap_or(true);
        if !created {
            check_file_header(path).map_err(refused)?;
        }
        let (builder, repaired) = builder_noting_repair(memory);
        let db = builder.create(path).map_err(|e| open_error(e, refused))?;
        let repaired = repaired.load(std::sync::atomic::Ordering::Relaxed);
        Self::finish_open(Db::ReadWrite(db), path, memory, started, repaired, created)
    }

    fn finish_open(
        db: Db,
        path: &Path,
        memory: &MemoryConfig,
        started: Instant,
        repaired: bool,
        created: bool,
    ) -> Result<Self> {
        let refused = |reason: String| StoreError::Refused {
            path: path.to_path_buf(),
            reason,
        };
        let codec = Arc::new(Codec::new(memory.compression_level));
        let store = Self {
            db,
            path: path.to_path_buf(),
            codec,
            recall: RecallState::new(memory),
            memory: memory.clone(),
            quick_repair: true,
            deferred: std::sync::atomic::AtomicBool::new(false),
            changes: std::sync::Mutex::new(CloudChanges::default()),
            decoded: std::sync::Mutex::default(),
            open_report: OpenReport::default(),
        };
        store.check_or_init_schema().map_err(|e| match e {
            StoreError::Invalid(reason) => refused(reason),
            other => other,
        })?;
        crate::dictionary::load_dictionaries(&store)?;
        Ok(Self {
            open_report: OpenReport {
                micros: started.elapsed().as_micros(),
                repaired,
                created,
            },
            ..store
        })
    }

    fn check_or_init_schema(&self) -> Result<()> {
        let read = self.db.begin_read()?;
        let tables: Vec<String> = read.list_tables()?.map(|t| t.name().to_string()).collect();
        let mark = match read.open_table(META) {
            Ok(meta) => {
                let format = meta.get("format")?.map(|v| v.value().to_vec());
                let version = meta.get("schema_version")?.map(|v| v.value().to_vec());
                Some((format, version))
            }
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(e.into()),
        };
        drop(read);
        match mark {
            None if tables.is_empty() => self.init_schema(),
            None => Err(StoreError::Invalid(
                "this redb file is not an Athena store (it has no meta table)".into(),
            )),
            Some((Some(f), Some(v))) if f == tables::FORMAT_MARK => {
                let found = u32::from_le_bytes(v.try_into().unwrap_or([0; 4]));
                if found == tables::SCHEMA_VERSION {
                    // Opening a complete store writes nothing.
                    if tables.len() < ALL_TABLES {
                        self.ensure_tables()
                    } else {
                        Ok(())
                    }
                } else if tables::UPGRADABLE_FROM.contains(&found) {
                    tracing::info!(
                        from = found,
                        to = tables::SCHEMA_VERSION,
                        "upgrading the store's schema"
                    );
                    self.mark_schema_version()?;
                    self.ensure_tables()
                } else {
                    Err(StoreError::Invalid(format!(
                        "store schema version {found}, this build reads version {}",
                        tables::SCHEMA_VERSION
                    )))
                }
            }
            Some(_) => Err(StoreError::Invalid(
                "this redb file is not an Athena store (no Athena format mark)".into(),
            )),
        }
    }

    fn init_schema(&self) -> Result<()> {
        self.write_raw(|tx| {
            tx.open_table(META)?.insert("format", tables::FORMAT_MARK)?;
            Ok(())
        })?;
        self.mark_schema_version()?;
        self.ensure_tables()
    }

    fn mark_schema_version(&self) -> Result<()> {
        self.write_raw(|tx| {
            tx.open_table(META)?.insert(
                "schema_version",
                tables::SCHEMA_VERSION.to_le_bytes().as_slice(),
            )?;
            Ok(())
        })
    }

    /// Creates every table so readers never meet a missing one.
    fn ensure_tables(&self) -> Result<()> {
        self.write_raw(|tx| {
            tx.open_table(tables::MEMORIES)?;
            tx.open_table(tables::MEM_BY_CATEGORY)?;
            tx.open_table(tables::MEM_BY_POOL)?;
            tx.open_table(tables::MEM_BY_PATTERN)?;
            tx.open_table(tables::COLD_INDEX)?;
            tx.open_table(tables::COLD_SEGMENTS)?;
            for t in KeyedTable::ALL {
                tx.open_table(t.def())?;
            }
            for t in [
                SeqTable::Ledger,
                SeqTable::Journal,
                SeqTable::DeadLetters,
                SeqTable::Outbox,
            ] {
                tx.open_table(t.def())?;
            }
            tx.open_table(tables::LLM_CACHE)?;
            Ok(())
        })
    }

    fn write_raw(&self, f: impl FnOnce(&redb::WriteTransaction) -> Result<()>) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_quick_repair(self.quick_repair);
        f(&tx)?;
        tx.commit()?;
        Ok(())
    }

    /// Quick repair (on by default): every commit records redb's allocator state and uses a
    /// two-phase commit, so the open after a crash does not rebuild that state by scanning the
    /// whole file. It costs an extra fsync and the state's size per commit; see
    /// docs/benchmarks.md for both sides measured.
    pub fn set_quick_repair(&mut self, enabled: bool) {
        self.quick_repair = enabled;
    }

    /// Deferred durability (off by default): while on, [`Store::write`] commits are atomic and
    /// visible to readers but reach the disk only with the next [`Store::persist`]. A crash
    /// loses the commits since the last persist, never part of one: the file reopens at the
    /// last persisted commit. Only for a writer that can redo its work from there (a
    /// backtest); the agent keeps every commit durable.
    pub fn set_deferred_durability(&self, on: bool) {
        self.deferred
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// The changes for the cloud committed since the store was opened, one write per change:
    /// what the naive path would send (the sync worker coalesces and packs them).
    pub fn cloud_changes(&self) -> CloudChanges {
        *self.changes.lock().expect("changes lock")
    }

    /// Makes every commit so far durable (one fsync'd commit of nothing).
    pub fn persist(&self) -> Result<()> {
        self.write_raw(|_| Ok(()))
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The codec (for tools that decode raw records).
    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The memory configuration the store was opened with.
    pub fn memory_config(&self) -> &MemoryConfig {
        &self.memory
    }

    /// Runs `f` in one durable write transaction. If `f` fails (or panics) nothing is
    /// committed: no change and no outbox row.
    pub fn write<T>(&self, f: impl FnOnce(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        let mut tx = self.db.begin_write()?;
        tx.set_quick_repair(self.quick_repair);
        if self.deferred.load(std::sync::atomic::Ordering::Relaxed) {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Invalid(format!("deferred commit: {e}")))?;
        }
        let mut w = WriteTx {
            tx,
            codec: &self.codec,
            touched: 0,
            changes: CloudChanges::default(),
        };
        let out = f(&mut w)?;
        let (touched, changes) = (w.touched, w.changes);
        w.tx.commit()?;
        self.recall.invalidate(touched);
        let mut total = self.changes.lock().expect("changes lock");
        total.documents += changes.documents;
        total.objects += changes.objects;
        Ok(out)
    }

    /// Runs `f` on one consistent read snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&ReadTx<'_>) -> Result<T>) -> Result<T> {
        let tx = self.db.begin_read()?;
        f(&ReadTx {
            tx,
            codec: &self.codec,
        })
    }

    /// Runs redb's own integrity check (page checksums, allocator state). Needs exclusive use.
    /// `Ok(true)`: intact; `Ok(false)`: damaged but repaired.
    pub fn check_integrity(&mut self) -> Result<bool> {
        Ok(self.db.read_write()?.check_integrity()?)
    }

    /// Size of the store file in bytes.
    pub fn file_size(&self) -> u64 {
        std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0)
    }

    /// Rows and stored bytes per table.
    pub fn table_stats(&self) -> Result<Vec<TableStat>> {
        let read = self.db.begin_read()?;
        let mut out = Vec::new();
        for handle in read.list_tables()? {
            let name = handle.name().to_string();
            let table = read.open_untyped_table(handle)?;
            let stats = table.stats()?;
            out.push(TableStat {
                name,
                rows: table.len()?,
                stored_bytes: stats.stored_bytes(),
                metadata_bytes: stats.metadata_bytes(),
                fragmented_bytes: stats.fragmented_bytes(),
            });
        }
        Ok(out)
    }

    /// Returns free pages to the file system (used after large prunes and by benchmarks).
    pub fn compact(&mut self) -> Result<bool> {
        self.db
            .read_write()?
            .compact()
            .map_err(|e| StoreError::Storage(e.into()))
    }

    /// Whether this handle was opened read-only.
    pub fn is_read_only(&self) -> bool {
        matches!(self.db, Db::ReadOnly(_))
    }

    /// Whether this handle keeps its writes in memory (see [`Store::open_file_overlay`]).
    pub fn is_overlay(&self) -> bool {
        matches!(self.db, Db::Overlay(_))
    }
}

/// Size and row count of one table.
#[derive(Debug, Clone, Serialize)]
pub struct TableStat {
    /// Table name.
    pub name: String,
    /// Rows.
    pub rows: u64,
    /// Bytes of keys and values.
    pub stored_bytes: u64,
    /// Bytes of B-tree metadata.
    pub metadata_bytes: u64,
    /// Bytes lost to fragmentation.
    pub fragmented_bytes: u64,
}

/// A redb builder whose repair callback logs and sets the returned flag.
fn builder_noting_repair(
    memory: &MemoryConfig,
) -> (redb::Builder, Arc<std::sync::atomic::AtomicBool>) {
    let repaired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = repaired.clone();
    let mut builder = Database::builder();
    // The bound on the memory redb's page cache takes (`memory.store_cache_bytes`).
    builder.set_cache_size(usize::try_from(memory.store_cache_bytes).unwrap_or(usize::MAX));
    builder.set_repair_callback(move |session| {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            progress = session.progress(),
            "repairing store after an unclean shutdown"
        );
    });
    (builder, repaired)
}

/// The error of a read-write open, with the refusals an operator can act on.
fn open_error(e: redb::DatabaseError, refused: impl Fn(String) -> StoreError) -> StoreError {
    match e {
        redb::DatabaseError::DatabaseAlreadyOpen => refused(ALREADY_OPEN.into()),
        redb::DatabaseError::UpgradeRequired(v) => refused(format!(
            "redb file format {v} needs an upgrade this build does not do"
        )),
        other => StoreError::Storage(other.into()),
    }
}

/// redb files start with this magic; anything else is not a redb file at all.
fn check_file_header(path: &Path) -> std::result::Result<(), String> {
    use std::io::Read;
    const REDB_MAGIC: &[u8] = b"redb";
    let mut head = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    match f.read_exact(&mut head) {
        Ok(()) if head == REDB_MAGIC => Ok(()),
        _ => Err("this file is not an Athena store (not a redb database)".into()),
    }
}

/// A write transaction. Obtain one from [`Store::write`].
pub struct WriteTx<'s> {
    pub(crate) tx: redb::WriteTransaction,
    pub(crate) codec: &'s Codec,
    /// Categories whose memories changed (bit = category index), for cache invalidation.
    pub(crate) touched: u64,
    /// Changes for the cloud this transaction made, counted one write per change.
    pub(crate) changes: CloudChanges,
}

/// Changes for the cloud, counted as the naive path sends them: one write per change (a
/// document write, or an object operation), whether the outbox carries it as its own row or
/// folded (an observation's change, which travels in its hour's pack or stays local).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CloudChanges {
    /// Changes to documents.
    pub documents: u64,
    /// Object puts (an object's delete is free at list prices and not counted).
    pub objects: u64,
}

/// A read snapshot. Obtain one from [`Store::read`].
pub struct ReadTx<'s> {
    pub(crate) tx: redb::ReadTransaction,
    pub(crate) codec: &'s Codec,
}

pub(crate) fn corrupt(
    table: &'static str,
    key: impl std::fmt::Display,
    reason: impl std::fmt::Display,
) -> StoreError {
    StoreError::Corrupt {
        table,
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

impl WriteTx<'_> {
    /// Puts a record into a string-keyed table.
    pub fn put<T: Serialize>(&mut self, table: KeyedTable, key: &str, value: &T) -> Result<()> {
        let bytes = self
            .codec
            .encode(table.kind(), table.compression(), value)?;
        self.tx
            .open_table(table.def())?
            .insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Gets a record from a string-keyed table inside this transaction.
    pub fn get<T: DeserializeOwned>(&self, table: KeyedTable, key: &str) -> Result<Option<T>> {
        let t = self.tx.open_table(table.def())?;
        decode_opt(self.codec, &t, table.name(), key)
    }

    /// Removes a record from a string-keyed table; returns whether it existed.
    pub fn remove(&mut self, table: KeyedTable, key: &str) -> Result<bool> {
        Ok(self.tx.open_table(table.def())?.remove(key)?.is_some())
    }

    /// Appends a record to a sequence table; returns its sequence number (never reused).
    pub fn append<T: Serialize>(&mut self, table: SeqTable, value: &T) -> Result<u64> {
        let seq = self.next_seq(table)?;
        let bytes = self
            .codec
            .encode(table.kind(), table.compression(), value)?;
        self.tx
            .open_table(table.def())?
            .insert(seq, bytes.as_slice())?;
        Ok(seq)
    }

    pub(crate) fn next_seq(&mut self, table: SeqTable) -> Result<u64> {
        let next = self.meta_u64(table.counter_key())?.unwrap_or(1);
        self.set_meta_u64(table.counter_key(), next + 1)?;
        Ok(next)
    }

    /// Entries of a sequence table with seq > `after`, at most `limit`, in order (as this
    /// transaction sees them).
    pub fn seq_after<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>> {
        decode_seq_range(
            &self.tx.open_table(table.def())?,
            self.codec,
            table,
            after,
            limit,
        )
    }

    /// Replaces the entry at an existing `seq` (the sequence counter does not move).
    pub fn replace_seq<T: Serialize>(
        &mut self,
        table: SeqTable,
        seq: u64,
        value: &T,
    ) -> Result<()> {
        let bytes = self
            .codec
            .encode(table.kind(), table.compression(), value)?;
        self.tx
            .open_table(table.def())?
            .insert(seq, bytes.as_slice())?;
        Ok(())
    }

    /// Removes entries from a sequence table.
    pub fn remove_seq(&mut self, table: SeqTable, seqs: &[u64]) -> Result<usize> {
        let mut t = self.tx.open_table(table.def())?;
        let mut n = 0;
        for s in seqs {
            n += usize::from(t.remove(*s)?.is_some());
        }
        Ok(n)
    }

    /// Reads a u64 meta value.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        read_meta_u64(&self.tx.open_table(META)?, key)
    }

    /// Adds `delta` to a u64 meta counter (missing = 0).
    pub fn add_meta_u64(&mut self, key: &str, delta: u64) -> Result<()> {
        let now = self.meta_u64(key)?.unwrap_or(0);
        self.set_meta_u64(key, now.saturating_add(delta))
    }

    /// Writes a u64 meta value (counters, observation start, marks).
    pub fn set_meta_u64(&mut self, key: &str, value: u64) -> Result<()> {
        self.tx
            .open_table(META)?
            .insert(key, value.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Puts an LLM cache entry.
    pub fn put_llm_cache<T: Serialize>(&mut self, key: &[u8], value: &T) -> Result<()> {
        let bytes = self
            .codec
            .encode(RecordKind::LlmCache, Compression::ZstdDict, value)?;
        self.tx
            .open_table(tables::LLM_CACHE)?
            .insert(key, bytes.as_slice())?;
        Ok(())
    }

    /// Removes an LLM cache entry; whether it was there.
    pub fn remove_llm_cache(&mut self, key: &[u8]) -> Result<bool> {
        Ok(self
            .tx
            .open_table(tables::LLM_CACHE)?
            .remove(key)?
            .is_some())
    }
}

impl ReadTx<'_> {
    /// Gets a record from a string-keyed table.
    pub fn get<T: DeserializeOwned>(&self, table: KeyedTable, key: &str) -> Result<Option<T>> {
        let t = self.tx.open_table(table.def())?;
        decode_opt(self.codec, &t, table.name(), key)
    }

    /// Every record of a string-keyed table, in key order.
    pub fn all<T: DeserializeOwned>(&self, table: KeyedTable) -> Result<Vec<(String, T)>> {
        self.all_from(table, "")
    }

    /// Every record of a string-keyed table, in key order, each decoded on its own: a corrupt
    /// record is its own `Err` (naming it), never a reason to lose the others.
    pub fn each<T: DeserializeOwned>(&self, table: KeyedTable) -> Result<Vec<(String, Result<T>)>> {
        let t = self.tx.open_table(table.def())?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let value = self
                .codec
                .decode(v.value())
                .map_err(|r| corrupt(table.name(), k.value(), r));
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }

    /// The records of a string-keyed table whose key is `from` or after it, in key order.
    pub fn all_from<T: DeserializeOwned>(
        &self,
        table: KeyedTable,
        from: &str,
    ) -> Result<Vec<(String, T)>> {
        let t = self.tx.open_table(table.def())?;
        let mut out = Vec::new();
        for row in t.range(from..)? {
            let (k, v) = row?;
            let value = self
                .codec
                .decode(v.value())
                .map_err(|r| corrupt(table.name(), k.value(), r))?;
            out.push((k.value().to_string(), value));
        }
        Ok(out)
    }

    /// Streams a string-keyed table from its last key back without loading it: `f` gets each
    /// key and its decoded value (or the corruption, naming the key) and returns whether to go
    /// on.
    pub fn keyed_newest_first<T: DeserializeOwned>(
        &self,
        table: KeyedTable,
        mut f: impl FnMut(&str, Result<T>) -> bool,
    ) -> Result<()> {
        let t = self.tx.open_table(table.def())?;
        for row in t.iter()?.rev() {
            let (k, v) = row?;
            let value = self
                .codec
                .decode(v.value())
                .map_err(|r| corrupt(table.name(), k.value(), r));
            if !f(k.value(), value) {
                break;
            }
        }
        Ok(())
    }

    /// Entries of a sequence table with seq > `after`, at most `limit`, in order.
    pub fn seq_after<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>> {
        decode_seq_range(
            &self.tx.open_table(table.def())?,
            self.codec,
            table,
            after,
            limit,
        )
    }

    /// Streams a sequence table newest first without loading it: `f` gets each entry's
    /// sequence number and its decoded value (or the corruption, naming the key) and returns
    /// whether to go on.
    pub fn seq_newest_first<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        f: impl FnMut(u64, Result<T>) -> bool,
    ) -> Result<()> {
        // Sequence numbers start at 1 and never reach u64::MAX.
        self.seq_newest_before(table, u64::MAX, f)
    }

    /// [`ReadTx::seq_newest_first`] from the newest record below sequence number `before` (the
    /// next page of a listing that ended at `before`).
    pub fn seq_newest_before<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        before: u64,
        f: impl FnMut(u64, Result<T>) -> bool,
    ) -> Result<()> {
        let t = self.tx.open_table(table.def())?;
        visit_seq(self.codec, table, t.range(..before)?.rev(), f)
    }

    /// Streams a sequence table oldest first without loading it (see
    /// [`ReadTx::seq_newest_first`]).
    pub fn seq_oldest_first<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        f: impl FnMut(u64, Result<T>) -> bool,
    ) -> Result<()> {
        let t = self.tx.open_table(table.def())?;
        visit_seq(self.codec, table, t.iter()?, f)
    }

    /// Visits the records with a sequence number above `after`, oldest first, each decoded or
    /// its error (a corrupt record does not end the scan); `f` returns whether to go on.
    pub fn seq_each_after<T: DeserializeOwned>(
        &self,
        table: SeqTable,
        after: u64,
        f: impl FnMut(u64, Result<T>) -> bool,
    ) -> Result<()> {
        let t = self.tx.open_table(table.def())?;
        visit_seq(self.codec, table, t.range(after.saturating_add(1)..)?, f)
    }

    /// Rows in a sequence table.
    pub fn seq_len(&self, table: SeqTable) -> Result<u64> {
        Ok(self.tx.open_table(table.def())?.len()?)
    }

    /// Reads a u64 meta value.
    pub fn meta_u64(&self, key: &str) -> Result<Option<u64>> {
        read_meta_u64(&self.tx.open_table(META)?, key)
    }

    /// Gets an LLM cache entry.
    pub fn get_llm_cache<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let t = self.tx.open_table(tables::LLM_CACHE)?;
        match t.get(key)? {
            None => Ok(None),
            Some(v) => self
                .codec
                .decode(v.value())
                .map(Some)
                .map_err(|r| corrupt("llm_cache", format!("{key:02x?}"), r)),
        }
    }

    /// Every LLM cache entry, in key order (the table is bounded by `llm.cache_entries`).
    pub fn llm_cache_all<T: DeserializeOwned>(&self) -> Result<Vec<(Vec<u8>, T)>> {
        let t = self.tx.open_table(tables::LLM_CACHE)?;
        let mut out = Vec::new();
        for row in t.iter()? {
            let (k, v) = row?;
            let key = k.value().to_vec();
            let value = self
                .codec
                .decode(v.value())
                .map_err(|r| corrupt("llm_cache", format!("{key:02x?}"), r))?;
            out.push((key, value));
        }
        Ok(out)
    }
}

/// Decodes the entries of a sequence table with seq > `after`, at most `limit`, in order.
fn decode_seq_range<T: DeserializeOwned>(
    t: &impl ReadableTable<u64, &'static [u8]>,
    codec: &Codec,
    table: SeqTable,
    after: u64,
    limit: usize,
) -> Result<Vec<(u64, T)>> {
    let mut out = Vec::new();
    for row in t.range(after.saturating_add(1)..)?.take(limit) {
        let (k, v) = row?;
        let value = codec
            .decode(v.value())
            .map_err(|r| corrupt(table.name(), k.value(), r))?;
        out.push((k.value(), value));
    }
    Ok(out)
}

type SeqRow<'a> = std::result::Result<
    (
        redb::AccessGuard<'a, u64>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

/// Decodes rows of a sequence table one at a time until `f` says stop.
fn visit_seq<'a, T: DeserializeOwned>(
    codec: &Codec,
    table: SeqTable,
    rows: impl Iterator<Item = SeqRow<'a>>,
    mut f: impl FnMut(u64, Result<T>) -> bool,
) -> Result<()> {
    for row in rows {
        let (k, v) = row?;
        let value = codec
            .decode(v.value())
            .map_err(|r| corrupt(table.name(), k.value(), r));
        if !f(k.value(), value) {
            break;
        }
    }
    Ok(())
}

fn read_meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<u64>> {
    let v = meta.get(key)?;
    Ok(v.and_then(|v| v.value().try_into().ok().map(u64::from_le_bytes)))
}

fn decode_opt<T: DeserializeOwned>(
    codec: &Codec,
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    table: &'static str,
    key: &str,
) -> Result<Option<T>> {
    match t.get(key)? {
        None => Ok(None),
        Some(v) => codec
            .decode(v.value())
            .map(Some)
            .map_err(|r| corrupt(table, key, r)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(keys: &[&str]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &MemoryConfig::default()).unwrap();
        store
            .write(|w| {
                for k in keys {
                    w.put(KeyedTable::Intents, k, &k.to_string())?;
                }
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    #[test]
    fn a_keyed_table_is_read_from_a_key_on_and_from_its_end_back() {
        let (_dir, store) = store_with(&["tx-03", "tx-01", "tx-02", "tx-04"]);
        let from: Vec<(String, String)> = store
            .read(|r| r.all_from(KeyedTable::Intents, "tx-02"))
            .unwrap();
        let keys: Vec<&str> = from.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["tx-02", "tx-03", "tx-04"]);

        let mut newest = Vec::new();
        store
            .read(|r| {
                r.keyed_newest_first::<String>(KeyedTable::Intents, |k, v| {
                    assert_eq!(v.unwrap(), k);
                    newest.push(k.to_string());
                    newest.len() < 3
                })
            })
            .unwrap();
        assert_eq!(newest, ["tx-04", "tx-03", "tx-02"]);
    }
}
