//! The hand-off between the HTTP receiver and the worker pool, behind one small
//! trait so the backend can change (in memory today; a durable store later,
//! shared by several instances) without touching the HTTP or worker code.
//!
//! The rules every backend keeps:
//! - `enqueue` answers `Queued` only once the delivery will be processed, and
//!   `Duplicate` for an id it has accepted before (within its retention);
//!   ids of refused deliveries are not remembered.
//! - `next` hands each queued delivery to exactly one worker, and after
//!   `close` keeps handing out what is left, then returns `None`.

mod dedup;
mod memory;

use async_trait::async_trait;

use crate::delivery::{Delivery, DeliveryId};
pub use dedup::DedupWindow;
pub use memory::MemoryQueue;

/// What became of an accepted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnqueueError {
    #[error("the delivery queue is full")]
    Full,
    #[error("webhookd is shutting down")]
    Closed,
}

/// How processing a delivery ended, as reported to the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    Ok,
    Failed,
}

#[async_trait]
pub trait DeliveryQueue: Send + Sync + 'static {
    /// Accepts a verified delivery, or says why not.
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError>;

    /// The next delivery to process, waiting for one; `None` once the queue is
    /// closed and empty.
    async fn next(&self) -> Option<Delivery>;

    /// Records how processing of `id` ended.
    async fn finish(&self, id: &DeliveryId, finished: Finished);

    /// Deliveries waiting for a worker (those being processed do not count).
    fn depth(&self) -> usize;

    /// Whether another delivery would be accepted now.
    fn has_room(&self) -> bool;

    /// Stops accepting deliveries; those already queued are still handed out.
    fn close(&self);

    /// After a drain timeout: takes every delivery still waiting and says what
    /// became of them, for the shutdown log.
    fn abandon(&self) -> Abandoned;
}

/// Deliveries a drain timeout left behind.
#[derive(Debug, Default)]
pub struct Abandoned {
    /// Lost with the process: only this process held them.
    pub lost: Vec<DeliveryId>,
}
