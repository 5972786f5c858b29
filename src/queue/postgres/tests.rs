//! What only a store shared by several instances must do (the contract
//! tests in `queue::contract` cover the rest): take over a dead instance's
//! deliveries, refuse an outcome from an instance that lost its lease,
//! share write slots and pauses.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sqlx::Connection;

use super::test_db::TestDb;
use super::{PostgresOptions, PostgresQueue};
use crate::delivery::{Delivery, DeliveryId};
use crate::github::{CredentialKey, DeploymentLimits};
use crate::queue::{CredentialScheme, DeliveryQueue, Enqueued, Outcome, Settled};
use crate::retry::RetryPolicy;
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{EventName, GitHubHeaders};

const WAIT: Duration = Duration::from_secs(10);

fn options(lease: Duration) -> PostgresOptions {
    PostgresOptions {
        capacity: 100,
        retry: RetryPolicy { max_attempts: 3, base: Duration::from_millis(100) },
        credentials: CredentialScheme::App,
        lease,
        connections: 4,
    }
}

/// A delivery of installation 1 (the contract tests' own).
fn delivery(id: &str) -> Delivery {
    crate::queue::contract::delivery_of(id, 1)
}

async fn next(queue: &PostgresQueue) -> Delivery {
    tokio::time::timeout(WAIT, queue.next()).await.expect("a delivery in time").expect("open")
}

async fn sql(db: &TestDb, statement: &str) {
    let mut conn = sqlx::PgConnection::connect(db.url.expose()).await.expect("connects");
    sqlx::raw_sql(statement).execute(&mut conn).await.expect("statement");
}

#[tokio::test]
async fn an_instance_that_lost_its_lease_does_not_record_over_the_new_owner() {
    let Some(db) = TestDb::create().await else { return };
    let a = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("a");
    let b = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("b");
    assert_eq!(a.enqueue(delivery("x")).await, Ok(Enqueued::Queued));
    assert_eq!(b.enqueue(delivery("x")).await, Ok(Enqueued::Duplicate), "dedup across instances");
    let on_a = next(&a).await;
    // As the housekeeper does once a lease has ended.
    sql(&db, "UPDATE webhookd_deliveries SET state = 'queued', owner = NULL, lease_until = NULL, lease_token = NULL")
        .await;
    let on_b = next(&b).await;
    assert_eq!((on_b.id().as_str(), on_b.attempt, on_b.first_run), ("x", 2, false));
    // A's failure comes late: it must not undo B's claim.
    a.finish(&on_a, Outcome::Failed("late".into())).await;
    assert_eq!(b.counts().await.running, 1, "still B's");
    assert_eq!(b.finish(&on_b, Outcome::Ok).await, Settled::Done);
    assert_eq!(b.counts().await.done, 1);
    for q in [a, b] {
        q.shutdown().await;
    }
}

#[tokio::test]
async fn a_dead_instances_expired_lease_is_taken_over() {
    let Some(db) = TestDb::create().await else { return };
    let lease = Duration::from_secs(2);
    let survivor = PostgresQueue::open(&db.url, options(lease)).await.expect("opens");
    // A row a vanished instance claimed; its lease ended a moment ago.
    survivor.enqueue(delivery("orphan")).await.expect("stored");
    sql(
        &db,
        "UPDATE webhookd_deliveries SET state = 'running', owner = 'gone', attempts = 1, runs = 1,
                lease_token = 42, lease_until = webhookd_now_ms() - 1",
    )
    .await;
    let started = Instant::now();
    let taken = next(&survivor).await;
    assert_eq!((taken.id().as_str(), taken.attempt), ("orphan", 2));
    // The housekeeper looks every third of the lease.
    assert!(started.elapsed() < lease + Duration::from_secs(1), "{:?}", started.elapsed());
    survivor.shutdown().await;
}

#[tokio::test]
async fn write_slots_are_spaced_across_instances_per_credential() {
    let Some(db) = TestDb::create().await else { return };
    let a = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("a");
    let b = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("b");
    let (la, lb) = (a.deployment_limits().expect("shared"), b.deployment_limits().expect("shared"));
    let one = CredentialKey::Installation(1);
    let interval = Duration::from_millis(500);
    let mut waits = Vec::new();
    for limits in [&la, &lb, &la, &lb] {
        waits.push(limits.reserve_write(&one, interval).await.expect("slot"));
    }
    // Each slot is an interval after the one before, whichever instance took it.
    for (n, wait) in waits.iter().enumerate() {
        let expected = interval * u32::try_from(n).expect("small");
        assert!(
            *wait + Duration::from_millis(150) >= expected && *wait <= expected,
            "slot {n}: waits {wait:?}, expected about {expected:?}"
        );
    }
    let other = lb.reserve_write(&CredentialKey::Installation(2), interval).await.expect("slot");
    assert_eq!(other, Duration::ZERO, "another credential has its own slots");
    for q in [a, b] {
        q.shutdown().await;
    }
}

#[tokio::test]
async fn a_pause_published_by_one_instance_reaches_the_others() {
    let Some(db) = TestDb::create().await else { return };
    let a = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("a");
    let b = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("b");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    b.deployment_limits().expect("shared").on_pause(Box::new(move |credential, length| {
        let _ = tx.send((credential.clone(), length));
    }));
    // B listens once its listener connected: publish until it hears.
    let a_limits: Arc<dyn DeploymentLimits> = a.deployment_limits().expect("shared");
    let heard = tokio::time::timeout(WAIT, async {
        loop {
            a_limits.publish_pause(&CredentialKey::Installation(7), Duration::from_secs(5)).await;
            tokio::select! {
                heard = rx.recv() => break heard,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    })
    .await
    .expect("heard in time");
    let (credential, length) = heard.expect("a pause");
    assert_eq!(credential, CredentialKey::Installation(7));
    assert_eq!(length, Duration::from_secs(5));
    // And B's claims skip the paused installation meanwhile.
    b.enqueue(delivery("paused")).await.expect("stored");
    sql(&db, "UPDATE webhookd_pauses SET credential = 'installation:1'").await;
    assert!(tokio::time::timeout(Duration::from_millis(1500), b.next()).await.is_err(), "handed out while paused");
    for q in [a, b] {
        q.shutdown().await;
    }
}

#[tokio::test]
async fn a_late_outcome_of_an_earlier_claim_by_the_same_instance_is_not_recorded() {
    let Some(db) = TestDb::create().await else { return };
    let q = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("opens");
    q.enqueue(delivery("again")).await.expect("stored");
    let first = next(&q).await;
    sql(&db, "UPDATE webhookd_deliveries SET state = 'queued', owner = NULL, lease_until = NULL, lease_token = NULL")
        .await;
    let second = next(&q).await;
    // The first claim's worker ends late: its outcome belongs to no claim now.
    q.finish(&first, Outcome::Failed("late".into())).await;
    assert_eq!(q.counts().await.running, 1, "the second claim still runs");
    assert_eq!(q.finish(&second, Outcome::Ok).await, Settled::Done);
    assert_eq!(q.counts().await.done, 1, "the second claim's outcome is the one recorded");
    q.shutdown().await;
}

#[tokio::test]
async fn text_postgres_refuses_is_stored_all_the_same() {
    let Some(db) = TestDb::create().await else { return };
    let q = Arc::new(PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("opens"));
    let headers = GitHubHeaders {
        event: EventName::parse("issues").expect("event"),
        delivery_id: DeliveryId::parse("nul").expect("id"),
        hook_id: None,
        target_type: None,
        target_id: None,
    };
    let body = Bytes::from(r#"{"action":"open\u0000ed","installation":{"id":1}}"#);
    let nul = Delivery::from_verified(headers, ContentKind::Json, body).expect("valid JSON");
    // Sent together, so they can share a batch: the NUL must not sink the other.
    let (a, b) = tokio::join!(q.enqueue(nul), q.enqueue(delivery("plain")));
    assert_eq!((a, b), (Ok(Enqueued::Queued), Ok(Enqueued::Queued)));
    let d = next(&q).await;
    assert!(matches!(q.finish(&d, Outcome::Failed("bad\0byte".into())).await, Settled::Failed));
    assert_eq!(q.counts().await.dead, 1, "an error message holding NUL is recorded");
    q.shutdown().await;
}

#[tokio::test]
async fn a_closing_instance_finishes_what_it_received_and_leaves_the_rest_to_the_others() {
    let Some(db) = TestDb::create().await else { return };
    let a = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("a");
    let b = PostgresQueue::open(&db.url, options(Duration::from_secs(30))).await.expect("b");
    a.enqueue(delivery("mine")).await.expect("stored");
    b.enqueue(delivery("theirs")).await.expect("stored");
    a.close();
    let d = next(&a).await;
    assert_eq!(d.id().as_str(), "mine");
    a.finish(&d, Outcome::Ok).await;
    assert!(a.next().await.is_none(), "the other instance's delivery is left to it");
    assert_eq!(next(&b).await.id().as_str(), "theirs");
    for q in [a, b] {
        q.shutdown().await;
    }
}

async fn count(db: &TestDb, query: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(db.url.expose()).await.expect("connects");
    sqlx::query_scalar(query).fetch_one(&mut conn).await.expect("a count")
}

const RUNNING: &str = "SELECT count(*) FROM webhookd_deliveries WHERE state = 'running'";

/// One credential (a token): under a backlog a claim takes several rows.
fn token_options() -> PostgresOptions {
    PostgresOptions { capacity: 200, credentials: CredentialScheme::Token, ..options(Duration::from_secs(30)) }
}

/// A token-mode queue with 64 deliveries (`{prefix}00`…), the first handed
/// out and the next rows of its batch claimed ahead.
async fn first_of_a_batch(prefix: &str) -> Option<(TestDb, PostgresQueue, Delivery)> {
    let db = TestDb::create().await?;
    let q = PostgresQueue::open(&db.url, token_options()).await.expect("opens");
    for n in 0..64 {
        q.enqueue(delivery(&format!("{prefix}{n:02}"))).await.expect("queued");
    }
    let first = next(&q).await;
    assert!(count(&db, RUNNING).await > 1, "rows claimed ahead");
    Some((db, q, first))
}

#[tokio::test]
async fn under_a_backlog_one_claim_takes_several_rows_each_handed_out_once_oldest_first() {
    let Some(db) = TestDb::create().await else { return };
    let q = PostgresQueue::open(&db.url, token_options()).await.expect("opens");
    let ids: Vec<String> = (0..100).map(|n| format!("d{n:03}")).collect();
    for id in &ids {
        assert_eq!(q.enqueue(delivery(id)).await, Ok(Enqueued::Queued));
    }
    let first = next(&q).await;
    assert_eq!(first.id().as_str(), "d000");
    let running = count(&db, RUNNING).await;
    assert_eq!(running, 4, "one statement claimed a batch (1 + 100 / 32 rows, rounded down to a size it has)");
    // Each claimed row carries a claim of its own: every outcome lands on
    // its row only.
    assert_eq!(q.finish(&first, Outcome::Ok).await, Settled::Done);
    assert_eq!(count(&db, "SELECT count(*) FROM webhookd_deliveries WHERE state = 'done'").await, 1);
    let mut order = vec![first.id().to_string()];
    for _ in 1..ids.len() {
        let d = next(&q).await;
        assert_eq!(d.attempt, 1);
        order.push(d.id().to_string());
        assert_eq!(q.finish(&d, Outcome::Ok).await, Settled::Done);
    }
    assert_eq!(order, ids, "each once, oldest first");
    assert_eq!(count(&db, "SELECT count(*) FROM webhookd_deliveries WHERE state = 'done'").await, 100);
    assert_eq!(q.depth(), 0);
    q.shutdown().await;
}

#[tokio::test]
async fn a_pause_hands_back_what_was_claimed_ahead_with_its_attempt_unspent() {
    let Some((db, q, first)) = first_of_a_batch("p").await else { return };
    let until = std::time::SystemTime::now() + Duration::from_millis(300);
    let deferred = q.finish(&first, Outcome::Deferred { credential: CredentialKey::Token, until }).await;
    assert!(matches!(deferred, Settled::Deferred(_)), "{deferred:?}");
    assert_eq!(count(&db, RUNNING).await, 0);
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhookd_deliveries WHERE attempts = 0 AND runs = 0").await,
        63,
        "the ones claimed ahead never ran: attempt and run given back"
    );
    assert_eq!(q.depth(), 64);
    // Once the pause is over, those handed back come as never run (the
    // deferred p00 is due a jitter after the pause, so maybe later).
    let mut handed = Vec::new();
    for _ in 0..3 {
        let d = next(&q).await;
        assert!(std::time::SystemTime::now() >= until, "{} handed out during the pause", d.id());
        if d.id().as_str() != "p00" {
            assert_eq!((d.attempt, d.first_run), (1, true), "{} ran before", d.id());
        }
        handed.push(d.id().to_string());
        q.finish(&d, Outcome::Ok).await;
    }
    assert!(handed.iter().any(|id| id == "p01"), "{handed:?}");
    q.shutdown().await;
}

#[tokio::test]
async fn a_drain_timeout_puts_back_what_was_claimed_ahead_and_counts_it_kept() {
    let Some((db, q, running)) = first_of_a_batch("k").await else { return };
    q.close();
    let left = q.abandon(std::slice::from_ref(running.id())).await;
    assert_eq!(left.kept, 64, "every delivery is back in the store");
    assert_eq!(count(&db, "SELECT count(*) FROM webhookd_deliveries WHERE state = 'queued'").await, 64);
    assert_eq!(
        count(&db, "SELECT count(*) FROM webhookd_deliveries WHERE attempts = 0").await,
        63,
        "only the interrupted one spent an attempt"
    );
    q.shutdown().await;
}
