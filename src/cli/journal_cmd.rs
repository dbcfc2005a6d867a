//! `athena journal`: the decisions and risk events with their reasons, newest first, read-only.

use super::{now_ms, open_store_read_only, parse_duration_arg, parse_limit};
use crate::agent::state::{AgentState, STATE_KEY};
use crate::journal::{self, EntryKind, Query};
use athena_config::Config;
use athena_storage::KeyedTable;
use clap::Args;
use std::io::Write;

/// `athena journal` filters.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Only this kind: decision, risk (trips, re-arms, state changes), control (operator
    /// stop, resume, reset, override) or data (pool snapshots left out as bad data).
    #[arg(long, value_parser = str::parse::<EntryKind>)]
    kind: Option<EntryKind>,
    /// Only decisions about this pool.
    #[arg(long)]
    pool: Option<String>,
    /// Only entries this recent (e.g. 2h, 7d) before the agent's last tick (the wall clock
    /// when no agent has run).
    #[arg(long, value_parser = parse_duration_arg)]
    since: Option<std::time::Duration>,
    /// Most entries.
    #[arg(long, default_value_t = 50, value_parser = parse_limit)]
    limit: usize,
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(config: &Config, args: &JournalArgs) -> anyhow::Result<()> {
    let store = open_store_read_only(config)?;
    let last_tick: Option<AgentState> = store.read(|r| r.get(KeyedTable::Agent, STATE_KEY))?;
    let reference = last_tick.map_or_else(now_ms, |s| s.last_tick_ms);
    let q = Query {
        kind: args.kind,
        pool: args.pool.clone(),
        since_ms: args
            .since
            .map(|d| reference.saturating_sub(d.as_millis() as u64)),
        limit: args.limit,
    };
    let pools = journal::position_pools(&store)?;
    let mut out = std::io::stdout().lock();
    let mut failed: Option<std::io::Error> = None;
    let mut corrupt = 0usize;
    let mut shown = 0usize;
    journal::query(&store, &q, &pools, |(seq, record)| {
        shown += 1;
        let written = match record {
            Ok(rec) if args.json => writeln!(
                out,
                "{}",
                serde_json::json!({
                    "seq": seq,
                    "at_ms": rec.at_ms(),
                    "kind": rec.kind(),
                    "pool": rec.pool(&pools),
                    "record": rec,
                })
            ),
            Ok(rec) => writeln!(
                out,
                "{}  #{seq:<7} {:<8} {}",
                journal::rfc3339(rec.at_ms()),
                rec.kind().as_str(),
                rec.summary(&pools)
            ),
            Err(e) => {
                corrupt += 1;
                eprintln!("journal entry #{seq} cannot be read: {e}");
                Ok(())
            }
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if shown == 0 && !args.json {
        eprintln!("no journal entries match");
    }
    if corrupt > 0 {
        return Err(super::Exit {
            code: 1,
            message: format!("error: {corrupt} journal entries failed their checksum"),
        }
        .into());
    }
    Ok(())
}
