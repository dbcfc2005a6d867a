//! The start-up ladder, one test per rung, on a real agent run's store: a crash with a sound
//! store resumes it; a corrupt store is quarantined and the newest valid local checkpoint
//! restored (a flipped one skipped); with no local checkpoint the object store's (the GCS
//! server) is used; with none anywhere the Firestore documents (the emulator) rebuild the
//! agent. Also: reconciliation above the limit trips position_mismatch without trading, and the
//! scrubber finds a corrupt record and names it.

use athena::agent::state::{AgentState, STATE_KEY};
use athena::app::CLEAN_SHUTDOWN_KEY;
use athena::checkpoint;
use athena::recovery::{self, sources::Source};
use athena_config::{Config, DocumentSink};
use athena_storage::{KeyedTable, STORE_FILE, SeqTable, Store};
use std::path::Path;
use std::sync::Arc;

const DAYS: u64 = 4;

/// A config on `dir`; with `cloud`, syncing to the emulator and the GCS server under a fresh
/// agent id.
fn config(dir: &Path, cloud: bool) -> Config {
    let mut c = Config::default();
    c.agent.data_dir = dir.to_path_buf();
    c.agent.seed = 11;
    if cloud {
        std::env::var("FIRESTORE_EMULATOR_HOST").expect(
            "FIRESTORE_EMULATOR_HOST is not set: run the tests with scripts/test.sh, which starts the Firestore emulator",
        );
        let bucket = std::env::var("GCS_TEST_BUCKET").expect(
            "GCS_TEST_BUCKET is not set: run the tests with scripts/test.sh, which starts fake-gcs-server",
        );
        c.agent.agent_id = format!("rec-{}", ulid::Ulid::new().to_string().to_lowercase());
        c.sync.documents = DocumentSink::Firestore;
        c.sync.firestore_project = "athena-test".into();
        c.sync.object_store_url = format!("gs://{bucket}/recovery");
    }
    c
}

fn agent_state(store: &Store) -> AgentState {
    store
        .read(|r| r.get::<AgentState>(KeyedTable::Agent, STATE_KEY))
        .unwrap()
        .unwrap()
}

/// A 4-day run with a checkpoint at its end (and one a day before, when `two`); the store is
/// left as a crashed process leaves it (marker 0). Returns the last checkpoint's id.
fn crashed_run(config: &Config, two: bool) -> (String, AgentState, u64) {
    let store = Store::open(&config.agent.data_dir, &config.memory).unwrap();
    if two {
        athena::backtest::run(config, &store, DAYS - 1, |_, _| {}).unwrap();
        let s = agent_state(&store);
        checkpoint::create(&store, &config.agent.data_dir, config, s.last_tick_ms).unwrap();
    }
    athena::backtest::run(config, &store, DAYS, |_, _| {}).unwrap();
    let s = agent_state(&store);
    let e = checkpoint::create(&store, &config.agent.data_dir, config, s.last_tick_ms).unwrap();
    store
        .write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, 0))
        .unwrap();
    let memories = store.read(|r| r.memory_count()).unwrap();
    (e.id, s, memories)
}

/// Overwrites the agent state record with bytes that fail their checksum.
fn corrupt_agent_record(dir: &Path) {
    let db = redb::Database::open(dir.join(STORE_FILE)).unwrap();
    let tx = db.begin_write().unwrap();
    tx.open_table(athena_storage::tables::AGENT)
        .unwrap()
        .insert(STATE_KEY, b"this is not a record".as_slice())
        .unwrap();
    tx.commit().unwrap();
}

/// The next outbox sequence number the store hands out.
fn outbox_counter(store: &Store) -> u64 {
    store
        .read(|r| r.meta_u64(SeqTable::Outbox.counter_key()))
        .unwrap()
        .unwrap()
}

async fn start(config: &Config) -> (Store, recovery::Recovery) {
    let (store, rec) = recovery::start(config, None, 0).await.unwrap();
    (store, rec.expect("this start is a recovery"))
}

fn quarantined_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&format!("{STORE_FILE}.quarantined-")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_a_sound_store_resumes_it_and_records_the_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let (_, before, _) = crashed_run(&config, false);
    let (store, rec) = start(&config).await;
    assert!(rec.cause.starts_with("crash"), "{}", rec.cause);
    assert_eq!(rec.restored_from, None);
    let names: Vec<&str> = rec.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "open store",
            "verify",
            "resolve intents",
            "reconcile",
            "recovery factor"
        ]
    );
    let r = rec.reconciliation.as_ref().unwrap();
    assert!(r.within_tolerance && r.difference_usd < 1e-6, "{r:?}");
    assert_eq!(agent_state(&store), before, "the store itself is resumed");
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    assert_eq!(risk.recovered_at_ms, Some(before.last_tick_ms));
    assert_eq!(recovery::last(&store).unwrap().unwrap(), rec);
    assert!(quarantined_files(dir.path()).is_empty());
    // A clean start afterwards is not a recovery.
    store
        .write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, 5))
        .unwrap();
    drop(store);
    let (_, again) = recovery::start(&config, None, 0).await.unwrap();
    assert!(again.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_is_quarantined_and_the_newest_local_checkpoint_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let (id, before, memories) = crashed_run(&config, false);
    let watermark = outbox_counter(&Store::open(dir.path(), &config.memory).unwrap());
    corrupt_agent_record(dir.path());
    let (store, rec) = start(&config).await;
    assert!(rec.cause.contains("failed verification"), "{}", rec.cause);
    assert_eq!(rec.restored_from, Some(Source::Local));
    assert!(rec.checkpoint.as_ref().unwrap().starts_with(&id));
    let verify = rec.steps.iter().find(|s| s.name == "verify").unwrap();
    assert!(verify.detail.contains("agent state"), "{}", verify.detail);
    // The corrupt store was renamed, never deleted.
    let q = quarantined_files(dir.path());
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(
        rec.quarantined.as_deref(),
        Some(dir.path().join(&q[0]).to_str().unwrap())
    );
    // The state is the checkpoint's (which was the run's last), memories salvaged, the
    // outbox counter not below what the old store had handed out.
    assert_eq!(agent_state(&store), before);
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), memories);
    let counter = outbox_counter(&store);
    assert!(counter >= watermark, "{counter} < {watermark}");
    assert!(store.verify_records().unwrap().is_clean());
    let r = rec.reconciliation.unwrap();
    assert!(r.within_tolerance, "{r:?}");
}

/// A store stopped cleanly and damaged afterwards (a bad record, or pages redb panics on) is
/// restored at the next start, not refused at every start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanly_stopped_store_that_is_damaged_is_quarantined_and_restored() {
    for damage in ["record", "pages"] {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path(), false);
        let (id, before, _) = crashed_run(&config, false);
        Store::open(dir.path(), &config.memory)
            .unwrap()
            .write(|w| w.set_meta_u64(CLEAN_SHUTDOWN_KEY, before.last_tick_ms))
            .unwrap();
        match damage {
            "record" => corrupt_agent_record(dir.path()),
            _ => {
                let path = dir.path().join(STORE_FILE);
                let mut bytes = std::fs::read(&path).unwrap();
                for at in (8192..bytes.len()).step_by(6151) {
                    bytes[at] ^= 0x5A;
                }
                std::fs::write(&path, bytes).unwrap();
            }
        }
        let (store, rec) = start(&config).await;
        assert!(
            rec.cause.contains("damaged") || rec.cause.contains("does not open"),
            "{damage}: {}",
            rec.cause
        );
        assert_eq!(rec.restored_from, Some(Source::Local), "{damage}");
        assert!(
            rec.checkpoint.as_ref().unwrap().starts_with(&id),
            "{damage}"
        );
        assert_eq!(quarantined_files(dir.path()).len(), 1, "{damage}");
        assert_eq!(agent_state(&store), before, "{damage}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_checkpoint_is_skipped_and_the_previous_valid_one_used() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let (newest, _, _) = crashed_run(&config, true);
    let all = {
        let store = Store::open(dir.path(), &config.memory).unwrap();
        checkpoint::list(&store).unwrap()
    };
    assert_eq!(all.len(), 2);
    let older = &all[0];
    let path = dir
        .path()
        .join(checkpoint::DIR)
        .join(format!("{newest}.ckpt"));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();
    corrupt_agent_record(dir.path());
    let (store, rec) = start(&config).await;
    assert_eq!(rec.restored_from, Some(Source::Local));
    assert!(
        rec.checkpoint.as_ref().unwrap().starts_with(&older.id),
        "{:?}",
        rec.checkpoint
    );
    assert_eq!(rec.skipped.len(), 1, "{:?}", rec.skipped);
    assert!(
        rec.skipped[0].contains(&newest) && rec.skipped[0].contains("digest mismatch"),
        "{:?}",
        rec.skipped
    );
    let older_contents =
        checkpoint::verify_file(&dir.path().join(checkpoint::DIR).join(&older.file)).unwrap();
    assert_eq!(Some(agent_state(&store)), older_contents.agent);
    // The book restored is a day old while the ledger salvaged... is the checkpoint's: they
    // agree, so reconciliation finds nothing.
    assert!(rec.reconciliation.unwrap().within_tolerance);
}

/// Drains the outbox of the store in `config`'s data directory to the configured sinks.
async fn drain(config: &Config) {
    let store = Arc::new(Store::open(&config.agent.data_dir, &config.memory).unwrap());
    let sinks = athena_sync::Sinks::from_config(config).await.unwrap();
    let mut worker = athena_sync::Worker::new(
        store.clone(),
        sinks.documents,
        sinks.objects,
        &config.sync,
        1,
        Arc::new(|| 1_800_000_000_000),
    );
    worker.drain().await.unwrap();
    assert_eq!(store.outbox_len().unwrap(), 0, "everything synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_local_checkpoint_the_object_store_one_is_restored() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), true);
    let (id, before, memories) = crashed_run(&config, false);
    drain(&config).await;
    std::fs::remove_dir_all(dir.path().join(checkpoint::DIR)).unwrap();
    corrupt_agent_record(dir.path());
    let (store, rec) = start(&config).await;
    assert_eq!(rec.restored_from, Some(Source::Gcs), "{:?}", rec.steps);
    assert!(rec.checkpoint.as_ref().unwrap().starts_with(&id));
    let local = rec
        .steps
        .iter()
        .find(|s| s.name == "find checkpoint (local)")
        .unwrap();
    assert!(local.detail.contains("none found"), "{}", local.detail);
    assert_eq!(agent_state(&store), before);
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), memories);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_any_checkpoint_the_firestore_documents_rebuild_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), true);
    let (_, before, _) = crashed_run(&config, false);
    drain(&config).await;
    let (watermark, documented) = {
        let store = Store::open(dir.path(), &config.memory).unwrap();
        let all = store.read(|r| r.all_memories()).unwrap();
        let documented = all
            .iter()
            .filter(|m| athena_storage::has_document(m))
            .count();
        assert!(documented < all.len(), "the run made no observation");
        (outbox_counter(&store), documented as u64)
    };
    std::fs::remove_dir_all(dir.path().join(checkpoint::DIR)).unwrap();
    // The object store is gone too (here: no longer configured).
    config.sync.object_store_url = String::new();
    // And the store is beyond salvage: half of the file is gone.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join(STORE_FILE))
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    drop(f);
    let (store, rec) = start(&config).await;
    assert_eq!(
        rec.restored_from,
        Some(Source::Firestore),
        "{:?}",
        rec.steps
    );
    let after = agent_state(&store);
    // The book is the last hourly snapshot: at most an hour behind, same run.
    assert_eq!(after.seed, before.seed);
    assert_eq!(after.started_ms, before.started_ms);
    assert_eq!(after.observation_start_ms, before.observation_start_ms);
    assert!(before.last_tick_ms - after.last_tick_ms < 3_600_000);
    assert!(after.next_tick <= before.next_tick);
    // Every memory the document mirror held is back, read from Firestore: all but the
    // observations, which live in the object store's hourly packs (gone here).
    assert_eq!(store.read(|r| r.memory_count()).unwrap(), documented);
    let m = rec.steps.iter().find(|s| s.name == "memories").unwrap();
    assert!(m.detail.ends_with("from Firestore"), "{:?}", rec.steps);
    // Breaker history is lost in a rebuild: trading is held for an operator.
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    assert!(risk.operator_stop.is_some());
    // The ledger up to the snapshot agrees with the book.
    assert!(rec.reconciliation.unwrap().within_tolerance);
    // The outbox counter is above every sequence the cloud has seen.
    let counter = outbox_counter(&store);
    assert!(counter >= watermark, "{counter} < {watermark}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_book_that_disagrees_with_the_ledger_trips_position_mismatch_and_nothing_trades() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let (_, mut before, _) = crashed_run(&config, false);
    before.cash_usd += 2_500.0;
    {
        let store = Store::open(dir.path(), &config.memory).unwrap();
        store
            .write(|w| w.put(KeyedTable::Agent, STATE_KEY, &before))
            .unwrap();
    }
    let ledger_before = {
        let store = Store::open(dir.path(), &config.memory).unwrap();
        store.read(|r| r.seq_len(SeqTable::Ledger)).unwrap()
    };
    let (store, rec) = start(&config).await;
    let r = rec.reconciliation.unwrap();
    assert!(!r.within_tolerance);
    assert!((r.cash_difference_usd - 2_500.0).abs() < 1e-6, "{r:?}");
    let risk = athena::risk::persist::load_or_default(&store).unwrap();
    let b = risk
        .breakers
        .iter()
        .find(|b| b.kind == athena::risk::BreakerKind::PositionMismatch)
        .unwrap();
    assert!(b.is_tripped(before.last_tick_ms), "{b:?}");
    // Never trade to fix it: the book and the ledger are as they were.
    assert_eq!(agent_state(&store), before);
    assert_eq!(
        store.read(|r| r.seq_len(SeqTable::Ledger)).unwrap(),
        ledger_before
    );
}

#[test]
fn the_scrubber_finds_a_corrupt_record_and_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), false);
    let (_, _, _) = crashed_run(&config, false);
    corrupt_agent_record(dir.path());
    let store = Store::open(dir.path(), &config.memory).unwrap();
    let total = store.verify_records().unwrap().records;
    let mut cursor = athena_storage::ScrubCursor::default();
    let mut found = Vec::new();
    let mut checked = 0;
    // Slices of 97 records walk the whole store once.
    while cursor.rounds == 0 {
        let slice = store.scrub(&mut cursor, 97).unwrap();
        assert!(slice.records <= 97);
        checked += slice.records;
        found.extend(slice.corrupt);
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].table, "agent_state");
    assert_eq!(found[0].key, "state");
    // Every record was checked once (the meta dictionaries are verify's, not the scrubber's).
    assert!(
        checked <= total && checked + 10 > total,
        "{checked} of {total}"
    );
}
