//! Exponential backoff with full jitter (pure: the caller supplies `now` and the jitter).
//!
//! After the `n`-th consecutive failure (n ≥ 1) the ceiling is `min(cap, base · 2^(n-1))` and the
//! delay is drawn uniformly in `[floor, ceiling]` ("full jitter", AWS architecture blog), with a
//! small floor so a draw near zero does not turn into a tight retry loop. A success resets it.
//! Defaults: base 1 s, factor 2, cap 120 s, as the Datadog agent's log sender (reference §2).

use std::time::{Duration, Instant};

/// Default first ceiling: 1 s.
pub const DEFAULT_BASE: Duration = Duration::from_secs(1);
/// Default largest delay: 120 s.
pub const DEFAULT_CAP: Duration = Duration::from_secs(120);
/// Shortest delay a jitter draw can give: 100 ms.
pub const MIN_DELAY: Duration = Duration::from_millis(100);

/// Backoff state: consecutive failures and when the next attempt may go.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
    ready_at: Option<Instant>,
    rng: u64,
}

impl Backoff {
    /// A backoff with this base and cap, and a jitter generator seeded with `seed`.
    pub fn new(base: Duration, cap: Duration, seed: u64) -> Self {
        Backoff { base, cap: cap.max(base), failures: 0, ready_at: None, rng: seed | 1 }
    }

    /// The ceiling after `failures` consecutive failures (zero when there were none).
    pub fn ceiling(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32 << (failures - 1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The delay after `failures` consecutive failures for a jitter draw `jitter` in `[0, 1]`.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(failures);
        ceiling.mul_f64(jitter.clamp(0.0, 1.0)).max(MIN_DELAY.min(ceiling))
    }

    /// Records a failure at `now`; returns the delay chosen (drawn from the internal generator).
    pub fn handle_failure(&mut self, now: Instant) -> Duration {
        let jitter = self.next_jitter();
        self.handle_failure_with(now, jitter)
    }

    /// Records a failure at `now` with an explicit jitter draw in `[0, 1]`; returns the delay.
    pub fn handle_failure_with(&mut self, now: Instant, jitter: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let delay = self.delay(self.failures, jitter);
        self.ready_at = Some(now + delay);
        delay
    }

    /// Waits until at least `at` before the next attempt (a `Retry-After` longer than the delay
    /// drawn); the failure count is unchanged.
    pub fn defer_until(&mut self, at: Instant) {
        self.ready_at = Some(self.ready_at.map_or(at, |ready| ready.max(at)));
    }

    /// Records a success: the next failure starts from the base again.
    pub fn handle_success(&mut self) {
        self.failures = 0;
        self.ready_at = None;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When the next attempt may go; `None`: now.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.ready_at
    }

    /// Whether an attempt at `now` must wait.
    pub fn is_waiting(&self, now: Instant) -> bool {
        self.ready_at.is_some_and(|at| now < at)
    }

    /// xorshift64*: a uniform draw in `[0, 1)`. Not cryptographic; only spreads retries.
    fn next_jitter(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Default for Backoff {
    fn default() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        Backoff::new(DEFAULT_BASE, DEFAULT_CAP, h.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(DEFAULT_BASE, DEFAULT_CAP, 7);
        let secs: Vec<u64> = (0..10).map(|n| b.ceiling(n).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 16, 32, 64, 120, 120]);
        assert_eq!(b.ceiling(u32::MAX), DEFAULT_CAP);
    }

    #[test]
    fn full_jitter_stays_within_floor_and_ceiling() {
        let mut b = Backoff::new(DEFAULT_BASE, DEFAULT_CAP, 42);
        let now = Instant::now();
        for n in 1..=12 {
            let d = b.handle_failure(now);
            assert!(d >= MIN_DELAY && d <= b.ceiling(n), "{n}: {d:?}");
            assert_eq!(b.poll_timeout(), Some(now + d));
        }
    }

    #[test]
    fn delays_grow_and_success_resets() {
        let mut b = Backoff::new(DEFAULT_BASE, DEFAULT_CAP, 1);
        let now = Instant::now();
        let delays: Vec<u64> = (0..4).map(|_| b.handle_failure_with(now, 1.0).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8]);
        assert!(b.is_waiting(now));
        assert!(!b.is_waiting(now + Duration::from_secs(8)));
        b.handle_success();
        assert_eq!((b.failures(), b.poll_timeout()), (0, None));
        assert_eq!(b.handle_failure_with(now, 1.0), Duration::from_secs(1));
    }
}
