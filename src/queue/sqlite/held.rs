//! Deliveries this process holds in memory for its workers: claimed in a
//! batch from disk, or handed over at once when they arrive (the hot
//! hand-off). Bounded in count and bytes; what does not fit waits on disk.

use std::collections::{HashMap, VecDeque};

use crate::delivery::Delivery;
use crate::queue::credentials::{CredentialScheme, Lane};

/// Most deliveries, and bytes of body, held in memory for workers (hot
/// hand-offs and claimed batches); beyond either, new deliveries wait on disk.
const HELD_DELIVERIES: usize = 256;
const HELD_BYTES: usize = 32 * 1024 * 1024;
/// Most deliveries held once claims add theirs: each lane in turn claims a
/// batch, so with a backlog in many installations more are held than hot
/// hand-offs may fill (still within `HELD_BYTES`).
const HELD_CLAIMED: usize = 2048;

/// Deliveries this process has claimed (stored `running`) that no worker has
/// taken yet, and room reserved for hot hand-offs whose insert is committing.
/// Also the workers' turns between credentials (lanes): each lane's turn
/// hands out one of its held deliveries, or claims a batch of its due rows
/// from disk, so a lane with thousands waiting takes one turn like any other.
pub(super) struct Held {
    credentials: CredentialScheme,
    lanes: HashMap<Lane, LaneWork>,
    /// Lanes with work held or due on disk, in the order of their next turn.
    turns: VecDeque<Lane>,
    count: usize,
    reserved: usize,
    bytes: usize,
    /// Workers are gone (the drain ended): nothing more is held.
    pub closed: bool,
}

#[derive(Default)]
struct LaneWork {
    held: VecDeque<Delivery>,
    /// Rows of this lane due on disk, as last counted (a hint: a claim that
    /// finds none clears it, the periodic recount corrects it).
    due_on_disk: usize,
}

impl LaneWork {
    fn is_idle(&self) -> bool {
        self.held.is_empty() && self.due_on_disk == 0
    }
}

/// What a worker's turn gives it.
#[expect(clippy::large_enum_variant, reason = "one value per hand-out, moved out at once; boxing would allocate")]
pub(super) enum Turn {
    Held(Delivery),
    /// Claim this lane's due rows from disk.
    Claim(Lane),
    /// No lane that is not paused has work known in memory.
    Nothing,
}

impl Held {
    pub fn new(credentials: CredentialScheme) -> Self {
        Self {
            credentials,
            lanes: HashMap::new(),
            turns: VecDeque::new(),
            count: 0,
            reserved: 0,
            bytes: 0,
            closed: false,
        }
    }

    pub fn credentials(&self) -> CredentialScheme {
        self.credentials
    }

    pub fn len(&self) -> usize {
        self.count + self.reserved
    }

    pub fn is_holding(&self) -> bool {
        self.count > 0
    }

    /// How many rows a claim may take: a batch while there is room, else
    /// only the one the worker takes (many lanes each claiming a batch must
    /// not pile up bodies in memory).
    pub fn claim_limit(&self, batch: usize) -> usize {
        if self.len() < HELD_CLAIMED && self.bytes < HELD_BYTES { batch } else { 1 }
    }

    /// Reserves room for a hot hand-off of a `body`-byte delivery.
    pub fn reserve(&mut self, body: usize) -> bool {
        let fits = !self.closed && self.len() < HELD_DELIVERIES && self.bytes + body <= HELD_BYTES;
        if fits {
            self.reserved += 1;
            self.bytes += body;
        }
        fits
    }

    pub fn release(&mut self, body: usize) {
        self.reserved = self.reserved.saturating_sub(1);
        self.bytes = self.bytes.saturating_sub(body);
    }

    fn lane(&mut self, lane: Lane) -> &mut LaneWork {
        if !self.lanes.contains_key(&lane) {
            self.turns.push_back(lane.clone());
        }
        self.lanes.entry(lane).or_default()
    }

    fn hold(&mut self, delivery: Delivery) {
        let lane = self.credentials.lane_of(&delivery);
        self.lane(lane).held.push_back(delivery);
        self.count += 1;
    }

    pub fn push_reserved(&mut self, delivery: Delivery) {
        self.reserved = self.reserved.saturating_sub(1);
        self.hold(delivery);
    }

    pub fn push(&mut self, delivery: Delivery) {
        self.bytes += delivery.raw.len();
        self.hold(delivery);
    }

    /// One more row of `lane` due on disk.
    pub fn add_due_on_disk(&mut self, lane: Lane) {
        self.lane(lane).due_on_disk += 1;
    }

    /// A row of `lane` was claimed.
    pub fn claimed_from_disk(&mut self, lane: &Lane) {
        if let Some(work) = self.lanes.get_mut(lane) {
            work.due_on_disk = work.due_on_disk.saturating_sub(1);
        }
    }

    /// A claim for `lane` found nothing due.
    pub fn none_due_on_disk(&mut self, lane: &Lane) {
        if let Some(work) = self.lanes.get_mut(lane) {
            work.due_on_disk = 0;
        }
    }

    /// Replaces the due counts with a fresh count from disk.
    pub fn recount_due_on_disk(&mut self, due: HashMap<Lane, usize>) {
        self.lanes.values_mut().for_each(|work| work.due_on_disk = 0);
        for (lane, n) in due {
            self.lane(lane).due_on_disk = n;
        }
    }

    /// The next turn among lanes `paused` does not exclude; that lane's next
    /// turn comes after every other lane's.
    pub fn next_turn(&mut self, paused: impl Fn(&Lane) -> bool) -> Turn {
        for _ in 0..self.turns.len() {
            let Some(lane) = self.turns.pop_front() else { break };
            let Some(work) = self.lanes.get_mut(&lane) else { continue };
            if work.is_idle() {
                self.lanes.remove(&lane);
                continue;
            }
            self.turns.push_back(lane.clone());
            if paused(&lane) {
                continue;
            }
            if let Some(delivery) = work.held.pop_front() {
                self.count -= 1;
                self.bytes = self.bytes.saturating_sub(delivery.raw.len());
                return Turn::Held(delivery);
            }
            return Turn::Claim(lane);
        }
        Turn::Nothing
    }

    /// Takes out every held delivery, for good: from now on nothing is
    /// reserved or held (a hand-off still committing is put back on disk).
    pub fn close_and_drain(&mut self) -> Vec<String> {
        self.closed = true;
        self.turns.clear();
        self.count = 0;
        let drained: Vec<Delivery> = self.lanes.drain().flat_map(|(_, work)| work.held).collect();
        let bytes: usize = drained.iter().map(|d| d.raw.len()).sum();
        self.bytes = self.bytes.saturating_sub(bytes);
        drained.iter().map(|d| d.id().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_both_bounds_until_released() {
        let mut held = Held::new(CredentialScheme::DryRun);
        assert!(held.reserve(HELD_BYTES - 10));
        assert!(!held.reserve(11), "over the byte bound");
        assert!(held.reserve(10));
        assert_eq!(held.len(), 2);
        held.release(10);
        held.release(HELD_BYTES - 10);
        assert_eq!((held.len(), held.bytes), (0, 0));
        assert_eq!(held.claim_limit(32), 32);
        for _ in 0..HELD_DELIVERIES {
            assert!(held.reserve(1));
        }
        assert!(!held.reserve(1), "over the count bound");
        assert_eq!(held.claim_limit(32), 32, "hot hand-offs full, claims still batch");
        held.close_and_drain();
        held.release(1);
        assert!(!held.reserve(1), "closed");
    }
}
