//! When a failed delivery is tried again: exponential backoff with jitter,
//! bounded by `WEBHOOKD_MAX_ATTEMPTS`. The same policy serves every queue
//! backend so they schedule alike.

use std::time::Duration;

/// Longest wait between two attempts, whatever the attempt number.
pub const MAX_BACKOFF: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts before a delivery is dead (the first one included).
    pub max_attempts: u32,
    /// Wait after the first failed attempt, before jitter; doubles each time.
    pub base: Duration,
}

impl RetryPolicy {
    /// The wait before attempt `failed_attempts + 1`, or `None` when the
    /// attempts are spent. "Equal jitter": half the exponential step is fixed,
    /// half random, so retries spread out yet never come sooner than half the step.
    pub fn backoff(&self, failed_attempts: u32) -> Option<Duration> {
        if failed_attempts >= self.max_attempts {
            return None;
        }
        let step = self.base.saturating_mul(1u32 << failed_attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF);
        let half = step / 2;
        Some(half + half.mul_f64(fastrand::f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_jitter_and_stops_at_max_attempts() {
        let policy = RetryPolicy { max_attempts: 4, base: Duration::from_secs(10) };
        for _ in 0..100 {
            let first = policy.backoff(1).expect("retry");
            assert!((Duration::from_secs(5)..=Duration::from_secs(10)).contains(&first), "{first:?}");
            let third = policy.backoff(3).expect("retry");
            assert!((Duration::from_secs(20)..=Duration::from_secs(40)).contains(&third), "{third:?}");
        }
        assert_eq!(policy.backoff(4), None);
    }

    #[test]
    fn backoff_is_capped() {
        let policy = RetryPolicy { max_attempts: 100, base: Duration::from_secs(60) };
        assert!(policy.backoff(60).expect("retry") <= MAX_BACKOFF);
    }
}
