//! What processing a delivery means. The daemon calls a `Handler` for each
//! delivery with the process's one shared GitHub client; library users supply
//! their own (see `examples/`), the binary uses `LogHandler`.

use std::time::SystemTime;

use async_trait::async_trait;

use crate::delivery::Delivery;
use crate::github::{CredentialKey, GitHubApi, GitHubError};

/// Why a handler failed, and whether trying again later could help.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Could succeed later (a timeout, a 5xx, a rate limit).
    #[error("{0:#}")]
    Retryable(anyhow::Error),
    /// Will fail the same way every time (a 404, a malformed payload).
    #[error("{0:#}")]
    Permanent(anyhow::Error),
    /// Not run now: the credential it needs is paused for a rate limit until
    /// `until`. The delivery waits in the queue, not in a worker, and spends
    /// no attempt. Whatever the handler did before is done again on the next
    /// run, so it must be safe to repeat (the rules engine marks what it creates).
    #[error("GitHub rate limit: {credential} is paused until {}", humantime::format_rfc3339_seconds(*.until))]
    Deferred { credential: CredentialKey, until: SystemTime },
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_) | Self::Deferred { .. })
    }
}

impl From<GitHubError> for HandlerError {
    fn from(e: GitHubError) -> Self {
        match e {
            GitHubError::Paused { credential, until } => Self::Deferred { credential, until },
            e if e.is_retryable() => Self::Retryable(e.into()),
            e => Self::Permanent(e.into()),
        }
    }
}

impl From<anyhow::Error> for HandlerError {
    fn from(e: anyhow::Error) -> Self {
        Self::Retryable(e)
    }
}

impl From<crate::delivery::PayloadError> for HandlerError {
    fn from(e: crate::delivery::PayloadError) -> Self {
        Self::Permanent(e.into())
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Processes one delivery. `github` is the process's shared client as seen
    /// from this delivery (its App installation). Runs inside a span naming
    /// the delivery; a panic is caught, logged and counted, and the worker
    /// goes on.
    async fn handle(&self, delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError>;
}

/// The default handler until rules are configured: logs each delivery.
#[derive(Debug, Default)]
pub struct LogHandler;

#[async_trait]
impl Handler for LogHandler {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        tracing::info!(
            bytes = delivery.raw.len(),
            sender = delivery.routing.sender.as_deref(),
            "delivery processed (no rules configured: logged only)"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_credential_defers_and_other_github_errors_keep_their_class() {
        let until = std::time::SystemTime::now();
        let paused = GitHubError::Paused { credential: CredentialKey::Installation(7), until };
        assert!(matches!(
            HandlerError::from(paused),
            HandlerError::Deferred { credential: CredentialKey::Installation(7), until: u } if u == until
        ));
        assert!(matches!(HandlerError::from(GitHubError::NoInstallation), HandlerError::Permanent(_)));
        assert!(matches!(HandlerError::from(GitHubError::Auth("x".into())), HandlerError::Retryable(_)));
    }
}
