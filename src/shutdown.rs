//! The stop sequence: explicit, awaited step by step, never left to `Drop`.
//!
//! 1. Readiness off: `/readyz` and new deliveries answer 503 (the listener
//!    stays open meanwhile, so senders get an actionable answer); systemd is
//!    told STOPPING=1, and more time while the drain makes progress.
//! 2. The queue closes and the workers drain it, up to the shutdown timeout.
//! 3. The HTTP server stops. With socket activation it stops before step 2
//!    instead: the socket outlives the process and queues connections for
//!    the next instance, so closing early refuses nothing.
//! 4. The store flushes and closes (a durable store keeps what is unfinished
//!    for the next start).
//! 5. The workers are gone, so the last reference to the GitHub client is
//!    here: it is dropped, closing its pooled connections.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::task::JoinHandle;

use crate::github::GitHub;
use crate::http::Readiness;
use crate::queue::DeliveryQueue;
use crate::telemetry::metrics::Metrics;
use crate::worker::WorkerPool;

/// How long already-accepted connections get to reach a worker between
/// pausing the accept loop and stopping the server.
const ACCEPTED_SETTLE: Duration = Duration::from_millis(100);
/// Longest wait for the HTTP server to answer a pause command.
const SERVER_COMMAND_LIMIT: Duration = Duration::from_secs(2);

/// How the daemon stopped.
#[derive(Debug)]
pub struct StopReport {
    /// Deliveries answered 2xx that the drain timeout left unprocessed and
    /// that are lost (held only in memory).
    pub abandoned: Vec<String>,
    /// Deliveries left queued in the durable store for the next start.
    pub kept: usize,
}

impl StopReport {
    /// Exit code per the contract: 0 when everything acknowledged was processed.
    pub fn exit_code(&self) -> u8 {
        if self.abandoned.is_empty() { 0 } else { 1 }
    }
}

/// What the sequence stops, in its order.
pub(crate) struct Stopping {
    pub workers: WorkerPool,
    pub queue: Arc<dyn DeliveryQueue>,
    pub github: Arc<GitHub>,
    pub readiness: Readiness,
    pub metrics: Arc<Metrics>,
    pub shutdown_timeout: Duration,
    /// The systemd supervisor (watchdog, status); it watches the drain too.
    pub supervising: JoinHandle<()>,
}

/// The HTTP server still serving when a stop is requested.
pub(crate) struct StopServer {
    pub handle: ServerHandle,
    pub serving: JoinHandle<std::io::Result<()>>,
    /// Serving on a socket systemd passed: step 3 comes before step 2.
    pub socket_activated: bool,
}

impl Stopping {
    /// Steps 1 to 5 for a requested stop.
    pub(crate) async fn run(self, server: StopServer) -> StopReport {
        crate::systemd::notify_stopping();
        let extending = tokio::spawn(crate::systemd::extend_while_progressing(self.metrics.clone()));
        let report = if server.socket_activated {
            // Connections arriving now wait in the socket's backlog for the
            // next instance instead of being refused.
            stop_server(server).await;
            drain(self.workers, self.queue.as_ref(), &self.readiness, self.shutdown_timeout).await
        } else {
            let report = drain(self.workers, self.queue.as_ref(), &self.readiness, self.shutdown_timeout).await;
            stop_server(server).await;
            report
        };
        extending.abort();
        close(self.supervising, self.queue, self.github).await;
        report
    }

    /// Steps 1, 2, 4 and 5 after the HTTP server ended by itself (step 3
    /// has happened): what cannot finish is reported and, with the durable
    /// store, kept.
    pub(crate) async fn after_server_ended(self) -> StopReport {
        crate::systemd::notify_stopping();
        let report = drain(self.workers, self.queue.as_ref(), &self.readiness, self.shutdown_timeout).await;
        close(self.supervising, self.queue, self.github).await;
        report
    }
}

/// Steps 1 and 2: refuse new deliveries, let the workers finish what is due.
async fn drain(workers: WorkerPool, queue: &dyn DeliveryQueue, readiness: &Readiness, timeout: Duration) -> StopReport {
    readiness.start_draining();
    queue.close();
    tracing::info!(
        queued = queue.depth(),
        timeout_secs = timeout.as_secs(),
        "draining: readiness off, new deliveries refused"
    );
    let drained = workers.drain(timeout).await;
    let left = queue.abandon(&drained.interrupted).await;
    let abandoned: Vec<String> = left.lost.iter().map(ToString::to_string).collect();
    if !abandoned.is_empty() {
        tracing::error!(
            lost = abandoned.len(),
            deliveries = ?abandoned,
            "drain timeout (WEBHOOKD_SHUTDOWN_TIMEOUT) passed: these accepted deliveries were not processed and are lost"
        );
    } else if !drained.interrupted.is_empty() {
        tracing::warn!(
            interrupted = drained.interrupted.len(),
            kept = left.kept,
            "drain timeout (WEBHOOKD_SHUTDOWN_TIMEOUT) passed: unfinished deliveries stay queued in the store for the next start"
        );
    } else if left.kept > 0 {
        tracing::info!(
            kept = left.kept,
            "queue drained of due deliveries; retries scheduled later stay queued in the store"
        );
    } else {
        tracing::info!("queue drained: every accepted delivery was processed; workers stopped");
    }
    StopReport { abandoned, kept: left.kept }
}

/// Step 3: close the listener and wait for in-flight requests.
async fn stop_server(server: StopServer) {
    let StopServer { handle, serving, .. } = server;
    // Stop accepting first, then let connections the accept thread has just
    // taken reach their worker: stopping at once can close a worker before it
    // picks up a connection handed to it a moment earlier, resetting it.
    if tokio::time::timeout(SERVER_COMMAND_LIMIT, handle.pause()).await.is_err() {
        tracing::warn!("pausing the HTTP server did not complete; stopping it anyway");
    }
    tokio::time::sleep(ACCEPTED_SETTLE).await;
    // The graceful stop itself is bounded by `http::GRACEFUL_STOP`; this is a
    // guard so that shutdown always proceeds to the store and the client.
    if tokio::time::timeout(SERVER_COMMAND_LIMIT + Duration::from_secs(5), handle.stop(true)).await.is_err() {
        tracing::warn!("the HTTP server did not stop in time; going on with the shutdown");
    }
    let Ok(served) = tokio::time::timeout(SERVER_COMMAND_LIMIT, serving).await else {
        tracing::warn!("the HTTP server task did not end in time");
        return;
    };
    match served {
        Ok(Ok(())) => tracing::info!("HTTP server stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server stopped with an error"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
}

/// Steps 4 and 5: the supervisor, the store, then the GitHub client.
async fn close(supervising: JoinHandle<()>, queue: Arc<dyn DeliveryQueue>, github: Arc<GitHub>) {
    supervising.abort();
    let _ = supervising.await;
    queue.shutdown().await;
    tracing::info!(store = queue.describe(), "store closed");
    drop(queue);
    GitHub::close(github);
}
