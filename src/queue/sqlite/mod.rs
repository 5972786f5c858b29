//! The durable queue: an embedded SQLite database (WAL, `synchronous=FULL`
//! for accepted deliveries). A delivery is answered 2xx only once its row is
//! committed, so no acknowledged delivery is lost, even to SIGKILL or a power
//! cut. The UNIQUE delivery id deduplicates across restarts.
//!
//! One daemon owns a database at a time (an exclusive lock on `PATH.lock`), so
//! rows a dead owner left `running` are queued again at once at start. The
//! operator CLI (`webhookd deliveries`) works beside the running daemon: it
//! takes no lock, and the daemon polls for rows it requeued.

pub mod admin;
pub mod backup;
mod body_log;
pub mod verify;
pub use body_log::DEFAULT_SEGMENT_BYTES;
mod connection;
mod held;
pub(crate) mod ledger;
mod modes;
mod rows;
mod shared;
mod writer;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use nix::fcntl::{Flock, FlockArg};
use rusqlite::Connection;
use std::sync::mpsc;
use tokio::sync::oneshot;

use super::credentials::{CredentialScheme, Lane, Pauses, deferred_due};
use super::ledger::RecoveryLedger;
use super::{Abandoned, Cause, DeliveryQueue, EnqueueError, Enqueued, Outcome, Settled, StateCounts, StoreError};
use crate::delivery::{Delivery, DeliveryId};
use crate::retry::RetryPolicy;
use crate::telemetry::metrics::Metrics;
use connection::lock_path;
pub(crate) use connection::{apply_schema, describe, open_connection};
use rows::restore;
pub(crate) use rows::{now_ms, prune_finished, remove_unreferenced_bodies, unix_ms};

use held::{Held, Turn};
use shared::Shared;
use writer::{ClaimFilter, Command, NewRow, Op, OpResult, Settle};

fn lease_ms() -> i64 {
    i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX)
}

/// The schema, applied at every open (idempotent).
const SCHEMA: &str = include_str!("schema.sql");
/// How long a claimed delivery is leased to its worker. With one owner per
/// database the lease is informational; a shared backend would reclaim
/// expired leases.
const LEASE: Duration = Duration::from_secs(15 * 60);
/// How often workers recount rows changed outside this process (`deliveries
/// replay`), busy or not, and idle ones look for retries that fell due.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Due deliveries claimed in one round trip to the writer (of one
/// installation, under App auth); the ones no worker takes at once wait in
/// memory, already `running` on disk (a crash requeues them like any other).
const CLAIM_BATCH: usize = 32;
/// Tries to record one outcome before leaving it to crash recovery.
const OUTCOME_TRIES: u32 = 5;
/// Wait after the first failed try to record an outcome; doubles each time.
const OUTCOME_RETRY_FIRST_WAIT: Duration = Duration::from_millis(200);
/// How long SQLite waits on another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of the durable queue.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub capacity: usize,
    pub retry: RetryPolicy,
    /// Size past which the body log starts a new segment file.
    pub body_segment_bytes: u64,
    /// Which credential each delivery runs under, for pauses and turns.
    pub credentials: CredentialScheme,
}

pub struct SqliteQueue {
    path: PathBuf,
    /// `path` made absolute, for messages.
    absolute: PathBuf,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    reader: Arc<Mutex<Connection>>,
    shared: Arc<Shared>,
    options: SqliteOptions,
    /// Credentials paused for a rate limit (in memory: the deferred rows'
    /// due times are on disk).
    pauses: Pauses,
    closed: AtomicBool,
    /// When waiting rows were last recounted from disk, in ms since `started`
    /// (a monotonic clock: a wall clock stepped back would delay recounts).
    last_resync: AtomicU64,
    started: Instant,
    /// Held while this process owns the database; released by `shutdown`.
    lock: Mutex<Option<Flock<File>>>,
    ledger: Arc<ledger::SqliteLedger>,
    /// The last counts read, answered while counting fails.
    last_counts: Mutex<StateCounts>,
}

impl SqliteQueue {
    /// Opens (creating it and its folder if needed) the database at `path`,
    /// takes ownership of it, and queues again what a dead owner left running.
    pub fn open(path: &Path, options: SqliteOptions, metrics: Arc<Metrics>) -> Result<Self, StoreError> {
        let open_error = |cause: Cause| StoreError::Open { path: path.to_path_buf(), cause };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            modes::create_private_dir(dir)
                .map_err(|e| open_error(Cause::file(format!("cannot create the folder {}", dir.display()), e)))?;
        }
        let lock_path = lock_path(path);
        let lock_file = modes::open_or_create_private(&lock_path)
            .map_err(|e| open_error(Cause::file(format!("cannot create the lock file {}", lock_path.display()), e)))?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StoreError::Locked { path: path.to_path_buf(), lock: lock_path.clone() })?;

        // Created here, 0600, so that SQLite gives its -wal and -shm that mode too.
        modes::open_or_create_private(path)
            .map_err(|e| open_error(Cause::file("cannot open the database file for writing", e)))?;
        modes::sqlite_side_files(path).iter().for_each(|side| modes::tighten(side));
        // Absolute in what an operator reads (the daemon's folder may not be known).
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let bodies = body_log::dir_for(&absolute);
        body_log::tighten(&bodies)
            .map_err(|e| open_error(Cause::file(format!("cannot read the body log {}", bodies.display()), e)))?;
        let conn = connection::open_writer(path).map_err(open_error)?;
        apply_schema(&conn, SCHEMA).map_err(open_error)?;
        let referenced = rows::highest_referenced_segment(&conn).map_err(|e| open_error(e.into()))?;
        let log = body_log::BodyLog::open(&bodies, options.body_segment_bytes, referenced)
            .map_err(|e| open_error(Cause::file(format!("cannot open the body log {}", bodies.display()), e)))?;
        // A claim counts its attempt before the handler runs, so a delivery
        // that takes the process down with it (an abort, an OOM kill) spends
        // its attempts too: past them it is dead, not a crash loop. It gets
        // one run beyond them, since a claimed batch also counts attempts
        // for deliveries a kill caught before any worker started them.
        let crashed = conn
            .execute(
                "UPDATE deliveries SET state = 'dead', lease_until = NULL, finished_at = ?2,
                        last_error = 'the process stopped while processing it, ' || attempts
                                     || ' times (past WEBHOOKD_MAX_ATTEMPTS): it may crash webhookd'
                 WHERE state = 'running' AND attempts > ?1",
                rusqlite::params![options.retry.max_attempts, now_ms()],
            )
            .map_err(|e| open_error(e.into()))?;
        if crashed > 0 {
            tracing::error!(
                dead = crashed,
                "deliveries a previous process left running past their last attempt are dead: \
                 each time they ran, the process stopped (see `webhookd deliveries list --status dead`)"
            );
        }
        let requeued = conn
            .execute("UPDATE deliveries SET state = 'queued', lease_until = NULL WHERE state = 'running'", [])
            .map_err(|e| open_error(e.into()))?;
        if requeued > 0 {
            tracing::warn!(requeued, "queued again deliveries a previous process left running");
        }
        let queued: i64 = conn
            .query_row("SELECT count(*) FROM deliveries WHERE state = 'queued'", [], |r| r.get(0))
            .map_err(|e| open_error(e.into()))?;
        let reader = open_connection(path, false).map_err(open_error)?;
        let ledger = ledger::SqliteLedger::new(open_connection(path, false).map_err(open_error)?);

        let shared = Arc::new(Shared::new(usize::try_from(queued).unwrap_or(0), metrics, options.credentials));
        let (commands, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("webhookd-store".into())
            .spawn(move || writer::run(conn, log, rx, writer_shared))
            .map_err(|e| open_error(Cause::file("cannot start the store writer", e)))?;
        if queued > 0 {
            tracing::info!(queued, "resuming deliveries stored by a previous run");
        }
        Ok(Self {
            path: path.to_path_buf(),
            absolute,
            commands: Mutex::new(Some(commands)),
            writer: Mutex::new(Some(writer)),
            reader: Arc::new(Mutex::new(reader)),
            shared,
            options,
            pauses: Pauses::default(),
            closed: AtomicBool::new(false),
            last_resync: AtomicU64::new(0),
            started: Instant::now(),
            lock: Mutex::new(Some(lock)),
            ledger: Arc::new(ledger),
            last_counts: Mutex::new(StateCounts::default()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn call(&self, op: Op) -> Result<OpResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.commands.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(commands) => commands.send(Command { op, reply }).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Stopped);
        }
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.shared.held()
    }

    /// Whether to recount waiting rows now: once per `POLL_INTERVAL`, by
    /// whichever worker asks first, so rows the CLI requeued are seen even
    /// while new deliveries keep every worker busy.
    fn resync_due(&self) -> bool {
        let now = self.monotonic_ms();
        let last = self.last_resync.load(Ordering::SeqCst);
        now.saturating_sub(last) >= u64::try_from(POLL_INTERVAL.as_millis()).unwrap_or(u64::MAX)
            && self.last_resync.compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    fn monotonic_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Rows waiting on disk.
    fn waiting_on_disk(&self) -> usize {
        self.shared.queued.load(Ordering::SeqCst)
    }

    /// Claims a batch of due deliveries that `filter` lets through; returns
    /// one and keeps the rest for the next workers.
    async fn claim(&self, filter: ClaimFilter) -> Result<Option<Delivery>, StoreError> {
        let now = now_ms();
        let lease_until = now + lease_ms();
        let limit = self.held().claim_limit(CLAIM_BATCH);
        let op = Op::Claim { now, lease_until, limit, filter };
        let OpResult::Claimed(rows) = self.call(op).await? else {
            return Err(StoreError::Write(Cause::refused("unexpected answer to a claim")));
        };
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in rows {
            match restore(row) {
                Ok(delivery) => deliveries.push(delivery),
                Err((id, error)) => {
                    tracing::error!(delivery.id = %id, %error, "stored delivery cannot be read back; marked dead");
                    self.call(Op::Finish { delivery_id: id, settle: Settle::Dead { error }, now }).await?;
                }
            }
        }
        let mut held = self.held();
        for delivery in &deliveries {
            held.claimed_from_disk(&self.options.credentials.lane_of(delivery));
        }
        let mut deliveries = deliveries.into_iter();
        let first = deliveries.next();
        deliveries.for_each(|d| held.push(d));
        if held.is_holding() {
            // Idle workers take the rest at once instead of at the next poll.
            self.shared.wake_workers();
        }
        drop(held);
        Ok(first)
    }

    /// Milliseconds until the earliest scheduled retry or end of a pause,
    /// at most `POLL_INTERVAL`.
    pub(in crate::queue) fn idle_wait(&self) -> Duration {
        let now = SystemTime::now();
        let pause_end = self.pauses.next_end(now).map_or(i64::MAX, unix_ms);
        let until = self.shared.next_retry_at.load(Ordering::SeqCst).min(pause_end).saturating_sub(unix_ms(now));
        Duration::from_millis(u64::try_from(until).unwrap_or(0)).min(POLL_INTERVAL)
    }

    /// What a claim for `lane` asks the database for.
    fn lane_filter(&self, lane: &Lane) -> ClaimFilter {
        match (self.options.credentials, lane) {
            (CredentialScheme::App, Some(crate::github::CredentialKey::Installation(id))) => {
                ClaimFilter::Installation(i64::try_from(*id).ok())
            }
            (CredentialScheme::App, _) => ClaimFilter::Installation(None),
            // One lane holds every row.
            _ => ClaimFilter::AnyBut(Vec::new()),
        }
    }

    /// A claim of any lane that is not paused; `None` when every row's
    /// credential is paused (token authentication).
    fn unpaused_filter(&self, now: SystemTime) -> Option<ClaimFilter> {
        let paused = self.pauses.paused_now(now);
        match self.options.credentials {
            CredentialScheme::Token if paused.contains(&crate::github::CredentialKey::Token) => None,
            CredentialScheme::App => Some(ClaimFilter::AnyBut(
                paused
                    .iter()
                    .filter_map(|key| match key {
                        crate::github::CredentialKey::Installation(id) => i64::try_from(*id).ok(),
                        // Never a delivery's: its pause holds no row back.
                        crate::github::CredentialKey::Token | crate::github::CredentialKey::App => None,
                    })
                    .collect(),
            )),
            _ => Some(ClaimFilter::AnyBut(Vec::new())),
        }
    }

    /// Recounts waiting rows, and those due per installation: the CLI may
    /// have changed them from outside, and retries fall due.
    pub(in crate::queue) async fn resync(&self) {
        let reader = self.reader.clone();
        let now = now_ms();
        let counted = tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(PoisonError::into_inner);
            conn.prepare_cached(
                "SELECT installation_id, count(*), sum(next_attempt_at <= ?1),
                        min(CASE WHEN next_attempt_at > ?1 THEN next_attempt_at END)
                 FROM deliveries WHERE state = 'queued' GROUP BY installation_id",
            )?
            .query_map([now], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?, r.get::<_, Option<i64>>(3)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()
        })
        .await;
        self.last_resync.store(self.monotonic_ms(), Ordering::SeqCst);
        if let Ok(Ok(groups)) = counted {
            let (mut queued, mut next) = (0, i64::MAX);
            let mut due: std::collections::HashMap<Lane, usize> = std::collections::HashMap::new();
            for (installation, count, due_now, earliest) in groups {
                queued += usize::try_from(count).unwrap_or(0);
                // Only what falls due later: rows due now are claimed, or
                // wait on a paused credential (whose pause end `idle_wait`
                // knows); counting them would make idle workers spin.
                next = next.min(earliest.unwrap_or(i64::MAX));
                let lane = self.options.credentials.key_for(installation.and_then(|id| u64::try_from(id).ok()));
                *due.entry(lane).or_default() += usize::try_from(due_now).unwrap_or(0);
            }
            due.retain(|_, n| *n > 0);
            self.shared.queued.store(queued, Ordering::SeqCst);
            self.shared.next_retry_at.store(next, Ordering::SeqCst);
            self.held().recount_due_on_disk(due);
        }
    }
}

#[async_trait]
impl DeliveryQueue for SqliteQueue {
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EnqueueError::Closed);
        }
        if self.depth() >= self.options.capacity {
            return Err(EnqueueError::Full);
        }
        // The hot hand-off: when nothing waits on disk, a new delivery is
        // stored already claimed and goes to a worker from memory, which
        // spares the store a claim (a write, and reading and parsing the body
        // back). With rows waiting (a backlog, retries) it queues behind them.
        let body = delivery.raw.len();
        let hand_off = self.waiting_on_disk() == 0 && self.held().reserve(body);
        // The writer hands the delivery over (or frees the reservation) once
        // the commit is decided, and logs a delivery it could not store.
        match self.call(Op::Insert(NewRow { delivery, hand_off })).await {
            Ok(OpResult::Inserted(true)) => Ok(Enqueued::Queued),
            Ok(_) => Ok(Enqueued::Duplicate),
            Err(StoreError::Stopped) => {
                if hand_off {
                    self.held().release(body);
                }
                Err(EnqueueError::Closed)
            }
            Err(_) => Err(EnqueueError::Store),
        }
    }

    async fn next(&self) -> Option<Delivery> {
        let mut lingered = false;
        loop {
            if self.resync_due() {
                self.resync().await;
            }
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = SystemTime::now();
            let turn = self.held().next_turn(|lane| self.pauses.is_paused(lane, now));
            let claimed = match turn {
                Turn::Held(delivery) => return Some(delivery),
                Turn::Claim(lane) => match self.claim(self.lane_filter(&lane)).await {
                    Ok(None) => {
                        // Nothing of this lane is due after all: next lane.
                        self.held().none_due_on_disk(&lane);
                        continue;
                    }
                    claimed => claimed,
                },
                // Nothing queued (the count is resynced from disk at every
                // poll): no need for a write transaction to find that out.
                Turn::Nothing if self.waiting_on_disk() == 0 => Ok(None),
                // Rows of lanes not known in memory (requeued from outside,
                // retries fallen due): any that is not paused.
                Turn::Nothing => match self.unpaused_filter(now) {
                    Some(filter) => self.claim(filter).await,
                    None => Ok(None),
                },
            };
            match claimed {
                Ok(Some(delivery)) => return Some(delivery),
                Ok(None) => {}
                Err(StoreError::Stopped) => return None,
                Err(e) => tracing::error!(error = %e, "claiming a delivery failed; trying again"),
            }
            if self.closed.load(Ordering::SeqCst) {
                // What is left waits on disk for the next start.
                return None;
            }
            if !lingered {
                lingered = true;
                tokio::time::sleep(super::IDLE_LINGER).await;
                continue;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(self.idle_wait()) => self.resync().await,
            }
        }
    }

    async fn finish(&self, delivery: &Delivery, outcome: Outcome) -> Settled {
        let now = now_ms();
        let (settle, settled) = match outcome {
            Outcome::Ok => (Settle::Done, Settled::Done),
            Outcome::Deferred { credential, until } => {
                let error = format!(
                    "deferred: GitHub rate limit, {credential} paused until {}",
                    humantime::format_rfc3339_seconds(until)
                );
                self.pauses.pause(credential, until);
                let wall = SystemTime::now();
                let due = deferred_due(until, wall);
                // Rounded up, as for a retry: never due before the pause ends.
                let at = unix_ms(due).saturating_add(1);
                (Settle::Defer { at, error }, Settled::Deferred(due.duration_since(wall).unwrap_or_default()))
            }
            Outcome::Retry(error) => match self.options.retry.backoff(delivery.attempt) {
                Some(wait) => {
                    // Millisecond clock readings are truncated: round the due
                    // time up so that a retry never comes sooner than `wait`.
                    let wait_ms = i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX);
                    let at = now.saturating_add(wait_ms).saturating_add(1);
                    (Settle::RetryAt { at, error }, Settled::Retrying(wait))
                }
                None => (Settle::Dead { error }, Settled::Dead),
            },
            Outcome::Failed(error) => (Settle::Dead { error }, Settled::Failed),
        };
        let delivery_id = delivery.id().to_string();
        // Returns once committed; workers do not wait for it (worker.rs), so
        // a batch of outcomes shares one commit.
        // A failed commit (the database briefly locked by an operator's
        // command, say) is tried again before falling back on crash recovery,
        // which would run the delivery again at the next start.
        let mut wait = OUTCOME_RETRY_FIRST_WAIT;
        for attempt in 1..=OUTCOME_TRIES {
            let op = Op::Finish { delivery_id: delivery_id.clone(), settle: settle.clone(), now };
            match self.call(op).await {
                Ok(_) | Err(StoreError::Stopped) => break,
                Err(e) if attempt < OUTCOME_TRIES => {
                    tracing::warn!(delivery.id = %delivery.id(), error = %e, attempt, "recording the outcome failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                Err(e) => {
                    tracing::error!(delivery.id = %delivery.id(), error = %e, "recording the outcome failed; the delivery will run again after a restart")
                }
            }
        }
        settled
    }

    fn depth(&self) -> usize {
        self.waiting_on_disk() + self.held().len()
    }

    fn has_room(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.depth() < self.options.capacity
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shared.notify.notify_waiters();
    }

    async fn abandon(&self, interrupted: &[DeliveryId]) -> Abandoned {
        let delivery_ids: Vec<String> = interrupted.iter().map(ToString::to_string).collect();
        // Claimed but never started: back to the queue as if never claimed.
        let unstarted = self.held().close_and_drain();
        let unclaimed = self.call(Op::RequeueRunning { delivery_ids: unstarted, never_started: true }).await;
        match unclaimed.and(self.call(Op::RequeueRunning { delivery_ids, never_started: false }).await) {
            Ok(_) => Abandoned { lost: Vec::new(), kept: self.depth() },
            Err(e) => {
                // Still safe: rows left `running` are queued again at the next start.
                tracing::error!(error = %e, "could not requeue interrupted deliveries now; the next start will");
                Abandoned { lost: Vec::new(), kept: self.depth() + interrupted.len() }
            }
        }
    }

    async fn prune(&self, retention: Duration) -> usize {
        let finished_before = now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match self.call(Op::Prune { finished_before }).await {
            Ok(OpResult::Count(n)) => n,
            Ok(_) => 0,
            Err(e) => {
                tracing::error!(error = %e, "pruning finished deliveries failed");
                0
            }
        }
    }

    async fn counts(&self) -> StateCounts {
        let reader = self.reader.clone();
        let counted = tokio::task::spawn_blocking(move || {
            admin::count_states(&reader.lock().unwrap_or_else(PoisonError::into_inner))
        })
        .await;
        let mut last = self.last_counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counted {
            Ok(Ok(counts)) => *last = counts,
            // Not zeros: a dip to zero and back would read as deliveries
            // dying (the alert) once counting works again.
            _ => last.queued = self.depth() as u64,
        }
        *last
    }

    async fn shutdown(&self) {
        // Dropping the sender ends the writer once it has committed what it holds.
        drop(self.commands.lock().unwrap_or_else(PoisonError::into_inner).take());
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(writer) = writer {
            if !matches!(tokio::task::spawn_blocking(move || writer.join()).await, Ok(Ok(()))) {
                tracing::error!("the store writer thread failed");
            }
        }
        // Everything is committed: another process may own the database now.
        if let Some(lock) = self.lock.lock().unwrap_or_else(PoisonError::into_inner).take() {
            if let Err((_, e)) = lock.unlock() {
                tracing::warn!(error = %e, "releasing the store lock failed; it goes with the process");
            }
        }
    }

    async fn ping(&self) -> bool {
        self.call(Op::Ping).await.is_ok()
    }

    fn write_error(&self) -> Option<String> {
        self.shared.write_error().map(|reason| {
            format!(
                "the store {} cannot write ({reason}); deliveries are refused until a write succeeds \
                 (tried again every second)",
                self.absolute.display()
            )
        })
    }

    fn ledger(&self) -> Arc<dyn RecoveryLedger> {
        self.ledger.clone()
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
