//! The recovery ledger in the SQLite database (tables `recovery_*`, schema
//! version 4), on a plain connection of its own beside the store's writer,
//! like the operator's commands: each call is one short transaction, and a
//! writer holding the database makes it wait (`BUSY_TIMEOUT`), not fail.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::queue::ledger::{LeaderGuard, LearnedLately, MAX_LEARNED_HOOKS, RecoveryLedger, Requested};
use crate::queue::{Cause, StoreError};

pub(crate) struct SqliteLedger {
    conn: Arc<Mutex<Connection>>,
    lately: LearnedLately,
}

/// Whether a statement reads or writes, for its error.
#[derive(Clone, Copy)]
enum Access {
    Read,
    Write,
}

impl SqliteLedger {
    /// A ledger on `conn`, a database at the current schema.
    pub(crate) fn new(conn: Connection) -> Self {
        Self { conn: Arc::new(Mutex::new(conn)), lately: LearnedLately::default() }
    }

    /// Runs `f` on the connection, off the async threads (it may wait for a lock).
    async fn run<T: Send + 'static>(
        &self,
        access: Access,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        let error = move |cause: Cause| match access {
            Access::Read => StoreError::Read(cause),
            Access::Write => StoreError::Write(cause),
        };
        tokio::task::spawn_blocking(move || f(&mut conn.lock().unwrap_or_else(PoisonError::into_inner)))
            .await
            .map_err(|e| error(Cause::refused(format!("the recovery ledger's task failed: {e}"))))?
            .map_err(|e| error(e.into()))
    }
}

#[async_trait]
impl RecoveryLedger for SqliteLedger {
    async fn holds(&self, delivery_id: &str) -> Result<bool, StoreError> {
        let id = delivery_id.to_owned();
        self.run(Access::Read, move |conn| {
            conn.prepare_cached("SELECT 1 FROM deliveries WHERE delivery_id = ?1")?.exists(params![id])
        })
        .await
    }

    async fn checkpoint(&self, hook: &str) -> Result<Option<i64>, StoreError> {
        let hook = hook.to_owned();
        self.run(Access::Read, move |conn| {
            conn.prepare_cached("SELECT delivered_at FROM recovery_checkpoints WHERE hook = ?1")?
                .query_row(params![hook], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn set_checkpoint(&self, hook: &str, at_ms: i64) -> Result<(), StoreError> {
        let hook = hook.to_owned();
        self.run(Access::Write, move |conn| {
            conn.prepare_cached(
                "INSERT INTO recovery_checkpoints (hook, delivered_at) VALUES (?1, ?2)
                 ON CONFLICT (hook) DO UPDATE SET delivered_at = max(delivered_at, excluded.delivered_at)",
            )?
            .execute(params![hook, at_ms])
            .map(drop)
        })
        .await
    }

    async fn requested(&self, delivery_id: &str) -> Result<Option<Requested>, StoreError> {
        let id = delivery_id.to_owned();
        self.run(Access::Read, move |conn| {
            conn.prepare_cached("SELECT times, last_at FROM recovery_requests WHERE delivery_id = ?1")?
                .query_row(params![id], |r| {
                    Ok(Requested {
                        count: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(u32::MAX),
                        last_at_ms: r.get(1)?,
                    })
                })
                .optional()
        })
        .await
    }

    async fn record_request(&self, hook: &str, delivery_id: &str, at_ms: i64) -> Result<(), StoreError> {
        let (hook, id) = (hook.to_owned(), delivery_id.to_owned());
        self.run(Access::Write, move |conn| {
            conn.prepare_cached(
                "INSERT INTO recovery_requests (delivery_id, hook, times, last_at) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT (delivery_id) DO UPDATE
                     SET hook = excluded.hook, times = times + 1, last_at = max(last_at, excluded.last_at)",
            )?
            .execute(params![id, hook, at_ms])
            .map(drop)
        })
        .await
    }

    async fn learned_hooks(&self) -> Result<Vec<String>, StoreError> {
        self.run(Access::Read, |conn| {
            conn.prepare_cached("SELECT spec FROM recovery_hooks ORDER BY seen_at DESC, spec")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await
    }

    async fn learn_hook(&self, spec: &str, at_ms: i64) -> Result<(), StoreError> {
        if self.lately.is_fresh(spec, at_ms) {
            return Ok(());
        }
        let owned = spec.to_owned();
        self.run(Access::Write, move |conn| {
            // Immediate: a deferred transaction that reads first could not
            // wait for the writer's lock when it comes to write.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.prepare_cached(
                "INSERT INTO recovery_hooks (spec, seen_at) VALUES (?1, ?2)
                 ON CONFLICT (spec) DO UPDATE SET seen_at = excluded.seen_at WHERE excluded.seen_at > seen_at",
            )?
            .execute(params![owned, at_ms])?;
            // The least recently seen beyond the bound, never the one just learned.
            tx.prepare_cached(
                "DELETE FROM recovery_hooks WHERE spec IN (
                     SELECT spec FROM recovery_hooks WHERE spec != ?1
                     ORDER BY seen_at DESC, spec LIMIT -1 OFFSET ?2)",
            )?
            .execute(params![owned, i64::try_from(MAX_LEARNED_HOOKS - 1).unwrap_or(i64::MAX)])?;
            tx.commit()
        })
        .await?;
        self.lately.written(spec, at_ms);
        Ok(())
    }

    async fn forget_requests_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        self.run(Access::Write, move |conn| {
            conn.prepare_cached("DELETE FROM recovery_requests WHERE last_at < ?1")?.execute(params![before_ms])
        })
        .await
    }

    async fn try_lead(&self) -> Result<Option<LeaderGuard>, StoreError> {
        // One daemon owns the database (its lock file).
        Ok(Some(LeaderGuard::local()))
    }
}
