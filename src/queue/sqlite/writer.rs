//! The store's single writer: one thread owning the write connection. Callers
//! send operations over a channel; the thread takes everything that arrived
//! while the previous commit ran and applies it in one transaction, so many
//! concurrent deliveries share one commit and one fsync (group commit).
//!
//! Batches that accept deliveries first append their bodies to the body log
//! (one write and one fsync for the batch), then commit with
//! `synchronous=FULL`: their 2xx waits for both. Batches of claims and outcomes only commit with
//! `NORMAL`: losing one to a power cut means a delivery is processed again
//! (at least once), never lost, and the next FULL commit makes it durable.
//!
//! The writer also knows whether the store can write, for readiness: a failed
//! batch makes it unwritable, a batch that stored deliveries makes it writable
//! again. A load balancer sends nothing to a daemon that is not ready, so
//! while unwritable the writer does not wait for a delivery to find out: every
//! `PROBE_INTERVAL` it probes, writing to a scratch file in the body log's
//! folder and committing a one-row update in the database, the two writes a
//! delivery needs.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::delivery::Delivery;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::body_log::{BodyLog, BodyRef};
use super::rows::{BODY_COLUMNS, now_ms, stored_body, unix_ms};
use super::{Shared, remove_unreferenced_bodies};
use crate::queue::{Cause, StoreError};

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 1024;
/// How often an unwritable store probes whether it can write again.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A delivery to insert.
pub(super) struct NewRow {
    pub delivery: Delivery,
    /// Room is reserved among the held deliveries: once committed, it goes
    /// straight to a worker from memory (stored `running`, first attempt),
    /// unless the workers are gone by then. The writer does the hand-off, so
    /// it happens even if the request that brought the delivery is dropped.
    pub hand_off: bool,
}

/// A claimed delivery as stored.
pub(super) struct StoredRow {
    pub delivery_id: String,
    pub event: String,
    pub hook_id: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub content_kind: String,
    /// The body, or why it could not be read back.
    pub body: Result<Vec<u8>, String>,
    pub received_at: i64,
    pub attempts: u32,
    pub runs: u32,
}

/// How processing ended, as written to the row.
#[derive(Clone)]
pub(super) enum Settle {
    Done,
    RetryAt {
        at: i64,
        error: String,
    },
    /// Back to `queued`, due at `at`, with the claim's attempt given back.
    Defer {
        at: i64,
        error: String,
    },
    Dead {
        error: String,
    },
}

/// Which due rows a claim takes.
#[derive(Debug, Clone)]
pub(super) enum ClaimFilter {
    /// Any, but those of these (paused) installations.
    AnyBut(Vec<i64>),
    /// Only this installation's (`None`: rows naming none).
    Installation(Option<i64>),
}

#[expect(
    clippy::large_enum_variant,
    reason = "inserts are most commands: boxing would add an allocation to each, to save channel slot space"
)]
pub(super) enum Op {
    Insert(NewRow),
    /// Up to `limit` due deliveries, oldest first.
    Claim {
        now: i64,
        lease_until: i64,
        limit: usize,
        filter: ClaimFilter,
    },
    Finish {
        delivery_id: String,
        settle: Settle,
        now: i64,
    },
    /// Back to `queued`. `never_started`: claimed but never handed to the
    /// handler, so the claim's attempt and run are taken back too.
    RequeueRunning {
        delivery_ids: Vec<String>,
        never_started: bool,
    },
    Prune {
        finished_before: i64,
    },
    /// Proves the writer and the database answer.
    Ping,
}

pub(super) enum OpResult {
    Inserted(bool),
    Claimed(Vec<StoredRow>),
    Count(usize),
}

pub(super) struct Command {
    pub op: Op,
    pub reply: oneshot::Sender<Result<OpResult, StoreError>>,
}

/// Runs the writer until every sender is dropped.
pub(super) fn run(mut conn: Connection, mut log: BodyLog, commands: Receiver<Command>, shared: Arc<Shared>) {
    let mut durable = true; // the connection was opened with synchronous=FULL
    let mut last_probe = Instant::now();
    loop {
        // While unwritable, probe at least every PROBE_INTERVAL, even when
        // commands keep coming (outcomes of deliveries stored before).
        if shared.write_error().is_some() && last_probe.elapsed() >= PROBE_INTERVAL {
            probe(&conn, &log, &shared);
            last_probe = Instant::now();
        }
        let first = if shared.write_error().is_some() {
            match commands.recv_timeout(PROBE_INTERVAL.saturating_sub(last_probe.elapsed())) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match commands.recv() {
                Ok(command) => command,
                Err(_) => break,
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match commands.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let wants_durable = batch.iter().any(|c| matches!(c.op, Op::Insert(_)));
        if wants_durable != durable {
            let mode = if wants_durable { "FULL" } else { "NORMAL" };
            if conn.pragma_update(None, "synchronous", mode).is_ok() {
                durable = wants_durable;
            }
        }
        // Decided once per batch; a hand-off the drain closes meanwhile is
        // put back on disk below.
        let handing_off = !shared.held().closed;
        let started = Instant::now();
        let results = apply_batch(&mut conn, &mut log, &batch, handing_off);
        shared.metrics.store_commit_seconds.observe(started.elapsed().as_secs_f64());
        shared.metrics.store_batch_size.observe(batch.len() as f64);
        let pruned = batch.iter().any(|c| matches!(c.op, Op::Prune { .. }));
        // Before anyone is answered, so that /readyz agrees with the answers.
        match &results {
            Ok(_) if wants_durable => shared.writes_succeed(),
            Ok(_) => {}
            Err(e) => {
                shared.writes_failing(&e.to_string());
                last_probe = Instant::now();
            }
        }
        match results {
            Ok(results) => {
                if pruned {
                    // Before answering, so the pruner sees the space freed.
                    match remove_unreferenced_bodies(&conn, log.dir()) {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "removed body log segments no delivery needs"),
                        Err(e) => tracing::warn!(error = %e, "removing old body log segments failed"),
                    }
                }
                let mut work_available = false;
                let mut stranded = Vec::new();
                for (Command { op, reply }, result) in batch.into_iter().zip(results) {
                    work_available |= shared.account(&op, &result, handing_off);
                    if let Op::Insert(NewRow { delivery, hand_off: true }) = op {
                        let inserted = matches!(result, OpResult::Inserted(true));
                        if let Some(unheld) = shared.hand_off(delivery, inserted && handing_off) {
                            stranded.push(unheld);
                        }
                    }
                    let _ = reply.send(Ok(result));
                }
                if work_available {
                    shared.wake_workers();
                }
                if !stranded.is_empty() {
                    requeue_stranded(&mut conn, stranded, &shared);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, operations = batch.len(), "store commit failed");
                let e = std::sync::Arc::new(e);
                for Command { op, reply } in batch {
                    if let Op::Insert(NewRow { delivery, hand_off }) = op {
                        tracing::error!(delivery.id = %delivery.id(), "delivery not stored; answered 503");
                        if hand_off {
                            shared.hand_off(delivery, false);
                        }
                    }
                    let _ = reply.send(Err(StoreError::Write(Cause::Shared(e.clone()))));
                }
            }
        }
    }
}

/// Tries the two writes a delivery needs (see the module comment); marks
/// the store writable if both pass.
fn probe(conn: &Connection, log: &BodyLog, shared: &Shared) {
    let probed = log.probe().map_err(|e| format!("cannot write to the body log folder {}: {e}", log.dir().display()));
    let probed = probed.and_then(|()| {
        conn.prepare_cached(
            "INSERT INTO write_probe (id, probed_at) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at",
        )
        .and_then(|mut statement| statement.execute(params![now_ms()]))
        .map_err(|e| super::describe(&e))
    });
    match probed {
        Ok(_) => shared.writes_succeed(),
        Err(e) => {
            tracing::debug!(error = %e, "the store still cannot write");
            shared.writes_failing(&e);
        }
    }
}

/// Puts back on disk, as if never claimed, hand-offs committed after the
/// workers were gone. Should that fail, the next start queues them again.
fn requeue_stranded(conn: &mut Connection, delivery_ids: Vec<String>, shared: &Shared) {
    let op = Op::RequeueRunning { delivery_ids, never_started: true };
    let requeued = conn.transaction().and_then(|tx| {
        let result = apply(&tx, &op)?;
        tx.commit()?;
        Ok(result)
    });
    match requeued {
        Ok(result) => {
            shared.account(&op, &result, false);
        }
        Err(e) => tracing::error!(error = %e, "could not queue again deliveries received during the drain"),
    }
}

/// Appends the batch's bodies to the log, then applies every operation in
/// one transaction; all or nothing (bodies of a failed batch are never
/// referenced).
fn apply_batch(
    conn: &mut Connection,
    log: &mut BodyLog,
    batch: &[Command],
    handing_off: bool,
) -> Result<Vec<OpResult>, Cause> {
    let new_bodies = batch.iter().filter_map(|c| match &c.op {
        Op::Insert(row) => Some(&row.delivery.raw[..]),
        _ => None,
    });
    let lease_until = now_ms() + super::lease_ms();
    let mut body_refs = log
        .append(new_bodies)
        .map_err(|e| Cause::file(format!("cannot write to the body log {}", log.dir().display()), e))?
        .into_iter();
    let sql = Cause::from;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
    let mut results = Vec::with_capacity(batch.len());
    for command in batch {
        let result = match &command.op {
            Op::Insert(row) => {
                let body = body_refs.next().ok_or_else(|| Cause::refused("the body log returned too few positions"))?;
                insert(&tx, row, body, (row.hand_off && handing_off).then_some(lease_until))
            }
            Op::Claim { now, lease_until, limit, filter } => claim(&tx, log, *now, *lease_until, *limit, filter),
            op => apply(&tx, op),
        };
        results.push(result.map_err(sql)?);
    }
    tx.commit().map_err(sql)?;
    Ok(results)
}

/// Inserts a delivery, `running` and leased until `claimed_until` if it is
/// handed to a worker at once; a duplicate id inserts nothing.
fn insert(conn: &Connection, row: &NewRow, body: BodyRef, claimed_until: Option<i64>) -> rusqlite::Result<OpResult> {
    let delivery = &row.delivery;
    let headers = &delivery.headers;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO deliveries (delivery_id, event, action, hook_id, target_type, target_id, content_kind,
                                     received_at, state, attempts, runs, next_attempt_at, lease_until,
                                     body_segment, body_offset, body_len, installation_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, iif(?9 IS NULL, 'queued', 'running'),
                     iif(?9 IS NULL, 0, 1), iif(?9 IS NULL, 0, 1), ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (delivery_id) DO NOTHING",
        )?
        .execute(params![
            delivery.id().as_str(),
            delivery.event().as_str(),
            delivery.routing.action,
            headers.hook_id,
            headers.target_type,
            headers.target_id,
            delivery.content_kind.name(),
            unix_ms(delivery.received_at),
            claimed_until,
            body.segment,
            body.offset,
            body.len,
            delivery.routing.installation_id.and_then(|id| i64::try_from(id).ok())
        ])?;
    Ok(OpResult::Inserted(inserted == 1))
}

/// Claims up to `limit` due deliveries that `filter` lets through, oldest
/// first, with their bodies.
fn claim(
    conn: &Connection,
    log: &BodyLog,
    now: i64,
    lease_until: i64,
    limit: usize,
    filter: &ClaimFilter,
) -> rusqlite::Result<OpResult> {
    let limit = i64::try_from(limit).unwrap_or(1);
    // ?4: one installation (`IS`, so NULL matches rows naming none), or a JSON
    // array of paused installations to leave out.
    let (condition, filter) = match filter {
        ClaimFilter::Installation(id) => ("installation_id IS ?4", rusqlite::types::Value::from(*id)),
        ClaimFilter::AnyBut(paused) if paused.is_empty() => ("?4 IS NULL", rusqlite::types::Value::Null),
        ClaimFilter::AnyBut(paused) => (
            "(installation_id IS NULL OR installation_id NOT IN (SELECT value FROM json_each(?4)))",
            rusqlite::types::Value::Text(serde_json::to_string(paused).unwrap_or_else(|_| "[]".into())),
        ),
    };
    let rows = conn
        .prepare_cached(&format!(
            "UPDATE deliveries SET state = 'running', attempts = attempts + 1, runs = runs + 1, lease_until = ?2
             WHERE seq IN (SELECT seq FROM deliveries WHERE state = 'queued' AND next_attempt_at <= ?1
                           AND {condition} ORDER BY next_attempt_at, seq LIMIT ?3)
             RETURNING delivery_id, event, hook_id, target_type, target_id, content_kind, received_at, attempts,
                       runs, {BODY_COLUMNS}"
        ))?
        .query_map(params![now, lease_until, limit, filter], |r| {
            Ok(StoredRow {
                delivery_id: r.get(0)?,
                event: r.get(1)?,
                hook_id: r.get(2)?,
                target_type: r.get(3)?,
                target_id: r.get(4)?,
                content_kind: r.get(5)?,
                received_at: r.get(6)?,
                attempts: r.get(7)?,
                runs: r.get(8)?,
                body: stored_body(r, 9, |at| log.read(at))?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(OpResult::Claimed(rows))
}

fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<OpResult> {
    match op {
        Op::Ping => {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(OpResult::Count(0))
        }
        Op::Insert(_) | Op::Claim { .. } => unreachable!("applied by apply_batch"),
        Op::Finish { delivery_id, settle, now } => {
            let changed = match settle {
                Settle::Done => conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'done', finished_at = ?2, lease_until = NULL, last_error = NULL
                         WHERE delivery_id = ?1 AND state = 'running'",
                    )?
                    .execute(params![delivery_id, now])?,
                Settle::RetryAt { at, error } => conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'queued', next_attempt_at = ?2, lease_until = NULL, last_error = ?3
                         WHERE delivery_id = ?1 AND state = 'running'",
                    )?
                    .execute(params![delivery_id, at, error])?,
                Settle::Defer { at, error } => conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'queued', next_attempt_at = ?2, lease_until = NULL, last_error = ?3,
                                               attempts = max(attempts - 1, 0)
                         WHERE delivery_id = ?1 AND state = 'running'",
                    )?
                    .execute(params![delivery_id, at, error])?,
                Settle::Dead { error } => conn
                    .prepare_cached(
                        "UPDATE deliveries SET state = 'dead', finished_at = ?2, lease_until = NULL, last_error = ?3
                         WHERE delivery_id = ?1 AND state = 'running'",
                    )?
                    .execute(params![delivery_id, now, error])?,
            };
            Ok(OpResult::Count(changed))
        }
        Op::RequeueRunning { delivery_ids, never_started } => {
            let mut statement = conn.prepare_cached(
                "UPDATE deliveries SET state = 'queued', lease_until = NULL,
                     attempts = attempts - ?2, runs = runs - ?2
                 WHERE delivery_id = ?1 AND state = 'running'",
            )?;
            let undo = i64::from(*never_started);
            let mut count = 0;
            for id in delivery_ids {
                count += statement.execute(params![id, undo])?;
            }
            Ok(OpResult::Count(count))
        }
        Op::Prune { finished_before } => Ok(OpResult::Count(super::prune_finished(conn, *finished_before)?)),
    }
}
