//! Crash recovery (SPEC.md §4): the start-up ladder, restores, reconciliation and the scrubber.
//!
//! The ladder, run by `athena run` before the agent starts:
//! 1. open the store (redb repairs a file that was not closed cleanly);
//! 2. the clean-shutdown marker tells a clean start from a crash; a clean start ends here;
//! 3. after a crash, verify the records the agent resumes from (agent, risk, positions,
//!    intents, checkpoints, ledger); a store that does not open or does not verify is
//!    quarantined (renamed, never deleted) and a new one restored from the newest valid
//!    checkpoint: local files, else the object store, else rebuilt from the Firestore
//!    documents, with the memories, journal and outbox rows salvaged from the quarantined file
//!    (or the memories the cloud holds) replayed on top;
//! 4. resolve pending intents, reconcile the book with its source of truth (never trading to
//!    fix a difference), apply the recovery factor for 24 h, and record the recovery with its
//!    cause and the time of each step (`athena status` shows it).
//!
//! `athena run --restore-from gcs|firestore` and `athena checkpoint restore` run step 3's
//! restore on request.

pub mod reconcile;
pub mod restore;
pub mod scrub;
pub mod sources;

use crate::agent::state::{AgentState, STATE_KEY};
use crate::app::CLEAN_SHUTDOWN_KEY;
use crate::risk::{Observation, RiskEngine};
use athena_config::{Config, DocumentSink};
use athena_storage::{KeyedTable, STORE_FILE, SeqTable, Store, StoreError};
use athena_sync::{FirestoreSink, ObjectStoreSink};
use restore::{Restoration, Written};
use serde::{Deserialize, Serialize};
use sources::Source;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Key of the last recovery record in the `agent_state` table.
pub const LAST_RECOVERY_KEY: &str = "last_recovery";

/// One step of a recovery and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What it did.
    pub name: String,
    /// Wall time, ms.
    pub ms: f64,
    /// What it found.
    pub detail: String,
}

/// A recovery: why it happened, each step with its time, and what it restored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recovery {
    /// Wall-clock time it started, Unix ms.
    pub wall_ms: u64,
    /// Agent time it resumed at.
    pub agent_ms: u64,
    /// Why: a crash, a store that did not open or verify, or a requested restore.
    pub cause: String,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Where the state came from when it was restored (`local`, `gcs`, `firestore`).
    pub restored_from: Option<Source>,
    /// The checkpoint restored (id and location).
    pub checkpoint: Option<String>,
    /// Newer checkpoints found invalid and skipped, each with why.
    pub skipped: Vec<String>,
    /// Where the store that failed was moved.
    pub quarantined: Option<String>,
    /// What the restore wrote.
    pub written: Option<Written>,
    /// Reconciliation of the book with its source of truth.
    pub reconciliation: Option<reconcile::Report>,
    /// Pending intents resolved.
    pub intents_resolved: u64,
    /// Total wall time, ms.
    pub total_ms: f64,
}

/// Why the ladder or a restore could not finish; each variant keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The store failed while in use.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store could not be opened: refused (not an Athena store, another schema, held by
    /// another process: an operator decides) or an I/O failure (the caller retries; see
    /// [`RecoveryError::needs_reopen`]). Never a reason to quarantine it.
    #[error("opening the store in {}", dir.display())]
    Open {
        /// The data directory.
        dir: PathBuf,
        /// Why it did not open.
        #[source]
        source: StoreError,
    },
    /// No source held a usable checkpoint (each source's reason listed).
    #[error("nothing to restore from: {0}")]
    NothingToRestore(String),
    /// Bad input (an unknown checkpoint, a source that is not configured, a restore onto an
    /// existing store): fix the request.
    #[error("{0}")]
    Invalid(String),
    /// The risk engine refused a control the recovery needs (a bug: its reason is fixed).
    #[error("the risk engine refused the recovery's control")]
    Refused(#[from] crate::risk::controls::Refused),
    /// A blocking task panicked or was cancelled: a bug.
    #[error("a recovery task failed")]
    Task(#[from] tokio::task::JoinError),
    /// The object store or Firestore of the configuration could not be set up.
    #[error(transparent)]
    Sync(#[from] athena_sync::SyncError),
}

impl RecoveryError {
    /// Whether the store could not be read or written because of the disk: reopen it later,
    /// never quarantine it.
    pub fn needs_reopen(&self) -> bool {
        match self {
            Self::Store(e) | Self::Open { source: e, .. } => e.needs_reopen(),
            _ => false,
        }
    }
}

/// Times the steps of a recovery.
struct Steps {
    started: Instant,
    at: Instant,
    steps: Vec<Step>,
}

impl Steps {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            at: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Records a step that ended now (it began when the previous one ended).
    fn done(&mut self, name: &str, detail: impl Into<String>) {
        let now = Instant::now();
        self.steps.push(Step {
            name: name.to_string(),
            ms: now.duration_since(self.at).as_secs_f64() * 1000.0,
            detail: detail.into(),
        });
        self.at = now;
    }

    fn total_ms(&self) -> f64 {
        self.started.elapsed().as_secs_f64() * 1000.0
    }
}

/// Runs the start-up ladder for `config` at agent time `now_ms`; with `restore_from`, starts
/// from that source on an empty data directory. Returns the open store and the recovery, if
/// this start was one.
pub async fn start(
    config: &Config,
    restore_from: Option<Source>,
    now_ms: u64,
) -> Result<(Store, Option<Recovery>), RecoveryError> {
    ladder(config, restore_from, now_ms, None).await
}

/// The ladder again, inside a running process, after the store could not be written and was
/// closed (`cause` says why and for how long): the store is opened, verified like after a
/// crash, reconciled, and the recovery recorded with that cause.
pub async fn reopen(
    config: &Config,
    cause: String,
    now_ms: u64,
) -> Result<(Store, Option<Recovery>), RecoveryError> {
    ladder(config, None, now_ms, Some(cause)).await
}

async fn ladder(
    config: &Config,
    restore_from: Option<Source>,
    now_ms: u64,
    reopen_cause: Option<String>,
) -> Result<(Store, Option<Recovery>), RecoveryError> {
    let mut steps = Steps::new();
    let mut rec = Recovery {
        wall_ms: crate::clock::wall_ms(),
        ..Recovery::default()
    };
    let dir = config.agent.data_dir.clone();
    let mut kept: Option<Store> = None;
    if let Some(source) = restore_from {
        let path = dir.join(STORE_FILE);
        if path.exists() {
            return Err(RecoveryError::Invalid(format!(
                "--restore-from {source}: {} already exists; a restore starts on an empty data \
                 directory (move the store aside, or run without --restore-from)",
                path.display()
            )));
        }
        rec.cause = format!("restore requested from {source}");
        let plan = Plan {
            order: &[source],
            salvage: None,
            wanted: None,
            replace: false,
        };
        restore_into(config, plan, &mut rec, &mut steps, &|_, _| {}).await?;
    } else {
        let cfg = config.clone();
        let opened = match tokio::task::spawn_blocking(move || crate::app::open_store(&cfg)).await {
            Ok(opened) => opened,
            // redb panics on some damaged files instead of returning an error: the file is
            // at fault, so it takes the corrupt-store rung.
            Err(e) if e.is_panic() => Err(StoreError::Corrupt {
                table: "(file)",
                key: STORE_FILE.into(),
                reason: "redb panicked opening it".into(),
            }),
            Err(e) => return Err(e.into()),
        };
        match opened {
            Ok(store) => {
                let report = store.open_report;
                steps.done(
                    "open store",
                    if report.repaired {
                        "redb repaired the file"
                    } else {
                        "opened"
                    },
                );
                let marker = store.read(|r| r.meta_u64(CLEAN_SHUTDOWN_KEY))?;
                // The records the agent resumes from are read on every start (a clean stop
                // does not protect them from the disk), so a damaged one is restored, never a
                // start that fails again and again.
                let bad = match verify_unwinding(&store) {
                    Ok(bad) => bad,
                    // An I/O failure says nothing about the records: retry, never quarantine.
                    Err(e) if disk_failed(&e) => return Err(e.into()),
                    Err(e) => vec![format!("the store cannot be read: {e}")],
                };
                if marker != Some(0) && bad.is_empty() {
                    // A new store, a clean stop, or a store no `athena run` has used.
                    return Ok((store, None));
                }
                rec.cause = match (&reopen_cause, marker) {
                    (Some(cause), _) => cause.clone(),
                    (None, Some(0)) => "crash: the previous process did not shut down cleanly \
                                        (no clean-shutdown marker)"
                        .into(),
                    (None, _) => "the store was stopped cleanly but is damaged".into(),
                };
                if bad.is_empty() {
                    steps.done(
                        "verify",
                        "agent, risk, positions, intents, checkpoints, ledger: ok",
                    );
                    kept = Some(store);
                } else {
                    steps.done("verify", format!("corrupt: {}", bad.join("; ")));
                    rec.cause = format!(
                        "{}; the store failed verification: {}",
                        rec.cause,
                        bad.join("; ")
                    );
                    drop(store);
                    recover_corrupt(config, &mut rec, &mut steps).await?;
                }
            }
            // Not an Athena store, another schema, or held by another process: an operator
            // decides; nothing is moved. Disk full, an I/O error, a read-only file system: the
            // file is not at fault, so it is never quarantined; the caller retries the open.
            Err(e) if matches!(e, StoreError::Refused { .. }) || disk_failed(&e) => {
                return Err(RecoveryError::Open { dir, source: e });
            }
            Err(e) => {
                steps.done("open store", format!("failed: {e}"));
                rec.cause = format!("the store does not open: {e}");
                recover_corrupt(config, &mut rec, &mut steps).await?;
            }
        }
    }
    let cfg = config.clone();
    let (store, rec) = tokio::task::spawn_blocking(move || {
        let store = match kept {
            Some(s) => s,
            None => crate::app::open_store(&cfg).map_err(|source| RecoveryError::Open {
                dir: cfg.agent.data_dir.clone(),
                source,
            })?,
        };
        let rec = finish(&store, &cfg, rec, steps, now_ms)?;
        Ok::<_, RecoveryError>((store, rec))
    })
    .await??;
    Ok((store, Some(rec)))
}

/// Whether a start failed because the disk did (retried, never quarantined), not the file: a
/// read past the file's end is an I/O error by kind, but the file's own pointers are damaged,
/// so it takes the corrupt rung.
fn disk_failed(e: &StoreError) -> bool {
    e.needs_reopen() && !e.read_past_end()
}

/// [`verify_resume_records`], where a panic inside redb (it panics on some damaged pages
/// instead of returning an error) counts as a record that fails.
fn verify_unwinding(store: &Store) -> Result<Vec<String>, StoreError> {
    let read = std::panic::AssertUnwindSafe(|| verify_resume_records(store));
    std::panic::catch_unwind(read).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Ok(vec![format!("redb cannot read a page: {why}")])
    })
}

/// Reads every record the agent resumes from; returns the ones that fail, named (an `Err` only
/// when no read transaction can be started).
fn verify_resume_records(store: &Store) -> Result<Vec<String>, StoreError> {
    let mut bad = Vec::new();
    store.read(|r| {
        let mut check = |what: &str, res: Result<(), StoreError>| match res {
            Ok(()) => Ok(()),
            Err(e) if e.needs_reopen() => Err(e),
            // A record that fails its checksum, or a page redb cannot read: either way the
            // agent cannot resume from this store.
            Err(e) => {
                bad.push(format!("{what}: {e}"));
                Ok::<(), StoreError>(())
            }
        };
        check(
            "agent state",
            r.get::<AgentState>(KeyedTable::Agent, STATE_KEY)
                .map(|_| ()),
        )?;
        check("risk state", crate::risk::persist::load(r).map(|_| ()))?;
        for t in [KeyedTable::Positions, KeyedTable::Checkpoints] {
            check(t.name(), r.all::<serde_json::Value>(t).map(|_| ()))?;
        }
        check(
            KeyedTable::Intents.name(),
            r.all::<crate::chain::send::Intent>(KeyedTable::Intents)
                .map(|_| ()),
        )?;
        check(
            "ledger",
            r.seq_after::<serde_json::Value>(SeqTable::Ledger, 0, usize::MAX)
                .map(|_| ()),
        )?;
        Ok(())
    })?;
    Ok(bad)
}

fn quarantine(dir: &Path) -> Result<Option<PathBuf>, RecoveryError> {
    restore::quarantine(dir).map_err(RecoveryError::Invalid)
}

/// The corrupt-store rung: quarantine, salvage what decodes, restore local → object store →
/// Firestore.
async fn recover_corrupt(
    config: &Config,
    rec: &mut Recovery,
    steps: &mut Steps,
) -> Result<(), RecoveryError> {
    let moved = quarantine(&config.agent.data_dir)?;
    steps.done(
        "quarantine",
        moved.as_ref().map_or("no store file".into(), |p| {
            format!("moved to {}", p.display())
        }),
    );
    rec.quarantined = moved.as_ref().map(|p| p.display().to_string());
    let salvage =
        match &moved {
            Some(path) => {
                let (path, memory) = (path.clone(), config.memory.clone());
                match tokio::task::spawn_blocking(move || sources::salvage(&path, &memory)).await {
                    Ok(Ok(s)) => {
                        steps.done(
                        "salvage",
                        format!(
                            "{}: {} memories ({} corrupt: {}), {} journal entries, {} outbox rows",
                            s.note,
                            s.memories.len(),
                            s.bad_memories.len(),
                            s.bad_memories.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                            s.journal.len(),
                            s.outbox.len()
                        ),
                    );
                        Some(s)
                    }
                    Ok(Err(e)) => {
                        steps.done("salvage", format!("nothing: {e}"));
                        None
                    }
                    Err(e) => {
                        steps.done("salvage", format!("nothing: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
    let plan = Plan {
        order: &[Source::Local, Source::Gcs, Source::Firestore],
        salvage,
        wanted: None,
        replace: false,
    };
    // Nothing to restore from: the operator still learns why the store was set aside.
    match restore_into(config, plan, rec, steps, &|_, _| {}).await {
        Err(RecoveryError::NothingToRestore(reasons)) => {
            Err(RecoveryError::NothingToRestore(format!(
                "{reasons} (the store was set aside as {}: {})",
                rec.quarantined.as_deref().unwrap_or("nothing"),
                rec.cause
            )))
        }
        other => other,
    }
}

/// The object store of `config`, when one is configured.
fn object_store(config: &Config) -> Result<Option<ObjectStoreSink>, athena_sync::SyncError> {
    let s = &config.sync;
    if s.object_store_url.is_empty() {
        return Ok(None);
    }
    ObjectStoreSink::from_url(
        &s.object_store_url,
        &config.agent.data_dir,
        &config.agent.agent_id,
    )
    .map(Some)
}

/// The Firestore mirror of `config`, when documents go to Firestore.
async fn firestore(config: &Config) -> Result<Option<FirestoreSink>, athena_sync::SyncError> {
    let s = &config.sync;
    if s.documents != DocumentSink::Firestore {
        return Ok(None);
    }
    FirestoreSink::connect(
        &s.firestore_project,
        &s.firestore_database,
        &config.agent.agent_id,
    )
    .await
    .map(Some)
}

/// What a restore does: where it looks, what it replays, whether it replaces a store.
struct Plan<'a> {
    /// Sources tried in order; the first with a valid checkpoint wins.
    order: &'a [Source],
    /// What the old store still held (replayed on top of the checkpoint).
    salvage: Option<sources::Salvage>,
    /// A checkpoint id, or the newest when `None`.
    wanted: Option<&'a str>,
    /// Quarantine an existing store once the new one is built (else refuse it).
    replace: bool,
}

/// Restores a new store from the first source of the plan that holds a valid checkpoint,
/// replaying the salvage (or the cloud's memories) on top.
async fn restore_into(
    config: &Config,
    plan: Plan<'_>,
    rec: &mut Recovery,
    steps: &mut Steps,
    progress: &dyn Fn(u64, u64),
) -> Result<(), RecoveryError> {
    let Plan {
        order,
        salvage,
        wanted,
        replace,
    } = plan;
    let objects = object_store(config)?;
    let fs = match firestore(config).await {
        Ok(f) => f,
        Err(e) => {
            steps.done(
                "connect firestore",
                format!("unavailable: {}", athena_sync::one_line(&e)),
            );
            None
        }
    };
    let mut reasons = Vec::new();
    let mut chosen: Option<(Source, crate::checkpoint::Contents, String)> = None;
    let mut cloud_max_seq = 0u64;
    for &source in order {
        let lookup = match source {
            Source::Local => sources::local(&config.agent.data_dir, wanted),
            Source::Gcs => match &objects {
                Some(o) => sources::object_store(o, wanted).await,
                None => Err(sources::SourceError::Missing(
                    "no object store is configured (sync.object_store_url)".into(),
                )),
            },
            Source::Firestore => match (&fs, wanted) {
                (_, Some(w)) => Err(sources::SourceError::Missing(format!(
                    "Firestore holds no checkpoint contents; {w} cannot be restored from it"
                ))),
                (Some(f), None) => sources::firestore_rebuild(f).await.map(|(c, max)| {
                    cloud_max_seq = cloud_max_seq.max(max);
                    let location = format!("firestore:{}", c.id);
                    sources::Lookup {
                        found: Some(sources::Found {
                            contents: c,
                            location,
                        }),
                        skipped: Vec::new(),
                    }
                }),
                (None, None) => Err(sources::SourceError::Missing(
                    "documents do not go to Firestore (sync.documents)".into(),
                )),
            },
        };
        match lookup {
            Ok(l) => {
                rec.skipped.extend(l.skipped.iter().cloned());
                match l.found {
                    Some(f) => {
                        steps.done(
                            &format!("find checkpoint ({source})"),
                            format!("{} at {}", f.contents.id, f.location),
                        );
                        chosen = Some((source, f.contents, f.location));
                        break;
                    }
                    None => {
                        let why = if l.skipped.is_empty() {
                            "none found".to_string()
                        } else {
                            format!("none valid ({})", l.skipped.join("; "))
                        };
                        steps.done(&format!("find checkpoint ({source})"), why.clone());
                        reasons.push(format!("{source}: {why}"));
                    }
                }
            }
            Err(e) => {
                let e = athena_sync::one_line(&e);
                steps.done(
                    &format!("find checkpoint ({source})"),
                    format!("unavailable: {e}"),
                );
                reasons.push(format!("{source}: {e}"));
            }
        }
    }
    let Some((source, contents, location)) = chosen else {
        return Err(RecoveryError::NothingToRestore(reasons.join("; ")));
    };
    let mut r = Restoration {
        min_outbox_next_seq: contents.outbox_next_seq,
        ..Restoration::default()
    };
    // Memories: what the quarantined store still holds, else what the cloud mirror holds.
    match salvage {
        Some(s) => {
            r.memories = s.memories;
            r.journal = s
                .journal
                .into_iter()
                .filter(|(seq, _)| *seq < contents.journal_next_seq)
                .collect();
            r.outbox = s.outbox;
            r.dead_letters = s.dead_letters;
            r.min_outbox_next_seq = r.min_outbox_next_seq.max(s.outbox_next_seq);
            steps.done("memories", format!("{} salvaged locally", r.memories.len()));
        }
        None => match &fs {
            Some(f) => match sources::firestore_memories(f).await {
                Ok(m) => {
                    cloud_max_seq = cloud_max_seq.max(m.max_seq);
                    r.memories = m.memories;
                    r.cold_live = Some(m.cold_live);
                    steps.done("memories", format!("{} from Firestore", r.memories.len()));
                    if let Some(o) = &objects {
                        let found = observations_from_packs(o, config, contents.created_ms).await;
                        let added = add_new_memories(&mut r.memories, found.as_ref().ok());
                        steps.done(
                            "observations",
                            match found {
                                Ok(_) => format!("{added} from the object store's hourly packs"),
                                Err(e) => format!("none: {e}"),
                            },
                        );
                    }
                }
                Err(e) => steps.done(
                    "memories",
                    format!("none: Firestore unreadable: {}", athena_sync::one_line(&e)),
                ),
            },
            None => steps.done(
                "memories",
                "none recoverable: no local copy and documents do not go to Firestore",
            ),
        },
    }
    if let Some(o) = &objects {
        match sources::cold_segments(o).await {
            Ok(segs) => {
                steps.done(
                    "cold segments",
                    format!("{} from the object store", segs.len()),
                );
                r.cold_segments = segs;
            }
            Err(e) => steps.done("cold segments", format!("none: {e}")),
        }
    }
    r.min_outbox_next_seq = r.min_outbox_next_seq.max(cloud_max_seq + 1);
    let id = contents.id.clone();
    r.contents = Some(contents);
    // A restore is the only thing running at this point of a start (or of the CLI command),
    // so it blocks this task rather than move the restoration to another thread.
    let written = restore::write(config, &r, progress, replace)?;
    if let Some(q) = &written.replaced {
        rec.quarantined = Some(q.clone());
    }
    steps.done(
        "write store",
        format!(
            "{} memories, {} cold, {} ledger, {} journal, {} outbox rows; outbox counter {}",
            written.memories,
            written.cold,
            written.ledger,
            written.journal,
            written.outbox,
            written.outbox_next_seq
        ),
    );
    rec.restored_from = Some(source);
    rec.checkpoint = Some(format!("{id} ({location})"));
    rec.written = Some(written);
    Ok(())
}

/// The steps after the store is sound: resolve intents, reconcile, apply the recovery factor
/// (and hold trading after a Firestore rebuild, whose breaker history is lost), record.
fn finish(
    store: &Store,
    config: &Config,
    mut rec: Recovery,
    mut steps: Steps,
    now_ms: u64,
) -> Result<Recovery, RecoveryError> {
    let engine = RiskEngine::new(config.risk.clone(), config.gas.clone());
    let truth = reconcile::PaperLedger {
        starting_usd: config.executor.paper_starting_usd,
    };
    let (agent, mut risk, intents, holdings) = store.read(|r| {
        let agent: Option<AgentState> = r.get(KeyedTable::Agent, STATE_KEY)?;
        let risk = crate::risk::persist::load(r)?.unwrap_or_default();
        let intents = r.all::<crate::chain::send::Intent>(KeyedTable::Intents)?;
        let holdings = reconcile::TruthSource::holdings(&truth, r)?;
        Ok((agent, risk, intents, holdings))
    })?;
    let on_chain = config.executor.kind == athena_config::ExecutorKind::Chain;
    let at = agent.as_ref().map_or(now_ms, |a| a.last_tick_ms.max(1));
    let mut journal = Vec::new();
    if on_chain {
        // Settled by hash and nonce against the node, then reconciled with the chain at a
        // pinned block, at the first tick (the node is read first): see `chain::exec`.
        rec.intents_resolved = 0;
        steps.done(
            "resolve intents",
            format!(
                "{} in the store: settled on chain at the first tick",
                intents.len()
            ),
        );
        steps.done(
            "reconcile",
            "with the chain at a pinned block, at the first tick; never traded to fix",
        );
    } else {
        // The paper executor never broadcasts: a pending intent was never sent, so it is
        // dropped.
        rec.intents_resolved = intents.len() as u64;
        steps.done(
            "resolve intents",
            format!(
                "{} pending, resolved as not sent (paper executor)",
                intents.len()
            ),
        );
    }
    match (&agent, &holdings) {
        _ if on_chain => {}
        (Some(a), Some(h)) => {
            let report = reconcile::compare(
                a,
                h,
                reconcile::TruthSource::name(&truth),
                config.recovery.reconcile_tolerance_usd,
            );
            journal.extend(engine.record(
                &mut risk,
                Observation::Reconciliation {
                    at_ms: at,
                    difference_usd: report.difference_usd,
                },
            ));
            steps.done(
                "reconcile",
                format!(
                    "difference ${:.2} against the {} ({}); never traded to fix",
                    report.difference_usd,
                    report.source,
                    if report.within_tolerance {
                        "within tolerance"
                    } else {
                        "above tolerance"
                    }
                ),
            );
            rec.reconciliation = Some(report);
        }
        _ => steps.done("reconcile", "no book yet: nothing to compare"),
    }
    if rec.restored_from == Some(Source::Firestore) {
        journal.extend(engine.stop(
            &mut risk,
            "rebuilt from Firestore: the breaker history is lost; review, then athena \
                     risk resume",
            at,
        )?);
    }
    journal.extend(engine.record(&mut risk, Observation::Recovered { at_ms: at }));
    rec.agent_ms = at;
    steps.done("recovery factor", "sizes ramp back to full over 24 h");
    rec.total_ms = steps.total_ms();
    rec.steps = steps.steps;
    store.write(|w| {
        for (id, _) in intents.iter().filter(|_| !on_chain) {
            w.remove(KeyedTable::Intents, id)?;
        }
        crate::risk::persist::save(w, &risk, &journal, at)?;
        w.put(KeyedTable::Agent, LAST_RECOVERY_KEY, &rec)?;
        Ok(())
    })?;
    Ok(rec)
}

/// The last recovery recorded in `store`.
pub fn last(store: &Store) -> Result<Option<Recovery>, StoreError> {
    store.read(|r| r.get(KeyedTable::Agent, LAST_RECOVERY_KEY))
}

/// `athena checkpoint restore`: quarantines the store of `config` (if any) and restores
/// checkpoint `wanted` (or the newest) from `source`. The agent must be stopped.
pub async fn restore_command(
    config: &Config,
    source: Source,
    wanted: Option<&str>,
    progress: &dyn Fn(u64, u64),
) -> Result<Recovery, RecoveryError> {
    let mut steps = Steps::new();
    let mut rec = Recovery {
        wall_ms: crate::clock::wall_ms(),
        cause: format!("operator restore from {source}"),
        ..Recovery::default()
    };
    // Refuse while an agent holds the store; salvage what it holds (it is quarantined only
    // once the new store is built: a restore that fails leaves it in place).
    let path = config.agent.data_dir.join(STORE_FILE);
    let mut salvage = None;
    if path.exists() {
        if let Err(StoreError::Refused { reason, .. }) =
            Store::open_file_read_only(&path, &config.memory)
            && reason == athena_storage::ALREADY_OPEN
        {
            return Err(RecoveryError::Invalid(format!(
                "{}: {reason}; stop the agent first",
                path.display()
            )));
        }
        salvage = sources::salvage(&path, &config.memory).ok();
        steps.done(
            "salvage",
            salvage.as_ref().map_or("nothing readable".into(), |s| {
                format!("{} memories from the current store", s.memories.len())
            }),
        );
    }
    let plan = Plan {
        order: &[source],
        salvage,
        wanted,
        replace: true,
    };
    restore_into(config, plan, &mut rec, &mut steps, progress).await?;
    let store = crate::app::open_store(config)?;
    let now = store
        .read(|r| r.get::<AgentState>(KeyedTable::Agent, STATE_KEY))?
        .map_or(0, |a| a.last_tick_ms);
    finish(&store, config, rec, steps, now)
}

/// The observations of the packs within the observation retention before `at_ms`.
async fn observations_from_packs(
    objects: &athena_sync::ObjectStoreSink,
    config: &Config,
    at_ms: u64,
) -> Result<Vec<athena_storage::Memory>, String> {
    let retention = config
        .memory
        .retention
        .get(athena_storage::MemoryType::Observation.as_str())
        .copied()
        .unwrap_or(config.memory.cold_max_age);
    let since = at_ms.saturating_sub(retention.as_millis() as u64);
    sources::observation_packs(objects, since).await
}

/// Adds the memories of `found` whose ids `memories` lacks; returns how many.
fn add_new_memories(
    memories: &mut Vec<athena_storage::Memory>,
    found: Option<&Vec<athena_storage::Memory>>,
) -> usize {
    let known: std::collections::HashSet<ulid::Ulid> = memories.iter().map(|m| m.id).collect();
    let new: Vec<_> = found
        .into_iter()
        .flatten()
        .filter(|m| !known.contains(&m.id))
        .cloned()
        .collect();
    let added = new.len();
    memories.extend(new);
    added
}
