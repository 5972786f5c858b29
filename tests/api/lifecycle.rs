//! The built binaries under signals: the drain sequence, the drain timeout,
//! exit codes, and secrets kept out of every line of output.

use std::time::Duration;

use nix::sys::signal::Signal;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::process::*;

/// A signed `issues.opened` delivery to a daemon at `address`; returns its status and id.
pub async fn deliver(http: &reqwest::Client, address: &str) -> (u16, String) {
    let id = uuid::Uuid::new_v4().to_string();
    let body = fixture("issues/opened.payload.json");
    let response =
        signed_delivery(http, address, TEST_SECRET, "issues", &id, body).send().await.expect("delivery sent");
    (response.status().as_u16(), id)
}

pub async fn slow_github(delay: Duration) -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/.+/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(201).set_delay(delay))
        .mount(&github)
        .await;
    github
}

/// The example daemon (it comments on every new issue) against `github`.
pub async fn start_commenting_daemon(github: &MockServer, extra: &[(&str, &str)]) -> Daemon {
    let api = github.uri();
    let mut env = vec![
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", &api),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
    ];
    env.extend_from_slice(extra);
    Daemon::start(&example_bin(), &env).await
}

#[tokio::test]
async fn sigterm_drains_every_accepted_delivery_to_github_then_exits_zero() {
    let github = slow_github(Duration::from_millis(300)).await;
    let mut daemon = start_commenting_daemon(&github, &[("WEBHOOKD_WORKERS", "2")]).await;
    let http = reqwest::Client::new();
    for _ in 0..10 {
        assert_eq!(deliver(&http, &daemon.address).await.0, 202);
    }

    daemon.signal(Signal::SIGTERM);
    daemon.wait_for_line("draining").await;
    // Ten calls of 300 ms on two workers take 1.5 s to drain: we are inside it.
    let ready = http.get(format!("{}/readyz", daemon.address)).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503, "readyz during the drain");
    let (late, _) = deliver(&http, &daemon.address).await;
    assert_eq!(late, 503, "a delivery during the drain is refused");

    let status = daemon.wait().await;
    let output = daemon.output();
    assert_eq!(status.code(), Some(0), "{output}");
    let calls = github.received_requests().await.expect("recording").len();
    assert_eq!(calls, 10, "every delivery answered 202 reached GitHub before exit");
    for phase in ["draining", "queue drained", "HTTP server stopped", "GitHub client dropped"] {
        assert!(output.contains(phase), "missing phase {phase:?}:\n{output}");
    }
    let order: Vec<usize> = ["queue drained", "HTTP server stopped", "GitHub client dropped"]
        .iter()
        .map(|p| output.find(p).expect("phase logged"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "phases out of order:\n{output}");
}

#[tokio::test]
async fn with_the_memory_store_a_drain_timeout_logs_every_lost_delivery_and_exits_one() {
    let github = slow_github(Duration::from_secs(30)).await;
    let mut daemon = start_commenting_daemon(
        &github,
        &[("WEBHOOKD_STORE", "memory"), ("WEBHOOKD_WORKERS", "1"), ("WEBHOOKD_SHUTDOWN_TIMEOUT", "1")],
    )
    .await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, id) = deliver(&http, &daemon.address).await;
        assert_eq!(status, 202);
        ids.push(id);
    }
    daemon.signal(Signal::SIGTERM);
    let report = daemon.wait_for_line("drain timeout").await;
    for id in &ids {
        assert!(report.contains(id.as_str()), "{id} not reported as unprocessed: {report}");
    }
    let status = daemon.wait().await;
    assert_eq!(status.code(), Some(1), "{}", daemon.output());
}

#[tokio::test]
async fn secret_and_token_never_appear_in_output_at_trace_level() {
    let github = slow_github(Duration::ZERO).await;
    let api = github.uri();
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", api.as_str()),
        ("RUST_LOG", "trace"),
    ];
    let mut daemon = start_commenting_daemon(&github, &[("RUST_LOG", "trace")]).await;
    let http = reqwest::Client::new();
    for _ in 0..3 {
        assert_eq!(deliver(&http, &daemon.address).await.0, 202);
    }
    // A refused delivery goes through the error paths too.
    let refused = http
        .post(format!("{}/webhook", daemon.address))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", "issues")
        .header("X-GitHub-Delivery", "refused-1")
        .header("X-Hub-Signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(refused.status().as_u16(), 401);
    let body = refused.text().await.expect("body");
    assert!(!body.contains(TEST_SECRET));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0));
    assert_eq!(github.received_requests().await.expect("recording").len(), 3, "the token was used");

    let mut output = daemon.output();
    assert!(output.contains("TRACE"), "trace logging was on");
    let (_, check) = run_webhookd(&["check"], &env).await;
    let (_, bad_check) =
        run_webhookd(&["check"], &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_GITHUB_TOKEN_FILE", "/nonexistent")])
            .await;
    output.push_str(&check);
    output.push_str(&bad_check);
    assert!(!output.contains(TEST_SECRET), "the webhook secret leaked");
    assert!(!output.contains(TEST_TOKEN), "the GitHub token leaked");
}

#[tokio::test]
async fn check_and_send_work_against_a_running_daemon() {
    let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", TEST_SECRET)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
    let (code, out) =
        run_webhookd(&["check"], &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_QUEUE_CAPACITY", "x")]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEBHOOKD_QUEUE_CAPACITY"), "{out}");
    let (code, out) = run_webhookd(&["check"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEBHOOKD_SECRET"), "{out}");
    let (code, out) = run_webhookd(&["--env-file", "/nonexistent/.env", "check"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("/nonexistent/.env"), "{out}");
    let (code, _) = run_webhookd(&["no-such-command"], &[]).await;
    assert_eq!(code, 2, "usage errors exit 2");

    let mut daemon = Daemon::start(&webhookd_bin(), &[("WEBHOOKD_SECRET", TEST_SECRET)]).await;
    let url = format!("{}/webhook", daemon.address);
    let file = fixtures_dir().join("issues/opened.payload.json");
    let file = file.to_str().expect("utf-8 path");
    let (code, out) =
        run_webhookd(&["send", file, "--event", "issues", "--url", &url], &[("WEBHOOKD_SECRET", TEST_SECRET)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("HTTP 202") && out.contains("\"queued\""), "{out}");
    daemon.wait_for_line("delivery processed").await;

    let (code, out) =
        run_webhookd(&["send", file, "--event", "issues", "--url", &url], &[("WEBHOOKD_SECRET", "wrong")]).await;
    assert_eq!(code, 1, "a refused delivery makes send fail: {out}");
    assert!(out.contains("HTTP 401"), "{out}");

    daemon.signal(Signal::SIGINT);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
}

#[tokio::test]
async fn a_port_in_use_exits_one_naming_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("address").to_string();
    let (code, out) =
        run_webhookd(&["serve"], &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_LISTEN", &address)]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&address) && out.contains("WEBHOOKD_LISTEN"), "{out}");
}
