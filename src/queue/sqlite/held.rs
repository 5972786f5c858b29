//! Deliveries this process holds in memory for its workers: claimed in a
//! batch from disk, or handed over at once when they arrive (the hot
//! hand-off). Bounded in count and bytes; what does not fit waits on disk.

use std::collections::VecDeque;

use crate::delivery::Delivery;

/// Most deliveries, and bytes of body, held in memory for workers (hot
/// hand-offs and claimed batches); beyond either, new deliveries wait on disk.
const HELD_DELIVERIES: usize = 256;
const HELD_BYTES: usize = 32 * 1024 * 1024;

/// Deliveries this process has claimed (stored `running`) that no worker has
/// taken yet, and room reserved for hot hand-offs whose insert is committing.
#[derive(Default)]
pub(super) struct Held {
    pub deliveries: VecDeque<Delivery>,
    reserved: usize,
    bytes: usize,
    /// Workers are gone (the drain ended): nothing more is held.
    pub closed: bool,
}

impl Held {
    pub fn len(&self) -> usize {
        self.deliveries.len() + self.reserved
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

    pub fn push_reserved(&mut self, delivery: Delivery) {
        self.reserved = self.reserved.saturating_sub(1);
        self.deliveries.push_back(delivery);
    }

    pub fn push(&mut self, delivery: Delivery) {
        self.bytes += delivery.raw.len();
        self.deliveries.push_back(delivery);
    }

    pub fn pop(&mut self) -> Option<Delivery> {
        let delivery = self.deliveries.pop_front()?;
        self.bytes = self.bytes.saturating_sub(delivery.raw.len());
        Some(delivery)
    }

    /// Takes out every held delivery, for good: from now on nothing is
    /// reserved or held (a hand-off still committing is put back on disk).
    pub fn close_and_drain(&mut self) -> Vec<String> {
        self.closed = true;
        let drained: usize = self.deliveries.iter().map(|d| d.raw.len()).sum();
        self.bytes = self.bytes.saturating_sub(drained);
        self.deliveries.drain(..).map(|d| d.id().to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_against_both_bounds_until_released() {
        let mut held = Held::default();
        assert!(held.reserve(HELD_BYTES - 10));
        assert!(!held.reserve(11), "over the byte bound");
        assert!(held.reserve(10));
        assert_eq!(held.len(), 2);
        held.release(10);
        held.release(HELD_BYTES - 10);
        assert_eq!((held.len(), held.bytes), (0, 0));
        for _ in 0..HELD_DELIVERIES {
            assert!(held.reserve(1));
        }
        assert!(!held.reserve(1), "over the count bound");
        held.close_and_drain();
        held.release(1);
        assert!(!held.reserve(1), "closed");
    }
}
