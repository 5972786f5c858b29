//! GitHub's rate-limit guidance, kept per credential:
//! - at most `WEBHOOKD_GITHUB_CONCURRENCY` requests in flight;
//! - mutating requests at least `WEBHOOKD_GITHUB_WRITE_INTERVAL` apart;
//! - primary limit: when `x-ratelimit-remaining` reaches 0, nothing is sent
//!   until `x-ratelimit-reset`;
//! - secondary limit: a 403/429 naming it, or carrying `retry-after`, pauses
//!   **every** request on the credential for `retry-after` (at least 60 s
//!   when absent, doubling on repeats), not only the one that failed.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::credential::CredentialKey;
use super::deployment::DeploymentLimits;

/// Pause after a secondary limit that gives no `retry-after` (GitHub: "at least one minute").
const SECONDARY_DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// Longest pause webhookd imposes itself for repeated secondary limits.
const SECONDARY_MAX_PAUSE: Duration = Duration::from_secs(15 * 60);
/// Longest wait webhookd accepts from a `retry-after` or a reset time; GitHub's
/// hourly window bounds real values, anything beyond is a broken header.
const MAX_HONOURED_WAIT: Duration = Duration::from_secs(3600);
/// Margin added to a primary reset time, for clock skew.
const RESET_MARGIN: Duration = Duration::from_secs(1);

/// Why requests on a credential are paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    Primary,
    Secondary,
}

impl PauseReason {
    pub fn label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// A pause just started by a response.
#[derive(Debug, Clone, Copy)]
pub struct Pause {
    pub reason: PauseReason,
    pub length: Duration,
}

pub(crate) struct Limiter {
    in_flight: Semaphore,
    write_interval: Duration,
    /// When the last mutating request was let through; held while waiting so
    /// writes queue up in order.
    last_write: tokio::sync::Mutex<Option<Instant>>,
    state: Mutex<State>,
    /// The deployment's shared write slots, when instances share a store.
    shared: Option<(Arc<dyn DeploymentLimits>, CredentialKey)>,
}

#[derive(Default)]
struct State {
    paused_until: Option<Instant>,
    /// Secondary limits in a row (reset by a success): the pause doubles.
    secondary_strikes: u32,
    remaining: Option<u64>,
}

impl Limiter {
    pub(crate) fn new(concurrency: usize, write_interval: Duration) -> Self {
        Self {
            in_flight: Semaphore::new(concurrency.max(1)),
            write_interval,
            last_write: tokio::sync::Mutex::new(None),
            state: Mutex::new(State::default()),
            shared: None,
        }
    }

    /// Spaces this credential's writes across every instance of the
    /// deployment, not only within this one.
    pub(crate) fn shared_with(mut self, deployment: Arc<dyn DeploymentLimits>, credential: CredentialKey) -> Self {
        self.shared = Some((deployment, credential));
        self
    }

    /// Pauses every request for `length` (a pause another instance met).
    pub(crate) fn pause_for(&self, length: Duration) {
        let until = Instant::now() + length.min(MAX_HONOURED_WAIT);
        let mut state = self.state();
        state.paused_until = Some(state.paused_until.map_or(until, |current| current.max(until)));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Remaining quota last reported by GitHub.
    pub(crate) fn remaining(&self) -> Option<u64> {
        self.state().remaining
    }

    /// When requests may go again, if paused now.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        self.state().paused_until.filter(|until| *until > Instant::now())
    }

    /// Waits for a turn: out of any pause, after the write interval (for
    /// writes), within the in-flight cap. A pause longer than `max_wait` is
    /// not waited out: `Err(until)` says when it ends, and the caller hands
    /// the delivery back to the queue instead of holding a worker.
    pub(crate) async fn acquire(&self, write: bool, max_wait: Duration) -> Result<SemaphorePermit<'_>, Instant> {
        loop {
            self.wait_out_pause(max_wait).await?;
            if write {
                let mut last = self.last_write.lock().await;
                // A wait already over is skipped: a zero-length timer still
                // waits for the timer's next tick (about 1 ms), holding the
                // write lock, so writes with a 0 interval went 1 ms apart.
                let due = last.map(|at| at + self.write_interval).filter(|due| *due > Instant::now());
                if let Some(due) = due {
                    tokio::time::sleep_until(due.into()).await;
                }
                self.wait_for_shared_slot().await;
                self.wait_out_pause(max_wait).await?;
                *last = Some(Instant::now());
            }
            // The semaphore is never closed, so acquire cannot fail.
            let Ok(permit) = self.in_flight.acquire().await else { continue };
            if self.paused_until().is_none() {
                return Ok(permit);
            }
            // A pause began while we queued: give the slot back and wait.
        }
    }

    /// Waits for this write's slot in the deployment, if instances share
    /// one. Should the store not answer, the local spacing alone holds.
    async fn wait_for_shared_slot(&self) {
        let Some((deployment, credential)) = &self.shared else { return };
        if self.write_interval.is_zero() {
            return;
        }
        match deployment.reserve_write(credential, self.write_interval).await {
            Ok(wait) if !wait.is_zero() => tokio::time::sleep(wait.min(MAX_HONOURED_WAIT)).await,
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "no shared write slot; spacing writes within this instance only"),
        }
    }

    async fn wait_out_pause(&self, max_wait: Duration) -> Result<(), Instant> {
        while let Some(until) = self.paused_until() {
            if until.saturating_duration_since(Instant::now()) > max_wait {
                return Err(until);
            }
            tokio::time::sleep_until(until.into()).await;
        }
        Ok(())
    }

    /// Reads the rate-limit headers of an answer; returns the pause it
    /// starts, if any.
    pub(crate) fn observe(&self, status: StatusCode, headers: &HeaderMap, message: &str) -> Option<Pause> {
        let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
        let remaining = number("x-ratelimit-remaining");
        let reset = number("x-ratelimit-reset");
        let retry_after = number("retry-after");
        let mut state = self.state();
        if remaining.is_some() {
            state.remaining = remaining;
        }
        // A 429 is always a rate limit; a 403 only when it says so.
        let secondary = status == StatusCode::TOO_MANY_REQUESTS && remaining != Some(0)
            || status == StatusCode::FORBIDDEN
                && (retry_after.is_some() || message.to_ascii_lowercase().contains("secondary rate limit"));
        let pause = if secondary {
            let strikes = state.secondary_strikes;
            state.secondary_strikes = strikes.saturating_add(1);
            let base = retry_after.map_or(SECONDARY_DEFAULT_PAUSE, Duration::from_secs).min(MAX_HONOURED_WAIT);
            // Repeats double the pause: GitHub asks for exponentially longer waits.
            let length = base.saturating_mul(1 << strikes.min(10)).min(SECONDARY_MAX_PAUSE.max(base));
            Some(Pause { reason: PauseReason::Secondary, length })
        } else if remaining == Some(0) {
            let until_reset = reset
                .and_then(|at| UNIX_EPOCH.checked_add(Duration::from_secs(at)))
                .and_then(|at| at.duration_since(SystemTime::now()).ok())
                .unwrap_or(SECONDARY_DEFAULT_PAUSE)
                .min(MAX_HONOURED_WAIT);
            Some(Pause { reason: PauseReason::Primary, length: until_reset + RESET_MARGIN })
        } else {
            if status.is_success() {
                state.secondary_strikes = 0;
            }
            None
        };
        if let Some(pause) = pause {
            let until = Instant::now() + pause.length;
            state.paused_until = Some(state.paused_until.map_or(until, |current| current.max(until)));
        }
        pause
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).expect("value"));
        }
        map
    }

    #[test]
    fn secondary_limits_pause_for_retry_after_and_double_on_repeats() {
        let limiter = Limiter::new(10, Duration::ZERO);
        let forbidden = StatusCode::FORBIDDEN;
        let pause = limiter.observe(forbidden, &headers(&[("retry-after", "2")]), "").expect("pause");
        assert_eq!((pause.reason, pause.length), (PauseReason::Secondary, Duration::from_secs(2)));
        let again = limiter.observe(forbidden, &headers(&[("retry-after", "2")]), "").expect("pause");
        assert_eq!(again.length, Duration::from_secs(4));
        let no_header =
            limiter.observe(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), "You have exceeded a secondary rate limit");
        assert_eq!(no_header.expect("pause").length, Duration::from_secs(240), "60 s doubled twice");
        assert!(limiter.paused_until().is_some());
        limiter.observe(StatusCode::OK, &headers(&[]), "");
        let fresh = limiter.observe(forbidden, &headers(&[("retry-after", "3")]), "").expect("pause");
        assert_eq!(fresh.length, Duration::from_secs(3), "a success resets the doubling");
    }

    #[test]
    fn absurd_header_values_are_clamped_not_obeyed() {
        let limiter = Limiter::new(10, Duration::ZERO);
        let huge = u64::MAX.to_string();
        let pause = limiter.observe(StatusCode::FORBIDDEN, &headers(&[("retry-after", &huge)]), "").expect("pause");
        assert_eq!(pause.length, MAX_HONOURED_WAIT);
        let other = Limiter::new(10, Duration::ZERO);
        let pause = other
            .observe(StatusCode::OK, &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &huge)]), "")
            .expect("pause");
        assert!(pause.length <= MAX_HONOURED_WAIT + RESET_MARGIN);
        let plain = Limiter::new(10, Duration::ZERO);
        assert!(plain.observe(StatusCode::TOO_MANY_REQUESTS, &headers(&[]), "").is_some(), "a 429 is a rate limit");
    }

    #[test]
    fn primary_limit_pauses_until_reset() {
        let limiter = Limiter::new(10, Duration::ZERO);
        let reset = SystemTime::now().duration_since(UNIX_EPOCH).expect("now").as_secs() + 30;
        let pause = limiter
            .observe(
                StatusCode::OK,
                &headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset.to_string())]),
                "",
            )
            .expect("pause");
        assert_eq!(pause.reason, PauseReason::Primary);
        assert!(pause.length > Duration::from_secs(28) && pause.length <= Duration::from_secs(32), "{pause:?}");
        assert_eq!(limiter.remaining(), Some(0));
        // A plain refusal is no rate limit.
        let other = Limiter::new(10, Duration::ZERO);
        assert!(
            other
                .observe(StatusCode::FORBIDDEN, &headers(&[("x-ratelimit-remaining", "12")]), "Resource not accessible")
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_long_pause_is_not_waited_out_a_short_one_is() {
        let limiter = Limiter::new(1, Duration::ZERO);
        limiter.observe(StatusCode::FORBIDDEN, &headers(&[("retry-after", "60")]), "").expect("pause");
        let started = Instant::now();
        let until = limiter.acquire(false, Duration::from_secs(3)).await.expect_err("60 s is too long to wait");
        assert!(started.elapsed() < Duration::from_secs(1), "answered at once");
        assert!(until > started + Duration::from_secs(59));
        let short = Limiter::new(1, Duration::ZERO);
        short.observe(StatusCode::FORBIDDEN, &headers(&[("retry-after", "1")]), "").expect("pause");
        let permit = short.acquire(true, Duration::from_secs(3)).await.expect("a 1 s pause is waited out");
        assert!(started.elapsed() >= Duration::from_millis(990));
        drop(permit);
    }
}
