//! Operator access to a delivery database, for `webhookd deliveries`. Works
//! beside a running daemon: plain connections, no ownership lock; rows
//! requeued here are picked up by the daemon's poll within a second.
//!
//! `list` and `show` open the database read-only ([`open_read_only`]): they
//! work on a store this user cannot write, and create, migrate or change
//! nothing. `replay` and `prune` open it for writing ([`open`]) and say so
//! plainly when this user cannot write it.

use std::path::Path;
use std::time::Duration;

use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::connection::{self, SCHEMA_VERSION};
use super::rows::{BODY_COLUMNS, stored_body};
use super::{body_log, now_ms, open_connection};
use crate::queue::StateCounts;
use crate::queue::admin::{Access, Detail, ListFilter, Replayed, StoreAdmin, Summary};
use crate::queue::{Cause, StoreError};

/// Opens an existing database for the operator's write commands, bringing
/// it to the current schema.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |cause: Cause| StoreError::Open { path: path.to_path_buf(), cause };
    if !path.exists() {
        return Err(open_error(Cause::refused("no such database file")));
    }
    check_writable(path).map_err(|reason| open_error(Cause::refused(reason)))?;
    let conn = open_connection(path, false).map_err(open_error)?;
    super::apply_schema(&conn, super::SCHEMA).map_err(open_error)?;
    Ok(conn)
}

/// Opens an existing database for the operator's read commands: read-only,
/// no migration, no file created or changed (see `open_read_only`).
pub fn open_read_only(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |cause: Cause| StoreError::Open { path: path.to_path_buf(), cause };
    if !path.exists() {
        return Err(open_error(Cause::refused("no such database file")));
    }
    let conn = connection::open_read_only(path).map_err(open_error)?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| open_error(e.into()))?;
    if version > SCHEMA_VERSION {
        return Err(open_error(Cause::refused(format!(
            "written by a newer webhookd (schema version {version}); this one reads up to {SCHEMA_VERSION}"
        ))));
    }
    if columns(&conn).map_err(|e| open_error(e.into()))?.is_empty() {
        return Err(open_error(Cause::refused("not a webhookd database (it has no deliveries table)")));
    }
    Ok(conn)
}

/// Whether this user may write the database and create files beside it (its
/// -wal and -shm), checked up front so that a read-only store gets a clear
/// message rather than SQLite's.
fn check_writable(path: &Path) -> Result<(), String> {
    use nix::unistd::{AccessFlags, access};
    const WHAT_TO_DO: &str = "replay, prune and recover change the store: run them as the user webhookd runs as, \
                              or fix the owner and mode";
    if let Err(e) = access(path, AccessFlags::W_OK) {
        return Err(format!("read-only for this user ({}); {WHAT_TO_DO}", e.desc()));
    }
    let folder = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if let Err(e) = access(folder, AccessFlags::W_OK) {
        return Err(format!(
            "its folder {} is read-only for this user ({}), and SQLite creates files there; {WHAT_TO_DO}",
            folder.display(),
            e.desc()
        ));
    }
    Ok(())
}

/// The columns of the deliveries table (none: there is no such table).
pub(super) fn columns(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    conn.prepare("SELECT name FROM pragma_table_info('deliveries')")?.query_map([], |r| r.get(0))?.collect()
}

const SUMMARY_COLUMNS: &str = "delivery_id, event, action, state, attempts, received_at, next_attempt_at, last_error";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        delivery_id: r.get(0)?,
        event: r.get(1)?,
        action: r.get(2)?,
        state: r.get(3)?,
        attempts: r.get(4)?,
        received_at: r.get(5)?,
        next_attempt_at: r.get(6)?,
        last_error: r.get(7)?,
    })
}

/// The newest deliveries first, filtered by state and event.
pub fn list(
    conn: &Connection,
    state: Option<&str>,
    event: Option<&str>,
    limit: usize,
) -> Result<Vec<Summary>, StoreError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM deliveries WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR event = ?2)
         ORDER BY seq DESC LIMIT ?3"
    );
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut statement = conn.prepare(&sql).map_err(read)?;
    let rows = statement.query_map(params![state, event, limit], summary).map_err(read)?;
    rows.collect::<Result<_, _>>().map_err(read)
}

pub fn show(conn: &Connection, delivery_id: &str) -> Result<Option<Detail>, StoreError> {
    let bodies = body_dir(conn);
    // A database of schema version 1, not migrated yet (read-only commands
    // do not migrate), keeps every body in `bodies`.
    let body_columns = if columns(conn).map_err(read)?.iter().any(|c| c == "body_segment") {
        BODY_COLUMNS
    } else {
        "(SELECT body FROM bodies WHERE bodies.seq = deliveries.seq), NULL, NULL, NULL"
    };
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS}, hook_id, target_type, target_id, content_kind, finished_at, {body_columns}
         FROM deliveries WHERE delivery_id = ?1"
    );
    conn.query_row(&sql, params![delivery_id], |r| {
        Ok(Detail {
            summary: summary(r)?,
            hook_id: r.get(8)?,
            target_type: r.get(9)?,
            target_id: r.get(10)?,
            content_kind: r.get(11)?,
            finished_at: r.get(12)?,
            owner: None,
            body: stored_body(r, 13, |at| body_log::read(&bodies, at))?,
        })
    })
    .optional()
    .map_err(read)
}

/// Queues these deliveries again with their attempts reset (not those running now).
/// Returns the ids that were not found or are running.
pub fn replay(conn: &Connection, delivery_ids: &[String]) -> Result<Vec<String>, StoreError> {
    let mut missed = Vec::new();
    let mut statement = conn
        .prepare(
            "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = ?2, last_error = NULL,
                 finished_at = NULL, lease_until = NULL
             WHERE delivery_id = ?1 AND state != 'running'",
        )
        .map_err(write)?;
    let now = now_ms();
    for id in delivery_ids {
        if statement.execute(params![id, now]).map_err(write)? == 0 {
            missed.push(id.clone());
        }
    }
    Ok(missed)
}

/// Queues again every delivery in `state` (`dead`, `done`); returns how many.
pub fn replay_state(conn: &Connection, state: &str) -> Result<usize, StoreError> {
    conn.execute(
        "UPDATE deliveries SET state = 'queued', attempts = 0, next_attempt_at = ?2, last_error = NULL,
             finished_at = NULL, lease_until = NULL
         WHERE state = ?1",
        params![state, now_ms()],
    )
    .map_err(write)
}

/// Deletes finished (done or dead) deliveries older than `retention`.
pub fn prune(conn: &Connection, retention: Duration) -> Result<usize, StoreError> {
    let before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction().map_err(write)?;
    let pruned = super::prune_finished(&tx, before).map_err(write)?;
    tx.commit().map_err(write)?;
    super::remove_unreferenced_bodies(conn, &body_dir(conn)).map_err(StoreError::Write)?;
    Ok(pruned)
}

/// How many deliveries are in each state.
pub fn count_states(conn: &Connection) -> rusqlite::Result<StateCounts> {
    let mut counts = StateCounts::default();
    let mut statement = conn.prepare_cached("SELECT state, count(*) FROM deliveries GROUP BY state")?;
    let rows = statement.query_map(params_from_iter(std::iter::empty::<i64>()), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    for row in rows {
        let (state, n) = row?;
        let n = u64::try_from(n).unwrap_or(0);
        match state.as_str() {
            "queued" => counts.queued = n,
            "running" => counts.running = n,
            "done" => counts.done = n,
            "dead" => counts.dead = n,
            _ => {}
        }
    }
    Ok(counts)
}

/// [`StoreAdmin`] over one connection, opened as the command needs.
pub struct SqliteAdmin {
    // A connection is not `Sync`; the commands use it from one task.
    conn: Mutex<Connection>,
}

impl SqliteAdmin {
    pub fn open(path: &Path, access: Access) -> Result<Self, StoreError> {
        let conn = match access {
            Access::ReadOnly => open_read_only(path)?,
            Access::ReadWrite => open(path)?,
        };
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl StoreAdmin for SqliteAdmin {
    async fn list(&self, filter: ListFilter<'_>) -> Result<Vec<Summary>, StoreError> {
        list(&self.conn(), filter.state, filter.event, filter.limit)
    }

    async fn show(&self, delivery_id: &str) -> Result<Option<Detail>, StoreError> {
        show(&self.conn(), delivery_id)
    }

    async fn replay(&self, delivery_ids: &[String]) -> Result<Replayed, StoreError> {
        let conn = self.conn();
        let missed = replay(&conn, delivery_ids)?;
        let mut replayed = Replayed { queued: delivery_ids.len() - missed.len(), ..Replayed::default() };
        let mut state = conn.prepare("SELECT state FROM deliveries WHERE delivery_id = ?1").map_err(read)?;
        for id in missed {
            match state.query_row(params![id], |r| r.get::<_, String>(0)).optional().map_err(read)? {
                Some(_) => replayed.running.push(id),
                None => replayed.not_found.push(id),
            }
        }
        Ok(replayed)
    }

    async fn replay_state(&self, state: &str) -> Result<usize, StoreError> {
        replay_state(&self.conn(), state)
    }

    async fn prune(&self, retention: Duration) -> Result<usize, StoreError> {
        prune(&self.conn(), retention)
    }
}

/// The body log beside the database `conn` is open on.
fn body_dir(conn: &Connection) -> std::path::PathBuf {
    body_log::dir_for(Path::new(conn.path().unwrap_or_default()))
}

fn read(e: rusqlite::Error) -> StoreError {
    StoreError::Read(e.into())
}

fn write(e: rusqlite::Error) -> StoreError {
    StoreError::Write(e.into())
}
