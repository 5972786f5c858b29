//! Opening the database: the connection settings every connection needs,
//! the ownership lock's path, and readable reasons for SQLite's errors.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::BUSY_TIMEOUT;
use crate::queue::Cause;

/// `PATH.lock` beside the database.
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

/// Opens the database for reading only, creating and changing no file, for
/// the operator's read commands (which may run as a user who cannot write
/// the store). With a `-wal` beside it (a daemon has it open, or one died),
/// it reads as any WAL reader does, through the `-wal` and `-shm`. With no
/// `-wal`, no one has it open, and it is opened `immutable`: SQLite would
/// otherwise create a `-wal` and `-shm` to read a WAL database, and leave
/// them behind.
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, Cause> {
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    let idle = !Path::new(&wal).exists();
    let uri = format!("file:{}?mode=ro{}", uri_path(path), if idle { "&immutable=1" } else { "" });
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// A path as the path of a `file:` URI: every byte but the unreserved ones
/// and `/` percent-encoded (SQLite decodes them).
fn uri_path(path: &Path) -> String {
    use std::fmt::Write;
    use std::os::unix::ffi::OsStrExt;
    let mut encoded = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

/// Opens a connection with the pragmas every connection needs.
pub(crate) fn open_connection(path: &Path, create: bool) -> Result<Connection, Cause> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Cause::refused(format!("cannot switch the database to WAL mode (got {mode})")));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// WAL pages the writer lets gather before it copies them into the
/// database (SQLite's default is 1,000, 4 MB). Consecutive batches rewrite
/// many of the same pages (the table's last leaf, the indexes' upper
/// levels), and a checkpoint copies each page once however often the WAL
/// holds it: checkpointing ten times less often halved the p99 of accepted
/// deliveries under sustained load, at the same throughput, for rarer but
/// longer pauses (docs/performance.md). The `-wal` file grows to about
/// 40 MB and stays that size: SQLite reuses it from the start after each
/// checkpoint.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 10_000;

/// Opens (creating) the one connection that writes deliveries: the
/// settings every connection needs, and its checkpoint interval.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, Cause> {
    let conn = open_connection(path, true)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    Ok(conn)
}

/// Brings the database to the current schema in one transaction (the
/// daemon and an operator's command may open it at once): adds the body log
/// columns to a database from before them (schema version 1, bodies inside),
/// judged by the columns themselves, and the installation column of version
/// 3 likewise, then applies `schema` (which creates the tables new in
/// version 4, the recovery ledger's, where they are missing).
pub(crate) fn apply_schema(conn: &Connection, schema: &str) -> Result<(), Cause> {
    let sql = Cause::from;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
    let applied = (|| {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(Cause::refused(format!(
                "written by a newer webhookd (schema version {version}); this one reads up to {SCHEMA_VERSION}"
            )));
        }
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('deliveries')")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(sql)?;
        if !columns.is_empty() && !columns.iter().any(|c| c == "body_segment") {
            conn.execute_batch(
                "ALTER TABLE deliveries ADD COLUMN body_segment INTEGER;
                 ALTER TABLE deliveries ADD COLUMN body_offset INTEGER;
                 ALTER TABLE deliveries ADD COLUMN body_len INTEGER;",
            )
            .map_err(|e| sql(e).context(format!("migrating the database to schema version {SCHEMA_VERSION} failed")))?;
        }
        // Version 3: each row's installation, for turns between credentials.
        // Older rows keep NULL (unknown): they share one turn.
        if !columns.is_empty() && !columns.iter().any(|c| c == "installation_id") {
            conn.execute_batch("ALTER TABLE deliveries ADD COLUMN installation_id INTEGER;").map_err(|e| {
                sql(e).context(format!("migrating the database to schema version {SCHEMA_VERSION} failed"))
            })?;
        }
        conn.execute_batch(schema).map_err(sql)
    })();
    match applied {
        Ok(()) => conn.execute_batch("COMMIT").map_err(sql),
        Err(e) => {
            // SQLite may have rolled back by itself (a full disk, say).
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            Err(e)
        }
    }
}

/// The schema version `schema.sql` sets.
pub(super) const SCHEMA_VERSION: i64 = 4;

/// A readable reason for an SQLite error.
pub(crate) fn describe(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase) => {
            "not a webhookd database (the file is corrupt or of another kind)".into()
        }
        Some(rusqlite::ErrorCode::DatabaseCorrupt) => "the database file is corrupt".into(),
        Some(rusqlite::ErrorCode::CannotOpen) => {
            "cannot open or create the database file (check the folder exists and is writable)".into()
        }
        Some(rusqlite::ErrorCode::ReadOnly) => {
            "the database is read-only (check the file's and folder's permissions)".into()
        }
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            "the database is locked by another process".into()
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_paths_escape_what_a_uri_would_read_as_syntax() {
        assert_eq!(uri_path(Path::new("/var/lib/webhookd/web-hook_d.db")), "/var/lib/webhookd/web-hook_d.db");
        assert_eq!(uri_path(Path::new("data/a b?c#d%e&f.db")), "data/a%20b%3Fc%23d%25e%26f.db");
    }

    #[test]
    fn the_writer_checkpoints_less_often_than_sqlite_by_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let pages = |conn: &Connection| conn.query_row("PRAGMA wal_autocheckpoint", [], |r| r.get::<_, i64>(0));
        let writer = open_writer(&path).expect("open the writer");
        assert_eq!(pages(&writer).expect("read"), WAL_AUTOCHECKPOINT_PAGES);
        let reader = open_connection(&path, false).expect("open a reader");
        assert_eq!(pages(&reader).expect("read"), 1000, "SQLite's default, which other connections keep");
    }
}
