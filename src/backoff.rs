//! Capped exponential backoff with jitter, shared by every retry loop.
//!
//! Retrying a dead Consul or a throttling OCI API at a fixed rate either hammers
//! it or recovers slowly; doubling delays with a cap and some randomness spreads
//! many nodes' retries apart and still comes back quickly once the fault clears.

use std::time::Duration;

/// Delay generator for consecutive failures of one operation.
///
/// The n-th delay (n starting at 0) is `min(max, initial * 2^n)` scaled by a
/// random factor in `[0.5, 1.0]` ("equal jitter"), so it never exceeds `max`
/// and never drops below half of the nominal step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and never waiting longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Records one more failure and returns how long to wait before retrying.
    pub fn next_delay(&mut self) -> Duration {
        let nominal = self.nominal(self.failures);
        self.failures = self.failures.saturating_add(1);
        jitter(nominal, fastrand::f64())
    }

    /// The un-jittered delay after `failures` consecutive failures.
    pub fn nominal(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// Forgets past failures: the next delay starts from `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The cap: no delay is ever longer than this.
    pub fn max(&self) -> Duration {
        self.max
    }
}

/// Scales `nominal` into `[nominal/2, nominal]` using `unit` from `[0, 1)`.
fn jitter(nominal: Duration, unit: f64) -> Duration {
    let half = nominal / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_until_the_cap() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
        let nominal: Vec<u64> = (0..7).map(|n| b.nominal(n).as_secs()).collect();
        assert_eq!(nominal, vec![1, 2, 4, 8, 15, 15, 15]);
    }

    #[test]
    fn jittered_delay_stays_within_half_and_full_step() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        for n in 0..40 {
            let nominal = b.nominal(n);
            let d = b.next_delay();
            assert!(d >= nominal / 2 && d <= nominal, "{d:?} vs {nominal:?}");
            assert!(d <= b.max());
        }
        assert_eq!(b.failures(), 40);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for _ in 0..10 {
            b.next_delay();
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        assert_eq!(b.nominal(u32::MAX), Duration::from_secs(30));
    }
}
