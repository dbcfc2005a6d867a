//! The operator command queue: how the HTTP API (and the CLI through it) steers a running
//! agent while the agent stays the only writer of its store.
//!
//! A [`Command`] goes into a bounded queue ([`Commands::send`]) with a reply channel. The agent
//! loop takes it between ticks (a sleeping loop wakes for it), applies it in its own store
//! transaction together with its journal entry, and answers only after that commit: an answer
//! means the change is durable. An emergency stop is therefore in force before any further
//! execution: the next tick reads the stopped state. A full queue is refused at once (the
//! caller retries), never waited on without bound.

use crate::risk::{BreakerKind, Limit, RiskEvent, TradingState};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How many commands may wait for the agent loop.
pub const QUEUE_CAPACITY: usize = 64;

/// The shortest wall time between two checkpoints taken on demand (each is a file: a flood of
/// requests must not fill the disk).
pub const MIN_CHECKPOINT_GAP: Duration = Duration::from_secs(10);

/// How long a caller waits for the agent loop's answer: a tick in progress finishes first,
/// and a store being reopened does not answer at all.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// An operator command.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Halt trading: no entries until resumed; exits still go through.
    Stop {
        /// Why (journaled).
        reason: String,
    },
    /// Lift an operator stop and a restart hold.
    Resume {
        /// Why (journaled).
        reason: String,
    },
    /// Close every position at the next tick (run at once) and halt.
    ExitAll {
        /// The explicit confirmation exit-all needs.
        confirm: bool,
        /// Why (journaled).
        reason: String,
    },
    /// Reset a breaker.
    ResetBreaker {
        /// Which.
        breaker: BreakerKind,
        /// Why (journaled).
        reason: String,
    },
    /// Change one limit for a bounded time.
    Override {
        /// Which limit.
        limit: Limit,
        /// Its value while the override lasts.
        value: f64,
        /// For how long, ms (at most 24 h).
        for_ms: u64,
        /// Why (journaled).
        reason: String,
    },
    /// Take a checkpoint now.
    Checkpoint,
    /// Ask the sync worker for a pass now.
    SyncFlush,
    /// Run a pruning pass now.
    Prune,
}

impl Command {
    /// The command's name (a metric label, the journal's word).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Stop { .. } => "stop",
            Self::Resume { .. } => "resume",
            Self::ExitAll { .. } => "exit_all",
            Self::ResetBreaker { .. } => "reset_breaker",
            Self::Override { .. } => "override",
            Self::Checkpoint => "checkpoint",
            Self::SyncFlush => "sync_flush",
            Self::Prune => "prune",
        }
    }
}

/// What an applied command did, after its commit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Applied {
    /// The command.
    pub command: String,
    /// Agent time it was applied at, ms.
    pub at_ms: u64,
    /// The trading state after it.
    #[schema(value_type = String)]
    pub trading_state: TradingState,
    /// The risk journal entries it wrote.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<RiskEvent>,
    /// One line for the operator.
    pub message: String,
    /// The command's result, when it has one (a checkpoint entry, a pruning report).
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejected {
    /// Bad input (no reason, an unknown limit, exit-all without confirmation): nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The queue is full: try again shortly.
    #[error("the agent has {QUEUE_CAPACITY} commands waiting; try again shortly")]
    Busy,
    /// The agent loop did not answer in time (a store being reopened, a long tick). The
    /// command may still be applied when the loop comes back.
    #[error("the agent loop did not answer within {}s; the command may still be applied", ANSWER_TIMEOUT.as_secs())]
    TimedOut,
    /// The agent is shutting down.
    #[error("the agent is shutting down")]
    ShuttingDown,
    /// Asked again too soon (an on-demand checkpoint at most every
    /// [`MIN_CHECKPOINT_GAP`]): nothing was done.
    #[error("{0}")]
    TooSoon(String),
    /// The store refused the write (nothing was applied).
    #[error("the store could not be written: {0}")]
    Store(String),
}

/// A command with its reply channel.
#[derive(Debug)]
pub struct Request {
    /// The command.
    pub command: Command,
    /// When it was received (the request-to-commit latency starts here).
    pub received: Instant,
    /// Where the answer goes.
    pub reply: oneshot::Sender<Result<Applied, Rejected>>,
}

/// The sending side of the queue (cloned by every API handler).
#[derive(Debug, Clone)]
pub struct Commands {
    tx: mpsc::Sender<Request>,
}

/// The receiving side, owned by the agent loop of the current session.
pub type Queue = mpsc::Receiver<Request>;

/// A new queue.
pub fn queue() -> (Commands, Queue) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    (Commands { tx }, rx)
}

impl Commands {
    /// Queues `command` and waits for the agent loop's answer (after its commit).
    pub async fn send(&self, command: Command) -> Result<Applied, Rejected> {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            command,
            received: Instant::now(),
            reply,
        };
        self.tx.try_send(request).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Rejected::Busy,
            mpsc::error::TrySendError::Closed(_) => Rejected::ShuttingDown,
        })?;
        match tokio::time::timeout(ANSWER_TIMEOUT, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(Rejected::ShuttingDown),
            Err(_) => Err(Rejected::TimedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_at_once_instead_of_waiting() {
        let (commands, _queue) = queue();
        let mut waiting = Vec::new();
        for _ in 0..QUEUE_CAPACITY {
            let c = commands.clone();
            waiting.push(tokio::spawn(async move { c.send(Command::Prune).await }));
        }
        // Let every spawned sender take its slot.
        while commands.tx.capacity() > 0 {
            tokio::task::yield_now().await;
        }
        assert_eq!(commands.send(Command::Prune).await, Err(Rejected::Busy));
        for w in waiting {
            w.abort();
        }
    }

    #[tokio::test]
    async fn a_queue_whose_loop_is_gone_says_the_agent_is_shutting_down() {
        let (commands, queue) = queue();
        drop(queue);
        assert_eq!(
            commands.send(Command::Checkpoint).await,
            Err(Rejected::ShuttingDown)
        );
    }
}
