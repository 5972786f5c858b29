//! `LISTEN/NOTIFY`: idle workers on every instance wake within milliseconds
//! when a delivery is stored, or queued again, anywhere (`webhookd_queued`),
//! and look again when a retry or a pause set anywhere ends
//! (`webhookd_due`, `webhookd_paused`). Notifications are a shortcut, never
//! the only way: a lost one costs at most the one-second poll.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use std::sync::PoisonError;

use crate::github::CredentialKey;

use super::{MAX_BACKOFF, Shared};

pub(super) const CHANNELS: [&str; 3] = ["webhookd_queued", "webhookd_due", "webhookd_paused"];

pub(super) async fn listen(shared: Arc<Shared>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut listener = match PgListener::connect_with(&shared.pools.fast).await {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(error = %super::describe(&e), "cannot listen for wake-ups yet; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if let Err(e) = listener.listen_all(CHANNELS).await {
            tracing::debug!(error = %super::describe(&e), "LISTEN failed; polling meanwhile");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        backoff = Duration::from_millis(100);
        // Whatever was announced while not listening: look now.
        shared.wake.notify_waiters();
        // Ends when the connection is lost: listen again on a new one.
        while let Ok(Some(notification)) = listener.try_recv().await {
            on_notification(&shared, notification.channel(), notification.payload());
        }
    }
}

/// Sends a notification, in a transaction of its own on the pool that does
/// not wait for a disk flush: PostgreSQL holds a server-wide lock from a
/// notifying transaction's commit until its flush, which would make every
/// durable commit on the server wait its turn. A lost one costs the poll.
pub(super) async fn announce(pool: &sqlx::PgPool, channel: &str, payload: &str) {
    if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(pool).await {
        tracing::debug!(channel, error = %super::describe(&e), "a wake-up was not sent; the poll will find the work");
    }
}

fn on_notification(shared: &Shared, channel: &str, payload: &str) {
    match channel {
        "webhookd_queued" => shared.wake.notify_one(),
        // "WAIT_MS", or "CREDENTIAL WAIT_MS" for a pause.
        "webhookd_due" | "webhookd_paused" => {
            let wait = payload.rsplit(' ').next().and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(0);
            shared.due_in(Duration::from_millis(wait));
            if channel == "webhookd_paused" {
                let credential = payload.split(' ').next().and_then(CredentialKey::parse);
                let listener = shared.pause_listener.lock().unwrap_or_else(PoisonError::into_inner);
                if let (Some(credential), Some(listener)) = (credential, listener.as_ref()) {
                    listener(&credential, Duration::from_millis(wait));
                }
            }
        }
        _ => {}
    }
}
