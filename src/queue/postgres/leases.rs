//! Background upkeep of the shared queue: this instance renews the leases
//! of what it holds, recounts the queue, and during an outage probes the
//! server on a fresh connection; one instance at a time, under an advisory
//! lock, takes over expired leases and prunes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::{Connection, Row};

use super::health::within;
use super::{HOUSEKEEPING_LOCK, Shared, count_queued, describe};
use crate::queue::StateCounts;

/// How often leases are renewed and expired ones looked for: a third of the
/// lease, so a renewal can fail twice before a lease ends.
fn period(shared: &Shared) -> Duration {
    shared.options.lease / 3
}

/// How long done and dead counts (a whole-table count) are reused by
/// metrics scrapes.
const FINISHED_COUNTS_FOR: Duration = Duration::from_secs(30);

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
        let renewed = within(
            sqlx::query(
                "UPDATE webhookd_deliveries SET lease_until = webhookd_now_ms() + $2
                 WHERE state = 'running' AND lease_token = ANY($1)",
            )
            .bind(&tokens)
            .bind(lease_ms)
            .execute(&shared.pools.fast),
        )
        .await;
        if let Err(e) = renewed {
            tracing::warn!(error = %shared.health.failed(&e), held = tokens.len(), "renewing leases failed; trying again");
        }
    }
}

/// Keeps the queue's depth current; during an outage, probes the server on
/// a fresh connection (a pooled one may hang on a vanished peer) and ends
/// the outage once it takes writes again.
pub(super) async fn recount(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if shared.health.outage().is_some() {
            match probe(&shared).await {
                Ok(()) => shared.health.succeeded(),
                Err(reason) => shared.health.set(reason),
            }
            continue;
        }
        let before = shared.queued.counting();
        match count_queued(&shared.pools.durable).await {
            Ok(queued) => {
                shared.queued.counted(before, queued);
            }
            Err(e) => {
                shared.health.failed(&e);
            }
        }
    }
}

/// Whether the server takes writes: reachable, and not a read-only standby.
async fn probe(shared: &Shared) -> Result<(), String> {
    let options = shared.pools.durable.connect_options();
    let host = shared.health.host();
    let mut conn = within(sqlx::PgConnection::connect_with(&options))
        .await
        .map_err(|e| format!("PostgreSQL at {host} cannot be reached: {}", describe(&e)))?;
    let writable: Result<bool, sqlx::Error> =
        async { within(sqlx::query("SELECT NOT pg_is_in_recovery()").fetch_one(&mut conn)).await?.try_get(0) }.await;
    conn.close().await.ok();
    match writable {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("PostgreSQL at {host} is a read-only standby")),
        Err(e) => Err(format!("PostgreSQL at {host} cannot be reached: {}", describe(&e))),
    }
}

/// Takes over expired leases, on whichever instance holds the housekeeping
/// lock this round.
pub(super) async fn housekeep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(period(&shared));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // After an outage, no instance could renew its leases: give them a
        // lease's time to renew before taking anything over, or everything
        // in flight anywhere would run twice.
        if shared.health.healthy_for() < shared.options.lease {
            continue;
        }
        match within(take_over_expired(&shared)).await {
            Ok(requeued) if requeued > 0 => {
                super::wakeups::announce(&shared.pools.fast, "webhookd_queued", "").await;
                tracing::warn!(requeued, "took over deliveries whose instance stopped renewing its lease");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %describe(&e), "housekeeping skipped this round"),
        }
    }
}

/// Queues again (or, past their attempts, marks dead) rows whose lease
/// ended; returns how many were queued again.
async fn take_over_expired(shared: &Shared) -> Result<i64, sqlx::Error> {
    let mut tx = shared.pools.durable.begin().await?;
    let leader: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
        .bind(HOUSEKEEPING_LOCK)
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
    if !leader {
        return Ok(0);
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
    tx.commit().await?;
    let mut requeued = 0;
    for row in &rows {
        let (state, n): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
        if state == "queued" {
            requeued = n;
        } else {
            tracing::error!(
                dead = n,
                "deliveries whose instances stopped while processing them past their last attempt are dead"
            );
        }
    }
    Ok(requeued)
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

/// Deliveries per state in the shared queue: waiting and running counted
/// now (through their partial indexes), done and dead at most
/// `FINISHED_COUNTS_FOR` old (they span the whole retention).
pub(super) async fn counts(shared: &Shared) -> Result<StateCounts, sqlx::Error> {
    let pool = &shared.pools.fast;
    let count = |state: &'static str| async move {
        let sql = match state {
            "queued" => "SELECT count(*) FROM webhookd_deliveries WHERE state = 'queued'",
            "running" => "SELECT count(*) FROM webhookd_deliveries WHERE state = 'running'",
            "done" => "SELECT count(*) FROM webhookd_deliveries WHERE state = 'done'",
            _ => "SELECT count(*) FROM webhookd_deliveries WHERE state = 'dead'",
        };
        let n: i64 = within(sqlx::query(sql).fetch_one(pool)).await?.try_get(0)?;
        Ok::<u64, sqlx::Error>(u64::try_from(n).unwrap_or(0))
    };
    let cached = *shared.finished_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (done, dead) = match cached.filter(|(at, _, _)| at.elapsed() < FINISHED_COUNTS_FOR) {
        Some((_, done, dead)) => (done, dead),
        None => {
            let (done, dead) = (count("done").await?, count("dead").await?);
            *shared.finished_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                Some((Instant::now(), done, dead));
            (done, dead)
        }
    };
    Ok(StateCounts { queued: count("queued").await?, running: count("running").await?, done, dead })
}
