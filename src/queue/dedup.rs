//! Remembers recently accepted delivery ids so a redelivery is answered
//! `duplicate` instead of being processed twice. Memory is bounded twice: ids
//! older than the window are forgotten, and past `max_ids` the oldest go first.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::delivery::DeliveryId;

#[derive(Debug)]
pub struct DedupWindow {
    window: Duration,
    max_ids: usize,
    seen: HashSet<DeliveryId>,
    order: VecDeque<(Instant, DeliveryId)>,
}

impl DedupWindow {
    pub fn new(window: Duration, max_ids: usize) -> Self {
        Self { window, max_ids: max_ids.max(1), seen: HashSet::new(), order: VecDeque::new() }
    }

    /// Whether `id` was accepted within the window (as of `now`).
    pub fn contains(&mut self, id: &DeliveryId, now: Instant) -> bool {
        self.expire(now);
        self.seen.contains(id)
    }

    /// Remembers `id` as accepted at `now`, forgetting what fell out of bounds.
    pub fn insert(&mut self, id: DeliveryId, now: Instant) {
        self.expire(now);
        while self.order.len() >= self.max_ids {
            self.pop_oldest();
        }
        if self.seen.insert(id.clone()) {
            self.order.push_back((now, id));
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn expire(&mut self, now: Instant) {
        while self.order.front().is_some_and(|(at, _)| now.duration_since(*at) > self.window) {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> DeliveryId {
        DeliveryId::parse(s).expect("valid id")
    }

    #[test]
    fn remembers_within_the_window_and_forgets_after() {
        let start = Instant::now();
        let mut d = DedupWindow::new(Duration::from_secs(60), 10);
        d.insert(id("a"), start);
        assert!(d.contains(&id("a"), start));
        assert!(!d.contains(&id("a"), start + Duration::from_secs(61)), "a is older than the window");
        d.insert(id("b"), start + Duration::from_secs(61));
        assert!(d.contains(&id("b"), start + Duration::from_secs(61)));
    }

    #[test]
    fn cap_forgets_the_oldest_first() {
        let now = Instant::now();
        let mut d = DedupWindow::new(Duration::from_secs(3600), 3);
        for name in ["a", "b", "c", "d"] {
            d.insert(id(name), now);
        }
        assert_eq!(d.len(), 3);
        assert!(!d.contains(&id("a"), now));
        assert!(d.contains(&id("d"), now));
    }
}
