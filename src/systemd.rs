//! Running under systemd: readiness and status notifications, the watchdog,
//! and socket activation. Every call here is a no-op without `NOTIFY_SOCKET`
//! (or `LISTEN_FDS`), so the daemon runs the same anywhere else.
//!
//! The watchdog is fed from a health check, not a timer: a ping goes out only
//! while the store answers and the worker pool is not stalled, so a wedged
//! daemon stops pinging and systemd restarts it (the durable store then
//! resumes what it held).

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::github::GitHub;
use crate::queue::DeliveryQueue;
use crate::telemetry::metrics::Metrics;
use crate::worker::WorkerHealth;

/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// How long the store may take to answer a health ping.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How much more time each progress report during a drain asks systemd for.
pub const DRAIN_EXTENSION: Duration = Duration::from_secs(10);

/// The listening socket systemd passed (`LISTEN_FDS`, `LISTEN_PID`), if any.
pub fn inherited_listener() -> std::io::Result<Option<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    if fds.len() == 0 {
        return Ok(None);
    }
    let listener = fds.take_tcp_listener(0)?;
    if let Some(listener) = &listener {
        listener.set_nonblocking(true)?;
    }
    Ok(listener)
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The listener is bound, the store open, the workers running.
pub fn notify_ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// The drain has started.
pub fn notify_stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// A drain making progress asks for more time than `TimeoutStopSec`.
pub fn notify_extend_timeout(by: Duration) {
    notify(&[NotifyState::ExtendTimeoutUsec(u32::try_from(by.as_micros()).unwrap_or(u32::MAX))]);
}

/// A one-line summary for `systemctl status`.
pub fn status_line(queue: &dyn DeliveryQueue, metrics: &Metrics) -> String {
    let t = &metrics.totals;
    format!(
        "queued {}, processing {}, processed {}, retried {}, failed {}",
        queue.depth(),
        metrics.deliveries_in_flight.get(),
        t.ok.load(Ordering::Relaxed),
        t.retried.load(Ordering::Relaxed),
        t.failed.load(Ordering::Relaxed)
    )
}

/// Refreshes the status line and, when systemd's watchdog is on, pings it
/// while the daemon is healthy. Runs until dropped.
pub async fn supervise(
    queue: Arc<dyn DeliveryQueue>,
    workers: WorkerHealth,
    github: Arc<GitHub>,
    metrics: Arc<Metrics>,
) {
    let watchdog = sd_notify::watchdog_enabled();
    // systemd's advice: ping at half the watchdog interval.
    let every = watchdog.map_or(STATUS_INTERVAL, |w| (w / 2).min(STATUS_INTERVAL));
    let mut ticks = tokio::time::interval(every);
    let mut was_healthy = true;
    loop {
        ticks.tick().await;
        let status = status_line(queue.as_ref(), &metrics);
        if watchdog.is_none() {
            notify(&[NotifyState::Status(&status)]);
            continue;
        }
        // Workers waiting out a GitHub rate-limit pause are not stuck.
        let stall = workers.stalled().filter(|_| !github.is_paused());
        let problem = match stall {
            Some(stall) => Some(stall),
            None if !matches!(tokio::time::timeout(STORE_PING_TIMEOUT, queue.ping()).await, Ok(true)) => {
                Some("the store does not answer".to_owned())
            }
            None => None,
        };
        match problem {
            None => {
                if !was_healthy {
                    tracing::info!("healthy again: watchdog pings resume");
                }
                notify(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
                was_healthy = true;
            }
            Some(problem) => {
                if was_healthy {
                    tracing::error!(problem, "unhealthy: watchdog pings stop, systemd will restart webhookd");
                }
                notify(&[NotifyState::Status(&format!("unhealthy: {problem}"))]);
                was_healthy = false;
            }
        }
    }
}

/// While the drain makes progress, asks systemd for more time than
/// `TimeoutStopSec`, so a long but moving drain is not killed.
pub async fn extend_while_progressing(metrics: Arc<Metrics>) {
    let finished = |m: &Metrics| {
        let t = &m.totals;
        t.ok.load(Ordering::Relaxed) + t.retried.load(Ordering::Relaxed) + t.failed.load(Ordering::Relaxed)
    };
    let mut last = finished(&metrics);
    let mut every = tokio::time::interval(DRAIN_EXTENSION / 2);
    loop {
        every.tick().await;
        let now = finished(&metrics);
        if now != last {
            notify_extend_timeout(DRAIN_EXTENSION);
            last = now;
        }
    }
}
