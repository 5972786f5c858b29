//! Building the daemon and running it until told to stop.
//!
//! Shared resources (queue, metrics, the one GitHub client, the handler) are
//! built once here and handed out by reference count. Shutdown is an explicit,
//! awaited sequence, never left to `Drop`:
//! 1. readiness off: `/readyz` and new deliveries answer 503 (the listener
//!    stays open meanwhile, so senders get an actionable answer);
//! 2. the queue closes and the workers drain it, up to the shutdown timeout;
//! 3. the HTTP server stops;
//! 4. the workers are gone, so the last reference to the GitHub client is
//!    here: it is dropped, closing its pooled connections.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use anyhow::Context;

use crate::config::{Settings, StoreKind};
use crate::github::GitHub;
use crate::handler::Handler;
use crate::http::{self, HttpState, Readiness};
use crate::queue::{DeliveryQueue, MemoryQueue};
use crate::telemetry::metrics::Metrics;
use crate::webhook::signature::SignatureVerifier;
use crate::worker::{WorkerContext, WorkerPool};

pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    workers: WorkerPool,
    queue: Arc<dyn DeliveryQueue>,
    github: Arc<GitHub>,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown_timeout: Duration,
}

/// How the daemon stopped.
#[derive(Debug)]
pub struct StopReport {
    /// Deliveries answered 2xx that the drain timeout left unprocessed.
    pub abandoned: Vec<String>,
}

impl StopReport {
    /// Exit code per the contract: 0 when everything acknowledged was processed.
    pub fn exit_code(&self) -> u8 {
        if self.abandoned.is_empty() { 0 } else { 1 }
    }
}

/// Runs the daemon with `handler` until SIGTERM or SIGINT, then drains.
pub async fn serve_until_signalled(settings: &Settings, handler: Arc<dyn Handler>) -> anyhow::Result<StopReport> {
    let app = Application::build(settings, handler).await?;
    app.run_until_stopped(crate::lifecycle::wait_for_stop_signal()).await
}

impl Application {
    /// Binds the listener and starts the workers; serving starts with
    /// `run_until_stopped`.
    pub async fn build(settings: &Settings, handler: Arc<dyn Handler>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.listen)
            .with_context(|| format!("cannot listen on {} (WEBHOOKD_LISTEN)", settings.listen))?;
        Self::build_with_listener(settings, handler, listener).await
    }

    /// As `build`, on a listener bound by the caller.
    pub async fn build_with_listener(
        settings: &Settings,
        handler: Arc<dyn Handler>,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        let local_addr = listener.local_addr().context("reading the listener's address")?;
        let metrics = Arc::new(Metrics::new());
        let queue: Arc<dyn DeliveryQueue> = match settings.store {
            StoreKind::Memory => Arc::new(MemoryQueue::new(settings.queue_capacity, settings.retention)),
        };
        let github = Arc::new(GitHub::new(&settings.github, metrics.clone()).context("building the GitHub client")?);
        if github.is_dry_run() {
            tracing::warn!("no GitHub credential configured: dry run, GitHub calls are logged and not sent");
        }
        let workers = WorkerPool::start(
            settings.workers,
            WorkerContext { queue: queue.clone(), handler, github: github.clone(), metrics: metrics.clone() },
        );
        let readiness = Readiness::default();
        let state = web::Data::new(HttpState {
            verifier: SignatureVerifier::new(&settings.secrets),
            queue: queue.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            max_body: settings.max_body,
        });
        let server = http::server(listener, state).context("starting the HTTP server")?;
        tracing::info!(
            listen = %local_addr,
            workers = settings.workers,
            queue_capacity = settings.queue_capacity,
            store = "memory",
            "webhookd started"
        );
        Ok(Self {
            local_addr,
            server,
            workers,
            queue,
            github,
            readiness,
            metrics,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `stop` resolves (or the server fails), then runs the
    /// shutdown sequence. An error means the server itself failed.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<StopReport> {
        let Self { local_addr: _, server, workers, queue, github, readiness, metrics: _, shutdown_timeout } = self;
        let handle = server.handle();
        let mut serving = tokio::spawn(server);
        let server_failed = tokio::select! {
            () = stop => None,
            result = &mut serving => Some(result),
        };
        if let Some(result) = server_failed {
            readiness.start_draining();
            queue.close();
            let _ = workers.drain(shutdown_timeout).await;
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task failed")),
            };
        }
        let report = drain(workers, queue, &readiness, shutdown_timeout).await;
        stop_server(handle, serving).await;
        close_github(github);
        Ok(report)
    }
}

/// Steps 1 and 2: refuse new deliveries, let the workers finish the queue.
async fn drain(
    workers: WorkerPool,
    queue: Arc<dyn DeliveryQueue>,
    readiness: &Readiness,
    timeout: Duration,
) -> StopReport {
    readiness.start_draining();
    queue.close();
    tracing::info!(
        queued = queue.depth(),
        timeout_secs = timeout.as_secs(),
        "draining: readiness off, new deliveries refused"
    );
    let drained = workers.drain(timeout).await;
    let lost = queue.abandon().lost;
    let mut abandoned: Vec<String> = drained.interrupted.iter().chain(&lost).map(ToString::to_string).collect();
    abandoned.sort();
    if abandoned.is_empty() {
        tracing::info!("queue drained: every accepted delivery was processed; workers stopped");
    } else {
        tracing::error!(
            interrupted = drained.interrupted.len(),
            never_started = lost.len(),
            deliveries = ?abandoned,
            "drain timeout (WEBHOOKD_SHUTDOWN_TIMEOUT) passed: these accepted deliveries were not processed and are lost"
        );
    }
    StopReport { abandoned }
}

/// Step 3: close the listener and wait for in-flight requests.
async fn stop_server(handle: ServerHandle, serving: tokio::task::JoinHandle<std::io::Result<()>>) {
    handle.stop(true).await;
    match serving.await {
        Ok(Ok(())) => tracing::info!("HTTP server stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server stopped with an error"),
        Err(e) => tracing::error!(error = %e, "HTTP server task failed"),
    }
}

/// Step 4: drop the last reference to the GitHub client.
fn close_github(github: Arc<GitHub>) {
    match Arc::try_unwrap(github) {
        Ok(client) => {
            drop(client);
            tracing::info!("GitHub client dropped: pooled connections closed");
        }
        Err(shared) => {
            tracing::warn!(references = Arc::strong_count(&shared), "GitHub client still referenced at shutdown");
        }
    }
}
