//! Delivery bodies, kept in append-only segment files beside the database
//! (`PATH.bodies/0000000001.log`, ...) rather than in it. SQLite writes
//! every changed page twice (to its WAL, then to the database at the next
//! checkpoint), each with a checksum and two system calls, and a body spans
//! several pages; here a whole batch of bodies is one sequential write. This
//! was the store's largest cost (see README, Performance).
//!
//! A body is appended and synced before the row that points at it is
//! committed, so a committed row always finds its body. Bytes a crash left
//! after the last committed row are never referenced and harmless. Segments
//! no row refers to any more are deleted when finished rows are pruned.

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
    /// Reused to make each batch a single write.
    buffer: Vec<u8>,
}

impl BodyLog {
    /// Opens the newest segment for appending, creating the folder and a
    /// first segment if needed.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let segment = segments(dir)?.into_iter().max().unwrap_or(1);
        let (file, len) = open_segment(dir, segment)?;
        Ok(Self { dir: dir.to_path_buf(), segment, file, len, segment_bytes, buffer: Vec::new() })
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
        if self.len >= self.segment_bytes {
            self.rotate()?;
        }
        let refs = spans
            .into_iter()
            .map(|(offset, len)| {
                Ok(BodyRef { segment: self.segment, offset: to_i64(self.len + offset)?, len: to_i64(len)? })
            })
            .collect::<io::Result<Vec<_>>>()?;
        if let Err(e) = self.file.write_all(&self.buffer).and_then(|()| self.file.sync_data()) {
            // A partial write leaves unreferenced bytes; start after them.
            self.len = self.file.metadata().map(|m| m.len()).unwrap_or(self.len);
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
        let (file, len) = open_segment(&self.dir, self.segment + 1)?;
        self.segment += 1;
        self.file = file;
        self.len = len;
        Ok(())
    }
}

/// Reads a body back without the writer (the operator's commands).
pub(crate) fn read(dir: &Path, at: BodyRef) -> io::Result<Vec<u8>> {
    read_at(&File::open(segment_path(dir, at.segment))?, at)
}

/// Deletes the segments older than `oldest_needed`, never the newest one
/// (it may be the daemon's current segment); returns how many.
pub(crate) fn remove_older_than(dir: &Path, oldest_needed: i64) -> io::Result<usize> {
    let mut all = segments(dir)?;
    all.sort_unstable();
    all.pop();
    let mut removed = 0;
    for segment in all.into_iter().filter(|s| *s < oldest_needed) {
        match fs::remove_file(segment_path(dir, segment)) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

fn read_at(file: &File, at: BodyRef) -> io::Result<Vec<u8>> {
    let len = usize::try_from(at.len).map_err(|_| invalid("negative body length"))?;
    let offset = u64::try_from(at.offset).map_err(|_| invalid("negative body offset"))?;
    let mut body = vec![0; len];
    file.read_exact_at(&mut body, offset)?;
    Ok(body)
}

fn open_segment(dir: &Path, segment: i64) -> io::Result<(File, u64)> {
    let path = segment_path(dir, segment);
    let existed = path.exists();
    let file = OpenOptions::new().read(true).append(true).create(true).open(&path)?;
    if !existed {
        // The new file's name must survive a power cut too.
        File::open(dir)?.sync_all()?;
    }
    let len = file.metadata()?.len();
    Ok((file, len))
}

fn segment_path(dir: &Path, segment: i64) -> PathBuf {
    dir.join(format!("{segment:010}{SUFFIX}"))
}

/// The segment numbers present in `dir`.
fn segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
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
    fn appended_bodies_read_back_from_the_writer_and_from_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES).expect("open");
        let refs = log.append([&b"first"[..], b"", b"third body"].into_iter()).expect("append");
        assert_eq!(refs.iter().map(|r| (r.offset, r.len)).collect::<Vec<_>>(), [(0, 5), (5, 0), (5, 10)]);
        assert_eq!(log.read(refs[2]).expect("read"), b"third body");
        assert_eq!(read(dir.path(), refs[0]).expect("read"), b"first");

        // Reopened, appends continue after what is there.
        drop(log);
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES).expect("reopen");
        let more = log.append([&b"fourth"[..]].into_iter()).expect("append");
        assert_eq!(more[0], BodyRef { segment: 1, offset: 15, len: 6 });
        assert_eq!(read(dir.path(), more[0]).expect("read"), b"fourth");
    }

    #[test]
    fn old_segments_are_removed_but_never_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = BodyLog::open(dir.path(), DEFAULT_SEGMENT_BYTES).expect("open");
        log.append([&b"one"[..]].into_iter()).expect("append");
        log.rotate().expect("rotate");
        log.rotate().expect("rotate");
        let kept = log.append([&b"three"[..]].into_iter()).expect("append")[0];
        assert_eq!(kept.segment, 3);

        assert_eq!(remove_older_than(dir.path(), 2).expect("remove"), 1);
        assert!(read(dir.path(), BodyRef { segment: 1, offset: 0, len: 3 }).is_err());
        // Nothing needed any more: all but the newest go.
        assert_eq!(remove_older_than(dir.path(), i64::MAX).expect("remove"), 1);
        assert_eq!(log.read(kept).expect("read"), b"three");
        assert_eq!(segments(dir.path()).expect("list"), [3]);
    }
}
