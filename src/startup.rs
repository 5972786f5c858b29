//! Building the daemon and running it until told to stop.
//!
//! Shared resources (queue, metrics, the one GitHub client, the handler) are
//! built once here and handed out by reference count. Shutdown is an explicit,
//! awaited sequence, never left to `Drop`:
//! 1. readiness off: `/readyz` and new deliveries answer 503 (the listener
//!    stays open meanwhile, so senders get an actionable answer); systemd is
//!    told STOPPING=1;
//! 2. the queue closes and the workers drain it, up to the shutdown timeout;
//! 3. the HTTP server stops. With socket activation it stops first, before
//!    step 2: the socket outlives the process and queues connections for the
//!    next instance, so closing early refuses nothing;
//! 4. the store flushes and closes (a durable store keeps what is unfinished
//!    for the next start);
//! 5. the workers are gone, so the last reference to the GitHub client is
//!    here: it is dropped, closing its pooled connections.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::web;
use anyhow::Context;

use crate::config::Env;
use crate::config::{Settings, StoreKind};
use crate::github::GitHub;
use crate::handler::Handler;
use crate::http::{self, HttpLimits, HttpState, Readiness};
use crate::queue::{self, DeliveryQueue, StoreError};
use crate::reload::{Reloadable, SharedVerifier};
use crate::telemetry::metrics::Metrics;
use crate::webhook::signature::SignatureVerifier;
use crate::worker::{WorkerContext, WorkerPool};

/// How long already-accepted connections get to reach a worker between
/// pausing the accept loop and stopping the server.
const ACCEPTED_SETTLE: Duration = Duration::from_millis(100);
/// Longest wait for the HTTP server to answer a pause command.
const SERVER_COMMAND_LIMIT: Duration = Duration::from_secs(2);
/// How often finished deliveries older than the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

pub struct Application {
    local_addr: SocketAddr,
    server: Server,
    workers: WorkerPool,
    queue: Arc<dyn DeliveryQueue>,
    github: Arc<GitHub>,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown_timeout: Duration,
    pruning: tokio::task::JoinHandle<()>,
    /// The recovery of deliveries GitHub failed to make, when it runs.
    recovering: Option<tokio::task::JoinHandle<()>>,
    verifier: Arc<SharedVerifier>,
    /// The SIGHUP listener, when reloading is on.
    reloading: Option<tokio::task::JoinHandle<()>>,
    /// Serving on a socket systemd passed: the kernel keeps queuing
    /// connections for the next instance, so the listener closes first.
    socket_activated: bool,
    stall_timeout: Duration,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store cannot be opened: a configuration problem (exit 2).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Anything else, such as the port in use (exit 1).
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Store(StoreError::Unreachable { .. }) => 1,
            Self::Store(_) => 2,
            Self::Other(_) => 1,
        }
    }
}

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

/// The process's one GitHub client; with a store shared by several
/// instances, its rate-limit pauses and write spacing are the deployment's.
fn build_github(settings: &Settings, metrics: &Arc<Metrics>, queue: &dyn DeliveryQueue) -> anyhow::Result<Arc<GitHub>> {
    let deployment = queue.deployment_limits();
    let github = GitHub::new(&settings.github, metrics.clone()).context("building the GitHub client")?;
    let github = Arc::new(github.with_deployment_limits(deployment.clone()));
    if let Some(deployment) = deployment {
        // Weak: the store must not keep the client alive past its close.
        let client = Arc::downgrade(&github);
        deployment.on_pause(Box::new(move |credential, length| {
            if let Some(client) = client.upgrade() {
                client.pause_from_elsewhere(credential, length);
            }
        }));
    }
    Ok(github)
}

/// Runs the daemon with `handler` until SIGTERM or SIGINT, then drains.
/// SIGHUP re-reads the secret files and every part in `reloadable`.
pub async fn serve_until_signalled(
    settings: &Settings,
    env: &Env,
    handler: Arc<dyn Handler>,
    metrics: Arc<Metrics>,
    reloadable: Vec<Arc<dyn Reloadable>>,
) -> Result<StopReport, StartError> {
    let signals = crate::lifecycle::StopSignals::install();
    let hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let inherited = crate::systemd::inherited_listener().context("using the socket systemd passed (LISTEN_FDS)")?;
    if let Some(listener) = &inherited {
        tracing::info!(listen = ?listener.local_addr().ok(), "socket activation: serving on the socket systemd passed");
    }
    let mut app = Application::build_with(settings, handler, metrics, inherited).await?;
    let mut parts: Vec<Arc<dyn Reloadable>> = vec![app.verifier.clone()];
    parts.extend(reloadable);
    app.reloading = Some(tokio::spawn(crate::reload::reload_on_sighup(hangups, env.clone(), parts)));
    Ok(app.run_until_stopped(signals.wait()).await?)
}

impl Application {
    /// Binds the listener and starts the workers; serving starts with
    /// `run_until_stopped`.
    pub async fn build(settings: &Settings, handler: Arc<dyn Handler>) -> Result<Self, StartError> {
        Self::build_with(settings, handler, Arc::new(Metrics::new()), None).await
    }

    /// As `build`, with metrics the caller shares (a handler's own) and,
    /// optionally, a listener bound by the caller.
    pub async fn build_with(
        settings: &Settings,
        handler: Arc<dyn Handler>,
        metrics: Arc<Metrics>,
        listener: Option<TcpListener>,
    ) -> Result<Self, StartError> {
        let socket_activated = listener.is_some();
        let listener = match listener {
            Some(listener) => listener,
            None => TcpListener::bind(settings.listen)
                .with_context(|| format!("cannot listen on {} (WEBHOOKD_LISTEN)", settings.listen))?,
        };
        let local_addr = listener.local_addr().context("reading the listener's address")?;
        let queue = queue::open(settings, metrics.clone()).await?;
        if settings.store == StoreKind::Memory {
            tracing::warn!(
                "WEBHOOKD_STORE=memory: accepted deliveries are held in memory only and lost if the process dies"
            );
        }
        let github = build_github(settings, &metrics, queue.as_ref())?;
        if github.is_dry_run() {
            tracing::warn!("no GitHub credential configured: dry run, GitHub calls are logged and not sent");
        }
        let hooks = Arc::new(crate::recovery::HookRegistry::default());
        let workers = WorkerPool::start(
            settings.workers,
            WorkerContext {
                queue: queue.clone(),
                handler,
                github: github.clone(),
                metrics: metrics.clone(),
                hooks: hooks.clone(),
            },
        );
        let readiness = Readiness::default();
        let verifier = Arc::new(SharedVerifier::new(SignatureVerifier::new(&settings.secrets)));
        let state = web::Data::new(
            HttpState::new(
                verifier.clone(),
                queue.clone(),
                metrics.clone(),
                readiness.clone(),
                HttpLimits::from(settings),
            )
            .with_github_alarm(github.credential_alarm()),
        );
        let server = http::server(listener, state).context("starting the HTTP server")?;
        tracing::info!(
            listen = %local_addr,
            workers = settings.workers,
            queue_capacity = settings.queue_capacity,
            store = queue.describe(),
            "webhookd started"
        );
        let pruning = tokio::spawn(prune_periodically(queue.clone(), settings.retention));
        let recovering = match crate::recovery::disabled_because(&settings.recovery, &github) {
            Some(why) => {
                tracing::info!(because = why, "recovery of failed GitHub deliveries is off");
                None
            }
            None => {
                let recovery = crate::recovery::Recovery::new(
                    github.clone(),
                    queue.ledger(),
                    settings.recovery.clone(),
                    hooks,
                    metrics.clone(),
                );
                Some(tokio::spawn(Arc::new(recovery).run_periodically()))
            }
        };
        Ok(Self {
            local_addr,
            server,
            workers,
            queue,
            github,
            readiness,
            metrics,
            shutdown_timeout: settings.shutdown_timeout,
            pruning,
            recovering,
            verifier,
            reloading: None,
            socket_activated,
            stall_timeout: settings.stall_timeout,
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
        let Self {
            local_addr: _,
            server,
            workers,
            queue,
            github,
            readiness,
            metrics,
            shutdown_timeout,
            pruning,
            recovering,
            verifier: _,
            reloading,
            socket_activated,
            stall_timeout,
        } = self;
        let handle = server.handle();
        let mut serving = tokio::spawn(server);
        // Listener bound, store open, workers running, server spawned.
        crate::systemd::notify_ready(&crate::systemd::status_line(queue.as_ref(), &metrics));
        let supervising = tokio::spawn(crate::systemd::supervise(
            queue.clone(),
            workers.health(stall_timeout),
            github.clone(),
            metrics.clone(),
        ));
        let server_failed = tokio::select! {
            () = stop => None,
            result = &mut serving => Some(result),
        };
        // Background work stops first. An aborted task is dropped by the
        // runtime later: wait, so it no longer holds the store (or the GitHub
        // client) when those are shut down.
        for task in std::iter::once(pruning).chain(recovering) {
            task.abort();
            let _ = task.await;
        }
        if let Some(reloading) = reloading {
            reloading.abort();
            let _ = reloading.await;
        }
        if let Some(result) = server_failed {
            crate::systemd::notify_stopping();
            // The same drain as a requested stop: what cannot finish is
            // reported (and, with the durable store, kept).
            drain(workers, queue.as_ref(), &readiness, shutdown_timeout).await;
            supervising.abort();
            let _ = supervising.await;
            queue.shutdown().await;
            close_github(github);
            return match result {
                Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped unexpectedly")),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task failed")),
            };
        }
        crate::systemd::notify_stopping();
        let extending = tokio::spawn(extend_while_progressing(metrics.clone()));
        let report = if socket_activated {
            // Connections arriving now wait in the socket's backlog for the
            // next instance instead of being refused.
            stop_server(handle, serving).await;
            drain(workers, queue.as_ref(), &readiness, shutdown_timeout).await
        } else {
            let report = drain(workers, queue.as_ref(), &readiness, shutdown_timeout).await;
            stop_server(handle, serving).await;
            report
        };
        extending.abort();
        supervising.abort();
        let _ = supervising.await;
        queue.shutdown().await;
        tracing::info!(store = queue.describe(), "store closed");
        close_github(github);
        Ok(report)
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

/// While the drain makes progress, asks systemd for more time than
/// `TimeoutStopSec`, so a long but moving drain is not killed.
async fn extend_while_progressing(metrics: Arc<Metrics>) {
    let finished = |m: &Metrics| {
        let t = &m.totals;
        t.ok.load(std::sync::atomic::Ordering::Relaxed)
            + t.retried.load(std::sync::atomic::Ordering::Relaxed)
            + t.failed.load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut last = finished(&metrics);
    let mut every = tokio::time::interval(crate::systemd::DRAIN_EXTENSION / 2);
    loop {
        every.tick().await;
        let now = finished(&metrics);
        if now != last {
            crate::systemd::notify_extend_timeout(crate::systemd::DRAIN_EXTENSION);
            last = now;
        }
    }
}

/// Deletes finished deliveries past the retention, now and every hour.
async fn prune_periodically(queue: Arc<dyn DeliveryQueue>, retention: Duration) {
    let mut every = tokio::time::interval(PRUNE_INTERVAL);
    loop {
        every.tick().await;
        let pruned = queue.prune(retention).await;
        if pruned > 0 {
            tracing::info!(pruned, "finished deliveries past the retention deleted");
        }
    }
}

/// Step 3: close the listener and wait for in-flight requests.
async fn stop_server(handle: ServerHandle, serving: tokio::task::JoinHandle<std::io::Result<()>>) {
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
