//! The App's own credentials refused by GitHub: a state the whole process
//! shares (the client raises it, `/readyz` reports it), logged once when it
//! starts, not per delivery.

use std::sync::{Arc, Mutex, PoisonError};

/// Why the App's credentials do not work, while they do not.
#[derive(Clone, Default)]
pub struct CredentialAlarm(Arc<Mutex<Option<String>>>);

impl CredentialAlarm {
    /// Records the problem; logs it at ERROR only when it is new (returns
    /// whether it did), not once per delivery that runs into it.
    pub fn raise(&self, problem: &str) -> bool {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let new = current.is_none();
        if new {
            tracing::error!(
                problem,
                "GitHub App credentials refused: every delivery needing GitHub fails until this is fixed"
            );
        }
        *current = Some(problem.to_owned());
        new
    }

    /// The credentials worked: clears the problem.
    pub fn clear(&self) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.take().is_some() {
            tracing::info!("GitHub App credentials accepted again");
        }
    }

    /// The problem, if the credentials are refused now.
    pub fn problem(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
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
}
