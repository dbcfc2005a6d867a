//! The live stream (server-sent events at `/stream`): every `api.stream_interval` the status,
//! the newest equity point and the journal entries written since the last event; alerts as
//! they are raised. A client that falls behind loses nothing of the journal (entries are read
//! by sequence number), only intermediate statuses.

use super::ApiState;
use super::read::JournalEntry;
use athena_storage::SeqTable;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use std::convert::Infallible;
use std::time::Duration;

/// The most journal entries one event carries (the next event carries the rest).
const JOURNAL_BATCH: usize = 200;

/// Live updates: `status`, `equity`, `journal` and `alert` events.
#[utoipa::path(get, path = "/stream", tag = "agent",
    responses((status = 200, description = "Server-sent events: status, equity, journal, alert", content_type = "text/event-stream", body = String)))]
pub async fn stream(
    State(state): State<ApiState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let every = state
        .config
        .api
        .stream_interval
        .max(Duration::from_millis(100));
    let last_seq = newest_journal_seq(&state).await;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let periodic = stream::unfold(
        (state.clone(), last_seq, ticker),
        |(state, seq, mut ticker)| async move {
            ticker.tick().await;
            let (events, seq) = periodic_events(&state, seq).await;
            Some((stream::iter(events), (state, seq, ticker)))
        },
    )
    .flatten();
    let alerts = super::alert_events(&state);
    let mut closing = state.closing.clone();
    // The stream ends when the server stops (a shutdown never waits on an open stream).
    let closed = async move {
        let _ = closing.wait_for(|c| *c).await;
    };
    let merged = stream::select(periodic, alerts).take_until(closed).map(Ok);
    Sse::new(merged).keep_alive(KeepAlive::default())
}

/// The status, the newest equity point and the new journal entries.
async fn periodic_events(state: &ApiState, after: u64) -> (Vec<Event>, u64) {
    let mut events = Vec::new();
    if let Some(view) = state.shared.view()
        && let Ok(e) = Event::default().event("status").json_data(&view.status)
    {
        events.push(e);
    }
    if let Some(point) = state.shared.last_equity()
        && let Ok(e) = Event::default().event("equity").json_data(point)
    {
        events.push(e);
    }
    let (entries, seq) = new_journal(state, after).await;
    if !entries.is_empty()
        && let Ok(e) = Event::default().event("journal").json_data(&entries)
    {
        events.push(e);
    }
    (events, seq)
}

/// The journal's newest sequence number now (0: empty or no store).
async fn newest_journal_seq(state: &ApiState) -> u64 {
    let Some(store) = state.shared.store() else {
        return 0;
    };
    tokio::task::spawn_blocking(move || {
        let mut newest = 0;
        let _ = store.read(|r| {
            r.seq_newest_first::<serde::de::IgnoredAny>(SeqTable::Journal, |seq, _| {
                newest = seq;
                false
            })
        });
        newest
    })
    .await
    .unwrap_or(0)
}

/// Journal entries after `after`, oldest first, and the new position.
async fn new_journal(state: &ApiState, after: u64) -> (Vec<JournalEntry>, u64) {
    let Some(store) = state.shared.store() else {
        return (Vec::new(), after);
    };
    let cache = state.pools.clone();
    tokio::task::spawn_blocking(move || {
        let rows: Vec<(u64, crate::journal::JournalRecord)> = store
            .read(|r| r.seq_after(SeqTable::Journal, after, JOURNAL_BATCH))
            .unwrap_or_default();
        let next = rows.last().map_or(after, |(seq, _)| *seq);
        // Closes name a position: the ledger says which pool it held, as on `/journal`.
        let pools = cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refresh(&store)
            .unwrap_or_default();
        let entries = rows
            .into_iter()
            .map(|(seq, rec)| JournalEntry::of(seq, rec, &pools))
            .collect();
        (entries, next)
    })
    .await
    .unwrap_or((Vec::new(), after))
}
