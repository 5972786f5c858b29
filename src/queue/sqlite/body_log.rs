//! Delivery bodies, kept in append-only segment files beside the database
//! (`PATH.bodies/0000000001.log`, ...) rather than in it. SQLite writes
//! every changed page twice (to its WAL, then to the database at the next
//! checkpoint), each with a checksum and two system calls, and a body spans
//! several pages; here a whole batch of bodies is one sequential write. This
//! was the store's largest cost (see README, Performance).
//!
//! A body is appended and synced before the row that points at it is
//! committed, so a committed row always finds its body. Every start (and a
//! failed write) begins a new segment, numbered above every segment a row
//! points into: bytes a crash left after the last committed row are never
//! appended to, and a lost folder can never make old rows read new bytes.
//! Segments no row points into are deleted when finished rows are pruned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started past this size, so pruning
/// can free space a segment at a time.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".log";

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
    file: File,
    len: u64,
    segment_bytes: u64,
    /// A write failed: where the file ends is uncertain, so the next append
    /// starts a new segment.
    broken: bool,
    /// Reused to make each batch a single write.
    buffer: Vec<u8>,
}

impl BodyLog {
    /// Starts a new segment in `dir` (created if needed), numbered above the
    /// segments there and above `referenced`, the highest a row points into.
    pub fn open(dir: &Path, segment_bytes: u64, referenced: i64) -> io::Result<Self> {
        if !dir.exists() {
            fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                // The new folder's name must survive a power cut too.
                File::open(parent)?.sync_all()?;
            }
        }
        let highest = list(dir)?.into_iter().max().unwrap_or(0).max(referenced);
        let segment = highest.checked_add(1).ok_or_else(|| invalid("no segment number left"))?;
        let file = create_segment(dir, segment)?;
        Ok(Self { dir: dir.to_path_buf(), segment, file, len: 0, segment_bytes, broken: false, buffer: Vec::new() })
    }

    /// Appends `bodies` in one write and syncs them to disk; returns where
    /// each one lies, in order.
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
        if self.broken || self.len >= self.segment_bytes {
            self.rotate()?;
        }
        let refs = spans
            .into_iter()
            .map(|(offset, len)| {
                Ok(BodyRef { segment: self.segment, offset: to_i64(self.len + offset)?, len: to_i64(len)? })
            })
            .collect::<io::Result<Vec<_>>>()?;
        if let Err(e) = self.file.write_all(&self.buffer).and_then(|()| self.file.sync_data()) {
            self.broken = true;
            return Err(e);
        }
        self.len += self.buffer.len() as u64;
        if self.buffer.capacity() > 4 * 1024 * 1024 {
            // One huge delivery should not pin its size in memory.
            self.buffer = Vec::new();
        }
        Ok(refs)
    }

    /// Reads a body back.
    pub fn read(&self, at: BodyRef) -> io::Result<Vec<u8>> {
        if at.segment == self.segment {
            return read_at(&self.file, at);
        }
        read(&self.dir, at)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The number is used up even if creating the file fails halfway (it
        // may exist): the next try takes the one after. No row points into it.
        self.broken = true;
        self.segment = self.segment.checked_add(1).ok_or_else(|| invalid("no segment number left"))?;
        self.file = create_segment(&self.dir, self.segment)?;
        self.len = 0;
        self.broken = false;
        Ok(())
    }
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

fn read_at(file: &File, at: BodyRef) -> io::Result<Vec<u8>> {
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

fn create_segment(dir: &Path, segment: i64) -> io::Result<File> {
    let file = OpenOptions::new().read(true).append(true).create_new(true).open(segment_path(dir, segment))?;
    // The new file's name must survive a power cut too.
    File::open(dir)?.sync_all()?;
    Ok(file)
}

fn segment_path(dir: &Path, segment: i64) -> PathBuf {
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
