//! The shared queue: a PostgreSQL database several webhookd instances use at
//! once (`WEBHOOKD_STORE=postgres://…`). The SQLite store stays the embedded
//! default; this one is for deployments that outgrow one machine.
//!
//! - A delivery is answered 2xx only once its row is committed
//!   (`synchronous_commit = on`); concurrent requests share commits
//!   (`inserter`). The UNIQUE delivery id deduplicates across instances.
//! - Workers claim due rows with `FOR UPDATE SKIP LOCKED`, writing this
//!   instance as owner, a lease and a claim token per row: one row at a
//!   time, or (one credential, a backlog waiting) several, the rest held
//!   for this instance's next idle workers (`claim_batch`). A live
//!   instance renews its leases (`leases`); a dead one's expire and the
//!   housekeeper (one instance at a time, under an advisory lock) queues
//!   them again. An outcome is recorded only with the claim's token, so an
//!   instance whose lease was taken over cannot overwrite the new owner's.
//! - `LISTEN/NOTIFY` wakes idle workers on every instance when a delivery is
//!   stored or falls due anywhere (`wakeups`); a one-second poll is the
//!   safety net.
//! - A credential paused for a rate limit is paused for every instance: the
//!   pause is a row claims skip.
//! - Times are the database's clock (`webhookd_now_ms()`), so instances
//!   with skewed clocks agree.

pub mod admin;
mod connect;
mod deployment;
mod depth;
mod health;
mod inserter;
mod leases;
pub(crate) mod ledger;
#[cfg(test)]
pub(crate) mod test_db;
#[cfg(test)]
mod tests;
mod wakeups;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::credentials::{CredentialScheme, deferred_due};
use super::ledger::RecoveryLedger;
use super::{Abandoned, DeliveryQueue, EnqueueError, Enqueued, Outcome, Settled, StateCounts, StoreError};
use crate::config::PostgresUrl;
use crate::delivery::{Delivery, DeliveryId};
use crate::retry::RetryPolicy;
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{EventName, GitHubHeaders};
pub(crate) use connect::describe;
use health::{Health, within};
use inserter::Pending;

/// The schema, applied by the first instance of a version (idempotent).
const SCHEMA: &str = include_str!("schema.sql");
/// The version `SCHEMA` sets up; a database at a higher one is refused.
const SCHEMA_VERSION: i32 = 2;
/// Advisory lock keys (`pg_advisory_*`), chosen to not collide with an
/// application sharing the database: "wh" + a number.
const MIGRATION_LOCK: i64 = 0x7768_0001;
const HOUSEKEEPING_LOCK: i64 = 0x7768_0002;
const RECOVERY_LOCK: i64 = 0x7768_0003;
/// Safety net: idle workers look for due rows at least this often.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most rows one claim takes (`claim_batch`).
const MAX_CLAIM_BATCH: usize = 16;
/// Longest wait between tries while the server is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Settings of the PostgreSQL queue.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub capacity: usize,
    pub retry: RetryPolicy,
    pub credentials: CredentialScheme,
    /// How long a claim lasts without renewal (`WEBHOOKD_LEASE`).
    pub lease: Duration,
    /// Connections at most, both pools together.
    pub connections: u32,
}

/// What this instance's workers share.
pub(crate) struct Shared {
    pools: connect::Pools,
    /// This instance, as written into the rows it claims.
    owner: String,
    options: PostgresOptions,
    health: Arc<Health>,
    /// Wakes idle workers (a NOTIFY, a retry of ours falling due, close).
    wake: Notify,
    /// Rows waiting in the shared queue, as last counted plus what this
    /// instance stored, claimed and put back since.
    queued: depth::Depth,
    /// Deliveries this instance holds: claim token to delivery id.
    in_flight: Mutex<HashMap<i64, String>>,
    /// Done and dead rows, as last counted (whole-table counts are not
    /// redone on every metrics scrape).
    finished_counts: Mutex<Option<(Instant, u64, u64)>>,
    /// The installation served last, for turns between installations.
    last_lane: AtomicI64,
    /// When the earliest retry or pause end that this instance heard of
    /// falls due (ms since `started`).
    next_due: AtomicI64,
    started: Instant,
    /// Told of every rate-limit pause announced (the GitHub client's).
    pause_listener: Mutex<Option<crate::github::PauseListener>>,
}

impl Shared {
    fn monotonic_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Notes that something falls due in `wait`, so idle workers look then.
    pub(crate) fn due_in(&self, wait: Duration) {
        let at = self.monotonic_ms().saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
        self.next_due.fetch_min(at, Ordering::SeqCst);
    }

    /// How long an idle worker waits before looking again.
    fn idle_wait(&self) -> Duration {
        let now = self.monotonic_ms();
        let due = self.next_due.load(Ordering::SeqCst);
        if due <= now {
            self.next_due.store(i64::MAX, Ordering::SeqCst);
            return Duration::ZERO;
        }
        Duration::from_millis(u64::try_from(due - now).unwrap_or(u64::MAX)).min(POLL_INTERVAL)
    }

    fn tokens(&self) -> Vec<i64> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner).keys().copied().collect()
    }
}

pub struct PostgresQueue {
    shown: String,
    shared: Arc<Shared>,
    inserts: Mutex<Option<async_channel::Sender<Pending>>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Once closed, this instance claims only what it received itself:
    /// the rest of the shared queue is other instances' work, and a rolling
    /// restart must not drain the whole deployment's backlog.
    closed: AtomicBool,
    ledger: Arc<ledger::PgLedger>,
    /// Deliveries claimed with another (`claim_batch`) that no worker took
    /// yet; their leases are renewed with the rest (`Shared::in_flight`).
    prefetched: Mutex<VecDeque<Delivery>>,
    /// The last counts read, answered while counting fails.
    last_counts: Mutex<StateCounts>,
}

impl PostgresQueue {
    /// Connects, migrates, and starts the inserters, the wake-up listener,
    /// lease renewal and housekeeping.
    pub async fn open(url: &PostgresUrl, options: PostgresOptions) -> Result<Self, StoreError> {
        let pools = connect::connect(url, options.connections).await?;
        let owner = format!(
            "{}:{}:{:08x}",
            nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "host".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        let queued = count_queued(&pools.fast)
            .await
            .map_err(|e| StoreError::Unreachable { host: url.host().to_owned(), cause: e.into() })?;
        let shared = Arc::new(Shared {
            pools,
            owner,
            options,
            health: Arc::new(Health::new(url.host())),
            wake: Notify::new(),
            queued: depth::Depth::new(queued),
            in_flight: Mutex::new(HashMap::new()),
            finished_counts: Mutex::new(None),
            last_lane: AtomicI64::new(i64::MIN),
            next_due: AtomicI64::new(i64::MAX),
            started: Instant::now(),
            pause_listener: Mutex::new(None),
        });
        let (inserts, rx) = async_channel::bounded(inserter::WAITING);
        let mut tasks = Vec::new();
        for _ in 0..inserter::INSERTERS {
            let owner = shared.owner.clone();
            tasks.push(tokio::spawn(inserter::run(shared.pools.clone(), owner, rx.clone(), shared.health.clone())));
        }
        tasks.push(tokio::spawn(wakeups::listen(shared.clone())));
        tasks.push(tokio::spawn(leases::renew(shared.clone())));
        tasks.push(tokio::spawn(leases::housekeep(shared.clone())));
        tasks.push(tokio::spawn(leases::recount(shared.clone())));
        tracing::info!(store = %url.shown(), instance = %shared.owner, queued, "PostgreSQL store open");
        let ledger = Arc::new(ledger::PgLedger::new(shared.pools.durable.clone(), url));
        Ok(Self {
            shown: url.shown().to_owned(),
            shared,
            inserts: Mutex::new(Some(inserts)),
            tasks: Mutex::new(tasks),
            closed: AtomicBool::new(false),
            ledger,
            prefetched: Mutex::new(VecDeque::new()),
            last_counts: Mutex::new(StateCounts::default()),
        })
    }

    /// Claims the oldest due row of the next installation in turn (under App
    /// auth) or the oldest due rows (otherwise: several when a backlog
    /// waits, the rest kept in `prefetched`), skipping paused credentials.
    async fn claim(&self) -> Result<Option<Delivery>, sqlx::Error> {
        let s = &self.shared;
        // Each row's claim token is this XOR its seq: one of its own.
        let token_base = fastrand::i64(1..);
        let lease_ms = i64::try_from(s.options.lease.as_millis()).unwrap_or(i64::MAX);
        let closing = self.closed.load(Ordering::SeqCst);
        let by_lane = s.options.credentials == CredentialScheme::App;
        let scheme = match s.options.credentials {
            CredentialScheme::App => "app",
            CredentialScheme::Token => "token",
            CredentialScheme::DryRun => "none",
        };
        let after = if by_lane { s.last_lane.load(Ordering::SeqCst) } else { i64::MIN };
        // Under App auth each claim is one installation's turn: one row.
        let limit = if by_lane { 1 } else { claim_batch(s.queued.get()) };
        let change = s.queued.change();
        let statement = claim_sql_for(by_lane, limit);
        let claim = |after: i64| {
            let query = sqlx::query(statement).bind(after).bind(token_base).bind(lease_ms).bind(closing).bind(scheme);
            within(query.bind(&s.owner).fetch_all(&s.pools.fast))
        };
        let mut rows = claim(after).await?;
        if rows.is_empty() && after != i64::MIN {
            // The turn goes round: from the first installation again.
            rows = claim(i64::MIN).await?;
        }
        if rows.is_empty() {
            return Ok(None);
        }
        change.apply(-isize::try_from(rows.len()).unwrap_or(isize::MAX));
        // Nothing is held (renewed, handed out) until every row is read: a
        // row left out by an error here is not renewed, so its lease ends
        // and it is due again.
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let read = || -> Result<(i64, i64, String, i64), sqlx::Error> {
                Ok((
                    row.try_get("seq")?,
                    row.try_get("lease_token")?,
                    row.try_get("delivery_id")?,
                    row.try_get("lane")?,
                ))
            };
            let (seq, token, id, lane) = match read() {
                Ok(read) => read,
                Err(error) => {
                    tracing::error!(%error, "a claimed row cannot be read; it is due again once its lease ends");
                    continue;
                }
            };
            s.last_lane.store(lane, Ordering::SeqCst);
            match restore(row) {
                Ok(mut delivery) => {
                    delivery.claim = Some(token);
                    claimed.push((seq, token, id, delivery));
                }
                Err(error) => {
                    tracing::error!(delivery.id = %id, %error, "stored delivery cannot be read back; marked dead");
                    let dead = Settle::Dead { error: text(&error) };
                    let dead = within(dead.statement(token).execute(&s.pools.durable)).await;
                    if let Err(e) = dead {
                        tracing::warn!(delivery.id = %id, error = %describe(&e),
                            "could not mark it dead; it is tried again once its lease ends");
                    }
                }
            }
        }
        // RETURNING keeps no order: oldest first.
        claimed.sort_unstable_by_key(|(seq, ..)| *seq);
        let first = {
            let mut in_flight = s.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            let mut claimed = claimed.into_iter().map(|(_, token, id, delivery)| {
                in_flight.insert(token, id);
                delivery
            });
            let first = claimed.next();
            self.prefetched.lock().unwrap_or_else(PoisonError::into_inner).extend(claimed);
            first
        };
        match first {
            Some(first) => Ok(Some(first)),
            None => Box::pin(self.claim()).await,
        }
    }

    /// Puts claimed deliveries no worker has started back in the queue,
    /// their attempt not spent: after a pause of the one credential they
    /// would all run into it.
    async fn hand_back_prefetched(&self) {
        let tokens: Vec<i64> =
            self.prefetched.lock().unwrap_or_else(PoisonError::into_inner).drain(..).filter_map(|d| d.claim).collect();
        if tokens.is_empty() {
            return;
        }
        let change = self.shared.queued.change();
        match self.requeue(&tokens, true).await {
            Ok(n) => change.apply(isize::try_from(n).unwrap_or(isize::MAX)),
            // Their leases end and they are due again then.
            Err(e) => {
                tracing::warn!(error = %describe(&e), held = tokens.len(), "could not hand back prefetched deliveries; their leases will end")
            }
        }
        let mut in_flight = self.shared.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
        for token in tokens {
            in_flight.remove(&token);
        }
    }

    /// Writes an outcome under the delivery's own claim, if this instance
    /// still holds it; tries again while the server cannot take writes,
    /// until the lease is over (then the row is another instance's, or due
    /// again). Whether it was written.
    async fn record(&self, delivery: &Delivery, settle: &Settle) -> bool {
        let s = &self.shared;
        let id = delivery.id();
        let Some(token) = delivery.claim else {
            tracing::error!(delivery.id = %id, "an outcome for a delivery this store did not hand out; not recorded");
            return false;
        };
        let give_up = Instant::now() + s.options.lease;
        let mut wait = Duration::from_millis(100);
        let written = loop {
            match within(settle.statement(token).fetch_optional(&s.pools.durable)).await {
                Ok(Some(_)) => break true,
                Ok(None) => {
                    // Or: the commit landed and its answer was lost, then
                    // this try found the row settled. Either way, not ours.
                    tracing::warn!(
                        delivery.id = %id,
                        "this claim of the delivery is no longer current (its lease ended and it was taken over, \
                         or the outcome was already written): not recorded again"
                    );
                    break false;
                }
                Err(e) if health::blocks_writes(&e) && Instant::now() + wait < give_up => {
                    tracing::warn!(delivery.id = %id, error = %s.health.failed(&e), "recording the outcome failed; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::error!(delivery.id = %id, error = %s.health.failed(&e),
                        "recording the outcome failed: the delivery runs again once its lease ends");
                    break false;
                }
            }
        };
        s.in_flight.lock().unwrap_or_else(PoisonError::into_inner).remove(&token);
        written
    }

    /// Puts the claims with these tokens back in the queue.
    async fn requeue(&self, tokens: &[i64], never_started: bool) -> Result<u64, sqlx::Error> {
        let done = within(
            sqlx::query(
                "UPDATE webhookd_deliveries
                 SET state = 'queued', owner = NULL, lease_until = NULL, lease_token = NULL,
                     next_attempt_at = webhookd_now_ms(),
                     attempts = CASE WHEN $2 THEN greatest(attempts - 1, 0) ELSE attempts END,
                     runs = CASE WHEN $2 THEN greatest(runs - 1, 0) ELSE runs END
                 WHERE state = 'running' AND lease_token = ANY($1)",
            )
            .bind(tokens)
            .bind(never_started)
            .execute(&self.shared.pools.durable),
        )
        .await?;
        if done.rows_affected() > 0 {
            wakeups::announce(&self.shared.pools.fast, "webhookd_queued", "").await;
        }
        Ok(done.rows_affected())
    }
}

/// The claim for up to `limit` rows (`claim_batch`): of the first
/// installation after `after` (by id) that has a due row and is not paused,
/// when `by_lane` (then one row).
fn claim_sql_for(by_lane: bool, limit: usize) -> &'static str {
    if by_lane {
        return &CLAIM_BY_LANE;
    }
    // The largest size that `limit` allows (the smallest is one row).
    let oldest = &*CLAIM_OLDEST;
    &oldest.iter().rev().find(|(size, _)| *size <= limit).unwrap_or(&oldest[0]).1
}

/// Rows one claim takes: one while the queue is short (a row claimed ahead
/// waits on this instance while another's workers may be idle), more as the
/// backlog grows (planning and running a claim cost the server more than
/// the row it moves), up to `MAX_CLAIM_BATCH`.
fn claim_batch(depth: usize) -> usize {
    (1 + depth / 32).min(MAX_CLAIM_BATCH)
}

/// The claim statements: by installation then age, one row; by age alone,
/// in batches of 1, 2, 4, 8 and 16 rows. The limit is written in, not a
/// parameter: once PostgreSQL plans a statement for any parameters (after
/// five runs, when that looks as cheap), it assumes an unknown limit takes a
/// tenth of the rows, and a plan that sorts the backlog won (draining
/// took twice as long).
static CLAIM_BY_LANE: LazyLock<String> = LazyLock::new(|| claim_sql("coalesce(installation_id, -1), seq", 1));
static CLAIM_OLDEST: LazyLock<[(usize, String); 5]> =
    LazyLock::new(|| [1, 2, 4, 8, MAX_CLAIM_BATCH].map(|size| (size, claim_sql("seq", size))));

fn claim_sql(order: &str, limit: usize) -> String {
    const LANE: &str = "coalesce(installation_id, -1)";
    format!(
        "UPDATE webhookd_deliveries SET state = 'running', owner = $6, lease_until = webhookd_now_ms() + $3,
                lease_token = $2 # seq, attempts = attempts + 1, runs = runs + 1
         WHERE seq = ANY(ARRAY(
             SELECT seq FROM webhookd_deliveries q
             WHERE state = 'queued' AND next_attempt_at <= webhookd_now_ms()
               AND (NOT $4 OR received_by = $6)
               AND {LANE} > $1
               -- Paused credentials, looked up once per statement (not per row).
               AND {LANE} <> ALL (ARRAY(
                   SELECT substr(credential, 14)::bigint FROM webhookd_pauses
                   WHERE $5 = 'app' AND credential LIKE 'installation:%' AND until_ms > webhookd_now_ms()))
               AND NOT (SELECT EXISTS (
                   SELECT 1 FROM webhookd_pauses
                   WHERE $5 = 'token' AND credential = 'token' AND until_ms > webhookd_now_ms()))
             ORDER BY {order}
             LIMIT {limit}
             FOR UPDATE SKIP LOCKED))
         RETURNING seq, lease_token, delivery_id, event, hook_id, target_type, target_id, content_kind, body, received_at,
                   attempts, runs, {LANE} AS lane"
    )
}

/// Rebuilds a delivery from a claimed row; an unreadable one, why.
fn restore(row: &PgRow) -> Result<Delivery, String> {
    let text = |column: &str| row.try_get::<String, _>(column).map_err(|e| e.to_string());
    let optional = |column: &str| row.try_get::<Option<String>, _>(column).map_err(|e| e.to_string());
    let headers = GitHubHeaders {
        event: EventName::parse(&text("event")?).map_err(|e| e.to_string())?,
        delivery_id: DeliveryId::parse(&text("delivery_id")?).map_err(|e| e.to_string())?,
        hook_id: optional("hook_id")?,
        target_type: optional("target_type")?,
        target_id: optional("target_id")?,
    };
    let kind = ContentKind::from_name(&text("content_kind")?);
    let body: Vec<u8> = row.try_get("body").map_err(|e| e.to_string())?;
    let mut delivery = Delivery::from_verified(headers, kind, Bytes::from(body)).map_err(|e| e.to_string())?;
    let received_at: i64 = row.try_get("received_at").map_err(|e| e.to_string())?;
    let attempts: i32 = row.try_get("attempts").map_err(|e| e.to_string())?;
    let runs: i32 = row.try_get("runs").map_err(|e| e.to_string())?;
    delivery.received_at = UNIX_EPOCH + Duration::from_millis(u64::try_from(received_at).unwrap_or(0));
    delivery.attempt = u32::try_from(attempts).unwrap_or(1);
    delivery.first_run = runs <= 1;
    Ok(delivery)
}

async fn count_queued(pool: &PgPool) -> Result<usize, sqlx::Error> {
    let row =
        within(sqlx::query("SELECT count(*) FROM webhookd_deliveries WHERE state = 'queued'").fetch_one(pool)).await?;
    Ok(usize::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
}

/// What an outcome writes.
enum Settle {
    Done,
    /// Due again after `wait_ms`; `give_back`: the attempt is not counted.
    Again {
        wait_ms: i64,
        error: String,
        give_back: bool,
        pause: Option<(String, i64)>,
    },
    Dead {
        error: String,
    },
}

impl Settle {
    fn statement(&self, token: i64) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            Self::Done => sqlx::query(
                "UPDATE webhookd_deliveries SET state = 'done', finished_at = webhookd_now_ms(),
                        owner = NULL, lease_until = NULL, lease_token = NULL
                 WHERE lease_token = $1 AND state = 'running' RETURNING 1",
            )
            .bind(token),
            Self::Dead { error } => sqlx::query(
                "UPDATE webhookd_deliveries SET state = 'dead', finished_at = webhookd_now_ms(), last_error = $2,
                        owner = NULL, lease_until = NULL, lease_token = NULL
                 WHERE lease_token = $1 AND state = 'running' RETURNING 1",
            )
            .bind(token)
            .bind(error),
            // The pause is written in the same statement; both are announced
            // after the commit (`wakeups::announce`).
            Self::Again { wait_ms, error, give_back, pause } => sqlx::query(
                "WITH paused AS (
                     INSERT INTO webhookd_pauses (credential, until_ms)
                     SELECT $5, webhookd_now_ms() + $6 WHERE $5 IS NOT NULL
                     ON CONFLICT (credential) DO UPDATE
                         SET until_ms = greatest(webhookd_pauses.until_ms, excluded.until_ms)
                     RETURNING 1
                 ), settled AS (
                     UPDATE webhookd_deliveries SET state = 'queued', next_attempt_at = webhookd_now_ms() + $2,
                            last_error = $3,
                            attempts = CASE WHEN $4 THEN greatest(attempts - 1, 0) ELSE attempts END,
                            owner = NULL, lease_until = NULL, lease_token = NULL
                     WHERE lease_token = $1 AND state = 'running' RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM paused) FROM settled",
            )
            .bind(token)
            .bind(wait_ms)
            .bind(error)
            .bind(give_back)
            .bind(pause.as_ref().map(|(credential, _)| credential.clone()))
            .bind(pause.as_ref().map_or(0, |(_, ms)| *ms)),
        }
    }
}

/// Text as PostgreSQL stores it: it refuses the NUL character (a payload's
/// `action` or an error message may hold one).
pub(super) fn text(s: &str) -> String {
    s.replace('\0', "\u{FFFD}")
}

fn millis(wait: Duration) -> i64 {
    // Rounded up: never due sooner than `wait`.
    i64::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(i64::MAX).saturating_add(1)
}

#[async_trait]
impl DeliveryQueue for PostgresQueue {
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(EnqueueError::Closed);
        }
        if self.depth() >= self.shared.options.capacity {
            return Err(EnqueueError::Full);
        }
        // While the server is known to be lost, answer at once: the probe
        // (`leases::recount`) notices when it is back.
        if self.shared.health.outage().is_some() {
            return Err(EnqueueError::Store);
        }
        let change = self.shared.queued.change();
        let (reply, answer) = oneshot::channel();
        let sender = self.inserts.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(sender) = sender else { return Err(EnqueueError::Closed) };
        if sender.send(Pending { delivery, reply }).await.is_err() {
            return Err(EnqueueError::Closed);
        }
        match answer.await {
            Ok(Ok(true)) => {
                change.apply(1);
                Ok(Enqueued::Queued)
            }
            Ok(Ok(false)) => Ok(Enqueued::Duplicate),
            Ok(Err(_)) => Err(EnqueueError::Store),
            Err(_) => Err(EnqueueError::Closed),
        }
    }

    async fn next(&self) -> Option<Delivery> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let woken = self.shared.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let prefetched = self.prefetched.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
            let claimed = match prefetched {
                Some(delivery) => Ok(Some(delivery)),
                None => self.claim().await,
            };
            match claimed {
                Ok(Some(delivery)) => {
                    // There may be more: wake the next idle worker, which
                    // wakes another if it finds one too. A notification
                    // wakes one worker, and a burst fans out from it.
                    self.shared.wake.notify_one();
                    return Some(delivery);
                }
                Ok(None) if self.closed.load(Ordering::SeqCst) => return None,
                Ok(None) => {
                    backoff = Duration::from_millis(100);
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep(self.shared.idle_wait()) => {}
                    }
                }
                Err(e) => {
                    // A busy pool is contention here, not the server gone.
                    let reason = if matches!(e, sqlx::Error::PoolTimedOut) {
                        describe(&e)
                    } else {
                        self.shared.health.failed(&e)
                    };
                    if self.closed.load(Ordering::SeqCst) {
                        tracing::warn!(error = %reason, "claiming failed while stopping; what is left waits in the store");
                        return None;
                    }
                    tracing::warn!(error = %reason, wait = ?backoff, "claiming a delivery failed; trying again");
                    tokio::select! {
                        () = &mut woken => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn finish(&self, delivery: &Delivery, outcome: Outcome) -> Settled {
        let (settle, settled) = match outcome {
            Outcome::Ok => (Settle::Done, Settled::Done),
            Outcome::Deferred { credential, until } => {
                let now = SystemTime::now();
                let due = deferred_due(until, now);
                let wait = due.duration_since(now).unwrap_or_default();
                let pause_ms = millis(until.duration_since(now).unwrap_or_default());
                let error = format!(
                    "deferred: GitHub rate limit, {credential} paused until {}",
                    humantime::format_rfc3339_seconds(until)
                );
                let pause = Some((credential.to_string(), pause_ms));
                (Settle::Again { wait_ms: millis(wait), error, give_back: true, pause }, Settled::Deferred(wait))
            }
            Outcome::Retry(error) => match self.shared.options.retry.backoff(delivery.attempt) {
                Some(wait) => (
                    Settle::Again { wait_ms: millis(wait), error: text(&error), give_back: false, pause: None },
                    Settled::Retrying(wait),
                ),
                None => (Settle::Dead { error: text(&error) }, Settled::Dead),
            },
            Outcome::Failed(error) => (Settle::Dead { error: text(&error) }, Settled::Failed),
        };
        // Only a delivery due again changes the queue's depth.
        let change = matches!(settle, Settle::Again { .. }).then(|| self.shared.queued.change());
        let written = self.record(delivery, &settle).await;
        if written && !matches!(settle, Settle::Again { .. }) {
            // This instance's own metrics see its outcomes at once.
            *self.shared.finished_counts.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        if let (true, Settle::Again { wait_ms, pause, .. }) = (written, settle) {
            if let Some(change) = change {
                change.apply(1);
            }
            self.shared.due_in(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)));
            let fast = &self.shared.pools.fast;
            wakeups::announce(fast, "webhookd_due", &wait_ms.to_string()).await;
            if let Some((credential, ms)) = pause {
                wakeups::announce(fast, "webhookd_paused", &format!("{credential} {ms}")).await;
                self.hand_back_prefetched().await;
            }
        }
        settled
    }

    fn depth(&self) -> usize {
        self.shared.queued.get()
    }

    fn has_room(&self) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.depth() < self.shared.options.capacity
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_waiters();
    }

    async fn abandon(&self, interrupted: &[DeliveryId]) -> Abandoned {
        // Claimed ahead and never started: back now, counted in `kept`.
        self.hand_back_prefetched().await;
        let tokens: Vec<i64> = {
            let held = self.shared.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            held.iter()
                .filter(|(_, id)| interrupted.iter().any(|i| i.as_str() == id.as_str()))
                .map(|(t, _)| *t)
                .collect()
        };
        match self.requeue(&tokens, false).await {
            Ok(_) => Abandoned { lost: Vec::new(), kept: self.depth() + tokens.len() },
            Err(e) => {
                // Still safe: their leases end and another instance, or the
                // next start, takes them.
                tracing::error!(error = %describe(&e), "could not requeue interrupted deliveries now; their leases will end");
                Abandoned { lost: Vec::new(), kept: self.depth() + interrupted.len() }
            }
        }
    }

    async fn prune(&self, retention: Duration) -> usize {
        leases::prune(&self.shared, retention).await
    }

    async fn counts(&self) -> StateCounts {
        let counted = leases::counts(&self.shared).await;
        let mut last = self.last_counts.lock().unwrap_or_else(PoisonError::into_inner);
        match counted {
            Ok(counts) => *last = counts,
            // Not zeros: a dip to zero and back would read as deliveries
            // dying (the alert) once the server answers again.
            Err(e) => {
                tracing::warn!(error = %describe(&e), "counting the shared queue failed");
                last.queued = self.depth() as u64;
            }
        }
        *last
    }

    fn write_error(&self) -> Option<String> {
        self.shared.health.outage().map(|reason| format!("{reason}; deliveries are refused until it answers again"))
    }

    async fn shutdown(&self) {
        // Every delivery was answered: no insert is pending.
        drop(self.inserts.lock().unwrap_or_else(PoisonError::into_inner).take());
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        // Claimed ahead and never started: back with their attempt unspent.
        self.hand_back_prefetched().await;
        // Claims still held (a drain timeout) go back now, attempt counted,
        // rather than when their lease ends.
        let leftover = self.shared.tokens();
        if !leftover.is_empty() {
            if let Err(e) = self.requeue(&leftover, false).await {
                tracing::warn!(error = %describe(&e), "could not hand back held deliveries; their leases will end");
            }
        }
        // Closing waits for connections in use; a hung one is not waited for.
        let closing = async {
            self.shared.pools.durable.close().await;
            self.shared.pools.fast.close().await;
        };
        if tokio::time::timeout(health::STATEMENT_TIMEOUT, closing).await.is_err() {
            tracing::warn!("PostgreSQL connections did not close in time; they go with the process");
        }
    }

    fn deployment_limits(&self) -> Option<Arc<dyn crate::github::DeploymentLimits>> {
        Some(Arc::new(deployment::SharedLimits(self.shared.clone())))
    }

    fn ledger(&self) -> Arc<dyn RecoveryLedger> {
        self.ledger.clone()
    }

    fn describe(&self) -> String {
        self.shown.clone()
    }
}
