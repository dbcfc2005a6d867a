//! `athena store stats|verify`: both read the store file itself, so they need the agent
//! stopped and say so when it runs.

use super::{Exit, open_store_read_only};
use anyhow::Context;
use athena_config::Config;
use athena_storage::Store;
use clap::Subcommand;

/// Store commands.
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// File size, tables (rows and bytes), outbox depth and dictionaries.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's checksum and the indexes, then redb's page integrity (its writes
    /// kept in memory, so the store is never modified or copied). Exits 1 and names the keys
    /// on corruption.
    Verify,
}

pub(super) fn run(config: &Config, cmd: &StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Stats { json } => {
            super::remote::require_stopped(config, "athena store stats")?;
            stats(&open_store_read_only(config)?, *json)
        }
        StoreCommand::Verify => {
            super::remote::require_stopped(config, "athena store verify")?;
            verify(config)
        }
    }
}

fn stats(store: &Store, json: bool) -> anyhow::Result<()> {
    let tables = store.table_stats()?;
    let dictionaries = athena_storage::dictionary::list(store)?;
    if json {
        let dicts: Vec<_> = dictionaries
            .iter()
            .map(|d| serde_json::json!({ "id": d.id, "kind": d.kind, "samples": d.samples, "bytes": d.bytes.len() }))
            .collect();
        let out = serde_json::json!({
            "path": store.path(),
            "file_bytes": store.file_size(),
            "tables": tables,
            "dictionaries": dicts,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "store {} ({} bytes)",
        store.path().display(),
        store.file_size()
    );
    outln!(
        "{:<28} {:>10} {:>14} {:>12}",
        "table",
        "rows",
        "stored bytes",
        "fragmented"
    );
    for t in &tables {
        outln!(
            "{:<28} {:>10} {:>14} {:>12}",
            t.name,
            t.rows,
            t.stored_bytes,
            t.fragmented_bytes
        );
    }
    for d in &dictionaries {
        outln!(
            "dictionary {} (kind {}): {} bytes from {} samples",
            d.id,
            d.kind,
            d.bytes.len(),
            d.samples
        );
    }
    Ok(())
}

/// Records, indexes, then redb's repairing page check, all on one handle over an in-memory
/// overlay of the file: the file is never modified and never copied (a nearly full disk is
/// no problem), and nothing is left behind if the check is interrupted.
fn verify(config: &Config) -> anyhow::Result<()> {
    let dir = &config.agent.data_dir;
    let mut store = Store::open_overlay(dir, &config.memory)
        .with_context(|| format!("opening the store in {}", dir.display()))?;
    if store.open_report.repaired {
        eprintln!(
            "note: the store was not closed cleanly; verifying it as redb repairs it, in memory (the file is not changed)"
        );
    }
    let report = store.verify_records()?;
    let mut problems = Vec::new();
    for c in &report.corrupt {
        problems.push(format!(
            "corrupt record: table {} key {}: {}",
            c.table, c.key, c.reason
        ));
    }
    problems.extend(report.index_problems.iter().map(|p| format!("index: {p}")));
    match store.check_integrity() {
        Ok(true) => {}
        Ok(false) => problems.push("redb: page checksums failed; the file needs repair".into()),
        Err(e) => problems.push(format!("redb: integrity check failed: {e}")),
    }
    let path = store.path().to_path_buf();
    if problems.is_empty() {
        outln!(
            "store {} verified: {} records, indexes consistent, pages intact",
            path.display(),
            report.records
        );
        return Ok(());
    }
    let mut msg = format!(
        "store {} is CORRUPT: {} problem(s)",
        path.display(),
        problems.len()
    );
    for p in problems {
        msg.push_str(&format!("\n  {p}"));
    }
    Err(Exit {
        code: 1,
        message: msg,
    }
    .into())
}
