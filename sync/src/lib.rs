//! Athena's sync layer: the outbox drained to the cloud in the background.
//!
//! Invariants (ARCHITECTURE.md): delivery is at-least-once with idempotent remote keys; outbox
//! rows are removed only after their sink confirmed them; rejected rows go to the dead-letter
//! table, never nowhere; sync never writes domain state.
//!
//! Status: the sink seam, coalescing, batching, pacing and retry are here; the worker, the
//! Firestore and object-store sinks and their conformance suite are in progress (issue 3).

pub mod batch;
pub mod coalesce;
pub mod pace;
pub mod sink;

pub use coalesce::{Coalesced, Increments, State, Write, coalesce};
pub use sink::{ErrorKind, Sink, SinkError, SinkRole, WriteResult};
