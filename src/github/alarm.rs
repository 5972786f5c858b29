//! The App's own credentials refused by GitHub: a state the whole process
//! shares (the client raises it, `/readyz` reports it), logged once when it
//! starts, not per delivery.

use std::sync::{Arc, Mutex, PoisonError};

/// Why the App's credentials do not work, while they do not.
#[derive(Clone, Default)]
pub struct CredentialAlarm(Arc<Mutex<Option<String>>>);

impl CredentialAlarm {
    /// Records the problem; logs it at ERROR only when it is new.
    pub fn raise(&self, problem: &str) {
        let mut current = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            tracing::error!(
                problem,
                "GitHub App credentials refused: every delivery needing GitHub fails until this is fixed"
            );
        }
        *current = Some(problem.to_owned());
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
