//! `athena journal`: the decisions and risk events with their reasons, newest first, read-only;
//! from the store, or through the running agent's API ([`super::remote`]) while it holds the
//! store. Both paths select with [`crate::api::journal_entries`] and print with [`print`].

use super::{open_store_read_only, parse_duration_arg, parse_limit, remote};
use crate::api::{JournalEntry, journal_entries};
use crate::journal::{self, EntryKind};
use athena_config::Config;
use clap::Args;

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
    let entries = match remote::call(config, |a| {
        a.get::<Vec<JournalEntry>>("/journal", &args.query())
    })? {
        Some(e) => e,
        None => {
            let store = open_store_read_only(config)?;
            let since = args.since.map(|d| d.as_millis() as u64);
            let pools = crate::journal::position_pools(&store)?;
            journal_entries(
                &store,
                &pools,
                args.kind,
                args.pool.clone(),
                since,
                None,
                args.limit,
            )?
        }
    };
    print(&entries, args.json)
}

impl JournalArgs {
    /// The filters as `/journal` takes them.
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("limit", remote::list_limit(self.limit))];
        if let Some(k) = self.kind {
            q.push(("kind", k.as_str().to_string()));
        }
        if let Some(p) = &self.pool {
            q.push(("pool", p.clone()));
        }
        if let Some(d) = self.since {
            q.push(("since", humantime::format_duration(d).to_string()));
        }
        q
    }
}

/// Prints the entries (text or one JSON object per line); an unreadable one is named on
/// stderr and makes the exit 1.
fn print(entries: &[JournalEntry], json: bool) -> anyhow::Result<()> {
    let mut corrupt = 0usize;
    for e in entries {
        match (&e.record, &e.error) {
            (Some(rec), _) if json => outln!(
                "{}",
                serde_json::json!({
                    "seq": e.seq,
                    "at_ms": e.at_ms,
                    "kind": e.kind,
                    "pool": e.pool,
                    "record": rec,
                })
            ),
            (Some(_), _) => outln!(
                "{}  #{:<7} {:<8} {}",
                journal::rfc3339(e.at_ms.unwrap_or_default()),
                e.seq,
                e.kind.as_deref().unwrap_or("?"),
                e.summary.as_deref().unwrap_or_default()
            ),
            (None, error) => {
                corrupt += 1;
                eprintln!(
                    "journal entry #{} cannot be read: {}",
                    e.seq,
                    error.as_deref().unwrap_or("unknown error")
                );
            }
        }
    }
    if entries.is_empty() && !json {
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
