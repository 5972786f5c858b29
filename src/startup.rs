//! Building the daemon and serving until told to stop.
//!
//! Shared resources (queue, metrics, the one GitHub client, the handler) are
//! built once here and handed out by reference count. The stop itself is
//! `shutdown`'s ordered, awaited sequence.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;

use crate::config::Env;
use crate::config::{Settings, StoreKind};
use crate::github::GitHub;
use crate::handler::Handler;
use crate::http::{self, HttpLimits, HttpState, Readiness};
use crate::queue::{self, DeliveryQueue, StoreError};
use crate::reload::Reloadable;
use crate::shutdown::{StopReport, StopServer, Stopping};
use crate::telemetry::metrics::Metrics;
use crate::webhook::signature::{SharedVerifier, SignatureVerifier};
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
        let pruning = tokio::spawn(queue::prune_periodically(queue.clone(), settings.retention));
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
        for task in [Some(pruning), recovering, reloading].into_iter().flatten() {
            task.abort();
            let _ = task.await;
        }
        let stopping = Stopping { workers, queue, github, readiness, metrics, shutdown_timeout, supervising };
        match server_failed {
            None => Ok(stopping.run(StopServer { handle, serving, socket_activated }).await),
            Some(result) => {
                // The same drain as a requested stop: what cannot finish is
                // reported (and, with the durable store, kept).
                stopping.after_server_ended().await;
                match result {
                    Ok(Ok(())) => Err(anyhow::anyhow!("the HTTP server stopped unexpectedly")),
                    Ok(Err(e)) => Err(anyhow::Error::new(e).context("the HTTP server failed")),
                    Err(e) => Err(anyhow::Error::new(e).context("the HTTP server task failed")),
                }
            }
        }
    }
}
