//! The worker pool: `WEBHOOKD_WORKERS` tasks, each taking one delivery at a
//! time from the queue and running the handler on it with the shared GitHub
//! client. A failing or panicking handler is logged with the delivery id and
//! counted; the worker goes on with the next delivery.
//!
//! A worker does not wait for its outcome to be recorded before it takes the
//! next delivery: with a durable store, recording is a commit, and a worker
//! waiting on each one processed no faster than the store committed
//! (measured: two workers held the SQLite store's sustained rate to 0.29 of
//! memory's, with 21% of deliveries refused). Up to `OUTCOMES_PER_WORKER`
//! outcomes are being recorded per worker; a worker waits for all of its
//! own before it stops.
//!
//! Draining: once the queue is closed, workers finish what is queued and stop.
//! If the drain deadline passes first, workers are aborted and every delivery
//! they held or left waiting is reported by id.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::delivery::{Delivery, DeliveryId};
use crate::github::GitHub;
use crate::handler::{Handler, HandlerError};
use crate::queue::{DeliveryQueue, Outcome, Settled};
use crate::telemetry::metrics::Metrics;

/// Outcomes a worker may have being recorded at once, before it waits.
const OUTCOMES_PER_WORKER: usize = 64;

/// Everything a worker shares with the others.
#[derive(Clone)]
pub struct WorkerContext {
    pub queue: Arc<dyn DeliveryQueue>,
    pub handler: Arc<dyn Handler>,
    pub github: Arc<GitHub>,
    pub metrics: Arc<Metrics>,
    /// Webhooks seen on deliveries, for the recovery of failed ones.
    pub hooks: Arc<crate::recovery::HookRegistry>,
}

/// What each worker is processing and since when.
type InFlight = Arc<Mutex<HashMap<usize, (DeliveryId, Instant)>>>;

/// The running pool.
pub struct WorkerPool {
    tasks: JoinSet<()>,
    /// Which delivery each worker is processing, for the drain-timeout report
    /// and the health check.
    in_flight: InFlight,
    count: usize,
}

/// A view of the pool for health checks (the systemd watchdog).
#[derive(Clone)]
pub struct WorkerHealth {
    in_flight: InFlight,
    count: usize,
    stall_after: Duration,
}

impl WorkerHealth {
    /// `Some(why)` when every worker has been busy on one delivery for longer
    /// than the stall timeout: the pool makes no progress.
    pub fn stalled(&self) -> Option<String> {
        let in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        let stuck = in_flight.values().filter(|(_, since)| since.elapsed() > self.stall_after).count();
        (self.count > 0 && stuck >= self.count).then(|| {
            format!(
                "all {} workers busy on one delivery for over {} (WEBHOOKD_STALL_TIMEOUT)",
                self.count,
                humantime::format_duration(self.stall_after)
            )
        })
    }
}

/// How a drain ended.
#[derive(Debug, Default)]
pub struct DrainReport {
    /// Deliveries being processed when the deadline passed (their work was cut short).
    pub interrupted: Vec<DeliveryId>,
}

impl WorkerPool {
    /// Starts `count` workers. They hold clones of `ctx` until they stop.
    pub fn start(count: usize, ctx: WorkerContext) -> Self {
        let in_flight: InFlight = Arc::new(Mutex::new(HashMap::new()));
        let mut tasks = JoinSet::new();
        for index in 0..count {
            tasks.spawn(run_worker(index, ctx.clone(), in_flight.clone()));
        }
        Self { tasks, in_flight, count }
    }

    /// A health view of the pool; `stall_after` is how long one delivery may
    /// hold a worker before the worker counts as stuck.
    pub fn health(&self, stall_after: Duration) -> WorkerHealth {
        WorkerHealth { in_flight: self.in_flight.clone(), count: self.count, stall_after }
    }

    /// Waits for every worker to stop (the queue must be closed), up to
    /// `timeout`; then aborts the rest and reports what they held.
    pub async fn drain(mut self, timeout: Duration) -> DrainReport {
        let all_stopped = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(timeout, all_stopped).await.is_ok() {
            return DrainReport::default();
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let mut interrupted: Vec<DeliveryId> =
            self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).drain().map(|(_, (id, _))| id).collect();
        interrupted.sort();
        DrainReport { interrupted }
    }
}

async fn run_worker(index: usize, ctx: WorkerContext, in_flight: InFlight) {
    tracing::debug!(worker = index, "worker started");
    let mut recording = JoinSet::new();
    while let Some(delivery) = ctx.queue.next().await {
        in_flight.lock().unwrap_or_else(PoisonError::into_inner).insert(index, (delivery.id().clone(), Instant::now()));
        let (record, deferred) = process(&ctx, delivery).await;
        in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&index);
        if deferred {
            // Recording a deferral pauses its credential in the queue: done
            // before the next claim, or that claim could be the paused
            // credential's too and run into the pause.
            record.await;
            continue;
        }
        while recording.try_join_next().is_some() {}
        if recording.len() >= OUTCOMES_PER_WORKER {
            recording.join_next().await;
        }
        recording.spawn(record);
    }
    // Every outcome recorded before the worker counts as stopped: the
    // shutdown closes the store only after.
    while recording.join_next().await.is_some() {}
    tracing::debug!(worker = index, "worker stopped: queue closed and empty");
}

/// Runs the handler on one delivery; returns the recording of its outcome,
/// and whether it is a deferral (its credential paused).
async fn process(ctx: &WorkerContext, owned: Delivery) -> (BoxFuture<'static, ()>, bool) {
    let delivery = &owned;
    ctx.hooks.saw(delivery);
    let span = tracing::info_span!(
        "delivery",
        delivery.id = %delivery.id(),
        github.event = %delivery.event(),
        github.action = delivery.action(),
        repository = delivery.routing.repository.as_deref(),
    );
    let started = Instant::now();
    ctx.metrics.deliveries_in_flight.inc();
    let github = ctx.github.for_installation(delivery.routing.installation_id);
    let result = AssertUnwindSafe(ctx.handler.handle(delivery, &github)).catch_unwind().instrument(span.clone()).await;
    ctx.metrics.deliveries_in_flight.dec();
    let event = delivery.event().as_str();
    ctx.metrics.observe_processing(event, started.elapsed().as_secs_f64());
    let outcome = span.in_scope(|| match result {
        Ok(Ok(())) => Outcome::Ok,
        Ok(Err(HandlerError::Deferred { credential, until })) => Outcome::Deferred { credential, until },
        Ok(Err(e)) if e.is_retryable() => Outcome::Retry(format!("{e}")),
        Ok(Err(e)) => Outcome::Failed(format!("{e}")),
        Err(panic) => {
            ctx.metrics.handler_panics.inc();
            Outcome::Failed(format!("handler panicked: {}", panic_message(&*panic)))
        }
    });
    let error = match &outcome {
        Outcome::Ok => None,
        Outcome::Deferred { credential, until } => {
            Some(format!("{credential} paused until {}", humantime::format_rfc3339_seconds(*until)))
        }
        Outcome::Retry(e) | Outcome::Failed(e) => Some(e.clone()),
    };
    let deferred = matches!(outcome, Outcome::Deferred { .. });
    let ctx = ctx.clone();
    let event = event.to_owned();
    let delivery = owned;
    let record = async move {
        let delivery = &delivery;
        let ctx = &ctx;
        let event = event.as_str();
        let settled = ctx.queue.finish(delivery, outcome).await;
        span.in_scope(|| {
            let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match (settled, error) {
                (Settled::Done, _) => tracing::debug!(elapsed_ms, "delivery processed"),
                (Settled::Retrying(wait), error) => {
                    tracing::warn!(
                        error,
                        attempt = delivery.attempt,
                        retry_in_ms = wait.as_millis() as u64,
                        "attempt failed; will retry"
                    )
                }
                (Settled::Deferred(wait), error) => tracing::info!(
                    reason = error,
                    attempt = delivery.attempt,
                    due_in_ms = wait.as_millis() as u64,
                    "GitHub credential paused: delivery deferred, attempt not spent"
                ),
                (Settled::Dead, error) => {
                    tracing::error!(error, attempt = delivery.attempt, "attempts spent; delivery is dead")
                }
                (Settled::Failed, error) => {
                    tracing::error!(error, attempt = delivery.attempt, "delivery failed for good; dead")
                }
            }
        });
        ctx.metrics.deliveries_processed.with_label_values(&[event, settled.label()]).inc();
        let total = match settled {
            Settled::Done => Some(&ctx.metrics.totals.ok),
            Settled::Retrying(_) => Some(&ctx.metrics.totals.retried),
            Settled::Dead | Settled::Failed => Some(&ctx.metrics.totals.failed),
            // Not an attempt: the delivery comes back as it was.
            Settled::Deferred(_) => None,
        };
        if let Some(total) = total {
            total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    .boxed();
    (record, deferred)
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
