//! Delivery bodies, kept in append-only segment files beside the database
//! (`PATH.bodies/0000000001.log`, ...) rather than in it. SQLite writes
//! every changed page twice (to its WAL, then to the database at the next
//! checkpoint), each with a checksum and two system calls, and a body spans
//! several pages; here a whole batch of bodies is one sequential write. This
//! was the store's largest cost (see docs/performance.md).
//!
//! A body is appended and synced before the row that points at it is
//! committed, so a committed row always finds its body. Every start begins a
//! new segment, numbered above every segment a row points into: bytes a crash
//! left after the last committed row are never appended to, and a lost folder
//! can never make old rows read new bytes. Segments no row points into are
//! deleted when finished rows are pruned.
//!
//! A segment file is created by the first append into it, and a failed append
//! leaves nothing behind: a segment it created is removed (no row can point
//! into it), and one that held bodies already is cut back to where the last
//! good append ended, which only the failed batch wrote past. Should that cut
//! fail, the next append starts a new segment. So a full disk costs no file
//! per refused delivery. Files are 0600 and the folder 0700, whatever the umask.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::modes;

/// A segment is closed and a new one started past this size, so pruning
/// can free space a segment at a time.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".log";
/// What the store's write probe writes (and removes) to learn whether the
/// disk takes data again: as much as a typical delivery, so a probe that
/// passes says a delivery would fit.
const PROBE_BYTES: usize = 64 * 1024;
/// The probe's scratch file in the segment folder (not a segment: no `.log`).
const PROBE_FILE: &str = "write-probe.tmp";

/// Where one body lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BodyRef {
    pub segment: i64,
    pub offset: i64,
    pub len: i64,
}

/// The folder of segments for the database at `db`.
pub(crate) fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".bodies");
    db.with_file_name(name)
}

/// The segment being appended to; owned by the store's writer thread.
pub(super) struct BodyLog {
    dir: PathBuf,
    segment: i64,
    /// `None` until the first append into `segment` creates it.
    file: Option<File>,
    /// Where the last good append into `segment` ended (synced).
    len: u64,
    segment_bytes: u64,
    /// Reused to make each batch a single write.
    buffer: Vec<u8>,
}

impl BodyLog {
    /// Prepares a new segment in `dir` (created if needed, 0700), numbered
    /// above the segments there and above `referenced`, the highest a row
    /// points into. Its file is created by the first append.
    pub fn open(dir: &Path, segment_bytes: u64, referenced: i64) -> io::Result<Self> {
        if !dir.exists() {
            modes::create_private_dir(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                // The new folder's name must survive a power cut too.
                File::open(parent)?.sync_all()?;
            }
        }
        let highest = list(dir)?.into_iter().max().unwrap_or(0).max(referenced);
        let segment = highest.checked_add(1).ok_or_else(|| invalid("no segment number left"))?;
        Ok(Self { dir: dir.to_path_buf(), segment, file: None, len: 0, segment_bytes, buffer: Vec::new() })
    }

    /// Appends `bodies` in one write and syncs them to disk; returns where
    /// each one lies, in order. On failure nothing is left behind (see the
    /// module comment).
    pub fn append<'a>(&mut self, bodies: impl Iterator<Item = &'a [u8]>) -> io::Result<Vec<BodyRef>> {
        self.buffer.clear();
        let mut spans = Vec::new();
        for body in bodies {
            spans.push((self.buffer.len() as u64, body.len() as u64));
            self.buffer.extend_from_slice(body);
        }
        if spans.is_empty() {
            return Ok(Vec::new());
        }
        if self.len >= self.segment_bytes {
            self.next_segment()?;
        }
        let created = self.file.is_none();
        let file = match self.file.take() {
            Some(file) => file,
            None => create_segment(&self.dir, self.segment)?,
        };
        let file = self.file.insert(file);
        let written = file.write_all(&self.buffer).and_then(|()| file.sync_data());
        if let Err(e) = written {
            self.undo_failed_append(created);
            return Err(e);
        }
        let refs = spans
            .into_iter()
            .map(|(offset, len)| {
                Ok(BodyRef { segment: self.segment, offset: to_i64(self.len + offset)?, len: to_i64(len)? })
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.len += self.buffer.len() as u64;
        if self.buffer.capacity() > 4 * 1024 * 1024 {
            // One huge delivery should not pin its size in memory.
            self.buffer = Vec::new();
        }
        Ok(refs)
    }

    /// Reads a body back.
    pub fn read(&self, at: BodyRef) -> io::Result<Vec<u8>> {
        match &self.file {
            Some(file) if at.segment == self.segment => read_at(file, at),
            _ => read(&self.dir, at),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the folder takes data: writes `PROBE_BYTES` to a scratch file,
    /// syncs and removes it. Used while writes fail, to learn when they
    /// would pass again.
    pub fn probe(&self) -> io::Result<()> {
        let path = self.dir.join(PROBE_FILE);
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
            file.write_all(&[0; PROBE_BYTES])?;
            file.sync_data()
        })();
        let removed = fs::remove_file(&path);
        written?;
        removed
    }

    /// Leaves no trace of a failed append: a segment it created goes (no row
    /// points into it), one with bodies in it is cut back to its good end.
    /// When that fails too, the next append starts a new segment.
    fn undo_failed_append(&mut self, created: bool) {
        let Some(file) = self.file.take() else { return };
        let undone = if created {
            drop(file);
            fs::remove_file(segment_path(&self.dir, self.segment))
        } else {
            // Only the failed batch wrote past `len`; no row points there.
            file.set_len(self.len).and_then(|()| file.sync_all()).map(|()| self.file = Some(file))
        };
        if let Err(e) = undone {
            tracing::warn!(segment = self.segment, error = %e, "cannot undo a failed body log write; starting a new segment");
            // The number stays used: its file may be there, half written.
            if let Err(e) = self.next_segment() {
                tracing::warn!(error = %e, "no body log segment number left");
            }
        }
    }

    /// Closes the current segment; the next append creates the one after.
    fn next_segment(&mut self) -> io::Result<()> {
        self.segment = self.segment.checked_add(1).ok_or_else(|| invalid("no segment number left"))?;
        self.file = None;
        self.len = 0;
        Ok(())
    }
}

/// Takes group and other access away from the folder and its segments (a
/// store from before they were private).
pub(super) fn tighten(dir: &Path) -> io::Result<()> {
    modes::tighten(dir);
    for segment in list(dir)? {
        modes::tighten(&segment_path(dir, segment));
    }
    Ok(())
}

/// Reads a body back without the writer (the operator's commands).
pub(crate) fn read(dir: &Path, at: BodyRef) -> io::Result<Vec<u8>> {
    read_at(&File::open(segment_path(dir, at.segment))?, at)
}

/// The segments in `dir` that may be deleted if no row points into them:
/// all but the newest, which may be the one a running daemon appends to.
/// List them *before* asking which are referenced: a row committed later can
/// only point into the newest listed segment or a later one.
pub(crate) fn deletable(dir: &Path) -> io::Result<Vec<i64>> {
    let mut all = list(dir)?;
    all.sort_unstable();
    all.pop();
    Ok(all)
}

/// Deletes these segments; returns how many were there.
pub(crate) fn remove(dir: &Path, segments: impl Iterator<Item = i64>) -> io::Result<usize> {
    let mut removed = 0;
    for segment in segments {
        match fs::remove_file(segment_path(dir, segment)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

pub(super) fn read_at(file: &File, at: BodyRef) -> io::Result<Vec<u8>> {
    let len = u64::try_from(at.len).map_err(|_| invalid("negative body length"))?;
    let offset = u64::try_from(at.offset).map_err(|_| invalid("negative body offset"))?;
    // Positions come from the database: check them before trusting a length.
    let size = file.metadata()?.len();
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(invalid("the body lies past the end of its segment"));
    }
    let mut body = vec![0; usize::try_from(len).map_err(|_| invalid("body too large"))?];
    file.read_exact_at(&mut body, offset)?;
    Ok(body)
}

/// Creates a segment file (0600); should its creation fail halfway, removes it.
fn create_segment(dir: &Path, segment: i64) -> io::Result<File> {
    let path = segment_path(dir, segment);
    let file = OpenOptions::new().read(true).append(true).create_new(true).mode(0o600).open(&path)?;
    // The exact mode even under an odd umask; and the new file's name must
    // survive a power cut too.
    let made = modes::make_private(&file, 0o600).and_then(|()| File::open(dir)?.sync_all());
    if let Err(e) = made {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(file)
}

pub(super) fn segment_path(dir: &Path, segment: i64) -> PathBuf {
    dir.join(format!("{segment:010}{SUFFIX}"))
}

/// The segment numbers present in `dir` (none if it does not exist).
fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let name = entry?.file_name();
        if let Some(number) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)).and_then(|n| n.parse().ok()) {
            found.push(number);
        }
    }
    Ok(found)
}

fn to_i64(n: u64) -> io::Result<i64> {
    i64::try_from(n).map_err(|_| invalid("body log offset overflow"))
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_bodies_read_back_and_each_start_begins_a_new_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES, 0).expect("open");
        let refs = log.append([&b"first"[..], b"", b"third body"].into_iter()).expect("append");
        assert_eq!(
            refs.iter().map(|r| (r.segment, r.offset, r.len)).collect::<Vec<_>>(),
            [(1, 0, 5), (1, 5, 0), (1, 5, 10)]
        );
        assert_eq!(log.read(refs[2]).expect("read"), b"third body");
        assert_eq!(read(dir.path(), refs[0]).expect("read"), b"first");
        assert!(log.append(std::iter::empty()).expect("nothing to append").is_empty());

        // A restart never appends after what a crash may have left, and
        // numbers above what rows point into even if the folder was lost.
        drop(log);
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES, 7).expect("reopen");
        let more = log.append([&b"fourth"[..]].into_iter()).expect("append");
        assert_eq!(more[0], BodyRef { segment: 8, offset: 0, len: 6 });
        assert_eq!(read(dir.path(), more[0]).expect("read"), b"fourth");
        assert_eq!(read(dir.path(), refs[2]).expect("old segments still read"), b"third body");
    }

    #[test]
    fn a_segment_that_cannot_be_cut_back_after_a_failed_write_is_given_up_for_the_next() {
        // /dev/full fails every write with ENOSPC and cannot be truncated.
        let Ok(full) = OpenOptions::new().read(true).append(true).open("/dev/full") else {
            println!("SKIPPED: no /dev/full");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES, 0).expect("open");
        (log.file, log.len) = (Some(full), 3);
        let error = log.append([&b"body"[..]].into_iter()).expect_err("the disk is full");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        let at = log.append([&b"body"[..]].into_iter()).expect("appended to a new segment");
        assert_eq!(at, [BodyRef { segment: 2, offset: 0, len: 4 }]);
        assert_eq!(list(dir.path()).expect("list"), [2]);
    }

    #[test]
    fn positions_past_the_end_of_a_segment_are_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES, 0).expect("open");
        let at = log.append([&b"body"[..]].into_iter()).expect("append")[0];
        for bad in [BodyRef { len: i64::MAX, ..at }, BodyRef { offset: 2, ..at }, BodyRef { len: -1, ..at }] {
            assert!(read(dir.path(), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_segments_older_than_the_newest_may_be_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), 1, 0).expect("open");
        for body in [&b"one"[..], b"two", b"three"] {
            log.append([body].into_iter()).expect("append");
        }
        assert_eq!(deletable(dir.path()).expect("list"), [1, 2]);
        assert_eq!(remove(dir.path(), [1].into_iter()).expect("remove"), 1);
        assert!(read(dir.path(), BodyRef { segment: 1, offset: 0, len: 3 }).is_err());
        assert_eq!(read(dir.path(), BodyRef { segment: 2, offset: 0, len: 3 }).expect("kept"), b"two");
        assert!(deletable(&dir.path().join("missing")).expect("no folder, nothing to delete").is_empty());
    }
}
