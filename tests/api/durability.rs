//! The durable store end to end: nothing answered 2xx is lost, even to
//! SIGKILL; deduplication survives restarts; failures retry with backoff and
//! die; dead deliveries are replayed; a drain timeout keeps the rest for the
//! next start; unusable stores exit 2; a burst of 1,000 is processed once each.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use webhookd::{Delivery, GitHubApi, Handler, HandlerError};

use crate::helpers::*;
use crate::lifecycle::{slow_github, start_commenting_daemon};
use crate::process::*;

async fn post_issue(http: &reqwest::Client, address: &str, number: u64, secret: &str) -> reqwest::Result<u16> {
    let id = uuid::Uuid::new_v4().to_string();
    let response = signed_delivery(http, address, secret, "issues", &id, issue_body(number)).send().await?;
    Ok(response.status().as_u16())
}

/// The issue numbers GitHub was asked to comment on.
async fn commented_issues(github: &wiremock::MockServer) -> Vec<u64> {
    let requests = github.received_requests().await.expect("recording");
    requests.iter().filter_map(|r| r.url.path().strip_suffix("/comments")?.rsplit('/').next()?.parse().ok()).collect()
}

#[tokio::test]
async fn sigkill_loses_no_delivery_that_was_answered_2xx() {
    let github = slow_github(Duration::from_millis(200)).await;
    let mut daemon = start_commenting_daemon(&github, &[("WEBHOOKD_WORKERS", "2")]).await;
    let workdir = daemon.workdir.clone();
    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for number in 1..=20 {
        assert_eq!(post_issue(&http, &daemon.address, number, TEST_SECRET).await.expect("sent"), 202);
        accepted.push(number);
    }
    assert_eq!(post_issue(&http, &daemon.address, 9_999, "wrong secret").await.expect("sent"), 401);
    // Kill it mid-work: one call done, others in flight or queued.
    daemon.wait_for_line("thanked the author").await;
    daemon.signal(Signal::SIGKILL);
    let status = daemon.wait().await;
    assert_eq!(status.code(), None, "killed by a signal");
    assert!(post_issue(&http, &daemon.address, 8_888, TEST_SECRET).await.is_err(), "nobody listens while down");

    let api = github.uri();
    let mut restarted = Daemon::start_in(
        workdir,
        &example_bin(),
        &[
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", &api),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
            ("WEBHOOKD_WORKERS", "2"),
        ],
    )
    .await;
    restarted.signal(Signal::SIGTERM);
    assert_eq!(restarted.wait().await.code(), Some(0), "{}", restarted.output());

    let commented: HashSet<u64> = commented_issues(&github).await.into_iter().collect();
    for number in &accepted {
        assert!(commented.contains(number), "delivery for issue {number} was answered 202 and then lost");
    }
    assert!(!commented.contains(&9_999) && !commented.contains(&8_888), "a refused delivery was processed");
}

#[tokio::test]
async fn a_redelivery_after_a_restart_is_a_duplicate() {
    let data = Arc::new(tempfile::tempdir().expect("data"));
    let (handler, mut processed) = RecordingHandler::new();
    let app = spawn_app_in(data.clone(), &[], handler).await;
    let id = uuid::Uuid::new_v4().to_string();
    let body = fixture("issues/opened.payload.json");
    assert_eq!(app.webhook("issues", &id, body.clone()).send().await.expect("sent").status().as_u16(), 202);
    assert_eq!(receive_n(&mut processed, 1).await, vec![id.clone()]);
    app.stop().await;

    let (handler, mut processed) = RecordingHandler::new();
    let app = spawn_app_in(data, &[], handler).await;
    let again = app.webhook("issues", &id, body.clone()).send().await.expect("sent");
    assert_eq!(again.status().as_u16(), 200);
    let answer: serde_json::Value = again.json().await.expect("json");
    assert_eq!(answer, serde_json::json!({ "delivery": id, "status": "duplicate" }));
    let other = uuid::Uuid::new_v4().to_string();
    assert_eq!(app.webhook("issues", &other, body).send().await.expect("sent").status().as_u16(), 202);
    assert_eq!(receive_n(&mut processed, 1).await, vec![other], "the duplicate was not processed again");
    app.stop().await;
}

/// Fails retryably on the first two attempts of each delivery, then succeeds;
/// reports every attempt with its time.
struct FlakyHandler {
    attempts: mpsc::UnboundedSender<(u32, Instant)>,
}

#[async_trait]
impl Handler for FlakyHandler {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let _ = self.attempts.send((delivery.attempt, Instant::now()));
        if delivery.attempt < 3 {
            return Err(HandlerError::Retryable(anyhow::anyhow!("GitHub answered 502 (on purpose)")));
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_delivery_failing_twice_is_retried_with_backoff_then_done() {
    let (tx, mut attempts) = mpsc::unbounded_channel();
    let app = spawn_app(&[("WEBHOOKD_RETRY_BACKOFF", "200ms")], Arc::new(FlakyHandler { attempts: tx })).await;
    let response = app.post_webhook("issues", fixture("issues/opened.payload.json")).await;
    let id = response.json::<serde_json::Value>().await.expect("json")["delivery"].as_str().expect("id").to_owned();

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let next = tokio::time::timeout(WAIT, attempts.recv()).await.expect("attempt in time").expect("open");
        seen.push(next);
    }
    assert_eq!(seen.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 2, 3]);
    // Equal jitter never waits less than half the step: 200 ms, then 400 ms.
    assert!(seen[1].1 - seen[0].1 >= Duration::from_millis(100), "{:?}", seen[1].1 - seen[0].1);
    assert!(seen[2].1 - seen[1].1 >= Duration::from_millis(200), "{:?}", seen[2].1 - seen[1].1);
    let data = app.data.clone(); // keeps the store past the app
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    app.stop().await;

    let (code, out) = run_webhookd(&["deliveries", "show", &id, "--json"], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    let shown: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!((shown["state"].as_str(), shown["attempts"].as_u64()), (Some("done"), Some(3)), "{shown}");
    assert_eq!(shown["payload"]["action"], "opened", "the stored payload reads back");
}

/// Fails permanently the first time it sees a delivery, succeeds afterwards.
struct FailsOnceForGood {
    seen: Arc<Mutex<HashMap<String, u32>>>,
    succeeded: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Handler for FailsOnceForGood {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let times = {
            let mut seen = self.seen.lock().expect("lock");
            let times = seen.entry(delivery.id().to_string()).or_default();
            *times += 1;
            *times
        };
        if times == 1 {
            return Err(HandlerError::Permanent(anyhow::anyhow!("GitHub answered 404 (on purpose)")));
        }
        let _ = self.succeeded.send(delivery.id().to_string());
        Ok(())
    }
}

#[tokio::test]
async fn a_permanent_failure_is_dead_after_one_attempt_and_replay_brings_it_back() {
    let data = Arc::new(tempfile::tempdir().expect("data"));
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let (succeeded, mut successes) = mpsc::unbounded_channel();
    let handler = Arc::new(FailsOnceForGood { seen: seen.clone(), succeeded: succeeded.clone() });
    let app = spawn_app_in(data.clone(), &[], handler).await;
    let response = app.post_webhook("issues", fixture("issues/opened.payload.json")).await;
    let id = response.json::<serde_json::Value>().await.expect("json")["delivery"].as_str().expect("id").to_owned();
    app.stop().await; // the drain records the outcome

    let (code, out) =
        run_webhookd(&["deliveries", "list", "--status", "dead", "--json"], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    let dead: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(dead[0]["delivery_id"], id.as_str(), "{out}");
    assert_eq!(dead[0]["attempts"], 1, "no retry after a permanent failure: {out}");
    assert!(dead[0]["last_error"].as_str().expect("error").contains("404"), "{out}");

    // Replayed from the CLI while a daemon runs: it picks the delivery up.
    let app = spawn_app_in(data.clone(), &[], Arc::new(FailsOnceForGood { seen, succeeded })).await;
    let (code, out) = run_webhookd(&["deliveries", "replay", &id], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(receive_n(&mut successes, 1).await, vec![id]);
    app.stop().await;
    let (_, table) = run_webhookd(&["deliveries", "list"], &[("WEBHOOKD_STORE", &store)]).await;
    assert!(table.contains("done") && !table.contains("dead"), "{table}");
}

/// Never finishes: every delivery it takes is interrupted by the drain timeout.
struct Stuck {
    started: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Handler for Stuck {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let _ = self.started.send(delivery.id().to_string());
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test]
async fn a_drain_timeout_leaves_the_rest_queued_and_the_next_start_processes_it() {
    let data = Arc::new(tempfile::tempdir().expect("data"));
    let (started, mut starts) = mpsc::unbounded_channel();
    let app = spawn_app_in(
        data.clone(),
        &[("WEBHOOKD_WORKERS", "1"), ("WEBHOOKD_SHUTDOWN_TIMEOUT", "1")],
        Arc::new(Stuck { started }),
    )
    .await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let response = app.post_webhook("issues", fixture("issues/opened.payload.json")).await;
        assert_eq!(response.status().as_u16(), 202);
        ids.insert(
            response.json::<serde_json::Value>().await.expect("json")["delivery"].as_str().expect("id").to_owned(),
        );
    }
    receive_n(&mut starts, 1).await;
    let report = app.stop().await;
    assert!(report.abandoned.is_empty(), "nothing is lost with the durable store: {report:?}");
    assert_eq!(report.kept, 3, "{report:?}");

    let (handler, mut processed) = RecordingHandler::new();
    let app = spawn_app_in(data, &[], handler).await;
    let done: HashSet<String> = receive_n(&mut processed, 3).await.into_iter().collect();
    assert_eq!(done, ids);
    app.stop().await;
}

#[tokio::test]
async fn unusable_stores_exit_two_naming_the_path() {
    let dir = tempfile::tempdir().expect("dir");
    let corrupt = dir.path().join("corrupt.db");
    std::fs::write(&corrupt, vec![0x42; 16_384]).expect("write");
    let corrupt_store = format!("sqlite:{}", corrupt.display());
    for (store, path) in [
        // /proc refuses new files, even to root: a folder no one can write to.
        ("sqlite:/proc/webhookd.db".to_owned(), "/proc/webhookd.db".to_owned()),
        (corrupt_store, corrupt.display().to_string()),
    ] {
        let (code, out) = run_webhookd(
            &["serve"],
            &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", &store), ("WEBHOOKD_LISTEN", "127.0.0.1:0")],
        )
        .await;
        assert_eq!(code, 2, "{store}: {out}");
        assert!(out.contains(&path), "{store}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }

    // A store in use by a running daemon.
    let daemon = Daemon::start(&webhookd_bin(), &[("WEBHOOKD_SECRET", TEST_SECRET)]).await;
    let store = daemon.workdir.path().join("data/webhookd.db");
    let store_var = format!("sqlite:{}", store.display());
    let (code, out) = run_webhookd(
        &["serve"],
        &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", &store_var), ("WEBHOOKD_LISTEN", "127.0.0.1:0")],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("in use by another webhookd"), "{out}");
    daemon.signal(Signal::SIGTERM);
}

#[tokio::test]
async fn a_thousand_concurrent_deliveries_are_each_committed_answered_and_processed_once() {
    let (handler, mut processed) = RecordingHandler::new();
    let app = Arc::new(spawn_app(&[], handler).await);
    let body = Arc::new(fixture("push/payload.json"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1_000 {
        let (app, body) = (app.clone(), body.clone());
        tasks.spawn(async move {
            let id = uuid::Uuid::new_v4().to_string();
            let status = app.webhook("push", &id, body.to_vec()).send().await.expect("sent").status().as_u16();
            (id, status)
        });
    }
    let mut accepted = HashSet::new();
    while let Some(result) = tasks.join_next().await {
        let (id, status) = result.expect("task");
        assert_eq!(status, 202, "{id}");
        accepted.insert(id);
    }
    assert_eq!(accepted.len(), 1_000);
    let processed_ids = receive_n(&mut processed, 1_000).await;
    let unique: HashSet<String> = processed_ids.iter().cloned().collect();
    assert_eq!(unique, accepted, "each delivery processed once");

    let data = app.data.clone(); // keeps the store past the app
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    let app = Arc::into_inner(app).expect("only reference");
    app.stop().await;
    assert!(processed.try_recv().is_err(), "nothing was processed twice");
    let (code, out) = run_webhookd(
        &["deliveries", "list", "--status", "done", "--limit", "5000", "--json"],
        &[("WEBHOOKD_STORE", &store)],
    )
    .await;
    assert_eq!(code, 0);
    let done: Vec<serde_json::Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(done.len(), 1_000, "every delivery committed and finished in the store");
}

/// A delivery that takes the process down each time it runs (here: SIGKILL
/// while its GitHub call hangs) spends its attempts like any other failure:
/// past them (one run more, for a claim a kill caught unstarted) it is dead
/// at the next start, not run again after every restart.
#[tokio::test]
async fn a_delivery_that_kills_the_process_past_its_attempts_is_dead_after_the_restart() {
    // A GitHub that takes the request and never answers: the accept is the
    // event that says the delivery is being processed.
    let github = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = format!("http://{}", github.local_addr().expect("addr"));
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", api.as_str()),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
        ("WEBHOOKD_MAX_ATTEMPTS", "1"),
    ];
    let mut daemon = Daemon::start(&example_bin(), &env).await;
    let workdir = daemon.workdir.clone();
    let http = reqwest::Client::new();
    assert_eq!(post_issue(&http, &daemon.address, 1, TEST_SECRET).await.expect("sent"), 202);
    let mut held = Vec::new();
    // Killed mid-call twice: on its one attempt, then on the run beyond it.
    for run in 1..=2 {
        let Ok(accepted) = tokio::time::timeout(WAIT, github.accept()).await else {
            panic!("run {run}: GitHub not called; daemon output:\n{}", daemon.output());
        };
        let (mut call, _) = accepted.expect("accept");
        let mut head = [0u8; 64];
        let read = tokio::io::AsyncReadExt::read(&mut call, &mut head).await.expect("request head");
        assert!(head[..read].starts_with(b"POST /repos/"), "run {run}: the delivery's comment is in flight");
        held.push(call);
        daemon.signal(Signal::SIGKILL);
        assert_eq!(daemon.wait().await.code(), None, "killed by a signal");
        daemon = Daemon::start_in(workdir.clone(), &example_bin(), &env).await;
    }
    // Logged while the store opens, before the daemon says it started.
    assert!(daemon.output().contains("past their last attempt are dead"), "{}", daemon.output());
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
    drop(held);

    let store = format!("sqlite:{}", workdir.path().join("data/webhookd.db").display());
    let (code, out) =
        run_webhookd(&["deliveries", "list", "--status", "dead", "--json"], &[("WEBHOOKD_STORE", store.as_str())])
            .await;
    assert_eq!(code, 0, "{out}");
    let dead: serde_json::Value = serde_json::from_str(&out).expect("json list");
    assert_eq!(dead.as_array().map(Vec::len), Some(1), "{out}");
    assert!(out.contains("the process stopped while processing it"), "{out}");
}
