//! Backups of a live store, the prune race, and `verify` finding damage.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::queue::contract::{delivery, next, sqlite_options};
use crate::queue::sqlite::verify::verify;
use crate::queue::sqlite::{SqliteOptions, SqliteQueue};
use crate::queue::{DeliveryQueue, Outcome};
use crate::telemetry::metrics::Metrics;

struct Live {
    runtime: tokio::runtime::Runtime,
    queue: SqliteQueue,
    dir: tempfile::TempDir,
}

impl Live {
    /// A store whose every commit starts a new body segment when `segment_bytes` is 1.
    fn open(segment_bytes: u64) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions { body_segment_bytes: segment_bytes, ..sqlite_options(100) };
        let queue = SqliteQueue::open(&dir.path().join("live.db"), options, Arc::new(Metrics::new())).expect("opens");
        Self { runtime, queue, dir }
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("live.db")
    }

    fn enqueue(&self, id: &str) {
        self.runtime.block_on(self.queue.enqueue(delivery(id))).expect("queued");
    }

    /// Takes the next delivery and finishes it.
    fn finish_next(&self) -> String {
        self.runtime.block_on(async {
            let d = next(&self.queue).await;
            self.queue.finish(&d, Outcome::Ok).await;
            d.id().as_str().to_owned()
        })
    }

    /// Prunes every finished delivery, as the daemon's hourly prune would.
    fn prune_all(&self) -> usize {
        let finished = crate::queue::sqlite::now_ms();
        while crate::queue::sqlite::now_ms() <= finished {
            std::thread::yield_now(); // the clock must pass the finish times
        }
        self.runtime.block_on(self.queue.prune(Duration::ZERO))
    }
}

/// Deliveries waiting or handed to a worker (the store hands new ones over
/// at once, stored `running`; a restart queues them again).
fn unfinished(counts: &crate::queue::StateCounts) -> u64 {
    counts.queued + counts.running
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

/// The names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
    names.sort();
    names
}

/// The ids a store hands out, opened as a daemon would open it.
fn restored_ids(path: &Path) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let queue = SqliteQueue::open(path, sqlite_options(100), Arc::new(Metrics::new())).expect("restored store opens");
    runtime.block_on(async {
        let mut ids = Vec::new();
        while queue.depth() > 0 {
            let d = next(&queue).await;
            assert_eq!(d.raw, delivery(d.id().as_str()).raw, "the body read back is the one stored");
            ids.push(d.id().as_str().to_owned());
            queue.finish(&d, Outcome::Ok).await;
        }
        queue.shutdown().await;
        ids
    })
}

#[test]
fn a_backup_of_a_live_store_holds_its_rows_and_only_the_body_bytes_they_use() {
    let live = Live::open(crate::queue::sqlite::DEFAULT_SEGMENT_BYTES);
    for id in ["a", "b", "c"] {
        live.enqueue(id);
    }
    assert_eq!(live.finish_next(), "a");
    let out = tempfile::tempdir().expect("out");
    let dest = out.path().join("copy.db");
    // The daemon keeps appending to the same segment after the snapshot.
    let report = backup_with(&live.path(), &dest, || live.enqueue("late")).expect("backup");
    assert_eq!((unfinished(&report.counts), report.counts.done, report.left_out), (2, 1, 0));
    assert_eq!(report.segments, 1);

    let bodies = body_log::dir_for(&dest);
    assert_eq!(names(out.path()), ["copy.db", "copy.db.bodies"], "no partial file left, no -wal");
    assert_eq!(names(&bodies), ["0000000001.log"]);
    let used: u64 = ["a", "b", "c"].iter().map(|id| delivery(id).raw.len() as u64).sum();
    assert_eq!(fs::metadata(bodies.join("0000000001.log")).expect("segment").len(), used, "not the late body");
    assert_eq!(report.body_bytes, used);
    assert_eq!(report.database_bytes, fs::metadata(&dest).expect("db").len());
    assert_eq!((mode(&dest), mode(&bodies), mode(&bodies.join("0000000001.log"))), (0o600, 0o700, 0o600));

    let verified = verify(&dest).expect("exists");
    assert!(verified.sound(), "{:?}", verified.problems);
    let counted = (unfinished(&verified.counts), verified.counts.done, verified.bodies, verified.body_bytes);
    assert_eq!(counted, (2, 1, 3, used));
    let live_verified = verify(&live.path()).expect("exists");
    assert!(live_verified.sound() && live_verified.bodies == 4, "a live store verifies: {:?}", live_verified.problems);

    // Never over an existing backup, nor its body folder.
    for taken in [dest.clone(), out.path().join("other.db")] {
        if !taken.exists() {
            fs::create_dir(body_log::dir_for(&taken)).expect("a stray body folder");
        }
        let Err(BackupError::Usage(e)) = backup(&live.path(), &taken) else { panic!("{} is taken", taken.display()) };
        assert!(e.contains("exists"), "{e}");
    }
    live.runtime.block_on(live.queue.shutdown());
    assert_eq!(restored_ids(&dest), ["b", "c"]);
}

#[test]
fn finished_rows_whose_segment_was_pruned_during_the_backup_are_left_out_but_unfinished_ones_fail_it() {
    let live = Live::open(1);
    for id in ["a", "b"] {
        live.enqueue(id);
        live.finish_next();
    }
    live.enqueue("c");
    let out = tempfile::tempdir().expect("out");
    let dest = out.path().join("copy.db");
    // Between the database's copy and the bodies', the daemon prunes a and b
    // and deletes their segments (c's is the newest: it stays).
    let report = backup_with(&live.path(), &dest, || assert_eq!(live.prune_all(), 2)).expect("backup");
    assert_eq!((report.left_out, unfinished(&report.counts), report.counts.done, report.segments), (2, 1, 0, 1));
    let verified = verify(&dest).expect("exists");
    assert!(verified.sound(), "{:?}", verified.problems);

    // A queued row's segment gone: the store is damaged, and no backup is left.
    let broken = out.path().join("broken.db");
    let c_segment = names(&body_log::dir_for(&live.path())).pop().expect("c's segment");
    let failed = backup_with(&live.path(), &broken, || {
        fs::remove_file(body_log::dir_for(&live.path()).join(&c_segment)).expect("remove");
    });
    let Err(BackupError::Failed(e)) = failed else { panic!("a backup missing c's body: {failed:?}") };
    assert!(e.contains("of 1 deliveries the store holds") && e.ends_with("First ones: c"), "{e}");
    assert_eq!(names(out.path()), ["copy.db", "copy.db.bodies"], "the failed backup left nothing");
}

/// A fresh backup of a store holding a, b and c (each in its own segment).
fn backup_of_three(out: &Path, name: &str) -> std::path::PathBuf {
    let live = Live::open(1);
    for id in ["a", "b", "c"] {
        live.enqueue(id);
    }
    let dest = out.join(name);
    backup(&live.path(), &dest).expect("backup");
    assert!(verify(&dest).expect("exists").sound());
    dest
}

/// The delivery ids of a report's problems.
fn problem_ids(report: &crate::queue::sqlite::verify::VerifyReport) -> Vec<Option<&str>> {
    report.problems.iter().map(|p| p.delivery_id.as_deref()).collect()
}

#[test]
fn verify_names_each_delivery_whose_body_is_cut_short_or_gone_and_finds_a_corrupt_database() {
    let out = tempfile::tempdir().expect("out");
    assert!(verify(&out.path().join("missing.db")).expect_err("no file").contains("missing.db"));

    let truncated = backup_of_three(out.path(), "truncated.db");
    let segment = body_log::dir_for(&truncated).join("0000000002.log");
    let file = fs::OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(5).expect("cut b's body short");
    let report = verify(&truncated).expect("exists");
    assert_eq!(problem_ids(&report), [Some("b")]);
    assert!(report.problems[0].what.contains("past the end"), "{:?}", report.problems);
    assert_eq!(unfinished(&report.counts), 2, "a and c still count");

    let missing = backup_of_three(out.path(), "missing-segment.db");
    fs::remove_file(body_log::dir_for(&missing).join("0000000003.log")).expect("remove c's segment");
    let report = verify(&missing).expect("exists");
    assert_eq!(problem_ids(&report), [Some("c")]);
    assert!(report.problems[0].what.contains("segment 3"), "{:?}", report.problems);

    let corrupt = backup_of_three(out.path(), "corrupt.db");
    let mut bytes = fs::read(&corrupt).expect("read");
    assert!(bytes.len() > 4096 * 2, "more than one page");
    bytes[4096..8192].fill(0xA5);
    fs::write(&corrupt, &bytes).expect("write");
    let report = verify(&corrupt).expect("exists");
    assert!(!report.sound(), "a page of garbage passed");
    assert!(problem_ids(&report).iter().all(Option::is_none), "store problems: {:?}", report.problems);

    let not_a_store = out.path().join("notes.txt");
    fs::write(&not_a_store, "hello").expect("write");
    let report = verify(&not_a_store).expect("exists");
    assert!(!report.sound());
}
