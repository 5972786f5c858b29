//! The memory every request body being received may take, all together
//! (`WEBHOOKD_BODY_MEMORY`). The connection cap and the per-body cap alone
//! would let a thousand clients hold a 25 MiB body each until the body
//! deadline; this budget bounds the sum. A chunk that does not fit is refused
//! with a 503 and `Retry-After`, never buffered.

use std::sync::atomic::{AtomicUsize, Ordering};

pub struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Self {
        Self { limit, used: AtomicUsize::new(0) }
    }

    /// Bytes of request bodies held now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// An empty reservation that grows with each chunk of one body.
    pub fn reservation(&self) -> Reservation<'_> {
        Reservation { budget: self, held: 0 }
    }
}

/// The bytes one body holds; given back when it is dropped (the request
/// is answered, or its connection went away).
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    held: usize,
}

impl Reservation<'_> {
    /// Takes `bytes` more, or returns false (taking nothing) when they
    /// would pass the budget.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let limit = self.budget.limit;
        let taken = self.budget.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|total| *total <= limit)
        });
        if taken.is_ok() {
            self.held += bytes;
        }
        taken.is_ok()
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back_when_dropped() {
        let budget = BodyBudget::new(100);
        let mut first = budget.reservation();
        assert!(first.grow(60));
        let mut second = budget.reservation();
        assert!(!second.grow(41), "past the budget");
        assert!(second.grow(40));
        assert_eq!(budget.used(), 100);
        assert!(!second.grow(1));
        drop(first);
        assert_eq!(budget.used(), 40);
        assert!(second.grow(60));
        drop(second);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn a_refused_chunk_takes_nothing_and_huge_sizes_do_not_overflow() {
        let budget = BodyBudget::new(10);
        let mut r = budget.reservation();
        assert!(r.grow(5));
        assert!(!r.grow(usize::MAX));
        assert_eq!(budget.used(), 5);
    }
}
