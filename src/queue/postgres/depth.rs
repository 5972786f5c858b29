//! The queue's depth as this instance sees it: the last count of queued
//! rows, plus what this instance stored, claimed and put back since.
//!
//! The count is read every second (`leases::recount`) so other instances'
//! work shows up. A count must not be stored over a local change whose
//! commit it already saw but whose delta is yet to be applied (that row
//! would count twice), nor over one applied while it ran. So each local
//! change is bracketed: it is *open* from before its statement until its
//! delta is applied, and a count is stored only if no change was open or
//! closed while it ran. Under steady load some change is always open;
//! then a count older than `STALE_AFTER` is stored anyway, off by about
//! the changes that overlapped it (claims in flight and the deliveries
//! being inserted), until a count is next stored.
//!
//! Small gaps remain, each closed by the next stored count: a change that
//! opens and lands between the last check and the store; an insert whose
//! request was dropped (or timed out) but which commits after all; rows
//! put back in the queue without a local delta (a requeue, a takeover).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long local changes may keep a count from being stored.
const STALE_AFTER: Duration = Duration::from_secs(10);

pub(super) struct Depth {
    queued: AtomicUsize,
    /// Changes open now: begun, delta not yet applied (or dropped).
    open: AtomicUsize,
    /// Changes closed so far.
    closed: AtomicUsize,
    stored_at: Mutex<Instant>,
}

/// One local change of the queue's depth, open until `apply` or drop.
#[must_use = "a change is open until applied or dropped"]
pub(super) struct Change<'a> {
    depth: &'a Depth,
}

/// What a count needs to know from before it ran.
pub(super) struct Counting {
    closed: usize,
    quiet: bool,
}

impl Depth {
    pub(super) fn new(queued: usize) -> Self {
        Self {
            queued: AtomicUsize::new(queued),
            open: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            stored_at: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn get(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }

    /// Opens a change; call before the statement that makes it.
    pub(super) fn change(&self) -> Change<'_> {
        self.open.fetch_add(1, Ordering::SeqCst);
        Change { depth: self }
    }

    /// Call before reading the count.
    pub(super) fn counting(&self) -> Counting {
        let closed = self.closed.load(Ordering::SeqCst);
        Counting { closed, quiet: self.open.load(Ordering::SeqCst) == 0 }
    }

    /// Stores `count` (read after `before`) if no local change overlapped
    /// it, or if the last stored count is stale. Whether it was stored.
    pub(super) fn counted(&self, before: Counting, count: usize) -> bool {
        let undisturbed = before.quiet
            && self.open.load(Ordering::SeqCst) == 0
            && self.closed.load(Ordering::SeqCst) == before.closed;
        let mut stored_at = self.stored_at.lock().unwrap_or_else(PoisonError::into_inner);
        if !undisturbed && stored_at.elapsed() < STALE_AFTER {
            return false;
        }
        self.queued.store(count, Ordering::SeqCst);
        *stored_at = Instant::now();
        true
    }
}

impl Change<'_> {
    /// The change was committed: one row more (`1`) or fewer (`-1`) queued.
    pub(super) fn apply(self, delta: isize) {
        let _ = self
            .depth
            .queued
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_add_signed(delta)));
        // Closed by drop, after the delta is in.
    }
}

impl Drop for Change<'_> {
    // Also when nothing was committed (a duplicate, an error, a dropped
    // request): a count that overlapped is not stored.
    fn drop(&mut self) {
        self.depth.closed.fetch_add(1, Ordering::SeqCst);
        self.depth.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_that_saw_a_commit_before_its_delta_is_not_stored() {
        let depth = Depth::new(0);
        let insert = depth.change();
        // The insert commits; a count starts and reads it...
        let before = depth.counting();
        assert!(!depth.counted(before, 1), "stored while the insert's delta was pending");
        // ...then the insert's delta lands: one row, counted once.
        insert.apply(1);
        assert_eq!(depth.get(), 1);
    }

    #[test]
    fn a_count_overlapping_a_whole_change_is_not_stored() {
        let depth = Depth::new(5);
        let before = depth.counting();
        depth.change().apply(-1);
        assert!(!depth.counted(before, 5));
        assert_eq!(depth.get(), 4);
    }

    #[test]
    fn a_quiet_count_is_stored_and_a_dropped_change_leaves_the_depth_alone() {
        let depth = Depth::new(0);
        drop(depth.change());
        assert_eq!(depth.get(), 0);
        let before = depth.counting();
        assert!(depth.counted(before, 7), "other instances' rows show up");
        assert_eq!(depth.get(), 7);
        depth.change().apply(-10);
        assert_eq!(depth.get(), 0, "never below zero");
    }

    #[test]
    fn under_steady_local_changes_a_stale_count_is_stored_anyway() {
        let depth = Depth::new(0);
        let _busy = depth.change();
        let long_ago = Instant::now().checked_sub(STALE_AFTER).expect("the machine has been up that long");
        *depth.stored_at.lock().unwrap_or_else(PoisonError::into_inner) = long_ago;
        let before = depth.counting();
        assert!(depth.counted(before, 3));
        assert_eq!(depth.get(), 3);
    }
}
