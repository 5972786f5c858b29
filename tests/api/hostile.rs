//! The front door against hostile clients (issue 11's table), on loopback:
//! slow bodies, idle half-sent connections, the connection cap, refusals
//! decided by the headers alone, settings ranges, redaction, echo limits and
//! the refused-request log's rate limit. Partial clients are raw TCP streams.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use crate::process::{Daemon, run_webhookd, webhookd_bin};

/// Request headers, by name.
type Headers = Vec<(&'static str, String)>;

/// A well-formed signature header value (it matches nothing).
const ANY_SIGNATURE: &str = "sha256=0000000000000000000000000000000000000000000000000000000000000000";

/// Headers that pass every check the head alone decides: the body is what
/// the server waits for.
fn plausible_headers() -> Headers {
    vec![
        ("Content-Type", "application/json".into()),
        ("X-GitHub-Event", "issues".into()),
        ("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string()),
        ("X-Hub-Signature-256", ANY_SIGNATURE.into()),
    ]
}

fn host(address: &str) -> &str {
    address.strip_prefix("http://").expect("http address")
}

/// Connects and sends a `POST /webhook` head declaring `content_length`,
/// then `body_start`, and nothing more.
async fn send_head(address: &str, headers: &[(&str, String)], content_length: u64, body_start: &[u8]) -> TcpStream {
    let host = host(address);
    let mut stream = TcpStream::connect(host).await.expect("connect");
    let mut head = format!("POST /webhook HTTP/1.1\r\nHost: {host}\r\nContent-Length: {content_length}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("head sent");
    stream.write_all(body_start).await.expect("body start sent");
    stream.flush().await.expect("flushed");
    stream
}

/// An answer read to the end of the connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

/// Reads until the server closes the connection (failing after `WAIT`).
async fn read_until_closed(stream: &mut TcpStream) -> Answer {
    parse_answer(&read_to_close(stream, "a hostile request").await)
}

fn parse_answer(raw: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{head:?}"));
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {body:?}"));
    Answer { status, body }
}

fn error_message(answer: &Answer) -> &str {
    answer.body["error"].as_str().unwrap_or_else(|| panic!("no error string in {answer:?}"))
}

#[tokio::test]
async fn slow_bodies_are_answered_408_and_closed_within_the_body_timeout() {
    let (handler, _rx) = RecordingHandler::new();
    let timeout = Duration::from_secs(1);
    let app = spawn_app(&[("WEBHOOKD_BODY_TIMEOUT", "1s")], handler).await;

    // The issue's row: 20 connections, headers and one byte of body, then silence.
    let slow = (0..20).map(|_| {
        let address = app.address.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut stream = send_head(&address, &plausible_headers(), 100, b"{").await;
            let answer = read_until_closed(&mut stream).await;
            (answer, started.elapsed())
        })
    });
    for task in futures::future::join_all(slow).await {
        let (answer, took) = task.expect("client task");
        assert_eq!(answer.status, 408, "{answer:?}");
        assert!(error_message(&answer).contains("WEBHOOKD_BODY_TIMEOUT"), "{answer:?}");
        assert!(took >= timeout, "answered after {took:?}, before the deadline");
        // Before the fix these stayed open for minutes.
        assert!(took < timeout + Duration::from_secs(4), "closed only after {took:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_and_slow_header_connections_are_closed_on_time() {
    let (handler, _rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;
    let host = host(&app.address).to_owned();

    // Keep-alive: one request answered, then nothing. Closed after 5 s idle.
    let idle = async {
        let mut stream = TcpStream::connect(&host).await.expect("connect");
        let started = Instant::now();
        stream.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes()).await.expect("sent");
        let answer = read_until_closed(&mut stream).await;
        assert_eq!(answer.status, 200);
        started.elapsed()
    };
    // Slow headers: a request line and one header, never finished.
    let slow_head = async {
        let mut stream = TcpStream::connect(&host).await.expect("connect");
        let started = Instant::now();
        stream.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n").await.expect("sent");
        let mut buf = Vec::new();
        let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await.expect("closed in time");
        assert!(read.is_ok() || !buf.is_empty(), "{read:?}");
        started.elapsed()
    };
    let (idle, slow_head) = tokio::join!(idle, slow_head);
    assert!(idle < Duration::from_secs(8), "idle connection closed after {idle:?}");
    assert!(slow_head < Duration::from_secs(8), "slow head closed after {slow_head:?}");
    app.stop().await;
}

#[tokio::test]
async fn deliveries_and_probes_are_answered_while_idle_half_sent_connections_hold() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_BODY_TIMEOUT", "60s")], handler).await;

    // Well below the default cap of 1024 (the test process shares its
    // descriptor limit with every other test).
    let mut held = Vec::new();
    for _ in 0..200 {
        held.push(send_head(&app.address, &plausible_headers(), 1000, b"{").await);
    }
    // Connections are accepted in order: these two come after all 200.
    let started = Instant::now();
    let health = tokio::time::timeout(WAIT, app.get("/healthz")).await.expect("healthz answered");
    assert_eq!(health.status(), StatusCode::OK);
    let id = uuid::Uuid::new_v4().to_string();
    let response = tokio::time::timeout(WAIT, app.webhook("issues", &id, issue_body(1)).send())
        .await
        .expect("delivery answered")
        .expect("sent");
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(started.elapsed() < Duration::from_secs(5), "answers took {:?}", started.elapsed());
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    // All 200 were still held, unanswered and open, meanwhile.
    let mut buf = [0u8; 64];
    for stream in &held {
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("a held connection was answered or closed: {other:?}"),
        }
    }
    drop(held);
    app.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_in_the_backlog_until_the_deadline_frees_a_slot() {
    const CAP: usize = 8;
    const SLOW: usize = 12;
    let timeout = Duration::from_secs(1);
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_MAX_CONNECTIONS", "8"), ("WEBHOOKD_BODY_TIMEOUT", "1s")], handler).await;

    let started = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let stream = send_head(&app.address, &plausible_headers(), 100, b"{").await;
        slow.push(tokio::spawn(async move {
            let mut stream = stream;
            let answer = read_until_closed(&mut stream).await;
            (answer, started.elapsed())
        }));
    }
    // One more than the cap: a signed delivery, queued behind the slow ones.
    let id = uuid::Uuid::new_v4().to_string();
    let response = tokio::time::timeout(WAIT, app.webhook("issues", &id, issue_body(2)).send())
        .await
        .expect("delivery answered")
        .expect("sent");
    let delivery_took = started.elapsed();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);
    // It got a slot only once the deadline closed a slow connection.
    assert!(delivery_took >= timeout, "the delivery was served at {delivery_took:?}, past the cap");

    let mut answered_at = Vec::new();
    for task in slow {
        let (answer, at) = task.await.expect("client task");
        assert_eq!(answer.status, 408, "{answer:?}");
        answered_at.push(at);
    }
    answered_at.sort();
    // At most CAP were served at once: the others were not even read until
    // a slot freed, so their own deadline started a full timeout later.
    for at in &answered_at[CAP..] {
        assert!(*at >= 2 * timeout, "a connection beyond the cap was served early: {answered_at:?}");
    }
    app.stop().await;
}

/// Waits (within `WAIT`) until the app's request bodies hold `bytes` in all,
/// as its `webhookd_request_body_bytes` gauge reports.
async fn wait_for_body_bytes(app: &TestApp, bytes: usize) {
    let deadline = Instant::now() + WAIT;
    let mut held = None;
    while Instant::now() < deadline {
        let text = app.get("/metrics").await.text().await.expect("metrics");
        held = text.lines().find_map(|l| l.strip_prefix("webhookd_request_body_bytes ")?.trim().parse::<usize>().ok());
        if held == Some(bytes) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("request bodies never held {bytes} bytes (last seen: {held:?})");
}

/// The issue's row "connections each sending a body just under the cap and
/// holding", with signature headers that look right: what they hold together
/// is capped by WEBHOOKD_BODY_MEMORY; a body past it gets 503 + Retry-After
/// instead of being buffered, and the budget comes back when they go.
#[tokio::test]
async fn bodies_held_by_slow_senders_share_one_memory_budget() {
    let (handler, mut processed) = RecordingHandler::new();
    let app = spawn_app(
        &[("WEBHOOKD_MAX_BODY", "1048576"), ("WEBHOOKD_BODY_MEMORY", "2097152"), ("WEBHOOKD_BODY_TIMEOUT", "5m")],
        handler,
    )
    .await;
    let almost_all = vec![b' '; (1 << 20) - 1];
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(send_head(&app.address, &plausible_headers(), 1 << 20, &almost_all).await);
    }
    wait_for_body_bytes(&app, 2 * almost_all.len()).await;

    let refused = app.post_webhook("issues", issue_body(1)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"), "{:?}", refused.headers());
    let answer: Value = refused.json().await.expect("json");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("WEBHOOKD_BODY_MEMORY")), "{answer}");

    drop(holders);
    wait_for_body_bytes(&app, 0).await;
    let accepted = app.post_webhook("issues", issue_body(2)).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert_eq!(receive_n(&mut processed, 1).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn what_the_headers_decide_is_answered_before_the_body_is_sent() {
    let (handler, _rx) = RecordingHandler::new();
    // A long body deadline: waiting for the body would show as a timeout here.
    let app = spawn_app(&[("WEBHOOKD_MAX_BODY", "104857600"), ("WEBHOOKD_BODY_TIMEOUT", "5m")], handler).await;

    // The issue's row: 64 GiB declared, 3 bytes sent: refused on the header, at once.
    let mut stream = send_head(&app.address, &plausible_headers(), 68_719_476_736, b"{\"a").await;
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(error_message(&answer).contains("104857600"), "{answer:?}");

    let with = |name: &'static str, value: &str| {
        let mut headers = plausible_headers();
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value.to_owned()));
        headers
    };
    let without = |name: &'static str| {
        let mut headers = plausible_headers();
        headers.retain(|(n, _)| *n != name);
        headers
    };
    let cases: Vec<(&str, Headers, u16)> = vec![
        ("unsupported content type", with("Content-Type", "text/plain"), 415),
        ("no signature", without("X-Hub-Signature-256"), 401),
        ("malformed signature", with("X-Hub-Signature-256", "sha256=123"), 401),
        (
            "SHA-1 signature only",
            {
                let mut h = without("X-Hub-Signature-256");
                h.push(("X-Hub-Signature", "sha1=0123".into()));
                h
            },
            401,
        ),
    ];
    for (what, headers, status) in cases {
        // 1 MiB declared, not one byte of it sent.
        let mut stream = send_head(&app.address, &headers, 1 << 20, b"").await;
        let answer = read_until_closed(&mut stream).await;
        assert_eq!(answer.status, status, "{what}: {answer:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_huge_content_type_is_not_echoed_whole_in_the_answer_or_the_log() {
    let mut daemon =
        Daemon::start(&webhookd_bin(), &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", "memory")]).await;
    let huge = format!("text/{}", "x".repeat(100_000));
    let mut stream = send_head(&daemon.address, &[("Content-Type", huge)], 2, b"{}").await;
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(answer.status, 415);
    let message = error_message(&answer);
    assert!(message.len() < 400 && message.contains('…'), "{message}");

    let line = daemon.wait_for_line("delivery refused").await;
    assert!(line.len() < 1000, "a {}-character log line", line.len());
    assert!(line.contains("content_type"), "{line}");
}

#[tokio::test]
async fn refused_requests_are_logged_within_a_rate_limit_and_the_rest_is_counted() {
    let mut daemon =
        Daemon::start(&webhookd_bin(), &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", "memory")]).await;
    let http = reqwest::Client::new();
    let address = daemon.address.clone();
    let refused = || async {
        let response = http
            .post(format!("{address}/webhook"))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    };
    // A flood: far more than the burst (20), back to back.
    let started = Instant::now();
    const FLOOD: u64 = 100;
    for _ in 0..FLOOD {
        refused().await;
    }
    // Time is what the limiter counts: half a second earns the next line,
    // which comes after a summary of everything held back before it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    refused().await;
    let elapsed = started.elapsed().as_secs_f64();
    // SIGHUP logs a line after all of the above on the same stream.
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for_line("reloaded on SIGHUP").await;

    let output = daemon.output();
    let lines: Vec<Value> = output.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let logged = lines.iter().filter(|l| l["message"] == "delivery refused").count() as u64;
    let summaries: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"].as_str().is_some_and(|m| m.contains("refused requests not logged")))
        .collect();
    let suppressed: u64 = summaries.iter().map(|l| l["suppressed"].as_u64().expect("suppressed count")).sum();
    assert!(logged as f64 <= 20.0 + 2.0 * elapsed + 1.0, "{logged} lines in {elapsed:.1}s: not rate limited");
    assert_eq!(logged + suppressed, FLOOD + 1, "every refusal is either logged or counted:\n{output}");
    let last = summaries.last().expect("a summary line");
    assert!(last["reasons"].as_str().is_some_and(|r| r.starts_with("signature=")), "{last}");
    // The last line logged is the one that came after the pause.
    let last_line = lines.iter().rev().find(|l| l["message"] == "delivery refused").expect("a refused line");
    assert_eq!(last_line["reason"], "signature");
}

#[tokio::test]
async fn settings_out_of_range_are_each_named_by_check() {
    let eleven = (1..=11).map(|i| format!("secret{i}")).collect::<Vec<_>>().join(",");
    let bad = [
        ("WEBHOOKD_MAX_BODY", "68719476736"),
        ("WEBHOOKD_WORKERS", "100000000"),
        ("WEBHOOKD_QUEUE_CAPACITY", "18446744073709551615"),
        ("WEBHOOKD_GITHUB_TIMEOUT", "0s"),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "400000000000y"),
        ("WEBHOOKD_RETENTION", "11years"),
        ("WEBHOOKD_RETRY_BACKOFF", "2h"),
        ("WEBHOOKD_SHUTDOWN_TIMEOUT", "0"),
        ("WEBHOOKD_STALL_TIMEOUT", "2d"),
        ("WEBHOOKD_MAX_ATTEMPTS", "101"),
        ("WEBHOOKD_BODY_TIMEOUT", "0s"),
        ("WEBHOOKD_MAX_CONNECTIONS", "0"),
    ];
    let mut env: Vec<(&str, &str)> = bad.to_vec();
    env.push(("WEBHOOKD_SECRET", &eleven));
    let (code, out) = run_webhookd(&["check"], &env).await;
    assert_eq!(code, 2, "{out}");
    for (var, value) in bad.iter().chain([&("WEBHOOKD_SECRET", "")]) {
        assert!(out.lines().any(|l| l.trim_start().starts_with(&format!("{var}:"))), "{var}={value} not named:\n{out}");
    }
    assert!(!out.contains("secret1"), "a secret was printed:\n{out}");

    // One at a time too: each alone is enough to refuse the configuration.
    for (var, value) in bad {
        let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", "s"), (var, value)]).await;
        assert_eq!(code, 2, "{var}={value}: {out}");
        assert!(out.contains(&format!("{var}:")), "{var}={value}:\n{out}");
    }

    // The largest values allowed pass.
    let ten = (1..=10).map(|i| format!("secret{i}")).collect::<Vec<_>>().join(",");
    let (code, out) = run_webhookd(
        &["check"],
        &[
            ("WEBHOOKD_SECRET", &ten),
            ("WEBHOOKD_MAX_BODY", "104857600"),
            ("WEBHOOKD_WORKERS", "1024"),
            ("WEBHOOKD_QUEUE_CAPACITY", "10000000"),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "1h"),
            ("WEBHOOKD_RETENTION", "3650d"),
            ("WEBHOOKD_MAX_ATTEMPTS", "100"),
            ("WEBHOOKD_BODY_TIMEOUT", "5m"),
            ("WEBHOOKD_MAX_CONNECTIONS", "65536"),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("max connections   65536"), "{out}");
}

#[tokio::test]
async fn urls_are_shown_without_credentials_by_check_and_in_configuration_errors() {
    let (code, out) = run_webhookd(
        &["check"],
        &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_API_URL", "https://user:PASS@ghe.example/api/v3?token=T0K3N")],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("https://ghe.example/api/v3"), "{out}");
    assert!(!out.contains("PASS") && !out.contains("T0K3N") && !out.contains("user"), "{out}");

    for bad in ["ftp://user:PASS@ghe.example/?token=T0K3N", "https://user:PASS@ghe.example:99999/?token=T0K3N"] {
        let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_API_URL", bad)]).await;
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("WEBHOOKD_GITHUB_API_URL:") && out.contains("ghe.example"), "{out}");
        assert!(!out.contains("PASS") && !out.contains("T0K3N"), "{out}");
    }
}
