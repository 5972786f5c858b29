//! `webhookd store backup`: a consistent copy of a store while its daemon
//! runs. The database is copied first, with SQLite's online backup API in
//! one step (one read transaction: in WAL mode the daemon keeps writing
//! meanwhile), then the body log segments the copy's rows point into, each
//! only up to the last byte a row of the copy uses. A body is synced before
//! its row commits and segments only grow, so every row of the copy finds
//! its body in what is copied after it.
//!
//! One race is left: the daemon (or `deliveries prune`) deletes a segment
//! once no row points into it, so a segment can vanish between the copy of
//! the database and the copy of the bodies. Only pruning deletes rows, and it
//! deletes finished ones, so the copy's rows pointing into a vanished segment
//! are deliveries the live store no longer has: they are left out of the
//! backup, and the report says how many. A row whose segment is gone while
//! the live store still holds it means a damaged store: the backup fails.
//!
//! A stopped store (no `-wal` beside it) is read without locks; should a
//! daemon start and write to it during the copy, the copy is thrown away and
//! taken again, as of a live store.
//!
//! Nothing looks complete until it is: the copy is written in a private
//! (0700) folder made for it in DEST's folder, synced, and renamed to DEST
//! last (its body folder just before it). A failed backup removes what it
//! wrote.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::admin::{self, count_states};
use super::modes::{DIR_MODE, FILE_MODE, make_private};
use super::{BUSY_TIMEOUT, body_log, describe};
use crate::queue::StateCounts;

/// Why a backup was not made: a wrong argument or store (the operator's to
/// fix, exit 2) or a failure on the way (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// What a backup holds.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub counts: StateCounts,
    pub database_bytes: u64,
    pub body_bytes: u64,
    pub segments: usize,
    /// Finished deliveries left out: pruned while the backup ran.
    pub left_out: usize,
}

/// Backs the store at `source` up into `dest` and `dest.bodies/`.
pub fn backup(source: &Path, dest: &Path) -> Result<BackupReport, BackupError> {
    backup_with(source, dest, || {})
}

/// As [`backup`], running `after_snapshot` between the database's copy and
/// the bodies' (tests play the daemon's pruning there).
pub(super) fn backup_with(
    source: &Path,
    dest: &Path,
    after_snapshot: impl FnOnce(),
) -> Result<BackupReport, BackupError> {
    let dest_bodies = body_log::dir_for(dest);
    for taken in [dest, dest_bodies.as_path()] {
        if fs::symlink_metadata(taken).is_ok() {
            return Err(BackupError::Usage(format!(
                "{} exists: a backup never overwrites anything; name a new file",
                taken.display()
            )));
        }
    }
    let folder = dest.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !folder.is_dir() {
        return Err(BackupError::Usage(format!("{}: no such folder for the backup", folder.display())));
    }
    let Some(name) = dest.file_name().and_then(|n| n.to_str()) else {
        return Err(BackupError::Usage(format!("{}: not a file name", dest.display())));
    };
    let scratch = folder.join(format!(".{name}.partial-{}-{:08x}", std::process::id(), fastrand::u32(..)));
    // Made here, private and new: no one else can have put files where
    // SQLite will open the copy's journal and WAL.
    DirBuilder::new()
        .mode(DIR_MODE)
        .create(&scratch)
        .and_then(|()| fs::set_permissions(&scratch, Permissions::from_mode(DIR_MODE)))
        .map_err(|e| BackupError::Failed(format!("{}: {e}", scratch.display())))?;
    let mut partial = Partial {
        db: scratch.join(name),
        bodies: body_log::dir_for(&scratch.join(name)),
        scratch,
        renamed_bodies: None,
        complete: false,
    };
    let made = (|| {
        let report = write(source, &partial, after_snapshot)?;
        let failed = |what: &str, e: io::Error| BackupError::Failed(format!("{what}: {e}"));
        fs::rename(&partial.bodies, &dest_bodies)
            .map_err(|e| failed(&format!("cannot rename to {}", dest_bodies.display()), e))?;
        partial.renamed_bodies = Some(dest_bodies.clone());
        fs::rename(&partial.db, dest).map_err(|e| failed(&format!("cannot rename to {}", dest.display()), e))?;
        // Complete from here: a failed sync below must not take the bodies from it.
        partial.complete = true;
        File::open(folder).and_then(|f| f.sync_all()).map_err(|e| {
            failed(&format!("{} is written, but its folder cannot be synced to disk", dest.display()), e)
        })?;
        Ok(report)
    })();
    if made.is_err() && !partial.complete {
        partial.remove();
    } else {
        let _ = fs::remove_dir_all(&partial.scratch);
    }
    made
}

/// What an unfinished backup wrote, removed if it fails.
struct Partial {
    /// The private folder the copy is written in.
    scratch: PathBuf,
    db: PathBuf,
    bodies: PathBuf,
    /// The body folder once renamed to its final name (the database not yet).
    renamed_bodies: Option<PathBuf>,
    /// Both renamed: nothing to remove.
    complete: bool,
}

impl Partial {
    fn remove(&self) {
        for side in ["", "-journal", "-wal", "-shm"] {
            let mut path = self.db.as_os_str().to_os_string();
            path.push(side);
            let _ = fs::remove_file(PathBuf::from(path));
        }
        let _ = fs::remove_dir_all(&self.scratch);
        if let Some(bodies) = &self.renamed_bodies {
            let _ = fs::remove_dir_all(bodies);
        }
    }
}

/// The source file as it was when a stopped store was opened without locks.
fn stopped_state(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut wal = path.as_os_str().to_os_string();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        return None;
    }
    let meta = fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}

/// Writes the database and its bodies under their partial names, synced.
fn write(source_path: &Path, partial: &Partial, after_snapshot: impl FnOnce()) -> Result<BackupReport, BackupError> {
    let source_bodies = &body_log::dir_for(source_path);
    let db_failed = |e: rusqlite::Error| BackupError::Failed(format!("{}: {}", partial.db.display(), describe(&e)));
    let io_failed = |path: &Path, e: io::Error| BackupError::Failed(format!("{}: {e}", path.display()));

    // Created here so that it is 0600 from the start (SQLite would follow the umask).
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&partial.db)
        .and_then(|f| make_private(&f, FILE_MODE))
        .map_err(|e| io_failed(&partial.db, e))?;
    let mut copy = Connection::open(&partial.db).map_err(db_failed)?;
    // A few tries: only a daemon starting on a stopped store mid-copy needs another.
    let mut tries = 0;
    let source = loop {
        tries += 1;
        let before = stopped_state(source_path);
        let source = admin::open_read_only(source_path).map_err(|e| BackupError::Usage(e.to_string()))?;
        snapshot(&source, &mut copy).map_err(|e| BackupError::Failed(format!("copying the database failed: {e}")))?;
        if before.is_none() || before == stopped_state(source_path) {
            break source;
        }
        if tries == 3 {
            return Err(BackupError::Failed(format!(
                "{} kept changing while it was read without locks; try again",
                source_path.display()
            )));
        }
    };
    after_snapshot();

    DirBuilder::new()
        .mode(DIR_MODE)
        .create(&partial.bodies)
        .and_then(|()| fs::set_permissions(&partial.bodies, Permissions::from_mode(DIR_MODE)))
        .map_err(|e| io_failed(&partial.bodies, e))?;
    let mut report = BackupReport::default();
    let mut vanished = Vec::new();
    for (segment, end) in referenced_segments(&copy).map_err(db_failed)? {
        match copy_segment(source_bodies, &partial.bodies, segment, end) {
            Ok(()) => {
                report.segments += 1;
                report.body_bytes += end;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => vanished.push(segment),
            Err(e) => {
                return Err(BackupError::Failed(format!(
                    "segment {segment} of the body log {}: {e}",
                    source_bodies.display()
                )));
            }
        }
    }
    report.left_out = leave_out_pruned(&copy, &source, &vanished)?;
    report.counts = count_states(&copy).map_err(db_failed)?;
    copy.close().map_err(|(_, e)| db_failed(e))?;

    File::open(&partial.db).and_then(|f| f.sync_all()).map_err(|e| io_failed(&partial.db, e))?;
    report.database_bytes = fs::metadata(&partial.db).map_err(|e| io_failed(&partial.db, e))?.len();
    File::open(&partial.bodies).and_then(|f| f.sync_all()).map_err(|e| io_failed(&partial.bodies, e))?;
    Ok(report)
}

/// Copies the database in one step: one read transaction, so a consistent
/// state whatever the daemon writes meanwhile (a copy in several steps would
/// start over at each of its commits, and never end under load).
fn snapshot(source: &Connection, copy: &mut Connection) -> Result<(), String> {
    let backup = Backup::new(source, copy).map_err(|e| describe(&e))?;
    let started = Instant::now();
    loop {
        match backup.step(-1).map_err(|e| describe(&e))? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            // A WAL reader waits only on a recovery; give it the daemon's time.
            StepResult::Busy | StepResult::Locked if started.elapsed() < BUSY_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(50));
            }
            StepResult::Busy | StepResult::Locked => return Err("the database stayed locked".into()),
            _ => return Err("unexpected answer from SQLite's backup".into()),
        }
    }
}

/// Each segment the rows point into, with the end of the last body in it.
fn referenced_segments(conn: &Connection) -> rusqlite::Result<Vec<(i64, u64)>> {
    // A database of schema version 1 keeps every body in the `bodies` table.
    if !admin::columns(conn)?.iter().any(|c| c == "body_segment") {
        return Ok(Vec::new());
    }
    let mut statement = conn.prepare(
        "SELECT body_segment, max(body_offset + body_len) FROM deliveries
         WHERE body_segment IS NOT NULL GROUP BY body_segment ORDER BY body_segment",
    )?;
    let rows = statement.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    rows.map(|row| row.map(|(segment, end)| (segment, u64::try_from(end).unwrap_or(0)))).collect()
}

/// Copies the first `end` bytes of a segment, 0600, synced. `NotFound`: the
/// segment is gone.
fn copy_segment(from: &Path, to: &Path, segment: i64, end: u64) -> io::Result<()> {
    let mut source = File::open(body_log::segment_path(from, segment))?;
    let size = source.metadata()?.len();
    if size < end {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it holds {size} bytes but rows point up to byte {end}: the store is damaged"),
        ));
    }
    let path = body_log::segment_path(to, segment);
    let mut copy = OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(&path)?;
    make_private(&copy, FILE_MODE)?;
    let copied = io::copy(&mut Read::by_ref(&mut source).take(end), &mut copy)?;
    if copied != end {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the segment shrank while it was copied"));
    }
    copy.sync_all()
}

/// Deletes from the copy the rows whose segment vanished (see the module
/// comment), once the live store confirms they were pruned; returns how
/// many. Fails if the live store still holds any of them.
fn leave_out_pruned(copy: &Connection, live: &Connection, vanished: &[i64]) -> Result<usize, BackupError> {
    if vanished.is_empty() {
        return Ok(0);
    }
    let failed = |e: rusqlite::Error| BackupError::Failed(describe(&e));
    let list = serde_json::to_string(vanished).unwrap_or_else(|_| "[]".into());
    const IN_VANISHED: &str = "body_segment IN (SELECT value FROM json_each(?1))";
    let ids: Vec<String> = copy
        .prepare(&format!("SELECT delivery_id FROM deliveries WHERE {IN_VANISHED} ORDER BY seq"))
        .and_then(|mut s| s.query_map([&list], |r| r.get(0))?.collect())
        .map_err(failed)?;
    let mut held = live.prepare("SELECT 1 FROM deliveries WHERE delivery_id = ?1").map_err(failed)?;
    let mut still_held = Vec::new();
    for id in &ids {
        if held.exists([id]).map_err(failed)? {
            still_held.push(id.as_str());
        }
    }
    if !still_held.is_empty() {
        return Err(BackupError::Failed(format!(
            "the bodies of {} deliveries the store holds are missing from its body log (segments {}): the \
             store is damaged; run `webhookd store verify` on it. First ones: {}",
            still_held.len(),
            vanished.iter().map(i64::to_string).collect::<Vec<_>>().join(", "),
            still_held.iter().take(5).copied().collect::<Vec<_>>().join(", ")
        )));
    }
    copy.execute(&format!("DELETE FROM deliveries WHERE {IN_VANISHED}"), [&list]).map_err(failed)
}

#[cfg(test)]
mod tests;
