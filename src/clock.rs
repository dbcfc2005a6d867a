//! Injected time. Everything that needs "now" takes a [`Clock`], so a simulated year runs in
//! seconds and every test is reproducible (ARCHITECTURE invariant 6).

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
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
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

/// The clock the configuration asks for; a simulated one starts at `resume_at_ms` when that is
/// later than the wall (the agent time the last run reached).
pub fn from_config(agent: &athena_config::AgentConfig, resume_at_ms: u64) -> Arc<dyn Clock> {
    match agent.clock {
        athena_config::ClockKind::Real => Arc::new(SystemClock),
        // An accelerated run resumes from where its agent time stopped, not from the wall:
        // otherwise a restart would wait out all the agent time the previous run covered.
        athena_config::ClockKind::Simulated => Arc::new(ScaledClock::new(
            SystemClock.now_ms().max(resume_at_ms),
            agent.time_scale,
        )),
    }
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
    fn manual_clock_moves_only_by_hand() {
        let c = ManualClock::new(5);
        c.advance(Duration::from_millis(10));
        assert_eq!(c.now_ms(), 15);
    }
}
