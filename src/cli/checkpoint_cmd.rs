//! `athena checkpoint create|list|verify|restore`.

use super::{Exit, now_ms, open_store, open_store_read_only};
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
    List,
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
    let dir = &config.agent.data_dir;
    match cmd {
        CheckpointCommand::Restore { id, from } => restore(config, id, *from)?,
        CheckpointCommand::Create => {
            let store = open_store(config)?;
            // Agent time: the last tick's, so checkpoints line up with the journal.
            let state: Option<AgentState> = store.read(|r| r.get(KeyedTable::Agent, STATE_KEY))?;
            let at = state.map_or_else(now_ms, |s| s.last_tick_ms.max(1));
            let e = checkpoint::create(&store, dir, config, at)?;
            outln!(
                "created {} (tick {}, {} bytes, sha256 {})",
                e.id,
                e.tick,
                e.bytes,
                e.digest
            );
        }
        CheckpointCommand::List => {
            let store = open_store_read_only(config)?;
            for e in checkpoint::list(&store)? {
                outln!(
                    "{}  tick {:>7}  {:>10} bytes  sha256 {}",
                    e.id,
                    e.tick,
                    e.bytes,
                    e.digest
                );
            }
        }
        CheckpointCommand::Verify { id } => {
            let store = open_store_read_only(config)?;
            let all = checkpoint::list(&store)?;
            let entry = if id == "latest" {
                all.last()
            } else {
                all.iter().find(|e| &e.id == id)
            };
            let Some(entry) = entry else {
                return Err(Exit {
                    code: 1,
                    message: format!("error: no checkpoint {id} in {}", dir.display()),
                }
                .into());
            };
            let path = dir.join(checkpoint::DIR).join(&entry.file);
            match checkpoint::verify_file(&path) {
                Ok(c) if c.id == entry.id => outln!(
                    "{}: valid (format {}, {} ledger entries, {} memory categories, outbox next seq {})",
                    entry.id,
                    c.format_version,
                    c.ledger.len(),
                    c.memories.len(),
                    c.outbox_next_seq
                ),
                Ok(c) => {
                    return Err(Exit {
                        code: 1,
                        message: format!(
                            "{}: holds checkpoint {}, not {}",
                            path.display(),
                            c.id,
                            entry.id
                        ),
                    }
                    .into());
                }
                Err(e) => {
                    return Err(Exit {
                        code: 1,
                        message: format!(
                            "{}: invalid: {}",
                            path.display(),
                            athena_sync::one_line(&e)
                        ),
                    }
                    .into());
                }
            }
        }
    }
    Ok(())
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
