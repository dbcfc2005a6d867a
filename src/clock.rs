//! Injected time. Everything that needs "now" takes a [`Clock`], so a simulated year runs in
//! seconds and every test is reproducible (ARCHITECTURE invariant 6).
//!
//! A run on a replay lives on the replay's time ([`ReplayClock`]): agent time is the time of
//! the last tick the agent ran, never the wall, so pruning, checkpoints and what the agent
//! prints agree with the memories it wrote from the replay.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of agent time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync {
    /// Agent time now, ms since the epoch.
    fn now_ms(&self) -> u64;

    /// Wall time to wait for `agent` to pass on this clock.
    fn wall_duration(&self, agent: Duration) -> Duration {
        agent
    }

    /// The agent ran its tick of agent time `at_ms` (only a clock driven by the market's own
    /// time moves on it).
    fn reached(&self, at_ms: u64) {
        let _ = at_ms;
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        wall_ms()
    }
}

/// The wall clock now, ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The longest age or duration an operator gives (`--since`, `--for`, the API's `since` and
/// `for`): ten years, so every value is a valid number of milliseconds on the clock.
pub const MAX_ARG_DURATION: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// Parses an age or duration (`2h`, `7days`) of at most [`MAX_ARG_DURATION`].
pub fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_ARG_DURATION {
        return Err(format!(
            "at most {} (ten years)",
            humantime::format_duration(MAX_ARG_DURATION)
        ));
    }
    Ok(d)
}

/// Wall time accelerated by a constant factor from a starting agent time.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    start_agent_ms: u64,
    start_wall: Instant,
    scale: f64,
}

impl ScaledClock {
    /// Agent time starts at `start_agent_ms` and runs `scale` times faster than the wall.
    pub fn new(start_agent_ms: u64, scale: f64) -> Self {
        Self {
            start_agent_ms,
            start_wall: Instant::now(),
            scale,
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> u64 {
        let elapsed = self.start_wall.elapsed().as_secs_f64() * 1000.0 * self.scale;
        self.start_agent_ms + elapsed as u64
    }

    fn wall_duration(&self, agent: Duration) -> Duration {
        agent.div_f64(self.scale)
    }
}

/// A clock moved by hand (tests, backtests).
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self(Arc::new(AtomicU64::new(now_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A replay's time: agent time is the time of the last tick run (where the replay starts, or
/// where the last run stopped, before the first), moved only by [`Clock::reached`]; waits are
/// scaled by a constant factor.
#[derive(Debug)]
pub struct ReplayClock {
    at_ms: AtomicU64,
    scale: f64,
}

impl ReplayClock {
    /// A clock at `at_ms` whose agent time passes `scale` times faster than the wall.
    pub fn new(at_ms: u64, scale: f64) -> Self {
        Self {
            at_ms: AtomicU64::new(at_ms),
            scale,
        }
    }
}

impl Clock for ReplayClock {
    fn now_ms(&self) -> u64 {
        self.at_ms.load(Ordering::SeqCst)
    }

    fn wall_duration(&self, agent: Duration) -> Duration {
        agent.div_f64(self.scale)
    }

    fn reached(&self, at_ms: u64) {
        self.at_ms.fetch_max(at_ms, Ordering::SeqCst);
    }
}

/// Where a run's agent time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The wall (a simulated clock resumes at `resume_at_ms` when that is later: the agent
    /// time the last run reached).
    Wall {
        /// Agent time the last run reached, 0 for none.
        resume_at_ms: u64,
    },
    /// A replay's own time, from `at_ms`: its first tick, or the last tick a previous run
    /// reached.
    Replay {
        /// Agent time to start at.
        at_ms: u64,
    },
}

/// The clock the configuration asks for, starting at `start`. On a replay agent time is the
/// replay's ([`ReplayClock`]), paced at `agent.time_scale` (simulated) or the wall's pace
/// (real).
pub fn from_config(agent: &athena_config::AgentConfig, start: Start) -> Arc<dyn Clock> {
    use athena_config::ClockKind;
    match (agent.clock, start) {
        (ClockKind::Real, Start::Wall { .. }) => Arc::new(SystemClock),
        // An accelerated run resumes from where its agent time stopped, not from the wall:
        // otherwise a restart would wait out all the agent time the previous run covered.
        (ClockKind::Simulated, Start::Wall { resume_at_ms }) => Arc::new(ScaledClock::new(
            SystemClock.now_ms().max(resume_at_ms),
            agent.time_scale,
        )),
        (ClockKind::Real, Start::Replay { at_ms }) => Arc::new(ReplayClock::new(at_ms, 1.0)),
        (ClockKind::Simulated, Start::Replay { at_ms }) => {
            Arc::new(ReplayClock::new(at_ms, agent.time_scale))
        }
    }
}

/// Where `athena run` on `config` starts its clock: the replay's first tick (or the agent
/// time `resume_at_ms` the last run reached) on a replay, else the wall.
pub fn start_of_run(
    config: &athena_config::Config,
    resume_at_ms: u64,
) -> Result<Start, crate::market::MarketError> {
    Ok(match config.market.source {
        athena_config::MarketSource::Replay if resume_at_ms > 0 => Start::Replay {
            at_ms: resume_at_ms,
        },
        athena_config::MarketSource::Replay => Start::Replay {
            at_ms: crate::market::replay::first_at_ms(&config.market.replay_path)?,
        },
        _ => Start::Wall { resume_at_ms },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster_and_converts_waits() {
        let c = ScaledClock::new(1_000, 3600.0);
        assert_eq!(
            c.wall_duration(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.now_ms() >= 1_000 + 60_000);
    }

    #[test]
    fn a_replay_clock_is_the_time_of_the_last_tick() {
        let c = ReplayClock::new(1_000, 3600.0);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(c.now_ms(), 1_000, "the wall does not move it");
        c.reached(301_000);
        c.reached(2_000);
        assert_eq!(c.now_ms(), 301_000, "never back");
        assert_eq!(
            c.wall_duration(Duration::from_secs(3600)),
            Duration::from_secs(1)
        );
        let mut agent = athena_config::AgentConfig::default();
        for kind in [
            athena_config::ClockKind::Real,
            athena_config::ClockKind::Simulated,
        ] {
            agent.clock = kind;
            let c = from_config(&agent, Start::Replay { at_ms: 7 });
            assert_eq!(c.now_ms(), 7, "{kind:?}");
        }
    }

    #[test]
    fn manual_clock_moves_only_by_hand() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_millis(10));
        assert_eq!(c.now_ms(), 15);
    }
}
