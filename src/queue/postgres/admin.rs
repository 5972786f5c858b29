//! `webhookd deliveries` on the shared queue, beside running instances: one
//! plain connection, no claim, no lease. A replayed delivery is announced
//! on `webhookd_queued`, so idle workers of every instance look at once.
//!
//! `list` and `show` create, migrate and change nothing (their session is
//! read-only); `replay` and `prune` bring the schema up to date first, as
//! an instance starting would. A delivery some instance is processing
//! (`running`) is never touched: its outcome is that instance's to write.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Connection, Row};
use tokio::sync::Mutex;

use super::{SCHEMA_VERSION, connect};
use crate::config::PostgresUrl;
use crate::queue::admin::{Access, Detail, ListFilter, Replayed, StoreAdmin, Summary};
use crate::queue::{Cause, StoreError};

/// What a replay resets: due now, attempts and outcome cleared, no owner.
const REQUEUE: &str = "state = 'queued', attempts = 0, next_attempt_at = webhookd_now_ms(), last_error = NULL,
     finished_at = NULL, owner = NULL, lease_until = NULL, lease_token = NULL";
const SUMMARY_COLUMNS: &str = "delivery_id, event, action, state, attempts, received_at, next_attempt_at, last_error";

pub struct PostgresAdmin {
    /// `host:port`, for errors (never the URL: it may hold a password).
    host: String,
    conn: Mutex<PgConnection>,
}

impl PostgresAdmin {
    /// Connects; refuses a database webhookd never set up, or one a newer
    /// webhookd migrated.
    pub async fn connect(url: &PostgresUrl, access: Access) -> Result<Self, StoreError> {
        let mut options = connect::options(url)?.application_name("webhookd deliveries");
        if access == Access::ReadOnly {
            options = options.options([("default_transaction_read_only", "on")]);
        }
        let mut conn = connect::connect_one(url, &options).await?;
        let open_error = |cause: Cause| StoreError::Open { path: url.shown().into(), cause };
        let version = connect::schema_version(&mut conn)
            .await
            .map_err(|e| open_error(Cause::from(e).context("cannot read the schema version")))?;
        match version {
            None => {
                return Err(open_error(Cause::refused(
                    "not a webhookd database (it has no webhookd_deliveries table): is WEBHOOKD_STORE the \
                     database the daemons use?",
                )));
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(open_error(Cause::refused(format!(
                    "written by a newer webhookd (schema version {found}); this one knows up to {SCHEMA_VERSION}"
                ))));
            }
            Some(found) if found < SCHEMA_VERSION && access == Access::ReadWrite => {
                connect::migrate(&mut conn, url).await?;
            }
            Some(_) => {}
        }
        Ok(Self { host: url.host().to_owned(), conn: Mutex::new(conn) })
    }

    /// A failed statement: the server lost, or `kind` with the reason.
    fn failed(&self, kind: fn(Cause) -> StoreError) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| {
            if connect::is_connection_error(&e) {
                StoreError::Unreachable { host: self.host.clone(), cause: e.into() }
            } else {
                kind(e.into())
            }
        }
    }
}

fn summary(r: &PgRow) -> Result<Summary, sqlx::Error> {
    Ok(Summary {
        delivery_id: r.try_get("delivery_id")?,
        event: r.try_get("event")?,
        action: r.try_get("action")?,
        state: r.try_get("state")?,
        attempts: u32::try_from(r.try_get::<i32, _>("attempts")?).unwrap_or(0),
        received_at: r.try_get("received_at")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
    })
}

#[async_trait]
impl StoreAdmin for PostgresAdmin {
    async fn list(&self, filter: ListFilter<'_>) -> Result<Vec<Summary>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM webhookd_deliveries
             WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR event = $2)
             ORDER BY seq DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.state)
            .bind(filter.event)
            .bind(i64::try_from(filter.limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *self.conn.lock().await)
            .await
            .map_err(self.failed(StoreError::Read))?;
        rows.iter().map(summary).collect::<Result<_, _>>().map_err(self.failed(StoreError::Read))
    }

    async fn show(&self, delivery_id: &str) -> Result<Option<Detail>, StoreError> {
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS}, hook_id, target_type, target_id, content_kind, finished_at, owner, body
             FROM webhookd_deliveries WHERE delivery_id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(delivery_id)
            .fetch_optional(&mut *self.conn.lock().await)
            .await
            .map_err(self.failed(StoreError::Read))?;
        let Some(row) = row else { return Ok(None) };
        let detail = || -> Result<Detail, sqlx::Error> {
            Ok(Detail {
                summary: summary(&row)?,
                hook_id: row.try_get("hook_id")?,
                target_type: row.try_get("target_type")?,
                target_id: row.try_get("target_id")?,
                content_kind: row.try_get("content_kind")?,
                finished_at: row.try_get("finished_at")?,
                owner: row.try_get("owner")?,
                body: Ok(row.try_get("body")?),
            })
        };
        detail().map(Some).map_err(self.failed(StoreError::Read))
    }

    async fn replay(&self, delivery_ids: &[String]) -> Result<Replayed, StoreError> {
        let write = self.failed(StoreError::Write);
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.map_err(&write)?;
        let queued: Vec<String> = sqlx::query_scalar(&format!(
            "UPDATE webhookd_deliveries SET {REQUEUE}
             WHERE delivery_id = ANY($1) AND state <> 'running'
             RETURNING delivery_id"
        ))
        .bind(delivery_ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(&write)?;
        let missed: Vec<&str> = delivery_ids.iter().filter(|id| !queued.contains(id)).map(String::as_str).collect();
        let running: Vec<String> = sqlx::query_scalar(
            "SELECT delivery_id FROM webhookd_deliveries WHERE delivery_id = ANY($1) AND state = 'running'",
        )
        .bind(&missed)
        .fetch_all(&mut *tx)
        .await
        .map_err(&write)?;
        if !queued.is_empty() {
            // Delivered at commit.
            sqlx::query("SELECT pg_notify('webhookd_queued', '')").execute(&mut *tx).await.map_err(&write)?;
        }
        tx.commit().await.map_err(&write)?;
        let (running, not_found) = missed.into_iter().map(str::to_owned).partition(|id| running.contains(id));
        Ok(Replayed { queued: queued.len(), not_found, running })
    }

    async fn replay_state(&self, state: &str) -> Result<usize, StoreError> {
        let write = self.failed(StoreError::Write);
        let mut conn = self.conn.lock().await;
        let mut tx = conn.begin().await.map_err(&write)?;
        // `running` is not accepted by the command; the condition keeps it so.
        let done =
            sqlx::query(&format!("UPDATE webhookd_deliveries SET {REQUEUE} WHERE state = $1 AND state <> 'running'"))
                .bind(state)
                .execute(&mut *tx)
                .await
                .map_err(&write)?;
        if done.rows_affected() > 0 {
            sqlx::query("SELECT pg_notify('webhookd_queued', '')").execute(&mut *tx).await.map_err(&write)?;
        }
        tx.commit().await.map_err(&write)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }

    async fn prune(&self, retention: Duration) -> Result<usize, StoreError> {
        let done = sqlx::query(
            "DELETE FROM webhookd_deliveries
             WHERE state IN ('done', 'dead') AND finished_at < webhookd_now_ms() - $1",
        )
        .bind(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX))
        .execute(&mut *self.conn.lock().await)
        .await
        .map_err(self.failed(StoreError::Write))?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
    }
}
