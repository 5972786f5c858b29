//! The rules of `DeliveryQueue`, run against every backend (svix-style), so a
//! new backend proves it behaves like the others.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::retry::RetryPolicy;
use crate::telemetry::metrics::Metrics;
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{EventName, GitHubHeaders};

const RETRY: RetryPolicy = RetryPolicy { max_attempts: 3, base: Duration::from_millis(100) };
const WAIT: Duration = Duration::from_secs(10);

pub(super) fn delivery(id: &str) -> Delivery {
    let headers = GitHubHeaders {
        event: EventName::parse("issues").expect("event"),
        delivery_id: DeliveryId::parse(id).expect("id"),
        hook_id: Some("7".into()),
        target_type: Some("repository".into()),
        target_id: Some("9".into()),
    };
    let body = Bytes::from(format!(r#"{{"action":"opened","id":"{id}","repository":{{"full_name":"o/r"}}}}"#));
    Delivery::from_verified(headers, ContentKind::Json, body).expect("valid")
}

/// A delivery of GitHub App installation `installation`.
pub(super) fn delivery_of(id: &str, installation: u64) -> Delivery {
    let headers = GitHubHeaders {
        event: EventName::parse("issues").expect("event"),
        delivery_id: DeliveryId::parse(id).expect("id"),
        hook_id: None,
        target_type: None,
        target_id: None,
    };
    let body =
        format!(r#"{{"action":"opened","installation":{{"id":{installation}}},"repository":{{"full_name":"o/r"}}}}"#);
    Delivery::from_verified(headers, ContentKind::Json, Bytes::from(body)).expect("valid")
}

fn installation(id: u64) -> CredentialKey {
    CredentialKey::Installation(id)
}

/// Deferred until `wait` from now.
fn deferred(id: u64, wait: Duration) -> (Outcome, std::time::SystemTime) {
    let until = std::time::SystemTime::now() + wait;
    (Outcome::Deferred { credential: installation(id), until }, until)
}

pub(super) async fn next(queue: &dyn DeliveryQueue) -> Delivery {
    tokio::time::timeout(WAIT, queue.next()).await.expect("a delivery in time").expect("queue open")
}

/// A backend under test, kept alive with whatever it needs (a temp dir, a
/// database).
struct Backend {
    queue: Arc<dyn DeliveryQueue>,
    _dir: Option<tempfile::TempDir>,
    _db: Option<super::postgres::test_db::TestDb>,
}

async fn memory(capacity: usize) -> Option<Backend> {
    let queue = MemoryQueue::new(capacity, Duration::from_secs(3600), RETRY).with_credentials(CredentialScheme::App);
    Some(Backend { queue: Arc::new(queue), _dir: None, _db: None })
}

pub(super) fn sqlite_options(capacity: usize) -> SqliteOptions {
    SqliteOptions {
        capacity,
        retry: RETRY,
        body_segment_bytes: crate::queue::sqlite::DEFAULT_SEGMENT_BYTES,
        credentials: CredentialScheme::App,
    }
}

async fn sqlite(capacity: usize) -> Option<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sqlite_options(capacity);
    let queue = SqliteQueue::open(&dir.path().join("q.db"), options, Arc::new(Metrics::new())).expect("opens");
    Some(Backend { queue: Arc::new(queue), _dir: Some(dir), _db: None })
}

pub(super) fn postgres_options(capacity: usize) -> PostgresOptions {
    PostgresOptions {
        capacity,
        retry: RETRY,
        credentials: CredentialScheme::App,
        lease: Duration::from_secs(30),
        connections: 8,
    }
}

/// A PostgreSQL queue on a database of its own; `None` (skipped) without
/// `WEBHOOKD_TEST_DATABASE_URL`.
async fn postgres(capacity: usize) -> Option<Backend> {
    let db = super::postgres::test_db::TestDb::create().await?;
    let queue = PostgresQueue::open(&db.url, postgres_options(capacity)).await.expect("opens");
    Some(Backend { queue: Arc::new(queue), _dir: None, _db: Some(db) })
}

macro_rules! store_contract_tests {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn dedup_capacity_and_close() {
                let Some(b) = $backend(2).await else { return };
                let q = b.queue.as_ref();
                assert_eq!(q.enqueue(delivery("a")).await, Ok(Enqueued::Queued));
                assert_eq!(q.enqueue(delivery("a")).await, Ok(Enqueued::Duplicate));
                assert_eq!(q.enqueue(delivery("b")).await, Ok(Enqueued::Queued));
                assert_eq!(q.depth(), 2);
                assert!(!q.has_room());
                assert_eq!(q.enqueue(delivery("c")).await, Err(EnqueueError::Full));

                let first = next(q).await;
                assert_eq!((first.id().as_str(), first.attempt), ("a", 1));
                assert!(first.first_run);
                assert_eq!(first.routing.repository.as_deref(), Some("o/r"));
                assert_eq!(first.headers.hook_id.as_deref(), Some("7"));
                assert_eq!(q.finish(&first, Outcome::Ok).await, Settled::Done);
                // Processed ids stay remembered; refused ones were not.
                assert_eq!(q.enqueue(delivery("a")).await, Ok(Enqueued::Duplicate));
                assert_eq!(q.enqueue(delivery("c")).await, Ok(Enqueued::Queued));

                q.close();
                assert_eq!(q.enqueue(delivery("d")).await, Err(EnqueueError::Closed));
                assert!(!q.has_room());
                let second = next(q).await;
                assert_eq!(second.id().as_str(), "b");
                q.finish(&second, Outcome::Ok).await;
                let third = next(q).await;
                q.finish(&third, Outcome::Ok).await;
                assert!(q.next().await.is_none(), "closed and empty");
                let counts = q.counts().await;
                assert_eq!((counts.queued, counts.running, counts.done), (0, 0, 3));
                q.shutdown().await;
            }

            #[tokio::test]
            async fn retryable_failures_back_off_then_die_when_attempts_are_spent() {
                let Some(b) = $backend(10).await else { return };
                let q = b.queue.as_ref();
                q.enqueue(delivery("r")).await.expect("queued");
                let mut last_failure = None::<Instant>;
                for attempt in 1..=3 {
                    let d = next(q).await;
                    assert_eq!(d.attempt, attempt);
                    if let Some(at) = last_failure {
                        // Equal jitter: never sooner than half the step.
                        let least = RETRY.base.mul_f64(f64::from(1u32 << (attempt - 2)) / 2.0);
                        assert!(at.elapsed() >= least, "attempt {attempt} came after {:?}", at.elapsed());
                    }
                    // The attempt failed now; recording it takes a round
                    // trip on a networked store, which the backoff covers.
                    last_failure = Some(Instant::now());
                    let settled = q.finish(&d, Outcome::Retry("502".into())).await;
                    if attempt < 3 {
                        assert!(matches!(settled, Settled::Retrying(_)), "{settled:?}");
                        assert_eq!(q.depth(), 1, "a scheduled retry waits in the queue");
                    } else {
                        assert_eq!(settled, Settled::Dead);
                    }
                }
                assert_eq!(q.depth(), 0);
                assert_eq!(q.counts().await.dead, 1);
                q.shutdown().await;
            }

            #[tokio::test]
            async fn permanent_failure_is_dead_at_once() {
                let Some(b) = $backend(10).await else { return };
                let q = b.queue.as_ref();
                q.enqueue(delivery("p")).await.expect("queued");
                let d = next(q).await;
                assert_eq!(q.finish(&d, Outcome::Failed("404".into())).await, Settled::Failed);
                assert_eq!(q.depth(), 0);
                assert_eq!(q.counts().await.dead, 1);
                q.shutdown().await;
            }

            #[tokio::test]
            async fn a_waiting_worker_wakes_when_a_delivery_arrives() {
                let Some(b) = $backend(10).await else { return };
                let q = b.queue.clone();
                let waiting = tokio::spawn(async move { q.next().await.map(|d| d.id().to_string()) });
                tokio::task::yield_now().await;
                let started = Instant::now();
                b.queue.enqueue(delivery("w")).await.expect("queued");
                let got = tokio::time::timeout(WAIT, waiting).await.expect("woken").expect("task");
                assert_eq!(got.as_deref(), Some("w"));
                // Woken by the arrival, not by the store's one-second poll.
                assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
                b.queue.shutdown().await;
            }

            #[tokio::test]
            async fn a_deferral_gives_the_attempt_back_and_waits_for_the_pause_to_end() {
                let Some(b) = $backend(10).await else { return };
                let q = b.queue.as_ref();
                q.enqueue(delivery_of("d", 1)).await.expect("queued");
                let d = next(q).await;
                assert_eq!((d.attempt, d.first_run), (1, true));
                let (outcome, until) = deferred(1, Duration::from_millis(400));
                assert!(matches!(q.finish(&d, outcome).await, Settled::Deferred(_)));
                assert_eq!(q.depth(), 1);
                let again = next(q).await;
                assert!(std::time::SystemTime::now() >= until, "handed out before the pause ended");
                assert_eq!(again.id().as_str(), "d");
                assert_eq!(again.attempt, 1, "the deferral spent no attempt");
                assert!(!again.first_run, "it may have done part of its work: not a first run");
                // Deferrals never make a delivery dead, however many.
                let mut last = again;
                for _ in 0..RETRY.max_attempts + 1 {
                    let (outcome, _) = deferred(1, Duration::from_millis(1));
                    assert!(matches!(q.finish(&last, outcome).await, Settled::Deferred(_)));
                    last = next(q).await;
                    assert_eq!(last.attempt, 1);
                }
                assert_eq!(q.finish(&last, Outcome::Ok).await, Settled::Done);
                q.shutdown().await;
            }

            #[tokio::test]
            async fn a_paused_credential_is_skipped_until_the_pause_ends_and_others_go_on() {
                let Some(b) = $backend(10).await else { return };
                let q = b.queue.as_ref();
                for (id, inst) in [("a1", 1), ("a2", 1), ("b1", 2)] {
                    q.enqueue(delivery_of(id, inst)).await.expect("queued");
                }
                let a1 = next(q).await;
                assert_eq!(a1.id().as_str(), "a1");
                let (outcome, until) = deferred(1, Duration::from_millis(600));
                q.finish(&a1, outcome).await;
                let b1 = next(q).await;
                assert_eq!(b1.id().as_str(), "b1", "installation 2 goes on while 1 is paused");
                assert!(std::time::SystemTime::now() < until, "b1 did not wait for installation 1's pause");
                q.finish(&b1, Outcome::Ok).await;
                let mut rest = Vec::new();
                for _ in 0..2 {
                    let d = next(q).await;
                    assert!(std::time::SystemTime::now() >= until, "{} handed out during the pause", d.id());
                    rest.push(d.id().to_string());
                    q.finish(&d, Outcome::Ok).await;
                }
                rest.sort();
                assert_eq!(rest, ["a1", "a2"]);
                q.shutdown().await;
            }

            #[tokio::test]
            async fn under_a_backlog_credentials_take_turns() {
                let Some(b) = $backend(400).await else { return };
                let q = b.queue.as_ref();
                // A burst for installation 1, larger than what a store holds
                // in memory, then one delivery each for 2 and 3.
                for n in 0..300 {
                    q.enqueue(delivery_of(&format!("a{n}"), 1)).await.expect("queued");
                }
                q.enqueue(delivery_of("b", 2)).await.expect("queued");
                q.enqueue(delivery_of("c", 3)).await.expect("queued");
                let mut order = Vec::new();
                for _ in 0..6 {
                    let d = next(q).await;
                    order.push(d.id().to_string());
                    q.finish(&d, Outcome::Ok).await;
                }
                assert_eq!(order, ["a0", "b", "c", "a1", "a2", "a3"], "one turn each, oldest first");
                q.shutdown().await;
            }
        }
    };
}

store_contract_tests!(memory);
store_contract_tests!(sqlite);
store_contract_tests!(postgres);

#[tokio::test]
async fn sqlite_keeps_deliveries_across_reopen_and_requeues_what_was_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let options = sqlite_options(10);
    let q = SqliteQueue::open(&path, options.clone(), Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery("x")).await.expect("queued");
    q.enqueue(delivery("y")).await.expect("queued");
    let running = next(&q).await;
    assert_eq!(running.id().as_str(), "x");
    // A second owner is refused while the first holds the database.
    assert!(matches!(
        SqliteQueue::open(&path, options.clone(), Arc::new(Metrics::new())),
        Err(StoreError::Locked { .. })
    ));
    q.shutdown().await;
    drop(q); // the process "dies" with x running

    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("reopens");
    assert_eq!(q.depth(), 2, "x was requeued, y still waits");
    assert_eq!(q.enqueue(delivery("x")).await, Ok(Enqueued::Duplicate), "dedup survives the restart");
    // With a backlog on disk, a new delivery queues behind it instead of
    // being handed to a worker at once.
    q.enqueue(delivery("z")).await.expect("queued");
    let again = next(&q).await;
    assert_eq!((again.id().as_str(), again.attempt), ("x", 2));
    assert!(!again.first_run, "a delivery that ran before knows it");
    assert_eq!(again.raw, delivery("x").raw, "stored exactly as received");
    let after = [next(&q).await, next(&q).await];
    assert_eq!(after.each_ref().map(|d| d.id().as_str()), ["y", "z"], "oldest first");
    assert_eq!(after[1].raw, delivery("z").raw);
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_a_deferral_survives_a_restart_with_its_due_time_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let q = SqliteQueue::open(&path, sqlite_options(10), Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery_of("d", 1)).await.expect("queued");
    let d = next(&q).await;
    let (outcome, until) = deferred(1, Duration::from_millis(800));
    q.finish(&d, outcome).await;
    q.shutdown().await;
    drop(q);

    // The pause itself is not kept, but the deferred row's due time is.
    let q = SqliteQueue::open(&path, sqlite_options(10), Arc::new(Metrics::new())).expect("reopens");
    assert_eq!(q.depth(), 1);
    let again = next(&q).await;
    assert!(std::time::SystemTime::now() >= until, "handed out before the pause ended");
    assert_eq!((again.id().as_str(), again.attempt, again.first_run), ("d", 1, false));
    q.finish(&again, Outcome::Ok).await;
    q.shutdown().await;
    let conn = crate::queue::sqlite::admin::open(&path).expect("admin open");
    let shown = crate::queue::sqlite::admin::list(&conn, Some("done"), None, 10).expect("list");
    assert_eq!(shown[0].attempts, 1, "one attempt on disk, the deferral not counted");
}

#[tokio::test]
async fn sqlite_prune_deletes_body_log_segments_no_delivery_needs() {
    let dir = tempfile::tempdir().expect("tempdir");
    // One-byte segments: every commit that stores a body starts a new one.
    let options = SqliteOptions { body_segment_bytes: 1, ..sqlite_options(10) };
    let q = SqliteQueue::open(&dir.path().join("q.db"), options, Arc::new(Metrics::new())).expect("opens");
    for id in ["a", "b"] {
        q.enqueue(delivery(id)).await.expect("queued");
        let d = next(&q).await;
        assert_eq!(q.finish(&d, Outcome::Ok).await, Settled::Done);
    }
    let segments = || std::fs::read_dir(dir.path().join("q.db.bodies")).expect("body log").count();
    assert_eq!(segments(), 2);
    // c is not finished: its segment must survive the prune.
    q.enqueue(delivery("c")).await.expect("queued");
    assert_eq!(segments(), 3);

    let finished = crate::queue::sqlite::now_ms();
    while crate::queue::sqlite::now_ms() <= finished {
        std::thread::yield_now(); // the clock must pass the finish times
    }
    assert_eq!(q.prune(Duration::ZERO).await, 2);
    assert_eq!(segments(), 1, "a's and b's segments are gone");
    let c = next(&q).await;
    assert_eq!(c.raw, delivery("c").raw, "c's body is intact");
    q.finish(&c, Outcome::Ok).await;
    q.enqueue(delivery("d")).await.expect("queued");
    let d = next(&q).await;
    q.finish(&d, Outcome::Ok).await;
    q.shutdown().await;
    assert_eq!(segments(), 2);

    // The operator's prune frees segments too, but never the newest (a
    // running daemon may be appending to it).
    let finished = crate::queue::sqlite::now_ms();
    while crate::queue::sqlite::now_ms() <= finished {
        std::thread::yield_now();
    }
    let conn = crate::queue::sqlite::admin::open(&dir.path().join("q.db")).expect("admin open");
    assert_eq!(crate::queue::sqlite::admin::prune(&conn, Duration::ZERO).expect("prune"), 2);
    assert_eq!(segments(), 1, "c's segment is gone, d's was the newest");
}

/// A database as schema version 1 left it, with the delivery `old` inside.
fn version_1_database(path: &std::path::Path) -> bytes::Bytes {
    let old = rusqlite::Connection::open(path).expect("create");
    old.execute_batch(V1_SCHEMA).expect("v1 schema");
    let body = delivery("old").raw;
    old.execute(
        "INSERT INTO deliveries (delivery_id, event, content_kind, received_at, state, next_attempt_at)
         VALUES ('old', 'issues', 'json', 1, 'queued', 1)",
        [],
    )
    .expect("row");
    old.execute("INSERT INTO bodies (seq, body) VALUES (last_insert_rowid(), ?1)", [&body[..]]).expect("body");
    body
}

#[test]
fn sqlite_read_only_commands_read_a_version_1_database_without_migrating_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let body = version_1_database(&path);
    let before = std::fs::read(&path).expect("read");

    let conn = crate::queue::sqlite::admin::open_read_only(&path).expect("read-only open");
    let listed = crate::queue::sqlite::admin::list(&conn, None, None, 10).expect("list");
    assert_eq!(listed.iter().map(|s| s.delivery_id.as_str()).collect::<Vec<_>>(), ["old"]);
    let shown = crate::queue::sqlite::admin::show(&conn, "old").expect("show").expect("found");
    assert_eq!(shown.body.as_deref(), Ok(&body[..]));
    assert!(conn.execute_batch("PRAGMA user_version = 2").is_err(), "the connection cannot write");
    drop(conn);
    assert_eq!(std::fs::read(&path).expect("read"), before, "not migrated, not changed");
    let files: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(files, ["old.db"], "no file created beside it");
}

#[tokio::test]
async fn sqlite_reads_a_version_1_database_with_bodies_inside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("old.db");
    let body = version_1_database(&path);

    let options = sqlite_options(10);
    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("opens and migrates");
    let stored = next(&q).await;
    assert_eq!((stored.id().as_str(), &stored.raw), ("old", &body));
    q.enqueue(delivery("new")).await.expect("queued");
    assert_eq!(next(&q).await.raw, delivery("new").raw);
    q.shutdown().await;

    let conn = crate::queue::sqlite::admin::open(&path).expect("admin open");
    for id in ["old", "new"] {
        let shown = crate::queue::sqlite::admin::show(&conn, id).expect("show").expect("found");
        assert_eq!(shown.body.as_deref(), Ok(&delivery(id).raw[..]), "{id}");
    }
    // An older webhookd run on it meanwhile sets the version back; the
    // columns, not the version, say what is migrated.
    conn.execute_batch("PRAGMA user_version = 1").expect("downgrade the version");
    drop(conn);
    let options = sqlite_options(10);
    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("opens again");
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_hands_out_rows_requeued_from_outside_even_while_new_deliveries_keep_it_busy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let options = sqlite_options(100);
    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery("old")).await.expect("queued");
    let old = next(&q).await;
    q.finish(&old, Outcome::Ok).await;
    // The operator replays it from another process.
    let conn = crate::queue::sqlite::admin::open(&path).expect("admin open");
    assert!(crate::queue::sqlite::admin::replay(&conn, &["old".to_string()]).expect("replay").is_empty());

    // A steady stream of new deliveries, each taken at once: the worker is
    // never idle, yet the replayed row must come out (within a poll or two).
    let started = Instant::now();
    for n in 0.. {
        assert!(started.elapsed() < WAIT, "the replayed delivery never came out");
        q.enqueue(delivery(&format!("new-{n}"))).await.expect("queued");
        let d = next(&q).await;
        q.finish(&d, Outcome::Ok).await;
        if d.id().as_str() == "old" {
            assert_eq!(d.attempt, 1, "a replay starts its attempts again");
            assert!(!d.first_run, "but it did run before");
            break;
        }
    }
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_replay_leaves_a_running_delivery_alone_and_says_which_ids_it_did_not_find() {
    use crate::queue::admin::{Access, Replayed, StoreAdmin};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let q = SqliteQueue::open(&path, sqlite_options(10), Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery("done")).await.expect("queued");
    let done = next(&q).await;
    q.finish(&done, Outcome::Ok).await;
    q.enqueue(delivery("busy")).await.expect("queued");
    let busy = next(&q).await;

    let admin = crate::queue::sqlite::admin::SqliteAdmin::open(&path, Access::ReadWrite).expect("admin open");
    let ids = ["busy", "gone", "done"].map(String::from);
    let replayed = admin.replay(&ids).await.expect("replay");
    assert_eq!(replayed, Replayed { queued: 1, not_found: vec!["gone".into()], running: vec!["busy".into()] });
    let shown = admin.show("busy").await.expect("show").expect("found");
    assert_eq!((shown.summary.state.as_str(), shown.summary.attempts), ("running", 1), "left alone");
    q.finish(&busy, Outcome::Ok).await;
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_deliveries_held_for_workers_at_the_drain_go_back_as_never_started() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let options = sqlite_options(10);
    let q = SqliteQueue::open(&path, options.clone(), Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery("a")).await.expect("queued");
    q.enqueue(delivery("b")).await.expect("queued");
    assert_eq!(q.depth(), 2, "both held for a worker");
    q.close();
    let report = q.abandon(&[]).await;
    assert_eq!((report.lost.len(), report.kept), (0, 2));
    q.shutdown().await;
    drop(q);

    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("reopens");
    for id in ["a", "b"] {
        let d = next(&q).await;
        assert_eq!((d.id().as_str(), d.attempt, d.first_run), (id, 1, true), "never started, so a first run");
    }
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_a_delivery_whose_request_was_dropped_mid_insert_still_reaches_a_worker() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let options = sqlite_options(10);
    let q = SqliteQueue::open(&dir.path().join("q.db"), options, Arc::new(Metrics::new())).expect("opens");
    // Polled once (the insert is sent to the writer), then dropped, as when
    // a client goes away: the writer still hands the delivery over.
    assert!(q.enqueue(delivery("dropped")).now_or_never().is_none(), "the insert waits for the writer");
    assert_eq!(next(&q).await.id().as_str(), "dropped");
    assert_eq!(q.depth(), 0, "no reservation left behind");
    q.shutdown().await;
}

#[tokio::test]
async fn sqlite_a_delivery_racing_the_drain_comes_back_as_never_started() {
    use futures::FutureExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("q.db");
    let options = sqlite_options(10);
    let q = SqliteQueue::open(&path, options.clone(), Arc::new(Metrics::new())).expect("opens");
    // Another connection holds the write lock, so the insert's commit waits
    // while the drain closes the hand-off. Whether the writer had taken the
    // insert by then (stored `running`, then put back) or not (stored
    // `queued`), it must come back as never started.
    let blocker = rusqlite::Connection::open(&path).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    assert!(q.enqueue(delivery("late")).now_or_never().is_none());
    q.close();
    // The drain closes the hand-off at once, then waits for the writer.
    assert!(q.abandon(&[]).now_or_never().is_none());
    blocker.execute_batch("COMMIT").expect("unlock");
    q.shutdown().await;
    drop(q);

    let q = SqliteQueue::open(&path, options, Arc::new(Metrics::new())).expect("reopens");
    let late = next(&q).await;
    assert_eq!((late.id().as_str(), late.attempt, late.first_run), ("late", 1, true), "it never ran");
    q.shutdown().await;
}

/// Schema version 1, from before the body log: bodies in the database.
const V1_SCHEMA: &str = "
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, delivery_id TEXT NOT NULL UNIQUE, event TEXT NOT NULL, action TEXT,
    hook_id TEXT, target_type TEXT, target_id TEXT, content_kind TEXT NOT NULL, received_at INTEGER NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, runs INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, lease_until INTEGER, last_error TEXT, finished_at INTEGER);
CREATE TABLE bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE INDEX deliveries_queued ON deliveries (next_attempt_at, seq) WHERE state = 'queued';
PRAGMA user_version = 1;";

#[tokio::test]
async fn sqlite_open_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x5a; 8192]).expect("write");
    let options = sqlite_options(10);
    let err = SqliteQueue::open(&corrupt, options.clone(), Arc::new(Metrics::new())).err().expect("corrupt fails");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("corrupt.db"), "{err}");

    // /proc refuses new files even to root.
    let err = SqliteQueue::open(std::path::Path::new("/proc/webhookd.db"), options, Arc::new(Metrics::new()))
        .err()
        .expect("unwritable folder fails");
    assert!(err.to_string().contains("/proc/webhookd.db"), "{err}");
}

#[tokio::test]
async fn memory_close_gives_waiting_retries_their_attempt_within_the_drain() {
    let retry = RetryPolicy { max_attempts: 3, base: Duration::from_secs(3600) };
    let q = MemoryQueue::new(10, Duration::from_secs(3600), retry);
    q.enqueue(delivery("later")).await.expect("queued");
    let first = next(&q).await;
    assert!(matches!(q.finish(&first, Outcome::Retry("502".into())).await, Settled::Retrying(_)));
    q.close();
    // Not lost with the process: handed out now, although due in an hour.
    let again = next(&q).await;
    assert_eq!((again.id().as_str(), again.attempt), ("later", 2));
    q.finish(&again, Outcome::Ok).await;
    assert!(q.next().await.is_none());
    assert!(q.abandon(&[]).await.lost.is_empty());
}

/// Not a check: how long 4 consumers take to drain an 8,000-delivery backlog
/// with one lane and with 50 installations taking turns. Run with
/// `cargo test --lib measure_sqlite_backlog_drain -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn measure_sqlite_backlog_drain() {
    for (label, scheme, lanes) in [
        ("dry-run, 1 lane", CredentialScheme::DryRun, 1u64),
        ("app, 1 installation", CredentialScheme::App, 1),
        ("app, 50 installations", CredentialScheme::App, 50),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SqliteOptions { credentials: scheme, ..sqlite_options(20_000) };
        let q: Arc<dyn DeliveryQueue> =
            Arc::new(SqliteQueue::open(&dir.path().join("q.db"), options, Arc::new(Metrics::new())).expect("opens"));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..16u64 {
            let q = q.clone();
            tasks.spawn(async move {
                for n in 0..500u64 {
                    let i = c * 500 + n;
                    q.enqueue(delivery_of(&format!("d{i}"), 1 + i % lanes)).await.expect("queued");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let enqueued = started.elapsed();
        let started = Instant::now();
        for _ in 0..4 {
            let q = q.clone();
            tasks.spawn(async move {
                loop {
                    let Ok(Some(d)) = tokio::time::timeout(Duration::from_millis(1500), q.next()).await else { break };
                    q.finish(&d, Outcome::Ok).await;
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        let drained = started.elapsed().saturating_sub(Duration::from_millis(1500));
        assert_eq!(q.counts().await.done, 8000);
        println!("{label}: enqueue 8000 {enqueued:?}, drain {drained:?}");
        q.shutdown().await;
    }
}

/// Idle workers do not spin while a paused credential has due rows on disk:
/// they wait for the pause's end or the poll, not 0 ms (which ran a recount
/// and an empty claim in a loop for as long as the pause lasted).
#[tokio::test]
async fn sqlite_idle_workers_wait_out_a_pause_instead_of_spinning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = SqliteQueue::open(&dir.path().join("q.db"), sqlite_options(10), Arc::new(Metrics::new())).expect("opens");
    q.enqueue(delivery_of("a1", 1)).await.expect("queued");
    let a1 = next(&q).await;
    let (outcome, _) = deferred(1, Duration::from_secs(5));
    q.finish(&a1, outcome).await;
    // Due now, on disk (a row waits there already), its credential paused.
    q.enqueue(delivery_of("a2", 1)).await.expect("queued");
    assert!(tokio::time::timeout(Duration::from_millis(300), q.next()).await.is_err(), "handed out during the pause");
    q.resync().await;
    assert!(q.idle_wait() >= Duration::from_millis(900), "idle workers would wake every {:?}", q.idle_wait());
    q.shutdown().await;
}
