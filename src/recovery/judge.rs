//! What to do about one event, given every attempt GitHub made to deliver it
//! (grouped by `guid`, the `X-GitHub-Delivery` all attempts share), whether
//! webhookd holds it, and what recovery asked for before. Pure, so every
//! case is tested without GitHub.

use std::time::Duration;

use crate::queue::Requested;

/// Redeliveries asked for one event at most: past them it is left to a
/// person (its failures are not webhookd being away).
pub const MAX_REQUESTS: u32 = 3;
/// A redelivery GitHub accepted but has not attempted after this long
/// counts as failed, and may be asked again.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// One attempt, as the deliveries list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The attempt's id: what a redelivery request names.
    pub id: u64,
    pub delivered_at_ms: i64,
    pub succeeded: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// An attempt succeeded.
    Delivered,
    /// Every attempt failed, but webhookd stored it anyway (its answer was
    /// lost, or it came another way): nothing to do.
    Held,
    /// Failed, not held: ask GitHub to deliver this attempt again.
    Redeliver { attempt: u64 },
    /// Asked already; GitHub has not tried again yet.
    Pending,
    /// Asked `MAX_REQUESTS` times, failed each time.
    GaveUp,
}

/// The verdict for one event at `now_ms`; `attempts` in any order, not empty.
pub fn judge(attempts: &[Attempt], held: bool, requested: Option<Requested>, now_ms: i64) -> Verdict {
    if attempts.iter().any(|a| a.succeeded) {
        return Verdict::Delivered;
    }
    if held {
        return Verdict::Held;
    }
    let Some(newest) = attempts.iter().max_by_key(|a| (a.delivered_at_ms, a.id)) else {
        return Verdict::Delivered;
    };
    let Some(requested) = requested else {
        return Verdict::Redeliver { attempt: newest.id };
    };
    if requested.count >= MAX_REQUESTS {
        return Verdict::GaveUp;
    }
    let timeout_ms = i64::try_from(PENDING_TIMEOUT.as_millis()).unwrap_or(i64::MAX);
    // GitHub tried again after our request and that failed too, or never tried.
    let retried_and_failed = newest.delivered_at_ms > requested.last_at_ms;
    let never_came = now_ms.saturating_sub(requested.last_at_ms) > timeout_ms;
    if retried_and_failed || never_came { Verdict::Redeliver { attempt: newest.id } } else { Verdict::Pending }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 10_000_000;

    fn failed(id: u64, at: i64) -> Attempt {
        Attempt { id, delivered_at_ms: at, succeeded: false }
    }

    #[test]
    fn an_event_with_a_successful_attempt_is_left_alone() {
        let attempts = [failed(1, 100), Attempt { id: 2, delivered_at_ms: 200, succeeded: true }];
        assert_eq!(judge(&attempts, false, None, NOW), Verdict::Delivered);
    }

    #[test]
    fn a_failed_event_webhookd_holds_is_left_alone() {
        assert_eq!(judge(&[failed(1, 100)], true, None, NOW), Verdict::Held);
    }

    #[test]
    fn a_failed_unheld_event_is_redelivered_from_its_newest_attempt() {
        assert_eq!(
            judge(&[failed(1, 100), failed(5, 300), failed(3, 200)], false, None, NOW),
            Verdict::Redeliver { attempt: 5 }
        );
    }

    #[test]
    fn once_asked_it_waits_for_githubs_attempt_and_asks_again_only_if_that_failed() {
        let asked = Some(Requested { count: 1, last_at_ms: 400 });
        assert_eq!(judge(&[failed(1, 100)], false, asked, 500), Verdict::Pending);
        assert_eq!(judge(&[failed(1, 100), failed(9, 450)], false, asked, 500), Verdict::Redeliver { attempt: 9 });
        let late = 400 + i64::try_from(PENDING_TIMEOUT.as_millis()).expect("fits") + 1;
        assert_eq!(judge(&[failed(1, 100)], false, asked, late), Verdict::Redeliver { attempt: 1 });
    }

    #[test]
    fn after_the_last_request_failed_it_gives_up() {
        let asked = Some(Requested { count: MAX_REQUESTS, last_at_ms: 400 });
        assert_eq!(judge(&[failed(1, 100), failed(9, 450)], false, asked, 500), Verdict::GaveUp);
    }
}
