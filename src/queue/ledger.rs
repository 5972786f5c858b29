//! What the recovery of failed GitHub deliveries keeps in the store (issue
//! 14): which deliveries webhookd holds, how far each hook's deliveries were
//! examined, which redeliveries were requested, and the hooks learned from
//! deliveries received. Kept beside the deliveries so that it survives
//! restarts and, on PostgreSQL, is shared by the instances, one of which
//! leads recovery at a time.

mod memory;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;

use super::{Cause, StoreError};
use crate::config::StoreKind;
pub(crate) use memory::MemoryLedger;

/// Hooks learned at most; past it, the least recently seen is forgotten.
pub const MAX_LEARNED_HOOKS: usize = 1_000;

/// What the recovery of failed GitHub deliveries keeps in the store, so it
/// survives restarts and is shared by instances.
#[async_trait]
pub trait RecoveryLedger: Send + Sync {
    /// Whether a delivery with this X-GitHub-Delivery id is stored (any
    /// state, within the retention). An id webhookd could never have
    /// accepted is not held.
    async fn holds(&self, delivery_id: &str) -> Result<bool, StoreError>;

    /// The newest `delivered_at` (Unix ms) examined for `hook` (a spec
    /// string like "app", "org:acme:12", "repo:o/r:34") by a completed pass.
    async fn checkpoint(&self, hook: &str) -> Result<Option<i64>, StoreError>;

    /// Records a completed pass up to `at_ms`. Never moves a checkpoint
    /// back: the greater of the stored and the given time is kept.
    async fn set_checkpoint(&self, hook: &str, at_ms: i64) -> Result<(), StoreError>;

    /// Redeliveries requested for this delivery id: how many times, and
    /// when last (Unix ms).
    async fn requested(&self, delivery_id: &str) -> Result<Option<Requested>, StoreError>;

    /// Records one more request (count + 1, last at the later of the stored
    /// time and `at_ms`).
    async fn record_request(&self, hook: &str, delivery_id: &str, at_ms: i64) -> Result<(), StoreError>;

    /// Hooks learned from deliveries received, as spec strings, the most
    /// recently seen first.
    async fn learned_hooks(&self) -> Result<Vec<String>, StoreError>;

    /// Remembers a hook as seen at `at_ms` (idempotent). At most
    /// [`MAX_LEARNED_HOOKS`] are kept, the least recently seen dropped. A
    /// durable store writes a hook it wrote less than
    /// [`LEARN_REFRESH_MS`] before only again after that, so calling this
    /// for every delivery received costs no commit each.
    async fn learn_hook(&self, spec: &str, at_ms: i64) -> Result<(), StoreError>;

    /// Forgets requests last made before `before_ms` (GitHub redelivers
    /// only 3 days back); returns how many.
    async fn forget_requests_before(&self, before_ms: i64) -> Result<usize, StoreError>;

    /// Whether this instance may run a recovery pass now: `None` while
    /// another holds the lead (PostgreSQL: a session advisory lock, tried,
    /// never waited for; SQLite and memory: always granted). Hold the guard
    /// for the pass.
    async fn try_lead(&self) -> Result<Option<LeaderGuard>, StoreError>;
}

/// Redeliveries requested for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub count: u32,
    pub last_at_ms: i64,
}

/// The lead of recovery, held by a backend (PostgreSQL: the connection
/// holding the advisory lock).
#[async_trait]
pub(crate) trait Lead: Send {
    /// Whether the lead is still held (the connection holding it answers).
    async fn still_held(&mut self) -> bool;
    /// Gives the lead up now.
    async fn release(self: Box<Self>);
}

/// Held while this instance runs recovery. [`release`](Self::release) it
/// when the pass ends; dropped instead, it is released in the background
/// (PostgreSQL: the connection holding the lock is closed, which frees it).
#[must_use = "the lead is released when the guard is dropped"]
pub struct LeaderGuard {
    lead: Option<Box<dyn Lead>>,
}

impl LeaderGuard {
    /// The lead of a store only this process uses: nothing to hold.
    pub(crate) fn local() -> Self {
        Self { lead: None }
    }

    pub(crate) fn held(lead: Box<dyn Lead>) -> Self {
        Self { lead: Some(lead) }
    }

    /// Whether this instance still leads (false once the PostgreSQL
    /// connection holding the lock is lost: another instance may lead now).
    pub async fn still_leads(&mut self) -> bool {
        match &mut self.lead {
            Some(lead) => lead.still_held().await,
            None => true,
        }
    }

    /// Gives the lead up, waiting until another instance can take it.
    pub async fn release(mut self) {
        if let Some(lead) = self.lead.take() {
            lead.release().await;
        }
    }
}

impl std::fmt::Debug for LeaderGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderGuard").field("shared", &self.lead.is_some()).finish()
    }
}

/// How long a durable store may leave a learned hook's time unwritten:
/// recency among at most 1,000 hooks needs no finer grain.
pub const LEARN_REFRESH_MS: i64 = 60_000;

/// The hooks a durable ledger wrote lately, and when: `learn_hook` skips
/// the write of a hook written less than [`LEARN_REFRESH_MS`] before.
#[derive(Default)]
pub(crate) struct LearnedLately(Mutex<HashMap<String, i64>>);

impl LearnedLately {
    /// Whether `spec` was written at most [`LEARN_REFRESH_MS`] before `at_ms`.
    pub(crate) fn is_fresh(&self, spec: &str, at_ms: i64) -> bool {
        let lately = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        lately.get(spec).is_some_and(|written| (0..LEARN_REFRESH_MS).contains(&at_ms.saturating_sub(*written)))
    }

    /// Notes that `spec` was written at `at_ms`.
    pub(crate) fn written(&self, spec: &str, at_ms: i64) {
        let mut lately = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if lately.len() >= MAX_LEARNED_HOOKS && !lately.contains_key(spec) {
            // Bounded like the table; forgetting only costs a write.
            lately.clear();
        }
        lately.insert(spec.to_owned(), at_ms);
    }
}

/// The ledger of the store `store` names, for `webhookd recover` (no
/// daemon needed, and it works beside running ones): SQLite opens the
/// existing database for writing and brings its schema up to date;
/// PostgreSQL connects and migrates. The in-memory store has nothing to
/// recover from outside the daemon's process.
pub async fn open_ledger(store: &StoreKind) -> Result<Arc<dyn RecoveryLedger>, StoreError> {
    match store {
        StoreKind::Memory => Err(StoreError::Open {
            path: PathBuf::from("WEBHOOKD_STORE=memory"),
            cause: Cause::refused(
                "recovering deliveries from the command needs a durable store (an SQLite path or a \
                 postgres:// URL): the in-memory store lives only inside the daemon's process",
            ),
        }),
        StoreKind::Sqlite(path) => {
            let path = path.clone();
            let conn = tokio::task::spawn_blocking(move || super::sqlite::admin::open(&path))
                .await
                .map_err(|e| StoreError::Read(Cause::refused(format!("opening the store failed: {e}"))))??;
            Ok(Arc::new(super::sqlite::ledger::SqliteLedger::new(conn)))
        }
        StoreKind::Postgres(url) => Ok(Arc::new(super::postgres::ledger::PgLedger::connect(url).await?)),
    }
}
