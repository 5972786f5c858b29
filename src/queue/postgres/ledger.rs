//! The recovery ledger in the shared database (tables
//! `webhookd_recovery_*`, schema version 2), shared by every instance. One
//! instance at a time leads recovery: it holds a session advisory lock on a
//! connection of its own for the whole pass, so the lock lasts exactly as
//! long as that connection (a dead instance's session ends, and with it
//! the lock).

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Connection, Row};

use super::{RECOVERY_LOCK, connect, describe};
use crate::config::PostgresUrl;
use crate::queue::ledger::{Lead, LeaderGuard, LearnedLately, MAX_LEARNED_HOOKS, RecoveryLedger, Requested};
use crate::queue::{Cause, StoreError};

pub(crate) struct PgLedger {
    /// Synchronous commits: what is written here must survive a crash.
    pool: PgPool,
    url: PostgresUrl,
    lately: LearnedLately,
}

impl PgLedger {
    /// The ledger of a running instance, on its pool.
    pub(super) fn new(pool: PgPool, url: &PostgresUrl) -> Self {
        Self { pool, url: url.clone(), lately: LearnedLately::default() }
    }

    /// Connects and migrates, for `webhookd recover`: a small pool of its own.
    pub(crate) async fn connect(url: &PostgresUrl) -> Result<Self, StoreError> {
        let pools = connect::connect(url, 2).await?;
        Ok(Self::new(pools.durable, url))
    }

    /// A failed statement: the server lost, or `kind` with the reason.
    fn failed(&self, kind: fn(Cause) -> StoreError) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| {
            if connect::is_connection_error(&e) {
                StoreError::Unreachable { host: self.url.host().to_owned(), cause: e.into() }
            } else {
                kind(e.into())
            }
        }
    }
}

#[async_trait]
impl RecoveryLedger for PgLedger {
    async fn holds(&self, delivery_id: &str) -> Result<bool, StoreError> {
        sqlx::query("SELECT 1 FROM webhookd_deliveries WHERE delivery_id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await
            .map(|row| row.is_some())
            .map_err(self.failed(StoreError::Read))
    }

    async fn checkpoint(&self, hook: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT delivered_at FROM webhookd_recovery_checkpoints WHERE hook = $1")
            .bind(hook)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed(StoreError::Read))?;
        row.map(|r| r.try_get(0)).transpose().map_err(self.failed(StoreError::Read))
    }

    async fn set_checkpoint(&self, hook: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhookd_recovery_checkpoints AS c (hook, delivered_at) VALUES ($1, $2)
             ON CONFLICT (hook) DO UPDATE SET delivered_at = greatest(c.delivered_at, excluded.delivered_at)",
        )
        .bind(hook)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(self.failed(StoreError::Write))
    }

    async fn requested(&self, delivery_id: &str) -> Result<Option<Requested>, StoreError> {
        let row = sqlx::query("SELECT times, last_at FROM webhookd_recovery_requests WHERE delivery_id = $1")
            .bind(delivery_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(self.failed(StoreError::Read))?;
        let Some(row) = row else { return Ok(None) };
        let read = |e| self.failed(StoreError::Read)(e);
        let times: i32 = row.try_get(0).map_err(read)?;
        let last_at_ms: i64 = row.try_get(1).map_err(read)?;
        Ok(Some(Requested { count: u32::try_from(times).unwrap_or(0), last_at_ms }))
    }

    async fn record_request(&self, hook: &str, delivery_id: &str, at_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhookd_recovery_requests AS r (delivery_id, hook, times, last_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (delivery_id) DO UPDATE
                 SET hook = excluded.hook, times = r.times + 1, last_at = greatest(r.last_at, excluded.last_at)",
        )
        .bind(delivery_id)
        .bind(hook)
        .bind(at_ms)
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(self.failed(StoreError::Write))
    }

    async fn learned_hooks(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT spec FROM webhookd_recovery_hooks ORDER BY seen_at DESC, spec")
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed(StoreError::Read))?;
        rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>().map_err(self.failed(StoreError::Read))
    }

    async fn learn_hook(&self, spec: &str, at_ms: i64) -> Result<(), StoreError> {
        if self.lately.is_fresh(spec, at_ms) {
            return Ok(());
        }
        // One statement: the bound applies with the insert, and instances
        // learning at once at worst trim one hook too many.
        sqlx::query(
            "WITH learned AS (
                 INSERT INTO webhookd_recovery_hooks AS h (spec, seen_at) VALUES ($1, $2)
                 ON CONFLICT (spec) DO UPDATE SET seen_at = excluded.seen_at WHERE excluded.seen_at > h.seen_at
             )
             DELETE FROM webhookd_recovery_hooks WHERE spec IN (
                 SELECT spec FROM webhookd_recovery_hooks WHERE spec <> $1
                 ORDER BY seen_at DESC, spec OFFSET $3)",
        )
        .bind(spec)
        .bind(at_ms)
        .bind(i64::try_from(MAX_LEARNED_HOOKS - 1).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(self.failed(StoreError::Write))?;
        self.lately.written(spec, at_ms);
        Ok(())
    }

    async fn forget_requests_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        let done = sqlx::query("DELETE FROM webhookd_recovery_requests WHERE last_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(self.failed(StoreError::Write))?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn try_lead(&self) -> Result<Option<LeaderGuard>, StoreError> {
        let options = connect::options(&self.url)?.application_name("webhookd recovery");
        let mut conn = connect::connect_one(&self.url, &options).await?;
        let leads: bool = sqlx::query("SELECT pg_try_advisory_lock($1)")
            .bind(RECOVERY_LOCK)
            .fetch_one(&mut conn)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(self.failed(StoreError::Read))?;
        if !leads {
            conn.close().await.ok();
            return Ok(None);
        }
        Ok(Some(LeaderGuard::held(Box::new(PgLead { conn: Some(conn) }))))
    }
}

/// The connection holding the recovery lock.
struct PgLead {
    /// `None` once released.
    conn: Option<PgConnection>,
}

#[async_trait]
impl Lead for PgLead {
    async fn still_held(&mut self) -> bool {
        // A session that answers still holds its session locks.
        match &mut self.conn {
            Some(conn) => conn.ping().await.is_ok(),
            None => false,
        }
    }

    async fn release(mut self: Box<Self>) {
        let Some(mut conn) = self.conn.take() else { return };
        if let Err(e) = sqlx::query("SELECT pg_advisory_unlock($1)").bind(RECOVERY_LOCK).execute(&mut conn).await {
            tracing::warn!(error = %describe(&e), "releasing the recovery lock failed; closing its connection frees it");
        }
        conn.close().await.ok();
    }
}

impl Drop for PgLead {
    fn drop(&mut self) {
        // Not released: closing the session frees its locks. Gracefully
        // where a runtime runs; otherwise dropping the socket ends it too.
        if let (Some(conn), Ok(runtime)) = (self.conn.take(), tokio::runtime::Handle::try_current()) {
            runtime.spawn(async move {
                conn.close().await.ok();
            });
        }
    }
}
