//! The App's own credentials refused by GitHub: a state the whole process
//! shares (the client raises it, `/readyz` reports it), logged once when it
//! starts, not per delivery. It lapses `LAPSE` after the last refusal: an
//! unready instance gets no deliveries, hence no token exchange that could
//! clear it, so one passing 401 (a clock step) must not keep it out for good.
//! A key that stays wrong raises it again at the next exchange.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long a refusal keeps `/readyz` at 503 without another one.
pub const LAPSE: Duration = Duration::from_secs(60);

/// Why the App's credentials do not work, while they do not.
#[derive(Clone, Default)]
pub struct CredentialAlarm(Arc<Mutex<Option<(String, Instant)>>>);

impl CredentialAlarm {
    /// Records the problem; logs it at ERROR only when it is new (returns
    /// whether it did), not once per delivery that runs into it.
    pub fn raise(&self, problem: &str) -> bool {
        self.raise_at(problem, Instant::now())
    }

    fn raise_at(&self, problem: &str, now: Instant) -> bool {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let new = current.as_ref().is_none_or(|(_, at)| now.saturating_duration_since(*at) >= LAPSE);
        if new {
            tracing::error!(
                problem,
                "GitHub App credentials refused: every delivery needing GitHub fails until this is fixed"
            );
        }
        *current = Some((problem.to_owned(), now));
        new
    }

    /// The credentials worked: clears the problem.
    pub fn clear(&self) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.take().is_some() {
            tracing::info!("GitHub App credentials accepted again");
        }
    }

    /// The problem, if the credentials were refused within `LAPSE`.
    pub fn problem(&self) -> Option<String> {
        self.problem_at(Instant::now())
    }

    fn problem_at(&self, now: Instant) -> Option<String> {
        let current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        current.as_ref().filter(|(_, at)| now.saturating_duration_since(*at) < LAPSE).map(|(p, _)| p.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_problem_is_logged_once_and_cleared_by_a_success() {
        let alarm = CredentialAlarm::default();
        let shared = alarm.clone();
        assert!(alarm.raise("bad key"), "the first refusal is logged");
        assert!(!alarm.raise("bad key"), "the next ones are not");
        assert_eq!(shared.problem().as_deref(), Some("bad key"), "every holder sees it");
        alarm.clear();
        assert_eq!(shared.problem(), None);
        assert!(alarm.raise("bad key"), "a new episode is logged again");
    }

    #[test]
    fn a_refusal_lapses_unless_it_comes_again() {
        let alarm = CredentialAlarm::default();
        let start = Instant::now();
        assert!(alarm.raise_at("bad key", start));
        assert!(alarm.problem_at(start + LAPSE / 2).is_some());
        assert_eq!(alarm.problem_at(start + LAPSE), None, "one passing 401 does not keep readiness off");
        assert!(alarm.raise_at("bad key", start + LAPSE), "still wrong: raised and logged again");
        assert!(alarm.problem_at(start + LAPSE + LAPSE / 2).is_some());
    }
}
