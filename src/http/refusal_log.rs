//! A rate limit on the log lines of refused requests. Anyone can send
//! refused requests as fast as the network allows; one WARN line each would
//! let them fill the disk. A token bucket lets a burst through, then a few
//! lines a second; what it holds back is counted (by reason) and told in one
//! summary line when logging resumes. Metrics still count every refusal.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Lines logged back to back before throttling starts.
pub const BURST: u32 = 20;
/// Lines a second once the burst is spent.
pub const PER_SECOND: u32 = 2;

pub struct RefusalLog {
    bucket: Mutex<Bucket>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(BURST, PER_SECOND)
    }
}

/// Whether to log one refusal.
#[derive(Debug, PartialEq)]
pub enum Admission {
    /// Log it, after the summary of what was held back since the last line, if anything.
    Log(Option<Suppressed>),
    /// Count it, do not log it.
    Skip,
}

/// Refusals not logged since the last line that was.
#[derive(Debug, PartialEq)]
pub struct Suppressed {
    pub total: u64,
    /// Per reason, in the order first seen.
    pub by_reason: Vec<(&'static str, u64)>,
    /// From the first held-back refusal to now.
    pub over: Duration,
}

impl Suppressed {
    /// `reason=count` pairs, space-separated.
    pub fn reasons(&self) -> String {
        self.by_reason.iter().map(|(reason, n)| format!("{reason}={n}")).collect::<Vec<_>>().join(" ")
    }
}

struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled_at: Option<Instant>,
    suppressed: Vec<(&'static str, u64)>,
    suppressed_since: Option<Instant>,
}

impl RefusalLog {
    pub fn new(burst: u32, per_second: u32) -> Self {
        let bucket = Bucket {
            capacity: f64::from(burst.max(1)),
            per_second: f64::from(per_second),
            tokens: f64::from(burst.max(1)),
            refilled_at: None,
            suppressed: Vec::new(),
            suppressed_since: None,
        };
        Self { bucket: Mutex::new(bucket) }
    }

    /// Decides about one refusal for `reason` at `now`.
    pub fn admit(&self, reason: &'static str, now: Instant) -> Admission {
        // A poisoned lock only means another thread panicked mid-update:
        // the counters are still usable.
        let mut b = self.bucket.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(at) = b.refilled_at {
            let earned = now.saturating_duration_since(at).as_secs_f64() * b.per_second;
            b.tokens = (b.tokens + earned).min(b.capacity);
        }
        b.refilled_at = Some(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            let since = b.suppressed_since.take();
            let by_reason = std::mem::take(&mut b.suppressed);
            let summary = since.map(|since| Suppressed {
                total: by_reason.iter().map(|(_, n)| n).sum(),
                by_reason,
                over: now.saturating_duration_since(since),
            });
            return Admission::Log(summary);
        }
        b.suppressed_since.get_or_insert(now);
        match b.suppressed.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => b.suppressed.push((reason, 1)),
        }
        Admission::Skip
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_logged_then_refusals_are_counted_and_summarised_when_logging_resumes() {
        let log = RefusalLog::new(3, 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(log.admit("signature", t0), Admission::Log(None));
        }
        // The burst is spent: held back, whatever the reason.
        for _ in 0..5 {
            assert_eq!(log.admit("signature", t0), Admission::Skip);
        }
        assert_eq!(log.admit("content_type", t0 + Duration::from_millis(100)), Admission::Skip);
        // Two lines a second: half a second earns one.
        match log.admit("signature", t0 + Duration::from_millis(500)) {
            Admission::Log(Some(summary)) => {
                assert_eq!(summary.total, 6);
                assert_eq!(summary.by_reason, vec![("signature", 5), ("content_type", 1)]);
                assert_eq!(summary.over, Duration::from_millis(500));
                assert_eq!(summary.reasons(), "signature=5 content_type=1");
            }
            other => panic!("expected a line with a summary, got {other:?}"),
        }
        // The count starts again from zero.
        assert_eq!(log.admit("signature", t0 + Duration::from_millis(500)), Admission::Skip);
        match log.admit("signature", t0 + Duration::from_millis(1000)) {
            Admission::Log(Some(summary)) => assert_eq!(summary.total, 1),
            other => panic!("expected a line with a summary, got {other:?}"),
        }
    }

    #[test]
    fn a_quiet_period_restores_the_burst_but_no_more() {
        let log = RefusalLog::new(3, 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(log.admit("headers", t0), Admission::Log(None));
        }
        assert_eq!(log.admit("headers", t0), Admission::Skip);
        let later = t0 + Duration::from_secs(3600);
        assert!(matches!(log.admit("headers", later), Admission::Log(Some(_))));
        assert_eq!(log.admit("headers", later), Admission::Log(None));
        assert_eq!(log.admit("headers", later), Admission::Log(None));
        assert_eq!(log.admit("headers", later), Admission::Skip, "the bucket holds the burst, not an hour's worth");
    }

    #[test]
    fn a_sustained_flood_logs_at_the_steady_rate() {
        let log = RefusalLog::new(20, 2);
        let t0 = Instant::now();
        // 10,000 refusals a second for ten seconds.
        let logged = (0..100_000u64)
            .filter(|i| matches!(log.admit("signature", t0 + Duration::from_micros(i * 100)), Admission::Log(_)))
            .count();
        // The burst plus two a second (the last may fall either side).
        assert!((39..=41).contains(&logged), "{logged} lines");
    }
}
