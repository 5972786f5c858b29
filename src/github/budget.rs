//! GitHub's secondary limit on content-creating requests (comments, issues,
//! reviews, check runs...): at most 80 a minute and 500 an hour per
//! credential. Each credential holds two token buckets; a content-creating
//! request takes one token from each or does not go at all, so a burst waits
//! in the queue (deferred to when a token frees) instead of running into
//! GitHub's 403s. Time is passed in, so tests need no clock.

use std::time::{Duration, Instant};

/// GitHub's documented per-credential budgets: (window label, requests, window).
pub const WINDOWS: [(&str, u32, Duration); 2] =
    [("minute", 80, Duration::from_secs(60)), ("hour", 500, Duration::from_secs(3600))];

/// One token bucket: `capacity` tokens, refilled evenly over `window`.
#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    window: Duration,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u32, window: Duration, now: Instant) -> Self {
        let capacity = f64::from(capacity);
        Self { capacity, window, tokens: capacity, updated: now }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let rate = self.capacity / self.window.as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(self.capacity);
        self.updated = now;
    }

    /// When this bucket holds `wanted` tokens (`now` if it does).
    fn time_for(&self, wanted: f64, now: Instant) -> Instant {
        let missing = wanted - self.tokens;
        if missing <= 0.0 {
            return now;
        }
        let rate = self.capacity / self.window.as_secs_f64();
        now + Duration::from_secs_f64(missing / rate)
    }
}

/// The content budget of one credential.
#[derive(Debug, Clone)]
pub(crate) struct ContentBudget {
    buckets: Vec<(&'static str, Bucket)>,
}

impl ContentBudget {
    pub(crate) fn new(now: Instant) -> Self {
        Self { buckets: WINDOWS.iter().map(|(label, n, window)| (*label, Bucket::new(*n, *window, now))).collect() }
    }

    /// Takes `count` tokens from every window, or none: `Err(when)` names
    /// when every window holds them. A count past a window's capacity could
    /// never be had: it is taken as the whole capacity.
    pub(crate) fn try_take(&mut self, now: Instant, count: u32) -> Result<(), Instant> {
        for (_, bucket) in &mut self.buckets {
            bucket.refill(now);
        }
        let wanted = |b: &Bucket| f64::from(count).min(b.capacity);
        let ready = self.buckets.iter().map(|(_, b)| b.time_for(wanted(b), now)).max().unwrap_or(now);
        if ready > now {
            return Err(ready);
        }
        for (_, bucket) in &mut self.buckets {
            bucket.tokens -= wanted(bucket);
        }
        Ok(())
    }

    /// Whole tokens left per window, for the metric.
    pub(crate) fn remaining(&self) -> impl Iterator<Item = (&'static str, i64)> + '_ {
        self.buckets.iter().map(|(label, b)| (*label, b.tokens.floor() as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: f64) -> Duration {
        Duration::from_secs_f64(n)
    }

    #[test]
    fn eighty_a_minute_then_one_every_three_quarters_of_a_second() {
        let start = Instant::now();
        let mut budget = ContentBudget::new(start);
        for n in 0..80 {
            assert!(budget.try_take(start, 1).is_ok(), "request {n} of the first minute");
        }
        let next = budget.try_take(start, 1).expect_err("the 81st waits");
        // 80 per 60 s: one token every 0.75 s.
        assert!((next - start).abs_diff(secs(0.75)) < secs(0.001), "{:?}", next - start);
        assert!(budget.try_take(start + secs(0.74), 1).is_err());
        assert!(budget.try_take(start + secs(0.76), 1).is_ok());
        let left: Vec<_> = budget.remaining().collect();
        assert_eq!(left, vec![("minute", 0), ("hour", 419)]);
    }

    #[test]
    fn five_hundred_an_hour_bounds_a_steady_burst() {
        let start = Instant::now();
        let mut budget = ContentBudget::new(start);
        // Take as fast as the minute window allows for ten minutes.
        let mut now = start;
        let mut taken = 0u32;
        for _ in 0..100_000 {
            match budget.try_take(now, 1) {
                Ok(()) => taken += 1,
                Err(at) => now = at,
            }
            if now - start >= secs(600.0) {
                break;
            }
        }
        while budget.try_take(now, 1).is_ok() {
            taken += 1;
        }
        // 500 at once plus 500/h refill over 10 minutes: about 583, never 80 x 10.
        assert!((580..=585).contains(&taken), "{taken} in ten minutes");
        let at = budget.try_take(now, 1).expect_err("the hour window is empty");
        // The hour window refills one token every 7.2 s.
        assert!(at - now <= secs(7.2) && at > now, "{:?}", at - now);
    }

    #[test]
    fn an_idle_budget_refills_to_capacity_only() {
        let start = Instant::now();
        let mut budget = ContentBudget::new(start);
        for _ in 0..10 {
            budget.try_take(start, 1).expect("token");
        }
        let later = start + secs(7200.0);
        budget.try_take(later, 1).expect("token");
        let left: Vec<_> = budget.remaining().collect();
        assert_eq!(left, vec![("minute", 79), ("hour", 499)]);
    }

    #[test]
    fn several_tokens_are_taken_all_or_none() {
        let start = Instant::now();
        let mut budget = ContentBudget::new(start);
        assert!(budget.try_take(start, 78).is_ok());
        let until = budget.try_take(start, 3).expect_err("only two left");
        // The third token frees 0.75 s on; none was taken by the refusal.
        assert!((secs(0.7)..=secs(0.8)).contains(&(until - start)), "{:?}", until - start);
        assert!(budget.try_take(start, 2).is_ok());
        assert!(budget.try_take(start, 1).is_err());
        // More than a window holds is taken as the whole window, not never.
        let mut fresh = ContentBudget::new(start);
        assert!(fresh.try_take(start, 10_000).is_ok());
    }
}
