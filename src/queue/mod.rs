//! The hand-off between the HTTP receiver and the worker pool, behind one small
//! trait so the backend can change (in memory, SQLite, later a database shared
//! by several instances) without touching the HTTP or worker code.
//!
//! The rules every backend keeps (the same contract tests run against each):
//! - `enqueue` answers `Queued` only once the delivery will be processed
//!   (for a durable backend: once it is committed to disk), and `Duplicate`
//!   for an id it accepted before, within its retention. Ids of refused
//!   deliveries are not remembered.
//! - `next` hands each due delivery to exactly one worker, with its attempt
//!   number; after `close` it hands out what is due, then returns `None`.
//! - `finish` applies the retry policy: a retryable failure is scheduled again
//!   with backoff until the attempts are spent, then it is dead; a permanent
//!   failure is dead at once.
//! - A delivery whose credential is paused for a rate limit is deferred: put
//!   back due when the pause ends (plus jitter), its attempt given back, and
//!   no delivery of that credential is handed out before then. Under a
//!   backlog, credentials take turns (round-robin), oldest first within one.

pub mod admin;

/// How often finished deliveries older than the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Deletes finished deliveries past the retention, now and every hour.
pub async fn prune_periodically(queue: Arc<dyn DeliveryQueue>, retention: Duration) {
    let mut every = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        every.tick().await;
        let pruned = queue.prune(retention).await;
        if pruned > 0 {
            tracing::info!(pruned, "finished deliveries past the retention deleted");
        }
    }
}

#[cfg(test)]
mod contract;
pub mod credentials;
mod dedup;
mod error;
pub mod ledger;
mod memory;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::config::{Settings, StoreKind};
use crate::delivery::{Delivery, DeliveryId};
use crate::github::{CredentialKey, DeploymentLimits};
use crate::retry::RetryPolicy;
use crate::telemetry::metrics::Metrics;
pub use credentials::{CredentialScheme, Pauses};
pub use dedup::DedupWindow;
pub use error::{Cause, StoreError};
pub use ledger::{LeaderGuard, RecoveryLedger, Requested, open_ledger};
pub use memory::MemoryQueue;
pub use postgres::{PostgresOptions, PostgresQueue};
pub use sqlite::{SqliteOptions, SqliteQueue};

/// How long an idle worker waits for more work before parking, in the
/// stores that hand work over in memory: under load a worker then wakes once
/// per batch, not once per delivery. Delays processing, never the
/// acknowledgement.
const IDLE_LINGER: Duration = Duration::from_millis(1);

/// What became of an accepted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("the delivery queue is full")]
    Full,
    #[error("webhookd is shutting down")]
    Closed,
    #[error("the delivery could not be stored")]
    Store,
}

/// How one processing attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Failed in a way that may pass later.
    Retry(String),
    /// Failed for good.
    Failed(String),
    /// Not run: the credential it needs is paused until `until`. Spends no
    /// attempt; the delivery is due again when the pause ends.
    Deferred {
        credential: CredentialKey,
        until: SystemTime,
    },
}

/// What the queue did with a finished attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    Done,
    /// Scheduled again after this wait.
    Retrying(Duration),
    /// Retryable, but the attempts are spent.
    Dead,
    /// Permanent failure: dead without retrying.
    Failed,
    /// Its credential is paused: due again after this wait, attempt given back.
    Deferred(Duration),
}

impl Settled {
    /// The `outcome` label of `webhookd_deliveries_processed_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Done => "ok",
            Self::Retrying(_) => "retry",
            Self::Dead => "dead",
            Self::Failed => "failed",
            Self::Deferred(_) => "deferred",
        }
    }
}

/// Deliveries per state, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub dead: u64,
}

impl StateCounts {
    /// Each count beside its state's name, as metrics label them.
    pub fn by_state(&self) -> [(&'static str, u64); 4] {
        [("queued", self.queued), ("running", self.running), ("done", self.done), ("dead", self.dead)]
    }
}

/// What a drain timeout left behind.
#[derive(Debug, Default)]
pub struct Abandoned {
    /// Lost with the process: only its memory held them.
    pub lost: Vec<DeliveryId>,
    /// Kept in the store for the next start.
    pub kept: usize,
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Accepts a verified delivery, or says why not.
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError>;

    /// The next due delivery, waiting for one; `None` once the queue is closed
    /// and nothing is due.
    async fn next(&self) -> Option<Delivery>;

    /// Records how an attempt ended and applies the retry policy.
    async fn finish(&self, delivery: &Delivery, outcome: Outcome) -> Settled;

    /// Deliveries waiting for a worker, retries included (not those being processed).
    fn depth(&self) -> usize;

    /// Whether another delivery would be accepted now.
    fn has_room(&self) -> bool;

    /// Stops accepting deliveries; those due are still handed out.
    fn close(&self);

    /// After a drain timeout: what becomes of the deliveries still waiting and
    /// of those interrupted mid-processing.
    async fn abandon(&self, interrupted: &[DeliveryId]) -> Abandoned;

    /// Forgets finished deliveries older than `retention`; returns how many.
    async fn prune(&self, _retention: Duration) -> usize {
        0
    }

    /// Deliveries per state.
    async fn counts(&self) -> StateCounts;

    /// Why the backend cannot store deliveries now (a full disk, say), in
    /// words an operator can act on; `None` while it can. Readiness answers
    /// 503 while this is `Some`. A backend in memory always can.
    fn write_error(&self) -> Option<String> {
        None
    }

    /// Whether the backend answers (the watchdog's health check).
    async fn ping(&self) -> bool {
        true
    }

    /// Releases the backend (flushes and stops a store's writer). Called once,
    /// after the workers have stopped.
    async fn shutdown(&self) {}

    /// What the instances sharing this store share of GitHub's limits
    /// (pauses, write spacing); `None` for a store only this process uses.
    fn deployment_limits(&self) -> Option<Arc<dyn DeploymentLimits>> {
        None
    }

    /// What the recovery of failed GitHub deliveries keeps in this store
    /// (the same ledger at every call).
    fn ledger(&self) -> Arc<dyn RecoveryLedger>;

    /// The backend, for logs: `memory`, `sqlite:PATH` or the PostgreSQL URL
    /// without its password.
    fn describe(&self) -> String;
}

/// Connections of one instance to PostgreSQL at most (its two pools
/// together; `LISTEN` and recovery's lead take one more each): the server's
/// default `max_connections` is 100, shared by every instance.
const MAX_POSTGRES_CONNECTIONS: usize = 32;

/// Opens the backend the settings name.
pub async fn open(settings: &Settings, metrics: Arc<Metrics>) -> Result<Arc<dyn DeliveryQueue>, StoreError> {
    let retry = RetryPolicy { max_attempts: settings.max_attempts, base: settings.retry_backoff };
    let credentials = CredentialScheme::from_credential(settings.github.credential.as_ref());
    Ok(match &settings.store {
        StoreKind::Memory => {
            Arc::new(MemoryQueue::new(settings.queue_capacity, settings.retention, retry).with_credentials(credentials))
        }
        StoreKind::Sqlite(path) => Arc::new(SqliteQueue::open(
            path,
            SqliteOptions {
                capacity: settings.queue_capacity,
                retry,
                body_segment_bytes: sqlite::DEFAULT_SEGMENT_BYTES,
                credentials,
            },
            metrics,
        )?),
        StoreKind::Postgres(url) => Arc::new(
            PostgresQueue::open(
                url,
                PostgresOptions {
                    capacity: settings.queue_capacity,
                    retry,
                    credentials,
                    lease: settings.lease,
                    connections: u32::try_from((settings.workers + 8).min(MAX_POSTGRES_CONNECTIONS)).unwrap_or(8),
                },
            )
            .await?,
        ),
    })
}
