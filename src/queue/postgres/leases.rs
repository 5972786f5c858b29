//! Background upkeep of the shared queue: this instance renews the leases
//! of what it holds and recounts the queue (which also probes the server
//! during an outage); one instance at a time, under an advisory lock, takes
//! over expired leases and prunes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::Row;

use super::{HOUSEKEEPING_LOCK, Shared, count_queued, describe};

/// How often leases are renewed and expired ones looked for: a third of the
/// lease, so a renewal can fail twice before a lease ends.
fn period(shared: &Shared) -> Duration {
    shared.options.lease / 3
}

/// Extends the lease of every delivery this instance holds.
pub(super) async fn renew(shared: Arc<Shared>) {
    let lease_ms = i64::try_from(shared.options.lease.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(period(&shared));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let tokens = shared.tokens();
        if tokens.is_empty() {
            continue;
        }
        let renewed = sqlx::query(
            "UPDATE webhookd_deliveries SET lease_until = webhookd_now_ms() + $2
             WHERE state = 'running' AND lease_token = ANY($1)",
        )
        .bind(&tokens)
        .bind(lease_ms)
        .execute(&shared.pools.fast)
        .await;
        if let Err(e) = renewed {
            tracing::warn!(error = %shared.health.failed(&e), held = tokens.len(), "renewing leases failed; trying again");
        }
    }
}

/// Keeps the queue's depth current and, during an outage, notices when the
/// server is back.
pub(super) async fn recount(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match count_queued(&shared.pools.durable).await {
            Ok(queued) => {
                shared.queued.store(queued, Ordering::SeqCst);
                shared.health.succeeded();
            }
            Err(e) => {
                shared.health.failed(&e);
            }
        }
    }
}

/// Takes over expired leases, on whichever instance holds the housekeeping
/// lock this round.
pub(super) async fn housekeep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(period(&shared));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = take_over_expired(&shared).await {
            tracing::debug!(error = %describe(&e), "housekeeping skipped this round");
        }
    }
}

async fn take_over_expired(shared: &Shared) -> Result<(), sqlx::Error> {
    let mut tx = shared.pools.durable.begin().await?;
    let leader: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
        .bind(HOUSEKEEPING_LOCK)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if !leader {
        return Ok(());
    }
    // A delivery whose instance died with it past its attempts may be what
    // kills instances: dead, not handed to the next one.
    let rows = sqlx::query(
        "WITH expired AS (
             UPDATE webhookd_deliveries
             SET state = CASE WHEN attempts > $1 THEN 'dead' ELSE 'queued' END,
                 finished_at = CASE WHEN attempts > $1 THEN webhookd_now_ms() END,
                 last_error = CASE WHEN attempts > $1
                     THEN 'its instance stopped while processing it, ' || attempts
                          || ' times (past WEBHOOKD_MAX_ATTEMPTS): it may crash webhookd'
                     ELSE 'its instance (' || owner || ') stopped renewing its lease; taken over' END,
                 next_attempt_at = webhookd_now_ms(), owner = NULL, lease_until = NULL, lease_token = NULL
             WHERE state = 'running' AND lease_until < webhookd_now_ms()
             RETURNING state
         )
         SELECT state, count(*) FROM expired GROUP BY state",
    )
    .bind(i32::try_from(shared.options.retry.max_attempts).unwrap_or(i32::MAX))
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM webhookd_pauses WHERE until_ms < webhookd_now_ms()").execute(&mut *tx).await?;
    let mut requeued = 0;
    for row in &rows {
        let (state, n): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        if state == "queued" {
            requeued = n;
            sqlx::query("SELECT pg_notify('webhookd_queued', '')").execute(&mut *tx).await?;
        } else {
            tracing::error!(
                dead = n,
                "deliveries whose instances stopped while processing them past their last attempt are dead"
            );
        }
    }
    tx.commit().await?;
    if requeued > 0 {
        tracing::warn!(requeued, "took over deliveries whose instance stopped renewing its lease");
    }
    Ok(())
}

/// Deletes finished deliveries past `retention`, if no other instance is
/// pruning now; returns how many.
pub(super) async fn prune(shared: &Shared, retention: Duration) -> usize {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    let pruned = async {
        let mut tx = shared.pools.durable.begin().await?;
        let leader: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(HOUSEKEEPING_LOCK + 1)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if !leader {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM webhookd_deliveries
             WHERE state IN ('done', 'dead') AND finished_at < webhookd_now_ms() - $1",
        )
        .bind(retention_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(done.rows_affected())
    }
    .await;
    match pruned {
        Ok(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Err(e) => {
            tracing::error!(error = %describe(&e), "pruning finished deliveries failed");
            0
        }
    }
}
