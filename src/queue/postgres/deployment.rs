//! GitHub's limits for the whole deployment (`github::DeploymentLimits`):
//! write slots and rate-limit pauses per credential live in the shared
//! database, and pauses are announced with NOTIFY (`wakeups` passes them to
//! the listener the GitHub client registered).

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;

use super::{Shared, describe};
use crate::github::{CredentialKey, DeploymentLimits, PauseListener};

pub(super) struct SharedLimits(pub Arc<Shared>);

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl DeploymentLimits for SharedLimits {
    async fn reserve_write(&self, credential: &CredentialKey, interval: Duration) -> Result<Duration, String> {
        // The slot after the last one taken (or now): one statement, so two
        // instances never take the same slot.
        let row = sqlx::query(
            "INSERT INTO webhookd_write_slots AS s (credential, next_ms) VALUES ($1, webhookd_now_ms() + $2)
             ON CONFLICT (credential) DO UPDATE SET next_ms = greatest(s.next_ms, webhookd_now_ms()) + $2
             RETURNING greatest(next_ms - $2 - webhookd_now_ms(), 0)",
        )
        .bind(credential.to_string())
        .bind(millis(interval))
        .fetch_one(&self.0.pools.fast)
        .await
        .map_err(|e| describe(&e))?;
        let wait: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        Ok(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
    }

    async fn publish_pause(&self, credential: &CredentialKey, length: Duration) {
        let published = sqlx::query(
            "WITH paused AS (
                 INSERT INTO webhookd_pauses AS p (credential, until_ms) VALUES ($1, webhookd_now_ms() + $2)
                 ON CONFLICT (credential) DO UPDATE SET until_ms = greatest(p.until_ms, excluded.until_ms)
                 RETURNING credential
             )
             SELECT pg_notify('webhookd_paused', credential || ' ' || $2)::text FROM paused",
        )
        .bind(credential.to_string())
        .bind(millis(length))
        .execute(&self.0.pools.fast)
        .await;
        if let Err(e) = published {
            tracing::warn!(credential = %credential, error = %describe(&e),
                "could not share a rate-limit pause with the other instances; they will meet it themselves");
        }
    }

    fn on_pause(&self, on_pause: PauseListener) {
        *self.0.pause_listener.lock().unwrap_or_else(PoisonError::into_inner) = Some(on_pause);
    }
}
