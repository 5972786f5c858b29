//! The GitHub client under load and failure (issue 12): a paused credential
//! ends requests at once instead of holding a worker, the concurrency cap
//! bounds connections while bodies are still arriving, content-creating
//! requests stay within GitHub's 80/min budget, and token-exchange failures
//! say what to fix and are retried only when retrying can help.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use webhookd::config::{ClientRetry, GitHubCredential, GitHubSettings};
use webhookd::delivery::Delivery;
use webhookd::github::{CredentialKey, GitHub, GitHubApi, GitHubError, IN_REQUEST_WAIT, Reply};
use webhookd::handler::{Handler, HandlerError};
use webhookd::telemetry::metrics::Metrics;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::process::run_webhookd;

fn token_client(api: &str, concurrency: usize, metrics: Arc<Metrics>) -> GitHub {
    let settings = GitHubSettings {
        api_url: api.parse().expect("url"),
        credential: Some(GitHubCredential::Token("ghp_test".to_owned().into())),
        concurrency,
        write_interval: Duration::ZERO,
        request_timeout: Duration::from_secs(10),
        retry: ClientRetry { attempts: 4, base: Duration::from_millis(10), budget: Duration::from_secs(10) },
        ..GitHubSettings::default()
    };
    GitHub::new(&settings, metrics).expect("client")
}

fn paused_until(error: GitHubError) -> SystemTime {
    match error {
        GitHubError::Paused { credential: CredentialKey::Token, until } => until,
        other => panic!("expected Paused, got {other}"),
    }
}

#[tokio::test]
async fn a_long_secondary_limit_ends_the_request_at_once_and_holds_back_the_next() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "60")
                .set_body_json(json!({"message": "You have exceeded a secondary rate limit"})),
        )
        .expect(1)
        .mount(&github)
        .await;
    let client = token_client(&github.uri(), 10, Arc::new(Metrics::new()));
    let api = client.for_installation(None);

    let started = Instant::now();
    let until = paused_until(api.get("/repos/o/r/issues").await.expect_err("paused"));
    assert!(started.elapsed() < Duration::from_secs(1), "ended at once, not after the pause");
    let ahead = until.duration_since(SystemTime::now()).expect("in the future");
    assert!(ahead > Duration::from_secs(55) && ahead <= Duration::from_secs(61), "{ahead:?}");
    let reported = client.paused_until(&CredentialKey::Token).expect("the queue can ask");
    assert!(reported.duration_since(until).unwrap_or_else(|e| e.duration()) < Duration::from_secs(1));

    // Another request on the paused credential does not even reach GitHub.
    let started = Instant::now();
    paused_until(api.get("/repos/o/r/pulls").await.expect_err("still paused"));
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(client.paused_until(&CredentialKey::Installation(1)), None, "other credentials are not paused");
    github.verify().await;
}

#[tokio::test]
async fn a_spent_primary_quota_defers_the_next_request_until_the_reset() {
    let github = MockServer::start().await;
    let reset = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("now").as_secs() + 60;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!([])),
        )
        .expect(1)
        .mount(&github)
        .await;
    let client = token_client(&github.uri(), 10, Arc::new(Metrics::new()));
    let api = client.for_installation(None);
    assert!(matches!(api.get("/repos/o/r/issues").await, Ok(Reply::Sent(_))), "the last quota unit is used");
    let until = paused_until(api.get("/repos/o/r/issues").await.expect_err("quota spent"));
    let ahead = until.duration_since(SystemTime::now()).expect("in the future");
    assert!(ahead > Duration::from_secs(55) && ahead <= Duration::from_secs(62), "{ahead:?}");
    github.verify().await;
}

#[tokio::test]
async fn a_pause_shorter_than_the_in_request_wait_is_waited_out_in_place() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET")).respond_with(ResponseTemplate::new(200).set_body_json(json!([]))).mount(&github).await;
    assert!(IN_REQUEST_WAIT >= Duration::from_secs(2));
    let client = token_client(&github.uri(), 10, Arc::new(Metrics::new()));
    let started = Instant::now();
    let reply = client.for_installation(None).get("/repos/o/r/issues").await.expect("succeeds after 1 s");
    assert!(matches!(reply, Reply::Sent(_)));
    assert!(started.elapsed() >= Duration::from_millis(990), "the pause was kept");
}

/// A GitHub that answers each request with its headers at once and then its
/// body one byte every 20 ms, on keep-alive connections.
async fn dribbling_github() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request: its headers (GETs have no body).
                    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0) + 4;
                    buffer.drain(..end);
                    let body = b"[          ]";
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        body.len()
                    );
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for byte in body {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        if socket.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn twenty_slow_answers_never_open_more_connections_than_the_concurrency_cap() {
    let upstream = dribbling_github().await;
    let counter = ConnectionCounter::start(upstream).await;
    let client = token_client(&counter.url(), 4, Arc::new(Metrics::new()));
    let api = client.for_installation(None);
    let calls = (0..20).map(|n| {
        let path = format!("/repos/o/r/issues/{n}");
        async move { api.get(&path).await }
    });
    for result in futures::future::join_all(calls).await {
        let Reply::Sent(response) = result.expect("answered") else { panic!("not a dry run") };
        assert_eq!(response.json().expect("json"), json!([]));
    }
    let accepted = counter.accepted();
    assert!((1..=4).contains(&accepted), "20 slow answers with a cap of 4 opened {accepted} connections");
}

#[tokio::test]
async fn content_creating_posts_stop_at_eighty_a_minute_and_are_deferred_not_sent() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/o/r/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues/1/labels"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&github)
        .await;
    let metrics = Arc::new(Metrics::new());
    let client = token_client(&github.uri(), 10, metrics.clone());
    let api = client.for_installation(None);
    let body = json!({"body": "hi"});
    let started = Instant::now();
    let mut sent = 0u64;
    let until = loop {
        assert!(sent < 200, "the budget never ran out");
        match api.post(&format!("/repos/o/r/issues/{sent}/comments"), &body).await {
            Ok(_) => sent += 1,
            Err(error) => break paused_until(error),
        }
    };
    // 80 at once, plus what refilled (80 a minute) while they were sent.
    let refilled = (started.elapsed().as_secs_f64() * 80.0 / 60.0).ceil() as u64;
    assert!(sent >= 80 && sent <= 80 + refilled, "{sent} sent in {:?}", started.elapsed());
    let reached = github.received_requests().await.expect("recorded").len() as u64;
    assert_eq!(reached, sent, "the deferred request was not sent");
    let ahead = until.duration_since(SystemTime::now()).unwrap_or_default();
    // 80 a minute: the next token frees within 0.75 s.
    assert!(ahead <= Duration::from_millis(750), "{ahead:?}");
    let left = |window: &str| metrics.github_content_budget_remaining.with_label_values(&["token", window]).get();
    assert_eq!(left("minute"), 0);
    assert!((500 - sent as i64..=500 - 80).contains(&left("hour")), "{}", left("hour"));
    // Idempotent POSTs (labels) are not content-creating.
    api.post_idempotent("/repos/o/r/issues/1/labels", &json!({"labels": ["x"]})).await.expect("not budgeted");
    github.verify().await;
}

/// Calls GitHub as the delivery's installation and reports the outcome.
struct Reporting {
    outcomes: mpsc::UnboundedSender<Result<(), String>>,
}

#[async_trait]
impl Handler for Reporting {
    async fn handle(&self, _delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let result = github.post("/repos/o/r/issues/1/comments", &json!({"body": "hi"})).await;
        let _ = self.outcomes.send(result.as_ref().map(|_| ()).map_err(ToString::to_string));
        result?;
        Ok(())
    }
}

const INSTALLATION: u64 = 4242;

fn delivery_for_installation() -> Vec<u8> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fixture("issues/opened.payload.json")).expect("fixture");
    payload["installation"] = json!({ "id": INSTALLATION });
    serde_json::to_vec(&payload).expect("json")
}

#[tokio::test]
async fn each_token_exchange_failure_is_classified_named_and_tried_once() {
    let keys = tempfile::tempdir().expect("dir");
    let key_file = keys.path().join("app.pem");
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key");
    std::fs::write(&key_file, key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem").as_bytes())
        .expect("write key");
    let key_file = key_file.display().to_string();
    // (status, message GitHub gives, final?, what the error must say)
    let cases = [
        (401, "A JSON web token could not be decoded", true, "WEBHOOKD_GITHUB_APP_ID"),
        (404, "Not Found", true, "installation 4242 was not found"),
        (403, "This installation has been suspended", true, "installation 4242 is suspended"),
        (500, "oops", false, "500"),
    ];
    for (status, message, final_, says) in cases {
        let github = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/app/installations/{INSTALLATION}/access_tokens")))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({ "message": message })))
            .expect(1)
            .mount(&github)
            .await;
        Mock::given(path_regex("/repos/")).respond_with(ResponseTemplate::new(201)).expect(0).mount(&github).await;
        let data = Arc::new(tempfile::tempdir().expect("data"));
        let (outcomes, mut outcome) = mpsc::unbounded_channel();
        let app = spawn_app_in(
            data.clone(),
            &[
                ("WEBHOOKD_GITHUB_APP_ID", "42"),
                ("WEBHOOKD_GITHUB_APP_KEY_FILE", &key_file),
                ("WEBHOOKD_GITHUB_API_URL", &github.uri()),
                ("WEBHOOKD_RETRY_BACKOFF", "1h"),
            ],
            Arc::new(Reporting { outcomes }),
        )
        .await;
        assert_eq!(app.post_webhook("issues", delivery_for_installation()).await.status().as_u16(), 202);
        let error =
            tokio::time::timeout(WAIT, outcome.recv()).await.expect("in time").expect("open").expect_err("fails");
        assert!(error.contains(says), "{status}: {error}");

        let ready = app.get("/readyz").await;
        let ready_status = ready.status().as_u16();
        let ready_body: serde_json::Value = ready.json().await.expect("json");
        if status == 401 {
            assert_eq!(ready_status, 503, "{ready_body}");
            assert_eq!(ready_body["status"], "github_credentials");
            assert!(ready_body["error"].as_str().expect("error").contains("WEBHOOKD_GITHUB_APP_KEY_FILE"));
        } else {
            assert_eq!(ready_status, 200, "{status}: an installation's trouble is not the daemon's: {ready_body}");
        }
        app.stop().await;

        let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
        let (code, out) = run_webhookd(&["deliveries", "list", "--json"], &[("WEBHOOKD_STORE", &store)]).await;
        assert_eq!(code, 0, "{out}");
        let listed: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(listed[0]["attempts"], 1, "{status}: {out}");
        let state = listed[0]["state"].as_str().expect("state");
        if final_ {
            assert_eq!(state, "dead", "{status} is final: {out}");
            assert!(listed[0]["last_error"].as_str().expect("error").contains(says), "{out}");
        } else {
            assert_ne!(state, "dead", "{status} is retried later: {out}");
        }
        github.verify().await;
    }
}
