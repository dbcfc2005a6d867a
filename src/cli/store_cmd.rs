//! `athena store stats|verify`.

use super::{Exit, open_store, open_store_read_only};
use anyhow::Context;
use athena_config::Config;
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
    /// Check every record's checksum and the indexes, then redb's page integrity (on a copy,
    /// so the store itself is never modified). Exits 1 and names the keys on corruption.
    Verify,
}

pub(super) fn run(config: &Config, cmd: &StoreCommand) -> anyhow::Result<()> {
    let store = match cmd {
        StoreCommand::Verify => open_store_read_only(config)?,
        StoreCommand::Stats { .. } => open_store(config)?,
    };
    match cmd {
        StoreCommand::Stats { json } => {
            let tables = store.table_stats()?;
            let dictionaries = athena_storage::dictionary::list(&store)?;
            if *json {
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
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(());
            }
            println!(
                "store {} ({} bytes)",
                store.path().display(),
                store.file_size()
            );
            println!(
                "{:<28} {:>10} {:>14} {:>12}",
                "table", "rows", "stored bytes", "fragmented"
            );
            for t in &tables {
                println!(
                    "{:<28} {:>10} {:>14} {:>12}",
                    t.name, t.rows, t.stored_bytes, t.fragmented_bytes
                );
            }
            for d in &dictionaries {
                println!(
                    "dictionary {} (kind {}): {} bytes from {} samples",
                    d.id,
                    d.kind,
                    d.bytes.len(),
                    d.samples
                );
            }
        }
        StoreCommand::Verify => {
            let report = store.verify_records()?;
            let path = store.path().to_path_buf();
            drop(store);
            let integrity = check_integrity_on_copy(&path, config)?;
            let mut problems = Vec::new();
            for c in &report.corrupt {
                problems.push(format!(
                    "corrupt record: table {} key {}: {}",
                    c.table, c.key, c.reason
                ));
            }
            problems.extend(report.index_problems.iter().map(|p| format!("index: {p}")));
            if let Some(p) = integrity {
                problems.push(p);
            }
            if problems.is_empty() {
                println!(
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
            return Err(Exit {
                code: 1,
                message: msg,
            }
            .into());
        }
    }
    Ok(())
}

/// redb's integrity check may repair (modify) the file, so it runs on a temporary copy.
fn check_integrity_on_copy(
    path: &std::path::Path,
    config: &Config,
) -> anyhow::Result<Option<String>> {
    let copy = path.with_extension("redb.verify-copy");
    std::fs::copy(path, &copy)
        .with_context(|| format!("copying the store to {} for the page check", copy.display()))?;
    let result = (|| -> anyhow::Result<Option<String>> {
        let mut store = match athena_storage::Store::open_file(&copy, &config.memory) {
            Ok(s) => s,
            Err(e) => return Ok(Some(format!("redb: the store cannot be opened: {e}"))),
        };
        Ok(match store.check_integrity() {
            Ok(true) => None,
            Ok(false) => Some("redb: page checksums failed; the file needs repair".to_string()),
            Err(e) => Some(format!("redb: integrity check failed: {e}")),
        })
    })();
    let _ = std::fs::remove_file(&copy);
    result
}
