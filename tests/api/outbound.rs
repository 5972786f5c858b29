//! What webhookd sends out and renders, against hostile answers and rules:
//! a `forward` receiver's redirect is not followed and its answer is read
//! only a few KB deep and never recorded; GitHub's headers go to GitHub
//! only; a GitHub answer past the cap fails cleanly; a runaway template fails
//! its delivery, not the process.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use webhookd::config::{ClientRetry, Env, GitHubCredential, GitHubSettings};
use webhookd::github::{GitHub, GitHubError, MAX_ANSWER_BYTES, Reply};
use webhookd::rules::RulesHandler;
use webhookd::telemetry::metrics::Metrics;
use wiremock::matchers::{any, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;
use crate::process::run_webhookd;

const REPO: &str = "/repos/Codertocat/Hello-World";
/// What a hostile receiver puts in its answers: it must never be recorded.
const RECEIVER_WORDS: &str = "receiver-body-must-not-be-recorded";

/// Runs the app with `rules` against `github`, posts each `(event, fixture,
/// id)` in turn, and stops once the drain has processed them. Returns the
/// store (`WEBHOOKD_STORE`) to inspect, and its folder to keep it alive.
async fn run_rules(
    github: &str,
    rules: &str,
    deliveries: &[(&str, &str, &str)],
    extra: &[(&str, &str)],
) -> (Arc<tempfile::TempDir>, String) {
    let data = Arc::new(tempfile::tempdir().expect("data"));
    let file = data.path().join("rules.toml");
    std::fs::write(&file, rules).expect("write rules");
    let file = file.to_str().expect("utf8").to_owned();
    let mut pairs: Vec<(&str, &str)> = extra.to_vec();
    pairs.push(("WEBHOOKD_RULES", &file));
    let env = Env::from_pairs(pairs.iter().copied());
    let handler =
        Arc::new(RulesHandler::load(file.clone().into(), &env, Arc::new(Metrics::new())).expect("rules load"));
    let mut vars = vec![("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN), ("WEBHOOKD_GITHUB_API_URL", github)];
    vars.extend_from_slice(extra);
    let app = spawn_app_in(data.clone(), &vars, handler).await;
    for (event, fixture_path, id) in deliveries {
        let response = app.webhook(event, id, fixture(fixture_path)).send().await.expect("sent");
        assert_eq!(response.status().as_u16(), 202);
    }
    app.stop().await;
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    (data, store)
}

/// A delivery's state and last error, as `webhookd deliveries show` prints them.
async fn state_and_error(store: &str, id: &str) -> (String, String) {
    let (code, out) = run_webhookd(&["deliveries", "show", id], &[("WEBHOOKD_STORE", store)]).await;
    assert_eq!(code, 0, "{out}");
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name:?} in {out}"))
    };
    (field("state"), field("last error"))
}

fn forward_rule(url: &str) -> String {
    format!(
        "[[rule]]\nname = \"audit\"\non = \"issues\"\n[[rule.actions]]\nforward = {{ url = \"{url}\", secret_env = \"AUDIT_SECRET\" }}\n"
    )
}

const AUDIT: (&str, &str) = ("AUDIT_SECRET", "audit-s3cret");

#[tokio::test]
async fn a_forward_receivers_redirect_is_not_followed_and_its_body_not_recorded() {
    let github = MockServer::start().await;
    for status in [307u16, 302] {
        let receiver = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/hooks"))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("Location", format!("{}/elsewhere", receiver.uri()).as_str())
                    .set_body_string(RECEIVER_WORDS),
            )
            .expect(1)
            .mount(&receiver)
            .await;
        Mock::given(path("/elsewhere")).respond_with(ResponseTemplate::new(200)).expect(0).mount(&receiver).await;
        let id = format!("redirect-{status}");
        let deliveries = [("issues", "issues/opened.payload.json", id.as_str())];
        let (_data, store) =
            run_rules(&github.uri(), &forward_rule(&format!("{}/hooks", receiver.uri())), &deliveries, &[AUDIT]).await;
        receiver.verify().await;
        let (state, error) = state_and_error(&store, &id).await;
        assert_eq!(state, "dead", "a redirect is a final failure: {error}");
        assert!(error.contains(&format!("receiver answered {status}")), "{error}");
        assert!(!error.contains(RECEIVER_WORDS) && !error.contains("GitHub"), "{error}");
    }
}

#[tokio::test]
async fn forward_requests_carry_none_of_githubs_headers_and_github_requests_still_do() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/labels")))
        .and(header("x-github-api-version", webhookd::github::API_VERSION))
        .and(header("accept", webhookd::github::ACCEPT))
        .and(header("user-agent", webhookd::github::USER_AGENT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&github)
        .await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(202)).expect(1).mount(&receiver).await;
    let rules =
        format!("{}[[rule.actions]]\nadd_labels = [\"seen\"]\n", forward_rule(&format!("{}/in", receiver.uri())));
    let deliveries = [("issues", "issues/opened.payload.json", "headers-1")];
    let (_data, store) = run_rules(&github.uri(), &rules, &deliveries, &[AUDIT]).await;
    github.verify().await;
    receiver.verify().await;
    let requests = receiver.received_requests().await.expect("recording");
    let forwarded = &requests[0].headers;
    assert!(forwarded.get("x-github-api-version").is_none(), "{forwarded:?}");
    assert!(forwarded.get("authorization").is_none(), "{forwarded:?}");
    let accept = forwarded.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(!accept.contains("vnd.github"), "{forwarded:?}");
    let agent = forwarded.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(agent.starts_with("webhookd/"), "{forwarded:?}");
    assert_eq!(state_and_error(&store, "headers-1").await.0, "done");
}

/// A raw HTTP server whose every answer is `status` with a body of `length`
/// zero bytes, streamed without being held (chunked when `declared` is
/// false). It reports, per connection, how many body bytes it managed to
/// write before the peer closed, and counts the requests it saw.
struct Firehose {
    url: String,
    written: mpsc::UnboundedReceiver<usize>,
    requests: Arc<AtomicUsize>,
}

/// Body streamed by a `Firehose`: far more than any cap plus what the
/// sockets between can hold.
const FIREHOSE_BYTES: usize = 128 * 1024 * 1024;

impl Firehose {
    async fn start(status: u16, declared: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let (report, written) = mpsc::unbounded_channel();
        let requests = Arc::new(AtomicUsize::new(0));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (mut reader, mut writer) = socket.into_split();
                let (report, seen) = (report.clone(), seen.clone());
                tokio::spawn(async move {
                    // Wait for the request's head, then keep draining whatever comes.
                    let mut head = Vec::new();
                    let mut buf = [0u8; 8192];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match reader.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    seen.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move { while matches!(reader.read(&mut buf).await, Ok(n) if n > 0) {} });
                    let framing = if declared {
                        format!("Content-Length: {FIREHOSE_BYTES}")
                    } else {
                        "Transfer-Encoding: chunked".to_owned()
                    };
                    let head =
                        format!("HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
                    let mut sent = 0;
                    if writer.write_all(head.as_bytes()).await.is_ok() {
                        let chunk = vec![b'0'; 64 * 1024];
                        while sent < FIREHOSE_BYTES {
                            let result = if declared {
                                writer.write_all(&chunk).await
                            } else {
                                let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                                writer.write_all(&framed).await
                            };
                            if result.is_err() {
                                break;
                            }
                            sent += chunk.len();
                        }
                        if !declared && sent >= FIREHOSE_BYTES {
                            let _ = writer.write_all(b"0\r\n\r\n").await;
                        }
                    }
                    let _ = report.send(sent);
                });
            }
        });
        Self { url, written, requests }
    }

    /// Body bytes written on the next connection before the peer closed it.
    async fn next_written(&mut self) -> usize {
        tokio::time::timeout(WAIT, self.written.recv()).await.expect("the peer closed in time").expect("open")
    }
}

/// Body bytes the server may write besides what the client read: the most
/// the kernel lets a receiving and a sending TCP buffer grow to.
fn socket_slack() -> usize {
    let most = |file: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/{file}"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(2).and_then(|n| n.parse::<usize>().ok()))
            .unwrap_or(32 * 1024 * 1024)
    };
    most("tcp_rmem") + most("tcp_wmem")
}

#[tokio::test]
async fn a_forward_receivers_endless_answer_is_read_only_a_few_kb_deep() {
    let github = MockServer::start().await;
    for (status, expected_state) in [(200u16, "done"), (500, "dead")] {
        let mut receiver = Firehose::start(status, true).await;
        let id = format!("firehose-{status}");
        let deliveries = [("issues", "issues/opened.payload.json", id.as_str())];
        // One attempt: a 500 is retryable, and this test is about the read.
        let extra = [AUDIT, ("WEBHOOKD_MAX_ATTEMPTS", "1")];
        let (_data, store) =
            run_rules(&github.uri(), &forward_rule(&format!("{}/in", receiver.url)), &deliveries, &extra).await;
        let written = receiver.next_written().await;
        assert!(
            written <= webhookd::github::MAX_FORWARD_ANSWER_BYTES + socket_slack(),
            "{written} of {FIREHOSE_BYTES} bytes were taken in"
        );
        let (state, error) = state_and_error(&store, &id).await;
        assert_eq!(state, expected_state, "{error}");
        if status == 500 {
            assert!(error.contains("receiver answered 500") && !error.contains("GitHub answered"), "{error}");
        }
    }
}

fn github_client(api: &str) -> GitHub {
    let settings = GitHubSettings {
        api_url: api.parse().expect("url"),
        credential: Some(GitHubCredential::Token("ghp_test".to_owned().into())),
        concurrency: 10,
        write_interval: Duration::ZERO,
        request_timeout: Duration::from_secs(10),
        retry: ClientRetry { attempts: 3, base: Duration::from_millis(10), budget: Duration::from_secs(10) },
        ..GitHubSettings::default()
    };
    GitHub::new(&settings, Arc::new(Metrics::new())).expect("client")
}

#[tokio::test]
async fn a_github_answer_past_the_cap_fails_cleanly_and_is_not_retried() {
    for declared in [true, false] {
        let mut firehose = Firehose::start(200, declared).await;
        let github = github_client(&firehose.url);
        let error = match github.for_installation(None).get("/repos/o/r/issues").await {
            Err(error) => error,
            Ok(_) => panic!("declared {declared}: a {FIREHOSE_BYTES}-byte answer was accepted"),
        };
        assert!(matches!(error, GitHubError::AnswerTooLarge { limit: MAX_ANSWER_BYTES, .. }), "{error}");
        assert!(!error.is_retryable());
        assert!(error.to_string().contains(&format!("longer than {MAX_ANSWER_BYTES} bytes")), "{error}");
        drop(github);
        let written = firehose.next_written().await;
        assert!(written <= MAX_ANSWER_BYTES + socket_slack(), "declared {declared}: {written} bytes taken in");
        assert_eq!(firehose.requests.load(Ordering::SeqCst), 1, "not retried");
    }
}

#[tokio::test]
async fn github_redirects_are_followed_within_the_api_only() {
    let github = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(200)).expect(0).mount(&elsewhere).await;
    // A renamed repository: GitHub points at its new home under the API.
    Mock::given(method("GET"))
        .and(path("/repos/old/name/issues/1"))
        .respond_with(
            ResponseTemplate::new(301)
                .insert_header("Location", format!("{}/repositories/7/issues/1", github.uri()).as_str()),
        )
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repositories/7/issues/1"))
        .and(header("authorization", "Bearer ghp_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"number": 1})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/away/issues/1"))
        .respond_with(
            ResponseTemplate::new(302).insert_header("Location", format!("{}/stolen", elsewhere.uri()).as_str()),
        )
        .mount(&github)
        .await;
    let client = github_client(&github.uri());
    let api = client.for_installation(None);
    let Reply::Sent(moved) = api.get("/repos/old/name/issues/1").await.expect("followed") else { panic!("dry run") };
    assert_eq!(moved.json().expect("json")["number"], 1);
    let error = api.get("/repos/o/away/issues/1").await.expect_err("not followed");
    assert!(matches!(&error, GitHubError::Status { status, .. } if status.as_u16() == 302), "{error}");
    github.verify().await;
    elsewhere.verify().await;
}

#[tokio::test]
async fn a_runaway_template_fails_its_delivery_and_the_next_one_is_served() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/6113728f27ae82c7b1a177c8d03f9e96e0adf246")))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .expect(1)
        .mount(&github)
        .await;
    let rules = r#"
        [[rule]]
        name = "runaway"
        on = "issues.opened"
        [[rule.actions]]
        comment = "{% for i in range(100000) %}{{ 'x'*100000000 }}{% endfor %}"

        [[rule]]
        name = "spinning"
        on = "issues.opened"
        [[rule.actions]]
        comment = "{% for i in range(100000) %}{% set x = i %}{% endfor %}"

        [[rule]]
        name = "push status"
        on = "push"
        [[rule.actions]]
        status = { state = "success", context = "webhookd/{{ ref }}" }
    "#;
    let deliveries = [
        ("issues", "issues/opened.payload.json", "runaway-1"),
        ("push", "push/with-new-branch.payload.json", "after-runaway-1"),
    ];
    let (_data, store) = run_rules(&github.uri(), rules, &deliveries, &[]).await;
    github.verify().await;
    let (state, error) = state_and_error(&store, "runaway-1").await;
    assert_eq!(state, "dead", "{error}");
    assert!(
        error.contains("runaway comment: template") && error.contains("longer than 65536 characters"),
        "names the rule and the output limit: {error}"
    );
    assert!(
        error.contains("spinning comment: template") && error.contains("ran out of fuel: more than 100000 steps"),
        "names the rule and the fuel limit: {error}"
    );
    assert_eq!(state_and_error(&store, "after-runaway-1").await.0, "done");
}

#[tokio::test]
async fn rules_test_and_check_report_a_runaway_template_without_crashing() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"spinning\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"{% for i in range(100000) %}{% set x = i %}{% endfor %}\"\n\n[[rule]]\nname = \"loud\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"{% for i in range(100000) %}{{ 'x'*100000000 }}{% endfor %}\"\n",
    )
    .expect("write");
    let file = file.to_str().expect("utf8");
    let payload = fixtures_dir().join("issues/opened.payload.json");
    let (code, out) = run_webhookd(
        &["rules", "test", "--event", "issues", payload.to_str().expect("utf8")],
        &[("WEBHOOKD_RULES", file)],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("comment: would fail") && out.contains("ran out of fuel: more than 100000 steps"), "{out}");
    assert!(out.contains("longer than 65536 characters"), "{out}");
    let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_RULES", file)]).await;
    assert_eq!(code, 0, "templates are rendered per delivery, not by check: {out}");
}
