//! Operator access to a durable store, for `webhookd deliveries`: one trait
//! the SQLite and PostgreSQL stores both implement, so the commands have no
//! backend-specific code paths. Every implementation works beside running
//! daemons and never touches a delivery one of them is processing.

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

use super::StoreError;

/// The states a delivery moves through.
pub const STATES: [&str; 4] = ["queued", "running", "done", "dead"];

/// Whether a command only reads (`list`, `show`: nothing is created,
/// migrated or changed) or changes the store (`replay`, `prune`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// Which deliveries `list` shows, newest first.
#[derive(Debug, Clone, Copy)]
pub struct ListFilter<'a> {
    pub state: Option<&'a str>,
    pub event: Option<&'a str>,
    pub limit: usize,
}

/// One line of `deliveries list`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub state: String,
    pub attempts: u32,
    /// Unix milliseconds.
    pub received_at: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
}

/// Everything `deliveries show` prints.
#[derive(Debug, Serialize)]
pub struct Detail {
    #[serde(flatten)]
    pub summary: Summary,
    pub hook_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub content_kind: String,
    pub finished_at: Option<i64>,
    /// The instance processing it now (PostgreSQL, where several share the
    /// store); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The body as received, or why it cannot be read.
    #[serde(skip)]
    pub body: Result<Vec<u8>, String>,
}

/// What `replay` did with the ids it was given.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Queued again.
    pub queued: usize,
    /// Not in the store (never received, or pruned).
    pub not_found: Vec<String>,
    /// Left alone: a daemon is processing them now.
    pub running: Vec<String>,
}

#[async_trait]
pub trait StoreAdmin: Send + Sync {
    /// The newest deliveries first.
    async fn list(&self, filter: ListFilter<'_>) -> Result<Vec<Summary>, StoreError>;

    /// One delivery, `None` when the store has no such id.
    async fn show(&self, delivery_id: &str) -> Result<Option<Detail>, StoreError>;

    /// Queues these deliveries again, due now, with their attempts reset;
    /// running ones are left alone.
    async fn replay(&self, delivery_ids: &[String]) -> Result<Replayed, StoreError>;

    /// Queues every delivery in `state` (`dead` or `done`) again; returns how many.
    async fn replay_state(&self, state: &str) -> Result<usize, StoreError>;

    /// Deletes finished (done or dead) deliveries that finished longer than
    /// `retention` ago; returns how many.
    async fn prune(&self, retention: Duration) -> Result<usize, StoreError>;
}
