//! Reaching the server and bringing its schema up to date: two pools (one
//! committing synchronously for what must survive a crash, one not for
//! claims and lease renewals, which a crash only makes run again), and
//! migrations under an advisory lock so instances starting together do not
//! race.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

use super::{MIGRATION_LOCK, SCHEMA, SCHEMA_VERSION};
use crate::config::PostgresUrl;
use crate::queue::{Cause, StoreError};

/// How long a start waits for the server before giving up (exit 1).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request waits for a free connection while running: under it,
/// a lost server answers `503` well within GitHub's 10 s.
pub(super) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// Pooled connections idle this long are closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(super) struct Pools {
    /// `synchronous_commit = on`: accepted deliveries and outcomes.
    pub durable: PgPool,
    /// `synchronous_commit = off`: claims, renewals, reads.
    pub fast: PgPool,
}

/// Connects and migrates; a server that cannot be reached is
/// `Unreachable` (exit 1), a schema from a newer webhookd is `Open` (exit 2).
pub(super) async fn connect(url: &PostgresUrl, connections: u32) -> Result<Pools, StoreError> {
    let options = options(url)?;
    // Named in pg_stat_activity, unless the URL names it otherwise.
    let options =
        if url.expose().contains("application_name=") { options } else { options.application_name("webhookd") };
    // Fail fast at start: one connection, then the pools.
    let mut first = connect_one(url, &options).await?;
    migrate(&mut first, url).await?;
    first.close().await.ok();
    let pool = |commit: &'static str, size: u32| {
        PgPoolOptions::new()
            .max_connections(size.max(2))
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A broken connection fails its statement (bounded by
            // `health::within`) and is dropped; a check before each use
            // would cost a round trip per statement. Idle ones are closed
            // soon, so that few outlive a network change unnoticed.
            .test_before_acquire(false)
            .idle_timeout(IDLE_TIMEOUT)
            .connect_lazy_with(options.clone().options([("synchronous_commit", commit)]))
    };
    // One budget for the instance, split between the two pools.
    let durable = connections / 2;
    Ok(Pools { durable: pool("on", durable), fast: pool("off", connections - durable) })
}

/// The connection settings `url` holds, or why they are not usable (without
/// repeating the URL's password).
pub(super) fn options(url: &PostgresUrl) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url.expose()).map_err(|e| StoreError::Open {
        path: url.shown().into(),
        cause: Cause::from(e).context("not a usable PostgreSQL URL"),
    })
}

/// One connection, within `CONNECT_TIMEOUT`: a server that cannot be
/// reached is `Unreachable` (exit 1: it may come back); one that refuses this
/// user, password or database is `Open` (exit 2: the configuration is wrong).
pub(super) async fn connect_one(url: &PostgresUrl, options: &PgConnectOptions) -> Result<PgConnection, StoreError> {
    let unreachable = |cause: Cause| StoreError::Unreachable { host: url.host().to_owned(), cause };
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options))
        .await
        .map_err(|_| unreachable(Cause::refused(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()))))?
        .map_err(|e| {
            if is_refused_configuration(&e) {
                StoreError::Open { path: url.shown().into(), cause: e.into() }
            } else {
                unreachable(e.into())
            }
        })
}

/// A wrong password or user (28xxx), a database that does not exist (3D000).
fn is_refused_configuration(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("28") || c == "3D000"))
}

/// The schema version the database is at; `None` when webhookd never set
/// it up there.
pub(super) async fn schema_version(conn: &mut PgConnection) -> Result<Option<i32>, sqlx::Error> {
    let set_up: bool = sqlx::query(
        "SELECT to_regclass('webhookd_schema') IS NOT NULL AND to_regclass('webhookd_deliveries') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    if !set_up {
        return Ok(None);
    }
    sqlx::query("SELECT max(version) FROM webhookd_schema").fetch_one(&mut *conn).await?.try_get(0)
}

/// Applies the schema (idempotent) under the migration lock and records its
/// version; refuses a database a newer webhookd has migrated.
pub(super) async fn migrate(conn: &mut PgConnection, url: &PostgresUrl) -> Result<(), StoreError> {
    let failed = |e: sqlx::Error| StoreError::Open {
        path: url.shown().into(),
        cause: Cause::from(e).context("cannot set up the schema"),
    };
    let newer = |found: i32| StoreError::Open {
        path: url.shown().into(),
        cause: Cause::refused(format!(
            "written by a newer webhookd (schema version {found}); this one knows up to {SCHEMA_VERSION}: \
             upgrade this instance"
        )),
    };
    // Up to date: nothing to create, so a role without CREATE can start.
    match schema_version(conn).await.map_err(failed)? {
        Some(found) if found == SCHEMA_VERSION => return Ok(()),
        Some(found) if found > SCHEMA_VERSION => return Err(newer(found)),
        _ => {}
    }
    let mut tx = conn.begin().await.map_err(failed)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MIGRATION_LOCK).execute(&mut *tx).await.map_err(failed)?;
    sqlx::query("CREATE TABLE IF NOT EXISTS webhookd_schema (version integer NOT NULL)")
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    let found: Option<i32> = sqlx::query("SELECT max(version) FROM webhookd_schema")
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(failed)?;
    if let Some(found) = found.filter(|v| *v > SCHEMA_VERSION) {
        return Err(newer(found));
    }
    if found != Some(SCHEMA_VERSION) {
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("DELETE FROM webhookd_schema").execute(&mut *tx).await.map_err(failed)?;
        sqlx::query("INSERT INTO webhookd_schema (version) VALUES ($1)")
            .bind(SCHEMA_VERSION)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        tracing::info!(version = SCHEMA_VERSION, "PostgreSQL store schema set up");
    }
    tx.commit().await.map_err(failed)
}

/// An error in words, without the connection URL (sqlx never prints it,
/// but a server message could quote a parameter: kept to its first line).
pub(crate) fn describe(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => format!("{} (SQLSTATE {})", db.message(), db.code().unwrap_or_default()),
        sqlx::Error::PoolTimedOut => {
            "no connection to PostgreSQL became free in time (is the server reachable?)".into()
        }
        other => other.to_string(),
    };
    text.lines().next().unwrap_or_default().to_owned()
}

/// Whether `e` means the server could not be reached (as opposed to a
/// statement it refused).
pub(super) fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_)
    ) || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| c.starts_with("08") || c.starts_with("57P")))
}
