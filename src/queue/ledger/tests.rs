//! The recovery ledger's rules, run against every backend (as
//! `queue::contract` does for the queue); then what only durable stores
//! promise (it survives a restart, the command reads it, older databases
//! are migrated) and what only PostgreSQL does (one instance leads).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::config::StoreKind;
use crate::queue::contract::{delivery, next, postgres_options, sqlite_options};
use crate::queue::postgres::test_db::TestDb;
use crate::queue::{DeliveryQueue, MemoryQueue, Outcome, PostgresQueue, SqliteQueue};
use crate::retry::RetryPolicy;
use crate::telemetry::metrics::Metrics;

const WAIT: Duration = Duration::from_secs(10);

/// A store under test, kept alive with what it needs.
struct Store {
    queue: Arc<dyn DeliveryQueue>,
    kind: StoreKind,
    _dir: Option<tempfile::TempDir>,
    _db: Option<TestDb>,
}

impl Store {
    fn ledger(&self) -> Arc<dyn RecoveryLedger> {
        self.queue.ledger()
    }

    fn db_url(&self) -> &crate::config::PostgresUrl {
        &self._db.as_ref().expect("a PostgreSQL store").url
    }

    /// Stops this queue and opens the store again, as a restart does.
    async fn restart(mut self) -> Self {
        self.queue.shutdown().await;
        self.queue = open_queue(&self.kind).await;
        self
    }
}

async fn open_queue(kind: &StoreKind) -> Arc<dyn DeliveryQueue> {
    match kind {
        StoreKind::Memory => {
            let retry = RetryPolicy { max_attempts: 3, base: Duration::from_millis(100) };
            Arc::new(MemoryQueue::new(10, Duration::from_secs(3600), retry))
        }
        StoreKind::Sqlite(path) => {
            Arc::new(SqliteQueue::open(path, sqlite_options(10), Arc::new(Metrics::new())).expect("opens"))
        }
        StoreKind::Postgres(url) => Arc::new(PostgresQueue::open(url, postgres_options(10)).await.expect("opens")),
    }
}

async fn memory() -> Option<Store> {
    Some(Store { queue: open_queue(&StoreKind::Memory).await, kind: StoreKind::Memory, _dir: None, _db: None })
}

async fn sqlite() -> Option<Store> {
    let dir = tempfile::tempdir().expect("tempdir");
    let kind = StoreKind::Sqlite(dir.path().join("q.db"));
    Some(Store { queue: open_queue(&kind).await, kind, _dir: Some(dir), _db: None })
}

/// `None` (skipped) without `WEBHOOKD_TEST_DATABASE_URL`.
async fn postgres() -> Option<Store> {
    let db = TestDb::create().await?;
    let kind = StoreKind::Postgres(db.url.clone());
    Some(Store { queue: open_queue(&kind).await, kind, _dir: None, _db: Some(db) })
}

macro_rules! ledger_contract_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn holds_what_the_queue_accepted_in_any_state() {
                let Some(s) = $backend().await else { return };
                let (q, ledger) = (s.queue.as_ref(), s.ledger());
                assert!(!ledger.holds("a").await.expect("holds"));
                q.enqueue(delivery("a")).await.expect("queued");
                assert!(ledger.holds("a").await.expect("holds"), "queued");
                let a = next(q).await;
                assert!(ledger.holds("a").await.expect("holds"), "running");
                q.finish(&a, Outcome::Ok).await;
                assert!(ledger.holds("a").await.expect("holds"), "done");
                assert!(!ledger.holds("b").await.expect("holds"));
                assert!(!ledger.holds("not an id!").await.expect("an impossible id is simply not held"));
                q.shutdown().await;
            }

            #[tokio::test]
            async fn checkpoints_are_per_hook_and_never_move_back() {
                let Some(s) = $backend().await else { return };
                let ledger = s.ledger();
                assert_eq!(ledger.checkpoint("app").await.expect("read"), None);
                ledger.set_checkpoint("app", 5_000).await.expect("set");
                ledger.set_checkpoint("repo:o/r:34", 7_000).await.expect("set");
                ledger.set_checkpoint("app", 3_000).await.expect("set");
                assert_eq!(ledger.checkpoint("app").await.expect("read"), Some(5_000), "kept the newest");
                ledger.set_checkpoint("app", 9_000).await.expect("set");
                assert_eq!(ledger.checkpoint("app").await.expect("read"), Some(9_000));
                assert_eq!(s.ledger().checkpoint("repo:o/r:34").await.expect("read"), Some(7_000), "one ledger");
                s.queue.shutdown().await;
            }

            #[tokio::test]
            async fn requests_are_counted_and_forgotten_by_age() {
                let Some(s) = $backend().await else { return };
                let ledger = s.ledger();
                assert_eq!(ledger.requested("d1").await.expect("read"), None);
                ledger.record_request("app", "d1", 1_000).await.expect("record");
                ledger.record_request("app", "d1", 4_000).await.expect("record");
                ledger.record_request("org:acme:12", "d2", 2_000).await.expect("record");
                assert_eq!(
                    ledger.requested("d1").await.expect("read"),
                    Some(Requested { count: 2, last_at_ms: 4_000 })
                );
                assert_eq!(
                    ledger.requested("d2").await.expect("read"),
                    Some(Requested { count: 1, last_at_ms: 2_000 })
                );
                assert_eq!(ledger.forget_requests_before(3_000).await.expect("forget"), 1);
                assert_eq!(ledger.requested("d2").await.expect("read"), None, "last asked before 3000");
                assert!(ledger.requested("d1").await.expect("read").is_some(), "asked again at 4000");
                assert_eq!(ledger.forget_requests_before(3_000).await.expect("forget"), 0);
                s.queue.shutdown().await;
            }

            #[tokio::test]
            async fn learned_hooks_are_bounded_dropping_the_least_recently_seen() {
                let Some(s) = $backend().await else { return };
                let ledger = s.ledger();
                // Seen minutes apart: a durable store writes again a hook
                // seen within a minute only after it.
                let at = |i: usize| i64::try_from(i).expect("small") * 2 * LEARN_REFRESH_MS;
                ledger.learn_hook("app", at(0)).await.expect("learn");
                ledger.learn_hook("app", at(0)).await.expect("idempotent");
                for i in 1..MAX_LEARNED_HOOKS {
                    ledger.learn_hook(&format!("repo:o/r{i}:{i}"), at(i)).await.expect("learn");
                }
                let hooks = ledger.learned_hooks().await.expect("read");
                assert_eq!(hooks.len(), MAX_LEARNED_HOOKS);
                assert_eq!(hooks.first().map(String::as_str), Some("repo:o/r999:999"), "most recent first");
                assert_eq!(hooks.last().map(String::as_str), Some("app"));

                // Seen again, "app" is recent; the next new hook drops the
                // least recently seen other one.
                let later = MAX_LEARNED_HOOKS;
                ledger.learn_hook("app", at(later)).await.expect("learn");
                ledger.learn_hook("org:acme:12", at(later + 1)).await.expect("learn");
                let hooks = ledger.learned_hooks().await.expect("read");
                assert_eq!(hooks.len(), MAX_LEARNED_HOOKS, "bounded");
                assert_eq!(hooks[..2], ["org:acme:12", "app"]);
                assert!(!hooks.contains(&"repo:o/r1:1".to_owned()), "the least recently seen was dropped");
                assert!(hooks.contains(&"repo:o/r2:2".to_owned()));
                s.queue.shutdown().await;
            }

            #[tokio::test]
            async fn an_instance_alone_leads_and_leads_again_after_releasing() {
                let Some(s) = $backend().await else { return };
                let ledger = s.ledger();
                let mut guard = ledger.try_lead().await.expect("try").expect("alone, it leads");
                assert!(guard.still_leads().await);
                guard.release().await;
                let guard = ledger.try_lead().await.expect("try").expect("leads again");
                guard.release().await;
                s.queue.shutdown().await;
            }
        }
    };
}

ledger_contract_tests!(memory);
ledger_contract_tests!(sqlite);
ledger_contract_tests!(postgres);

macro_rules! durable_ledger_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn the_ledger_survives_a_restart_and_the_command_reads_it() {
                let Some(s) = $backend().await else { return };
                s.queue.enqueue(delivery("kept")).await.expect("queued");
                let ledger = s.ledger();
                ledger.set_checkpoint("app", 1_234).await.expect("set");
                ledger.record_request("app", "failed-1", 5_678).await.expect("record");
                ledger.learn_hook("org:acme:12", 9).await.expect("learn");
                drop(ledger);

                let s = s.restart().await;
                let command = open_ledger(&s.kind).await.expect("the command opens the store beside the daemon");
                for ledger in [s.ledger(), command] {
                    assert!(ledger.holds("kept").await.expect("holds"));
                    assert_eq!(ledger.checkpoint("app").await.expect("read"), Some(1_234));
                    assert_eq!(
                        ledger.requested("failed-1").await.expect("read"),
                        Some(Requested { count: 1, last_at_ms: 5_678 })
                    );
                    assert_eq!(ledger.learned_hooks().await.expect("read"), ["org:acme:12"]);
                }
                s.queue.shutdown().await;
            }
        }
    };
}

mod durable {
    use super::*;
    durable_ledger_tests!(sqlite);
    durable_ledger_tests!(postgres);
}

#[tokio::test]
async fn the_command_needs_a_durable_store() {
    let err = open_ledger(&StoreKind::Memory).await.err().expect("refused");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("WEBHOOKD_STORE=memory") && err.to_string().contains("durable store"), "{err}");
}

#[tokio::test]
async fn sqlite_a_version_3_database_gets_the_ledger_tables() {
    let Some(s) = sqlite().await else { return };
    s.queue.enqueue(delivery("old")).await.expect("queued");
    s.queue.shutdown().await;
    let StoreKind::Sqlite(path) = s.kind.clone() else { unreachable!("an SQLite store") };
    let path = path.as_path();
    // What schema version 3 left: the same, without the ledger's tables.
    let conn = rusqlite::Connection::open(path).expect("open");
    conn.execute_batch(
        "DROP TABLE recovery_checkpoints; DROP TABLE recovery_requests; DROP TABLE recovery_hooks;
         PRAGMA user_version = 3;",
    )
    .expect("back to version 3");
    drop(conn);

    let version = || -> i64 {
        let conn = rusqlite::Connection::open(path).expect("open");
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).expect("version")
    };
    let ledger = open_ledger(&s.kind).await.expect("the command migrates it");
    assert_eq!(version(), 4);
    assert!(ledger.holds("old").await.expect("holds"), "its deliveries are kept");
    ledger.set_checkpoint("app", 1).await.expect("the new tables take writes");
    drop(ledger);

    // The daemon migrates one too.
    rusqlite::Connection::open(path)
        .expect("open")
        .execute_batch("DROP TABLE recovery_checkpoints; PRAGMA user_version = 3;")
        .expect("back to version 3");
    let s = s.restart().await;
    assert_eq!(version(), 4);
    assert_eq!(s.ledger().checkpoint("app").await.expect("read"), None, "a table of its own again");
    s.ledger().set_checkpoint("app", 2).await.expect("set");
    s.queue.shutdown().await;
}

/// The lead, once whoever holds it lets go (a closing session is freed
/// by the server a moment later: no event to wait for).
async fn lead_when_free(ledger: &dyn RecoveryLedger) -> LeaderGuard {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(lead) = ledger.try_lead().await.expect("try") {
            return lead;
        }
        assert!(Instant::now() < deadline, "the lead was never freed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn postgres_one_instance_leads_at_a_time() {
    let Some(s) = postgres().await else { return };
    let other = open_queue(&s.kind).await;
    let command = open_ledger(&s.kind).await.expect("the command connects");
    let (a, b) = (s.ledger(), other.ledger());

    let mut lead_a = a.try_lead().await.expect("try").expect("the first leads");
    assert!(b.try_lead().await.expect("try").is_none(), "the other instance does not");
    assert!(command.try_lead().await.expect("try").is_none(), "nor does the command");
    assert!(lead_a.still_leads().await);
    lead_a.release().await;

    let lead_b = b.try_lead().await.expect("try").expect("released: the other leads now");
    assert!(a.try_lead().await.expect("try").is_none());
    // Dropped rather than released: its connection closes, which frees it.
    drop(lead_b);
    let mut lead_a = lead_when_free(a.as_ref()).await;

    // A lead whose session is lost (the server ended it, say) knows it,
    // and another instance may lead.
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(s.db_url().expose()).await.expect("connects");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = 'webhookd recovery' AND datname = current_database()",
    )
    .execute(&mut conn)
    .await
    .expect("terminate");
    let lead_b = lead_when_free(b.as_ref()).await;
    assert!(!lead_a.still_leads().await, "its session ended");
    lead_b.release().await;
    lead_a.release().await;
    other.shutdown().await;
    s.queue.shutdown().await;
}

#[tokio::test]
async fn postgres_a_version_1_database_gets_the_ledger_tables() {
    let Some(s) = postgres().await else { return };
    s.queue.enqueue(delivery("old")).await.expect("queued");
    s.queue.shutdown().await;
    let StoreKind::Postgres(url) = &s.kind else { unreachable!("a PostgreSQL store") };
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(url.expose()).await.expect("connects");
    let statement = "DROP TABLE webhookd_recovery_checkpoints, webhookd_recovery_requests, webhookd_recovery_hooks;
                     UPDATE webhookd_schema SET version = 1;";
    sqlx::raw_sql(statement).execute(&mut conn).await.expect("back to version 1");

    let ledger = open_ledger(&s.kind).await.expect("the command migrates it");
    let row = sqlx::query("SELECT max(version) FROM webhookd_schema").fetch_one(&mut conn).await.expect("version");
    let version: i32 = sqlx::Row::try_get(&row, 0).expect("an integer");
    assert_eq!(version, 2);
    assert!(ledger.holds("old").await.expect("holds"));
    ledger.record_request("app", "old", 1).await.expect("the new tables take writes");
}
