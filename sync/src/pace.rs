//! Pacing: the ramp-up write limiter and retry backoff. Both take time as arguments (agent or
//! wall milliseconds from an injected clock) and randomness from the workspace's seeded RNG
//! ([`athena_storage::Rng`], the same sequence on every platform and version), so they are
//! reproducible. The limiter queues (it returns how long to wait); it never drops.

use athena_storage::Rng;
use std::time::Duration;

/// A token bucket whose rate ramps up: `start` ops/s, times (1 + `growth`) every `step`, up to
/// `ceiling`. A rate-limited answer from the service restarts the ramp.
#[derive(Debug, Clone)]
pub struct RampLimiter {
    start: f64,
    growth: f64,
    step_ms: u64,
    ceiling: f64,
    ramp_from_ms: u64,
    tokens: f64,
    last_ms: u64,
}

impl RampLimiter {
    /// A limiter starting its ramp at `now_ms`.
    pub fn new(start: f64, growth: f64, step: Duration, ceiling: f64, now_ms: u64) -> Self {
        let step_ms = (step.as_millis() as u64).max(1);
        Self {
            start,
            growth,
            step_ms,
            ceiling: ceiling.max(start),
            ramp_from_ms: now_ms,
            tokens: start,
            last_ms: now_ms,
        }
    }

    /// From the `[sync]` configuration.
    pub fn from_config(c: &athena_config::SyncConfig, now_ms: u64) -> Self {
        Self::new(
            c.rate_start_ops,
            c.rate_growth,
            c.rate_growth_interval,
            c.rate_ceiling_ops,
            now_ms,
        )
    }

    /// The allowed rate at `now_ms`, ops/s.
    pub fn rate(&self, now_ms: u64) -> f64 {
        let steps = now_ms.saturating_sub(self.ramp_from_ms) / self.step_ms;
        let grown = self.start * (1.0 + self.growth).powi(steps.min(1000) as i32);
        grown.min(self.ceiling)
    }

    /// Takes `ops` tokens at `now_ms`; returns how long to wait before sending them (zero when
    /// they are available now). The debt is kept, so callers that wait stay under the rate.
    pub fn acquire(&mut self, ops: u32, now_ms: u64) -> Duration {
        let rate = self.rate(now_ms);
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        // At most one second of burst.
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.tokens -= f64::from(ops);
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// The service said "slow down": restart the ramp from its start rate.
    pub fn on_rate_limited(&mut self, now_ms: u64) {
        self.ramp_from_ms = now_ms;
        self.tokens = self.tokens.min(0.0);
    }
}

/// Exponential backoff with jitter: `initial` × `multiplier`^attempt, capped at `max`, then
/// scaled by a random factor in [1 − jitter, 1 + jitter].
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    multiplier: f64,
    max: Duration,
    jitter: f64,
    rng: Rng,
}

impl Backoff {
    /// A backoff drawing its jitter from a generator seeded with `seed`.
    pub fn new(initial: Duration, multiplier: f64, max: Duration, jitter: f64, seed: u64) -> Self {
        Self {
            initial,
            multiplier,
            max,
            jitter: jitter.clamp(0.0, 1.0),
            rng: Rng::stream(seed, "sync backoff"),
        }
    }

    /// From the `[sync]` configuration.
    pub fn from_config(c: &athena_config::SyncConfig, seed: u64) -> Self {
        Self::new(
            c.retry_initial,
            c.retry_multiplier,
            c.retry_max,
            c.retry_jitter,
            seed,
        )
    }

    /// The delay before retry number `attempt` (0 = the first retry).
    pub fn delay(&mut self, attempt: u32) -> Duration {
        let base = self.initial.as_secs_f64() * self.multiplier.powi(attempt.min(64) as i32);
        let base = base.min(self.max.as_secs_f64());
        let factor = 1.0 + self.jitter * (self.rng.unit() * 2.0 - 1.0);
        Duration::from_secs_f64(base * factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_rate_ramps_by_steps_up_to_the_ceiling() {
        let l = RampLimiter::new(500.0, 0.5, Duration::from_secs(300), 2000.0, 0);
        assert_eq!(l.rate(0), 500.0);
        assert_eq!(l.rate(299_999), 500.0);
        assert_eq!(l.rate(300_000), 750.0);
        assert_eq!(l.rate(600_000), 1125.0);
        assert_eq!(l.rate(3_600_000), 2000.0);
    }

    #[test]
    fn the_limiter_queues_instead_of_dropping() {
        let mut l = RampLimiter::new(500.0, 0.5, Duration::from_secs(300), 10_000.0, 0);
        assert_eq!(l.acquire(500, 0), Duration::ZERO, "one second of burst");
        assert_eq!(l.acquire(250, 0), Duration::from_millis(500));
        // After waiting, the debt is paid and the rate holds.
        assert_eq!(l.acquire(0, 500), Duration::ZERO);
        l.on_rate_limited(1_000_000);
        assert_eq!(l.rate(1_000_000), 500.0, "slow down restarts the ramp");
    }

    proptest! {
        #[test]
        fn backoff_stays_within_its_jittered_bounds(attempt in 0u32..40, seed in any::<u64>()) {
            let mut b = Backoff::new(Duration::from_secs(1), 1.5, Duration::from_secs(60), 0.3, seed);
            let d = b.delay(attempt).as_secs_f64();
            let base = (1.5f64.powi(attempt as i32)).min(60.0);
            prop_assert!(d >= base * 0.7 - 1e-9 && d <= base * 1.3 + 1e-9, "{} outside {}±30%", d, base);
        }
    }

    #[test]
    fn the_jitter_comes_from_the_workspace_generator() {
        let mut b = Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(60), 0.5, 9);
        let mut rng = athena_storage::Rng::stream(9, "sync backoff");
        for attempt in 0..5 {
            let base = 2f64.powi(attempt as i32);
            let expected = base * (1.0 + 0.5 * (rng.unit() * 2.0 - 1.0));
            assert_eq!(b.delay(attempt), Duration::from_secs_f64(expected));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let mut a = Backoff::new(Duration::from_secs(1), 1.5, Duration::from_secs(60), 0.3, 9);
        let mut b = Backoff::new(Duration::from_secs(1), 1.5, Duration::from_secs(60), 0.3, 9);
        assert_eq!(
            (0..10).map(|i| a.delay(i)).collect::<Vec<_>>(),
            (0..10).map(|i| b.delay(i)).collect::<Vec<_>>()
        );
    }
}
