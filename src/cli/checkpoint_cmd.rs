//! `athena checkpoint create|list|verify|restore`. While an agent runs, create and list go
//! through its API ([`super::remote`]) and verify reads the list from it (the file itself is
//! read directly); restore needs the agent stopped and says so.

use super::{Exit, now_ms, open_store, open_store_read_only, remote};
use crate::agent::state::{AgentState, STATE_KEY};
use crate::checkpoint;
use athena_config::Config;
use athena_storage::KeyedTable;
use clap::Subcommand;

/// Checkpoint commands.
#[derive(Debug, Subcommand)]
pub enum CheckpointCommand {
    /// Take a checkpoint now (with the agent stopped): file, store entry, and the object and
    /// Firestore document queued for sync.
    Create,
    /// The checkpoints the store knows, oldest first.
    List {
        /// Print JSON (an array of entries) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify a checkpoint file's digest and contents (ID, or `latest`); exit 1 if invalid.
    Verify {
        /// Checkpoint id or `latest`.
        #[arg(default_value = "latest")]
        id: String,
    },
    /// Restore a checkpoint (ID, or `latest`) into the data directory, with the agent stopped:
    /// the current store is quarantined (renamed, never deleted), a new one is built from the
    /// checkpoint plus the memories salvaged from the old store or held by the cloud, then
    /// reconciled.
    Restore {
        /// Checkpoint id or `latest`.
        #[arg(default_value = "latest")]
        id: String,
        /// Where the checkpoint comes from: local, gcs (the object store) or firestore (a
        /// rebuild from the documents; `latest` only).
        #[arg(long, default_value = "local")]
        from: crate::recovery::sources::Source,
    },
}

pub(super) fn run(config: &Config, cmd: &CheckpointCommand) -> anyhow::Result<()> {
    match cmd {
        CheckpointCommand::Restore { id, from } => {
            remote::require_stopped(config, "athena checkpoint restore")?;
            restore(config, id, *from)
        }
        CheckpointCommand::Create => {
            let entry = match remote::call(config, create_remote)? {
                Some(e) => e,
                None => create_local(config)?,
            };
            outln!(
                "created {} (tick {}, {} bytes, sha256 {})",
                entry.id,
                entry.tick,
                entry.bytes,
                entry.digest
            );
            Ok(())
        }
        CheckpointCommand::List { json } => print_list(&entries(config)?, *json),
        CheckpointCommand::Verify { id } => verify(config, &entries(config)?, id),
    }
}

/// The checkpoints, oldest first: from the running agent, or from the store.
fn entries(config: &Config) -> anyhow::Result<Vec<checkpoint::Entry>> {
    match remote::call(config, |a| {
        a.get::<Vec<checkpoint::Entry>>("/recovery/checkpoints", &[])
    })? {
        Some(all) => Ok(all),
        None => Ok(checkpoint::list(&open_store_read_only(config)?)?),
    }
}

fn create_remote(agent: &remote::Agent) -> Result<checkpoint::Entry, remote::RemoteError> {
    let applied = agent.post::<crate::control::Applied>("/recovery/checkpoint", None)?;
    serde_json::from_value(applied.detail.unwrap_or_default()).map_err(|source| {
        remote::RemoteError::Decode {
            path: "/recovery/checkpoint".into(),
            source,
        }
    })
}

fn create_local(config: &Config) -> anyhow::Result<checkpoint::Entry> {
    let store = open_store(config)?;
    // Agent time: the last tick's, so checkpoints line up with the journal.
    let state: Option<AgentState> = store.read(|r| r.get(KeyedTable::Agent, STATE_KEY))?;
    let at = state.map_or_else(now_ms, |s| s.last_tick_ms.max(1));
    Ok(checkpoint::create(
        &store,
        &config.agent.data_dir,
        config,
        at,
    )?)
}

fn print_list(all: &[checkpoint::Entry], json: bool) -> anyhow::Result<()> {
    if json {
        outln!("{}", serde_json::to_string_pretty(all)?);
        return Ok(());
    }
    for e in all {
        outln!(
            "{}  tick {:>7}  {:>10} bytes  sha256 {}",
            e.id,
            e.tick,
            e.bytes,
            e.digest
        );
    }
    Ok(())
}

/// Checks the file of checkpoint `id` (or the latest) among `all`; the file is read directly,
/// so this works while the agent runs.
fn verify(config: &Config, all: &[checkpoint::Entry], id: &str) -> anyhow::Result<()> {
    let dir = &config.agent.data_dir;
    let entry = if id == "latest" {
        all.last()
    } else {
        all.iter().find(|e| e.id == id)
    };
    let Some(entry) = entry else {
        return Err(Exit {
            code: 1,
            message: format!("error: no checkpoint {id} in {}", dir.display()),
        }
        .into());
    };
    let path = dir.join(checkpoint::DIR).join(&entry.file);
    let problem = match checkpoint::verify_file(&path) {
        Ok(c) if c.id == entry.id => {
            outln!(
                "{}: valid (format {}, {} ledger entries, {} memory categories, outbox next seq {})",
                entry.id,
                c.format_version,
                c.ledger.len(),
                c.memories.len(),
                c.outbox_next_seq
            );
            return Ok(());
        }
        Ok(c) => format!(
            "{}: holds checkpoint {}, not {}",
            path.display(),
            c.id,
            entry.id
        ),
        Err(e) => format!("{}: invalid: {}", path.display(), athena_sync::one_line(&e)),
    };
    Err(Exit {
        code: 1,
        message: problem,
    }
    .into())
}

fn restore(
    config: &Config,
    id: &str,
    from: crate::recovery::sources::Source,
) -> anyhow::Result<()> {
    use std::io::Write;
    let wanted = (id != "latest").then_some(id);
    let progress = |done: u64, total: u64| {
        if let Some(pct) = (done * 100).checked_div(total) {
            let bar = "#".repeat((pct / 4) as usize);
            eprint!("\r[{bar:<25}] {pct:>3}%  {done}/{total} memories");
            let _ = std::io::stderr().flush();
        }
    };
    let runtime = super::runtime()?;
    let rec = runtime
        .block_on(crate::recovery::restore_command(
            config, from, wanted, &progress,
        ))
        .map_err(|e| Exit {
            code: 1,
            message: format!("error: restore failed: {e}"),
        })?;
    eprintln!();
    if let Some(q) = &rec.quarantined {
        outln!("quarantined the previous store at {q}");
    }
    for s in &rec.skipped {
        outln!("skipped {s}");
    }
    for s in &rec.steps {
        outln!("  {:<28} {:>9.1} ms  {}", s.name, s.ms, s.detail);
    }
    outln!(
        "restored {} from {} in {:.1} ms",
        rec.checkpoint.as_deref().unwrap_or("?"),
        from,
        rec.total_ms
    );
    Ok(())
}
