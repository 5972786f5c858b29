//! Group commit of accepted deliveries: requests that arrive together share
//! one INSERT and one synchronous commit, so throughput is not one round
//! trip and one WAL flush per delivery. A few batches run at once (the
//! server flushes concurrent commits together too).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::oneshot;

use super::connect::Pools;
use super::{Health, health, text};
use crate::delivery::Delivery;
use crate::queue::sqlite::unix_ms;

/// Deliveries in one INSERT at most.
const MAX_BATCH: usize = 256;
/// Body bytes in one INSERT at most: far below PostgreSQL's 1 GiB message
/// limit, whatever `WEBHOOKD_BODY_MEMORY` lets in at once.
const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// Batches in flight at once: two, so one fills while the other commits.
/// Fewer, larger batches cost the server less per delivery (`push` at 32
/// connections: +15% deliveries/s and -20% server CPU per delivery against
/// four; one no better than two, eight no better than four).
pub(super) const INSERTERS: usize = 2;
/// Deliveries waiting for an inserter at most; more wait to be let in. The
/// channel allocates every slot up front: sized by the queue's capacity
/// (65 536), it was 23 MB of idle RSS.
pub(super) const WAITING: usize = MAX_BATCH * INSERTERS * 2;
/// Longest wait for a commit before answering 503: the commit may still
/// land, and GitHub's redelivery is then answered `duplicate`.
const INSERT_TIMEOUT: Duration = Duration::from_secs(5);

/// One delivery waiting for its commit.
pub(super) struct Pending {
    pub delivery: Delivery,
    /// `Ok(true)`: stored; `Ok(false)`: a duplicate; `Err`: not stored.
    pub reply: oneshot::Sender<Result<bool, String>>,
}

/// Takes pending deliveries off `rx` in batches until it closes.
pub(super) async fn run(pools: Pools, owner: String, rx: async_channel::Receiver<Pending>, health: Arc<Health>) {
    while let Ok(first) = rx.recv().await {
        let mut bytes = first.delivery.raw.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(next) => {
                    bytes += next.delivery.raw.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        // Those that queued behind a failure are answered at once, not
        // after a failed try each.
        if let Some(outage) = health.outage() {
            answer_all(batch, &outage);
            continue;
        }
        if store(&pools.durable, &owner, batch, &health).await {
            super::wakeups::announce(&pools.fast, "webhookd_queued", "").await;
        }
    }
}

/// Stores a batch and answers each delivery; whether any was new. A batch
/// the server refuses for what it holds (not for being unreachable) is
/// stored one by one, so one bad row cannot sink the others.
async fn store(pool: &PgPool, owner: &str, batch: Vec<Pending>, health: &Health) -> bool {
    // The same id twice in one batch: the first is the one stored.
    let mut seen = HashSet::new();
    let (rows, repeats): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| seen.insert(p.delivery.id().to_string()));
    for pending in repeats {
        let _ = pending.reply.send(Ok(false));
    }
    match insert(pool, owner, &rows).await {
        Ok(stored) => {
            health.succeeded();
            let any = !stored.is_empty();
            for pending in rows {
                let inserted = stored.contains(pending.delivery.id().as_str());
                let _ = pending.reply.send(Ok(inserted));
            }
            any
        }
        Err(e) if !health::blocks_writes(&e) && rows.len() > 1 => {
            let mut any = false;
            for pending in rows {
                any |= Box::pin(store(pool, owner, vec![pending], health)).await;
            }
            any
        }
        Err(e) => {
            let reason = health.failed(&e);
            tracing::error!(deliveries = rows.len(), error = %reason, "storing deliveries in PostgreSQL failed; answered 503");
            answer_all(rows, &reason);
            false
        }
    }
}

fn answer_all(batch: Vec<Pending>, reason: &str) {
    for pending in batch {
        let _ = pending.reply.send(Err(reason.to_owned()));
    }
}

/// One INSERT of `rows`; the ids it stored (the others were there already).
async fn insert(pool: &PgPool, owner: &str, rows: &[Pending]) -> Result<HashSet<String>, sqlx::Error> {
    let ids: Vec<String> = rows.iter().map(|p| p.delivery.id().to_string()).collect();
    let column = |f: &dyn Fn(&Delivery) -> Option<String>| {
        rows.iter().map(|p| f(&p.delivery).map(|t| text(&t))).collect::<Vec<_>>()
    };
    let events = column(&|d| Some(d.event().to_string()));
    let actions = column(&|d| d.action().map(str::to_owned));
    let hooks = column(&|d| d.headers.hook_id.clone());
    let target_types = column(&|d| d.headers.target_type.clone());
    let target_ids = column(&|d| d.headers.target_id.clone());
    let kinds = column(&|d| Some(d.content_kind.name().to_owned()));
    let received: Vec<i64> = rows.iter().map(|p| unix_ms(p.delivery.received_at)).collect();
    let installations: Vec<Option<i64>> =
        rows.iter().map(|p| p.delivery.routing.installation_id.and_then(|id| i64::try_from(id).ok())).collect();
    let bodies: Vec<&[u8]> = rows.iter().map(|p| p.delivery.raw.as_ref()).collect();
    let statement = sqlx::query(
        "WITH new AS (
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                  $7::text[], $8::bigint[], $9::bigint[], $10::bytea[])
                 AS t(delivery_id, event, action, hook_id, target_type, target_id, content_kind,
                      received_at, installation_id, body)
         ), stored AS (
             INSERT INTO webhookd_deliveries (delivery_id, event, action, hook_id, target_type, target_id,
                                              content_kind, received_at, state, next_attempt_at,
                                              installation_id, body, received_by)
             SELECT delivery_id, event, action, hook_id, target_type, target_id, content_kind, received_at,
                    'queued', webhookd_now_ms(), installation_id, body, $11 FROM new
             ON CONFLICT (delivery_id) DO NOTHING
             RETURNING delivery_id
         )
         SELECT delivery_id FROM stored",
    )
    .bind(&ids)
    .bind(&events)
    .bind(&actions)
    .bind(&hooks)
    .bind(&target_types)
    .bind(&target_ids)
    .bind(&kinds)
    .bind(&received)
    .bind(&installations)
    .bind(&bodies)
    .bind(owner);
    let stored = tokio::time::timeout(INSERT_TIMEOUT, statement.fetch_all(pool)).await.unwrap_or_else(|_| {
        Err(sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("PostgreSQL did not commit within {}s", INSERT_TIMEOUT.as_secs()),
        )))
    })?;
    Ok(stored.iter().filter_map(|row| row.try_get::<String, _>(0).ok()).collect())
}
