//! Whether the server takes this instance's writes, as its statements and a
//! probe see it. While it does not, deliveries are answered 503 at once and
//! `/readyz` says why; a probe on a fresh connection notices when it does
//! again (a pooled connection may hang on a dead peer).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::connect::{describe, is_connection_error};

/// Longest wait for any one statement: a connection whose peer vanished
/// (a failover, a NAT reset) can hang for many minutes otherwise.
pub(super) const STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Health {
    host: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    outage: Option<String>,
    /// Since when the server has answered without a failure in between.
    healthy_since: Instant,
}

impl Health {
    pub(super) fn new(host: &str) -> Self {
        Self { host: host.to_owned(), state: Mutex::new(State { outage: None, healthy_since: Instant::now() }) }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    pub(super) fn outage(&self) -> Option<String> {
        self.state().outage.clone()
    }

    /// How long the server has answered since the last outage.
    pub(super) fn healthy_for(&self) -> Duration {
        let state = self.state();
        if state.outage.is_some() { Duration::ZERO } else { state.healthy_since.elapsed() }
    }

    /// Records a failed statement; returns the reason in words. Failures
    /// that mean the server cannot take writes now start an outage.
    pub(crate) fn failed(&self, e: &sqlx::Error) -> String {
        let reason = describe(e);
        if blocks_writes(e) {
            self.set(format!("PostgreSQL at {} cannot take writes: {reason}", self.host));
        }
        reason
    }

    pub(super) fn set(&self, reason: String) {
        let mut state = self.state();
        if state.outage.is_none() {
            tracing::error!(reason = %reason, "the PostgreSQL store is unavailable: deliveries are answered 503 until it is back");
        }
        state.outage = Some(reason);
    }

    pub(crate) fn succeeded(&self) {
        let mut state = self.state();
        if state.outage.take().is_some() {
            state.healthy_since = Instant::now();
            tracing::info!(host = %self.host, "the PostgreSQL store answers again");
        }
    }
}

/// Whether `e` means no write can succeed now: the server is unreachable,
/// shutting down, read-only (a standby after a failover), out of disk or
/// memory, or refuses our credentials.
pub(super) fn blocks_writes(e: &sqlx::Error) -> bool {
    is_connection_error(e)
        || matches!(e, sqlx::Error::Database(db) if db.code().is_some_and(|c| {
            c == "25006" || c.starts_with("53") || c.starts_with("28") || c == "3D000"
        }))
}

/// `statement`, or a timeout error after `STATEMENT_TIMEOUT`. Dropping the
/// statement's future drops its connection, which sqlx closes.
pub(super) async fn within<T>(statement: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, sqlx::Error> {
    tokio::time::timeout(STATEMENT_TIMEOUT, statement).await.unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from PostgreSQL within {}s", STATEMENT_TIMEOUT.as_secs()),
        )))
    })
}
