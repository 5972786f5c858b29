//! `webhookd store verify`: whether a store (a backup, or a live one) would
//! serve a daemon. The database passes SQLite's integrity check and has a
//! schema this binary knows, and every row reads back as the daemon would
//! read it to process it: its body present where the row says (the segment
//! there, the range inside it) and the delivery rebuilt from row and body.
//! Bodies carry no checksum; the row's length is checked by the range.
//!
//! Read-only throughout (see `connection::open_read_only`): nothing is
//! created, migrated or changed, and a live store may be verified beside its
//! daemon.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::admin::columns;
use super::body_log::{self, BodyRef};
use super::connection::{self, SCHEMA_VERSION};
use super::describe;
use super::rows::{BODY_COLUMNS, restore, stored_body};
use super::writer::StoredRow;
use crate::queue::StateCounts;

/// One thing wrong: with the delivery it concerns, if it is one row's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub delivery_id: Option<String>,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct VerifyReport {
    pub counts: StateCounts,
    /// Bodies read back, and their bytes.
    pub bodies: u64,
    pub body_bytes: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    pub fn sound(&self) -> bool {
        self.problems.is_empty()
    }

    fn store_problem(&mut self, what: String) {
        self.problems.push(Problem { delivery_id: None, what });
    }
}

/// Verifies the store at `path`. `Err`: there is no such file (nothing to verify).
pub fn verify(path: &Path) -> Result<VerifyReport, String> {
    if !path.is_file() {
        return Err(format!("{}: no such database file", path.display()));
    }
    let mut report = VerifyReport::default();
    let conn = match connection::open_read_only(path) {
        Ok(conn) => conn,
        Err(reason) => {
            report.store_problem(format!("cannot open the database: {reason}"));
            return Ok(report);
        }
    };
    if let Err(what) = check_database(&conn) {
        report.problems.extend(what.into_iter().map(|what| Problem { delivery_id: None, what }));
        return Ok(report);
    }
    check_rows(&conn, &body_log::dir_for(path), &mut report);
    forget_pruned(&conn, &mut report);
    Ok(report)
}

/// SQLite's integrity check and the schema version; `Err`: what is wrong,
/// and the rows are not worth reading.
fn check_database(conn: &Connection) -> Result<(), Vec<String>> {
    let failed = |e: rusqlite::Error| vec![format!("the database cannot be read: {}", describe(&e))];
    let messages: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(failed)?;
    let damage: Vec<String> =
        messages.into_iter().filter(|m| m != "ok").map(|m| format!("integrity check: {m}")).collect();
    if !damage.is_empty() {
        return Err(damage);
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(failed)?;
    if !(1..=SCHEMA_VERSION).contains(&version) {
        return Err(vec![format!(
            "schema version {version}: this webhookd knows versions 1 to {SCHEMA_VERSION} (a newer webhookd's \
             store, or not a webhookd store)"
        )]);
    }
    if columns(conn).map_err(failed)?.is_empty() {
        return Err(vec!["not a webhookd database (it has no deliveries table)".into()]);
    }
    Ok(())
}

/// Reads every row back as the daemon would, with its body.
fn check_rows(conn: &Connection, bodies: &Path, report: &mut VerifyReport) {
    let failed = |e: rusqlite::Error| format!("the rows cannot be read: {}", describe(&e));
    // Version 1, not migrated (nothing is, here): every body in `bodies`.
    let body_columns = match columns(conn) {
        Ok(columns) if columns.iter().any(|c| c == "body_segment") => BODY_COLUMNS,
        Ok(_) => "(SELECT body FROM bodies WHERE bodies.seq = deliveries.seq), NULL, NULL, NULL",
        Err(e) => return report.store_problem(failed(e)),
    };
    let sql = format!(
        "SELECT delivery_id, event, hook_id, target_type, target_id, content_kind, received_at, attempts, runs,
                state, {body_columns}
         FROM deliveries ORDER BY seq"
    );
    let mut statement = match conn.prepare(&sql) {
        Ok(statement) => statement,
        Err(e) => return report.store_problem(failed(e)),
    };
    let mut rows = match statement.query([]) {
        Ok(rows) => rows,
        Err(e) => return report.store_problem(failed(e)),
    };
    let mut segments = Segments { dir: bodies.to_path_buf(), open: None };
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            // A damaged page: the rows after it cannot be reached.
            Err(e) => return report.store_problem(failed(e)),
        };
        match check_row(row, &mut segments) {
            Ok(Checked { state, body_len }) => {
                match state.as_str() {
                    "queued" => report.counts.queued += 1,
                    "running" => report.counts.running += 1,
                    "done" => report.counts.done += 1,
                    "dead" => report.counts.dead += 1,
                    other => {
                        let id = row.get::<_, String>(0).ok();
                        report.problems.push(Problem { delivery_id: id, what: format!("unknown state {other:?}") });
                    }
                }
                if let Some(len) = body_len {
                    report.bodies += 1;
                    report.body_bytes += len;
                }
            }
            Err(problem) => report.problems.push(problem),
        }
    }
}

struct Checked {
    state: String,
    /// The body's length, if it was read back.
    body_len: Option<u64>,
}

fn check_row(row: &rusqlite::Row<'_>, segments: &mut Segments) -> Result<Checked, Problem> {
    let id = row.get::<_, String>(0).ok();
    let problem = |what: String| Problem { delivery_id: id.clone(), what };
    let unreadable = |e: rusqlite::Error| problem(format!("the row cannot be read: {}", describe(&e)));
    let body = stored_body(row, 10, |at| segments.read(at)).map_err(unreadable)?;
    let body_len = body.as_ref().ok().map(|b| b.len() as u64);
    let stored = StoredRow {
        delivery_id: row.get(0).map_err(unreadable)?,
        event: row.get(1).map_err(unreadable)?,
        hook_id: row.get(2).map_err(unreadable)?,
        target_type: row.get(3).map_err(unreadable)?,
        target_id: row.get(4).map_err(unreadable)?,
        content_kind: row.get(5).map_err(unreadable)?,
        body,
        received_at: row.get(6).map_err(unreadable)?,
        attempts: row.get(7).map_err(unreadable)?,
        runs: row.get(8).map_err(unreadable)?,
    };
    let state = row.get(9).map_err(unreadable)?;
    restore(stored).map_err(|(_, why)| problem(why))?;
    Ok(Checked { state, body_len })
}

/// Reads bodies, keeping the last segment open: rows in order of arrival
/// read their segments in order, one file at a time.
struct Segments {
    dir: PathBuf,
    open: Option<(i64, File)>,
}

impl Segments {
    fn read(&mut self, at: BodyRef) -> io::Result<Vec<u8>> {
        let file = match self.open.take() {
            Some((segment, file)) if segment == at.segment => file,
            _ => File::open(body_log::segment_path(&self.dir, at.segment))?,
        };
        let body = body_log::read_at(&file, at);
        self.open = Some((at.segment, file));
        body
    }
}

/// On a live store, the daemon may prune finished rows, and delete their
/// segments, while they are read: a row found missing its body that is no
/// longer there was pruned, not damaged. (A backup never changes.)
fn forget_pruned(conn: &Connection, report: &mut VerifyReport) {
    let Ok(mut still_there) = conn.prepare("SELECT 1 FROM deliveries WHERE delivery_id = ?1") else { return };
    report.problems.retain(|p| match &p.delivery_id {
        Some(id) => !matches!(still_there.exists([id]), Ok(false)),
        None => true,
    });
}
