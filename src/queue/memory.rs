//! A bounded in-memory queue: fast, and lost with the process. Waiting
//! deliveries sit in an MPMC channel whose capacity is the queue capacity, so a
//! full queue refuses at once (backpressure) instead of growing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender, TrySendError};
use async_trait::async_trait;

use super::{Abandoned, DedupWindow, DeliveryQueue, EnqueueError, Enqueued, Finished};
use crate::delivery::{Delivery, DeliveryId};

/// How many delivery ids the in-memory dedup window holds at most.
pub const MAX_REMEMBERED_IDS: usize = 100_000;

pub struct MemoryQueue {
    sender: Sender<Delivery>,
    receiver: Receiver<Delivery>,
    seen: Mutex<DedupWindow>,
}

impl MemoryQueue {
    pub fn new(capacity: usize, retention: Duration) -> Self {
        let (sender, receiver) = async_channel::bounded(capacity.max(1));
        Self { sender, receiver, seen: Mutex::new(DedupWindow::new(retention, MAX_REMEMBERED_IDS)) }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, DedupWindow> {
        // A panic while holding this lock cannot leave the window inconsistent
        // in a way that matters (at worst one id is remembered or not).
        self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError> {
        // Check, send and remember under one lock so two copies of the same
        // delivery arriving together cannot both be queued.
        let mut seen = self.seen();
        if seen.contains(delivery.id()) {
            return Ok(Enqueued::Duplicate);
        }
        let id = delivery.id().clone();
        match self.sender.try_send(delivery) {
            Ok(()) => {
                seen.insert(id, Instant::now());
                Ok(Enqueued::Queued)
            }
            Err(TrySendError::Full(_)) => Err(EnqueueError::Full),
            Err(TrySendError::Closed(_)) => Err(EnqueueError::Closed),
        }
    }

    async fn next(&self) -> Option<Delivery> {
        self.receiver.recv().await.ok()
    }

    async fn finish(&self, _id: &DeliveryId, _finished: Finished) {
        // Nothing to record: the id stays in the dedup window either way.
    }

    fn depth(&self) -> usize {
        self.receiver.len()
    }

    fn has_room(&self) -> bool {
        !self.sender.is_closed() && !self.sender.is_full()
    }

    fn close(&self) {
        self.sender.close();
    }

    fn abandon(&self) -> Abandoned {
        let mut lost = Vec::new();
        while let Ok(delivery) = self.receiver.try_recv() {
            lost.push(delivery.id().clone());
        }
        Abandoned { lost }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::webhook::body::ContentKind;
    use crate::webhook::headers::{EventName, GitHubHeaders};

    fn delivery(id: &str) -> Delivery {
        let headers = GitHubHeaders {
            event: EventName::parse("push").expect("event"),
            delivery_id: DeliveryId::parse(id).expect("id"),
            hook_id: None,
            target_type: None,
            target_id: None,
        };
        Delivery::from_verified(headers, ContentKind::Json, Bytes::from_static(b"{}")).expect("valid")
    }

    #[tokio::test]
    async fn duplicates_full_and_closed() {
        let q = MemoryQueue::new(2, Duration::from_secs(60));
        assert_eq!(q.enqueue(delivery("a")).await, Ok(Enqueued::Queued));
        assert_eq!(q.enqueue(delivery("a")).await, Ok(Enqueued::Duplicate));
        assert_eq!(q.enqueue(delivery("b")).await, Ok(Enqueued::Queued));
        assert!(!q.has_room());
        assert_eq!(q.enqueue(delivery("c")).await, Err(EnqueueError::Full));
        assert_eq!(q.depth(), 2);

        let first = q.next().await.expect("a");
        assert_eq!(first.id().as_str(), "a");
        // "c" was refused, so it is not remembered: it can be sent again.
        assert_eq!(q.enqueue(delivery("c")).await, Ok(Enqueued::Queued));

        q.close();
        assert_eq!(q.enqueue(delivery("d")).await, Err(EnqueueError::Closed));
        assert_eq!(q.next().await.map(|d| d.id().to_string()), Some("b".into()));
        let abandoned = q.abandon();
        assert_eq!(abandoned.lost, vec![DeliveryId::parse("c").expect("id")]);
        assert!(q.next().await.is_none());
    }
}
