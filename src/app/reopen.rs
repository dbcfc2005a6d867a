//! A store that cannot be written (disk full, an I/O error, a file system remounted read-only)
//! never wedges `athena run`.
//!
//! redb refuses every write after an I/O error until the database is closed and opened again.
//! So the session that met the error stops its services without executing anything more (a
//! tick's fills live only in its transaction, which did not commit), drops the store, and this
//! module opens it again with backoff: each attempt opens the file and commits a small probe
//! write. When one succeeds, the recovery ladder runs on the reopened store (verify, reconcile,
//! the recovery factor) and the recovery is recorded with the cause. When the store stays
//! unwritable for `recovery.store_retry_deadline` (wall time) the process gives up with an
//! error, so its supervisor restarts it (or an operator frees the disk).
//!
//! An I/O failure is never a reason to quarantine the file: the ladder returns such errors
//! instead of treating them as corruption.

use crate::recovery::Recovery;
use athena_config::Config;
use athena_storage::Store;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The first wait between two attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A store that fails again within this time after a reopen is still in the same outage.
pub const OUTAGE_CLEARS_AFTER: Duration = MAX_BACKOFF;
/// Meta key of the probe write (the wall time of the last successful probe).
const PROBE_KEY: &str = "store_probe_wall_ms";

/// One outage of the store: why, in one line, since when, and how the reopening went so far.
/// A store that reopens but fails again before a tick commits is the same outage: its
/// deadline and backoff go on ([`Unwritable::again`]).
#[derive(Debug, Clone)]
pub struct Unwritable {
    /// The cause, one line (`storage failure: No space left on device (os error 28)`).
    pub cause: String,
    /// When the first failure happened.
    pub since: Instant,
    /// Reopen attempts so far.
    pub attempts: u32,
    /// The wait before the next attempt.
    backoff: Duration,
}

impl Unwritable {
    /// The failure `e`, now.
    pub fn now(e: &(dyn std::error::Error + 'static)) -> Self {
        Self {
            cause: athena_sync::one_line(e),
            since: Instant::now(),
            attempts: 0,
            backoff: FIRST_BACKOFF,
        }
    }

    /// The same outage, failing again with `later` after a reopen.
    pub fn again(self, later: Unwritable) -> Self {
        Self {
            cause: self.better_cause(later.cause),
            ..self
        }
    }

    /// redb reports every failure after the first as "Previous I/O error": keep the first,
    /// which names the cause.
    fn better_cause(&self, later: String) -> String {
        if later.contains("Previous I/O error") {
            self.cause.clone()
        } else {
            later
        }
    }
}

/// How waiting for the store ended without it coming back.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    /// It stayed unwritable past the deadline: exit non-zero for the supervisor.
    #[error(
        "the store could not be written for {} (recovery.store_retry_deadline): {cause}; \
         exiting so that a supervisor restarts the agent once the disk is fixed",
        humantime::format_duration(*.waited)
    )]
    Deadline {
        /// How long it waited.
        waited: Duration,
        /// The last cause.
        cause: String,
    },
    /// A stop was asked for while waiting: nothing more can be written, so the stop is not a
    /// clean one (the next start recovers).
    #[error("stopped while the store could not be written ({cause}); the next start recovers it")]
    Stopped {
        /// The last cause.
        cause: String,
    },
}

/// Opens the store again once it can be written, then runs the ladder on it; see the module
/// doc. `stop` turning true ends the wait.
pub async fn reopen(
    config: &Config,
    fault: &mut Unwritable,
    stop: &mut watch::Receiver<bool>,
    agent_now_ms: impl Fn() -> u64,
) -> anyhow::Result<(Store, Option<Recovery>)> {
    let deadline = config.recovery.store_retry_deadline;
    if fault.attempts == 0 {
        println!(
            "athena: the store cannot be written: {}; nothing is executed until it can; \
             reopening it with backoff for up to {}",
            fault.cause,
            humantime::format_duration(deadline)
        );
    } else {
        println!(
            "athena: the store failed again after reopening ({}); still retrying",
            fault.cause
        );
    }
    loop {
        let waited = fault.since.elapsed();
        if waited >= deadline {
            return Err(GaveUp::Deadline {
                waited,
                cause: fault.cause.clone(),
            }
            .into());
        }
        tokio::select! {
            _ = tokio::time::sleep(fault.backoff.min(deadline - waited)) => {}
            _ = stop.changed() => {
                return Err(GaveUp::Stopped { cause: fault.cause.clone() }.into());
            }
        }
        fault.attempts += 1;
        fault.backoff = (fault.backoff * 2).min(MAX_BACKOFF);
        let failed = match probe(config).await {
            Ok(()) => {
                match crate::recovery::reopen(config, reopened(fault), agent_now_ms()).await {
                    Ok(opened) => return Ok(opened),
                    // The disk failed again between the probe and the ladder: keep waiting.
                    Err(e) if e.needs_reopen() => athena_sync::one_line(&e),
                    Err(e) => return Err(anyhow::Error::new(e).context("reopening the store")),
                }
            }
            Err(cause) => cause,
        };
        tracing::warn!(attempts = fault.attempts, cause = %failed, "the store is still not writable");
        fault.cause = fault.better_cause(failed);
    }
}

/// The cause recorded for a recovery after `fault`.
fn reopened(fault: &Unwritable) -> String {
    format!(
        "the store could not be written for {} ({}); reopened at attempt {}",
        humantime::format_duration(Duration::from_secs(fault.since.elapsed().as_secs())),
        fault.cause,
        fault.attempts
    )
}

/// Opens the store and commits a probe write; the error in one line when either fails.
async fn probe(config: &Config) -> Result<(), String> {
    let cfg = config.clone();
    let wall_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
    let probed = tokio::task::spawn_blocking(move || {
        let store = super::open_store(&cfg)?;
        store.write(|w| w.set_meta_u64(PROBE_KEY, wall_ms))
    })
    .await;
    match probed {
        Ok(result) => result.map_err(|e| athena_sync::one_line(&e)),
        Err(e) => Err(athena_sync::one_line(&e)),
    }
}
