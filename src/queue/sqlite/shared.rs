//! What the durable queue and its writer thread share: the counts of
//! waiting rows, the wake-up for idle workers, the deliveries held in
//! memory for them, which the writer hands committed deliveries to, and
//! whether the store can write (for readiness).

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::held::Held;
use super::writer::{Op, OpResult, Settle};
use crate::delivery::Delivery;
use crate::queue::credentials::CredentialScheme;
use crate::telemetry::metrics::Metrics;

/// State shared by the queue and its writer thread.
pub(crate) struct Shared {
    /// Rows in state `queued` (waiting, retries included).
    pub(super) queued: AtomicUsize,
    /// Earliest `next_attempt_at` of a scheduled retry, Unix ms (i64::MAX: none).
    pub(super) next_retry_at: AtomicI64,
    pub(super) notify: Notify,
    pub(super) metrics: Arc<Metrics>,
    held: Mutex<Held>,
    /// Why the store cannot write: set by a failed write, cleared by the
    /// next write that succeeds (a delivery's, or the writer's probe).
    write_error: Mutex<Option<String>>,
}

impl Shared {
    pub(super) fn new(queued: usize, metrics: Arc<Metrics>, credentials: CredentialScheme) -> Self {
        Self {
            queued: AtomicUsize::new(queued),
            next_retry_at: AtomicI64::new(i64::MAX),
            notify: Notify::new(),
            metrics,
            held: Mutex::new(Held::new(credentials)),
            write_error: Mutex::new(None),
        }
    }

    /// Why the store cannot write now, if it cannot.
    pub(super) fn write_error(&self) -> Option<String> {
        self.write_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A write failed: the store is unwritable until one succeeds.
    pub(super) fn writes_failing(&self, reason: &str) {
        let mut error = self.write_error.lock().unwrap_or_else(PoisonError::into_inner);
        if error.is_none() {
            tracing::error!(
                error = reason,
                "the store cannot write: deliveries are refused and /readyz answers 503 until a write succeeds"
            );
            self.metrics.store_writable.set(0);
        }
        *error = Some(reason.to_owned());
    }

    /// A write succeeded: the store is writable.
    pub(super) fn writes_succeed(&self) {
        if self.write_error.lock().unwrap_or_else(PoisonError::into_inner).take().is_some() {
            tracing::info!("the store writes again: deliveries are accepted and /readyz answers 200");
            self.metrics.store_writable.set(1);
        }
    }

    pub(super) fn held(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Gives a committed delivery to the workers, or frees its reservation
    /// when `handed` is false (a duplicate, a failed commit, stored queued).
    /// Returns its id if the workers were gone by then: it must go back on disk.
    pub(super) fn hand_off(&self, mut delivery: Delivery, handed: bool) -> Option<String> {
        let mut held = self.held();
        if !handed || held.closed {
            held.release(delivery.raw.len());
            return handed.then(|| delivery.id().to_string());
        }
        delivery.attempt = 1;
        delivery.first_run = true;
        held.push_reserved(delivery);
        drop(held);
        self.notify.notify_one();
        None
    }

    /// Mirrors a committed operation in the counters; true when it made a
    /// delivery claimable now (so idle workers should look).
    pub(super) fn account(&self, op: &Op, result: &OpResult, handing_off: bool) -> bool {
        match (op, result) {
            (Op::Insert(row), OpResult::Inserted(true)) if !(row.hand_off && handing_off) => {
                self.queued.fetch_add(1, Ordering::SeqCst);
                let mut held = self.held();
                let lane = held.credentials().lane_of(&row.delivery);
                held.add_due_on_disk(lane);
                true
            }
            (Op::Claim { .. }, OpResult::Claimed(rows)) => {
                let _ = self
                    .queued
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| Some(n.saturating_sub(rows.len())));
                false
            }
            (Op::Finish { settle: Settle::RetryAt { at, .. } | Settle::Defer { at, .. }, .. }, OpResult::Count(1)) => {
                self.queued.fetch_add(1, Ordering::SeqCst);
                self.next_retry_at.fetch_min(*at, Ordering::SeqCst);
                // A worker sleeping until a later retry must recompute its wait.
                true
            }
            (Op::RequeueRunning { .. }, OpResult::Count(n)) => {
                self.queued.fetch_add(*n, Ordering::SeqCst);
                *n > 0
            }
            _ => false,
        }
    }

    /// Wakes every idle worker. Only after a commit that made work available:
    /// waking on every commit would make idle workers claim in a loop.
    pub(super) fn wake_workers(&self) {
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryId;
    use crate::webhook::body::ContentKind;
    use crate::webhook::headers::{EventName, GitHubHeaders};

    #[test]
    fn a_hand_off_after_the_drain_is_refused_and_its_reservation_freed() {
        let shared = Shared::new(0, Arc::new(Metrics::new()), CredentialScheme::DryRun);
        let headers = GitHubHeaders {
            event: EventName::parse("issues").expect("event"),
            delivery_id: DeliveryId::parse("late").expect("id"),
            hook_id: None,
            target_type: None,
            target_id: None,
        };
        let delivery =
            Delivery::from_verified(headers, ContentKind::Json, bytes::Bytes::from_static(b"{}")).expect("valid");
        assert!(shared.held().reserve(delivery.raw.len()));
        assert!(shared.held().close_and_drain().is_empty());
        assert_eq!(shared.hand_off(delivery, true).as_deref(), Some("late"), "to be put back on disk");
        assert_eq!(shared.held().len(), 0, "nothing held, nothing reserved");
        assert!(!shared.held().is_holding());
    }
}
