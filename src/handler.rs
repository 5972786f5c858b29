//! What processing a delivery means. The daemon calls a `Handler` for each
//! delivery with the process's one shared GitHub client; library users supply
//! their own (see `examples/`), the binary uses `LogHandler`.

use async_trait::async_trait;

use crate::delivery::Delivery;
use crate::github::{GitHubApi, GitHubError};

/// Why a handler failed, and whether trying again later could help.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Could succeed later (a timeout, a 5xx, a rate limit).
    #[error("{0:#}")]
    Retryable(anyhow::Error),
    /// Will fail the same way every time (a 404, a malformed payload).
    #[error("{0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Retryable(_))
    }
}

impl From<GitHubError> for HandlerError {
    fn from(e: GitHubError) -> Self {
        if e.is_retryable() { Self::Retryable(e.into()) } else { Self::Permanent(e.into()) }
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
