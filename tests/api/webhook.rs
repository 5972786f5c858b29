//! The contract's HTTP table, row by row, against the real application:
//! status codes, JSON bodies, the order of the checks, deduplication,
//! backpressure, and every recorded GitHub payload.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use webhookd::webhook::signature;
use webhookd::{Delivery, GitHubApi, Handler, HandlerError};

use crate::helpers::*;

// ---------------------------------------------------------------- helpers --

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn issues_body() -> Vec<u8> {
    fixture("issues/opened.payload.json")
}

/// Builds `builder`, lets `edit` change its headers (replace or remove, which
/// `RequestBuilder::header` cannot: it appends), and sends it.
async fn send_edited(
    app: &TestApp,
    builder: reqwest::RequestBuilder,
    edit: impl FnOnce(&mut HeaderMap),
) -> reqwest::Response {
    let mut request = builder.build().expect("request builds");
    edit(request.headers_mut());
    app.http.execute(request).await.expect("request sent")
}

/// A change to a request's headers, boxed to list several in a table.
type EditHeaders = Box<dyn FnOnce(&mut HeaderMap)>;

/// A correctly signed delivery with `content_type` instead of `application/json`.
async fn send_with_content_type(
    app: &TestApp,
    event: &str,
    id: &str,
    body: Vec<u8>,
    content_type: &'static str,
) -> reqwest::Response {
    send_edited(app, app.webhook(event, id, body), |h| {
        h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    })
    .await
}

/// Status and JSON body of a response.
async fn status_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body read");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text:?}"));
    (status, value)
}

/// Asserts a 202 `{"delivery": id, "status": "queued"}`.
async fn assert_queued(response: reqwest::Response, id: &str) {
    let (status, body) = status_json(response).await;
    assert_eq!(status, StatusCode::ACCEPTED, "body: {body}");
    assert_eq!(body, json!({ "delivery": id, "status": "queued" }));
}

/// Asserts an error answer: `status`, JSON `{"error": "..."}` whose message
/// does not echo the secret. Returns the message.
async fn assert_error(response: reqwest::Response, expected: StatusCode) -> String {
    let (status, body) = status_json(response).await;
    assert_eq!(status, expected, "body: {body}");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("no \"error\" string in {body}")).to_owned();
    assert!(!message.is_empty(), "empty error message");
    assert!(!message.contains(TEST_SECRET), "error echoes the secret: {message}");
    message
}

/// The value of an unlabelled metric in Prometheus text.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            (parts.next() == Some(name)).then(|| parts.next()).flatten()
        })
        .unwrap_or_else(|| panic!("metric {name} not found in:\n{text}"))
        .parse()
        .expect("metric value is a number")
}

async fn metrics_text(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    response.text().await.expect("metrics body")
}

/// After `stop` every accepted delivery has been processed: nothing beyond
/// what the test already received may be left in the channel.
fn assert_nothing_more(rx: &mut mpsc::UnboundedReceiver<String>) {
    if let Ok(id) = rx.try_recv() {
        panic!("delivery {id} was processed but should not have been");
    }
}

/// A JSON object of exactly `len` bytes.
fn padded_json(len: usize) -> Vec<u8> {
    let head = br#"{"action":"opened","pad":""#;
    let tail = br#""}"#;
    assert!(len >= head.len() + tail.len());
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

/// The answer to a raw HTTP/1.1 request.
struct RawResponse {
    status: u16,
    body: Vec<u8>,
}

impl RawResponse {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{}: body is not JSON ({e}): {:?}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
}

/// POSTs `/webhook` with `Transfer-Encoding: chunked` (no `Content-Length`),
/// writing each of `chunks` as its own HTTP chunk, over a plain TCP stream.
async fn post_chunked(app: &TestApp, headers: &[(&str, &str)], chunks: &[Vec<u8>]) -> RawResponse {
    let host = app.address.strip_prefix("http://").expect("http address");
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let mut head =
        format!("POST /webhook HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");

    // The server may answer (and close) before reading everything: a failed
    // write is only an error if no answer comes.
    let written: std::io::Result<()> = async {
        stream.write_all(head.as_bytes()).await?;
        for chunk in chunks {
            stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            stream.write_all(chunk).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await?;
        }
        stream.write_all(b"0\r\n\r\n").await?;
        stream.flush().await
    }
    .await;

    let raw = read_to_close(&mut stream, &format!("writing: {written:?}")).await;

    let text_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete HTTP answer (writing: {written:?}): {:?}", String::from_utf8_lossy(&raw))
    });
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head:?}"));
    let content_length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
    });
    let mut body = raw[text_end + 4..].to_vec();
    if let Some(len) = content_length {
        assert!(body.len() >= len, "answer body cut short: {head:?}");
        body.truncate(len);
    }
    RawResponse { status, body }
}

/// The headers of a correctly signed JSON delivery, for `post_chunked`.
fn signed_headers(event: &str, id: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), event.into()),
        ("X-GitHub-Delivery".into(), id.into()),
        ("X-Hub-Signature-256".into(), signature::sign(&SecretString::from(TEST_SECRET), body)),
    ]
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Every `.json` file under `dir`, recursively, sorted.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("fixture directory readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Reports when it starts on a delivery, then blocks until released.
struct BlockingHandler {
    started: mpsc::UnboundedSender<String>,
    processed: mpsc::UnboundedSender<String>,
    release: watch::Receiver<bool>,
}

#[async_trait]
impl Handler for BlockingHandler {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let id = delivery.id().to_string();
        let _ = self.started.send(id.clone());
        let mut release = self.release.clone();
        // A dropped sender also releases: the test is over either way.
        let _ = release.wait_for(|released| *released).await;
        let _ = self.processed.send(id);
        Ok(())
    }
}

// ------------------------------------------------------------------ tests --

#[tokio::test]
async fn valid_delivery_is_queued_and_processed() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    let id = new_id();
    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn ping_is_answered_pong_and_not_processed() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], handler).await;

    let ping = app.webhook("ping", &new_id(), fixture("ping/payload.json")).send().await.expect("sent");
    let (status, body) = status_json(ping).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, json!({ "status": "pong" }));

    let id = new_id();
    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id], "only the normal delivery is processed");

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn unsigned_ping_is_refused() {
    let (handler, _rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    let response = send_edited(&app, app.webhook("ping", &new_id(), fixture("ping/payload.json")), |h| {
        h.remove("X-Hub-Signature-256");
    })
    .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;

    app.stop().await;
}

#[tokio::test]
async fn redelivery_is_a_duplicate_and_processed_once() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], handler).await;

    let id = new_id();
    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    let again = app.webhook("issues", &id, issues_body()).send().await.expect("sent");
    let (status, body) = status_json(again).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, json!({ "delivery": id, "status": "duplicate" }));

    let other = new_id();
    assert_queued(app.webhook("issues", &other, issues_body()).send().await.expect("sent"), &other).await;
    assert_eq!(receive_n(&mut rx, 2).await, vec![id.clone(), other]);

    // Still a duplicate once it has been processed.
    let third = app.webhook("issues", &id, issues_body()).send().await.expect("sent");
    let (status, body) = status_json(third).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, json!({ "delivery": id, "status": "duplicate" }));

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn id_of_a_delivery_refused_for_its_signature_is_not_remembered() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    let id = new_id();
    let bad = send_edited(&app, app.webhook("issues", &id, issues_body()), |h| {
        let wrong = signature::sign(&SecretString::from("not-the-secret"), b"{}");
        h.insert("X-Hub-Signature-256", HeaderValue::from_str(&wrong).expect("header value"));
    })
    .await;
    assert_error(bad, StatusCode::UNAUTHORIZED).await;

    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn bad_signatures_are_401_and_counted() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], handler).await;
    let before = metric_value(&metrics_text(&app).await, "webhookd_signature_failures_total");

    let body = issues_body();
    let good = signature::sign(&SecretString::from(TEST_SECRET), &body);
    let hex_only = good.strip_prefix("sha256=").expect("prefix").to_owned();
    // 64 characters like a real signature, two of them not hex.
    let bad_hex = format!("sha256=zz{}", &hex_only[2..]);
    let other_secret = signature::sign(&SecretString::from("another-secret-9a7e"), &body);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'{').expect("a brace") + 1;
    tampered.insert(at, b' ');

    let cases: Vec<(&str, EditHeaders, Vec<u8>)> = vec![
        (
            "missing",
            Box::new(|h| {
                h.remove("X-Hub-Signature-256");
            }),
            body.clone(),
        ),
        (
            "no sha256= prefix",
            Box::new(move |h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_str(&hex_only).expect("value"));
            }),
            body.clone(),
        ),
        (
            "bad hex",
            Box::new(move |h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_str(&bad_hex).expect("value"));
            }),
            body.clone(),
        ),
        (
            "too short",
            Box::new(|h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_static("sha256=757107ea"));
            }),
            body.clone(),
        ),
        (
            "empty",
            Box::new(|h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_static(""));
            }),
            body.clone(),
        ),
        (
            "another secret",
            Box::new(move |h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_str(&other_secret).expect("value"));
            }),
            body.clone(),
        ),
        (
            // Signed over `body`, sent with a different body.
            "tampered body",
            Box::new(move |h| {
                h.insert("X-Hub-Signature-256", HeaderValue::from_str(&good).expect("value"));
            }),
            tampered,
        ),
        (
            "legacy X-Hub-Signature only",
            Box::new(|h| {
                h.remove("X-Hub-Signature-256");
                h.insert("X-Hub-Signature", HeaderValue::from_static("sha1=7d38cdd689735b008b3c702edd92eea23791c5f6"));
            }),
            body.clone(),
        ),
    ];
    let count = cases.len();
    for (name, edit, sent_body) in cases {
        let response = send_edited(&app, app.webhook("issues", &new_id(), sent_body), edit).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "signature {name}");
        let message = assert_error(response, StatusCode::UNAUTHORIZED).await;
        assert!(!message.contains("another-secret-9a7e"), "{name}: error echoes a secret: {message}");
    }

    let after = metric_value(&metrics_text(&app).await, "webhookd_signature_failures_total");
    assert_eq!(after, before + count as f64, "webhookd_signature_failures_total counts each refusal");
    assert_eq!(app.metrics.signature_failures.get() as f64, after, "/metrics shows the live counter");

    // Nothing of the above was queued: the next good delivery is the only one processed.
    let id = new_id();
    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn missing_github_headers_are_400() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    let response = send_edited(&app, app.webhook("issues", &new_id(), issues_body()), |h| {
        h.remove("X-GitHub-Event");
    })
    .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("X-GitHub-Event"), "message names the header: {message}");

    let response = send_edited(&app, app.webhook("issues", &new_id(), issues_body()), |h| {
        h.remove("X-GitHub-Delivery");
    })
    .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("X-GitHub-Delivery"), "message names the header: {message}");

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn body_that_is_not_json_is_400() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    for body in [&b"{\"action\": \"opened\""[..], b"not json at all", b"", b"[1, 2]", b"{} {}"] {
        let response = app.webhook("issues", &new_id(), body.to_vec()).send().await.expect("sent");
        let message = assert_error(response, StatusCode::BAD_REQUEST).await;
        assert!(message.to_lowercase().contains("json"), "message says what is wrong: {message}");
    }

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn oversize_bodies_are_413_and_a_body_at_the_limit_is_accepted() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_MAX_BODY", "1024")], handler).await;

    // Content-Length over the limit.
    for len in [1025, 4096] {
        let response = app.webhook("issues", &new_id(), padded_json(len)).send().await.expect("sent");
        let message = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;
        assert!(message.contains("1024"), "message states the limit: {message}");
    }

    // Chunked, no Content-Length, growing past the limit chunk by chunk.
    let body = padded_json(1500);
    let chunks: Vec<Vec<u8>> = body.chunks(300).map(<[u8]>::to_vec).collect();
    assert!(chunks.len() >= 5);
    let headers = signed_headers("issues", &new_id(), &body);
    let response = post_chunked(&app, &as_refs(&headers), &chunks).await;
    assert_eq!(response.status, 413, "chunked oversize body: {:?}", response.json());
    let message = response.json()["error"].as_str().expect("error string").to_owned();
    assert!(!message.contains(TEST_SECRET));

    // Exactly at the limit: accepted, with a Content-Length…
    let at_limit = new_id();
    assert_queued(app.webhook("issues", &at_limit, padded_json(1024)).send().await.expect("sent"), &at_limit).await;
    // …and chunked.
    let chunked_id = new_id();
    let body = padded_json(1024);
    let chunks: Vec<Vec<u8>> = body.chunks(256).map(<[u8]>::to_vec).collect();
    let headers = signed_headers("issues", &chunked_id, &body);
    let response = post_chunked(&app, &as_refs(&headers), &chunks).await;
    assert_eq!(response.status, 202, "chunked body at the limit: {:?}", response.json());
    assert_eq!(response.json(), json!({ "delivery": chunked_id, "status": "queued" }));

    let mut got = receive_n(&mut rx, 2).await;
    got.sort();
    let mut expected = vec![at_limit, chunked_id];
    expected.sort();
    assert_eq!(got, expected);

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn content_types() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], handler).await;

    let response = send_with_content_type(&app, "issues", &new_id(), issues_body(), "text/plain").await;
    let message = assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    assert!(message.contains("application/json"), "message says what to send: {message}");

    let response = send_edited(&app, app.webhook("issues", &new_id(), issues_body()), |h| {
        h.remove(CONTENT_TYPE);
    })
    .await;
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let id = new_id();
    let response = send_with_content_type(&app, "issues", &id, issues_body(), "application/json; charset=utf-8").await;
    assert_queued(response, &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn form_encoded_deliveries() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], handler).await;
    const FORM: &str = "application/x-www-form-urlencoded";

    let json = String::from_utf8(issues_body()).expect("fixture is UTF-8");
    let form = form_urlencoded::Serializer::new(String::new()).append_pair("payload", &json).finish();
    let id = new_id();
    // `webhook` signs the raw form body, as GitHub does.
    let response = send_with_content_type(&app, "issues", &id, form.into_bytes(), FORM).await;
    assert_queued(response, &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    let no_payload = form_urlencoded::Serializer::new(String::new()).append_pair("other", &json).finish();
    let response = send_with_content_type(&app, "issues", &new_id(), no_payload.into_bytes(), FORM).await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("payload"), "message names the field: {message}");

    let not_json = form_urlencoded::Serializer::new(String::new()).append_pair("payload", "{nope").finish();
    let response = send_with_content_type(&app, "issues", &new_id(), not_json.into_bytes(), FORM).await;
    assert_error(response, StatusCode::BAD_REQUEST).await;

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn checks_run_in_the_contract_order() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_MAX_BODY", "1024")], handler).await;
    let unsigned = |h: &mut HeaderMap| {
        h.remove("X-Hub-Signature-256");
    };

    // Size before content type (and everything else).
    let response = send_edited(&app, app.webhook("issues", &new_id(), padded_json(2048)), |h| {
        unsigned(h);
        h.remove("X-GitHub-Event");
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    })
    .await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Content type before signature.
    let response = send_edited(&app, app.webhook("issues", &new_id(), b"not json".to_vec()), |h| {
        unsigned(h);
        h.remove("X-GitHub-Event");
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    })
    .await;
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    // Signature before headers (and body).
    let response = send_edited(&app, app.webhook("issues", &new_id(), b"not json".to_vec()), |h| {
        unsigned(h);
        h.remove("X-GitHub-Event");
        h.remove("X-GitHub-Delivery");
    })
    .await;
    assert_error(response, StatusCode::UNAUTHORIZED).await;

    // Headers before body.
    let response = send_edited(&app, app.webhook("issues", &new_id(), b"not json".to_vec()), |h| {
        h.remove("X-GitHub-Event");
    })
    .await;
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.contains("X-GitHub-Event"), "the header check runs first: {message}");

    // Then the body.
    let response = app.webhook("issues", &new_id(), b"not json".to_vec()).send().await.expect("sent");
    let message = assert_error(response, StatusCode::BAD_REQUEST).await;
    assert!(message.to_lowercase().contains("json"), "{message}");

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn chunked_oversize_body_with_wrong_content_type_is_415() {
    // What the headers alone decide is answered before the body is read; a
    // chunked body's size is known only once read, so its 413 comes after.
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_MAX_BODY", "1024")], handler).await;

    let body = padded_json(1500);
    let chunks: Vec<Vec<u8>> = body.chunks(300).map(<[u8]>::to_vec).collect();
    let response = post_chunked(&app, &[("Content-Type", "text/plain"), ("X-GitHub-Event", "issues")], &chunks).await;
    assert_eq!(response.status, 415, "{:?}", response.json());
    assert!(response.json()["error"].is_string());

    app.stop().await;
    assert_nothing_more(&mut rx);
}

#[tokio::test]
async fn full_queue_is_503_with_retry_after_until_it_drains() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (processed_tx, mut processed) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let handler = Arc::new(BlockingHandler { started: started_tx, processed: processed_tx, release: release_rx });
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1"), ("WEBHOOKD_QUEUE_CAPACITY", "1")], handler).await;

    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    // The only worker takes the first delivery and blocks on it.
    let first = new_id();
    assert_queued(app.webhook("issues", &first, issues_body()).send().await.expect("sent"), &first).await;
    assert_eq!(receive_n(&mut started, 1).await, vec![first.clone()]);

    // The second waits in the queue, which is now full.
    let second = new_id();
    assert_queued(app.webhook("issues", &second, issues_body()).send().await.expect("sent"), &second).await;

    let third = new_id();
    let response = app.webhook("issues", &third, issues_body()).send().await.expect("sent");
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .expect("503 carries Retry-After")
        .to_str()
        .expect("Retry-After is text")
        .parse::<u64>()
        .expect("Retry-After is a number of seconds");
    assert!(retry_after > 0);
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE).await;

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let (_, body) = status_json(ready).await;
    assert!(body.is_object(), "readyz answers JSON: {body}");
    let text = metrics_text(&app).await;
    assert!(text.lines().any(|l| l == "webhookd_ready 0"), "webhookd_ready agrees with /readyz:\n{text}");

    // Release: both accepted deliveries are processed and the queue empties.
    release.send_replace(true);
    assert_eq!(receive_n(&mut processed, 2).await, vec![first, second.clone()]);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
    let text = metrics_text(&app).await;
    assert!(text.lines().any(|l| l == "webhookd_ready 1"), "webhookd_ready agrees with /readyz:\n{text}");

    // The refused id was not remembered.
    assert_queued(app.webhook("issues", &third, issues_body()).send().await.expect("sent"), &third).await;
    assert_eq!(receive_n(&mut processed, 1).await, vec![third]);
    // Accepted ones were.
    let again = app.webhook("issues", &second, issues_body()).send().await.expect("sent");
    let (status, body) = status_json(again).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body["status"], "duplicate");

    app.stop().await;
    assert_nothing_more(&mut processed);
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    let (status, body) = status_json(app.get("/healthz").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "status": "ok" }));

    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);

    let id = new_id();
    assert_queued(app.webhook("issues", &id, issues_body()).send().await.expect("sent"), &id).await;
    assert_eq!(receive_n(&mut rx, 1).await, vec![id]);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get(CONTENT_TYPE).expect("content type").to_str().expect("text").to_owned();
    assert!(content_type.starts_with("text/plain"), "Prometheus text format: {content_type}");
    let text = response.text().await.expect("metrics body");
    assert!(text.contains(r#"webhookd_deliveries_received_total{event="issues"} 1"#), "{text}");
    assert!(text.contains("webhookd_queue_depth"), "{text}");
    assert!(text.contains("webhookd_signature_failures_total"), "{text}");

    app.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_are_json_errors() {
    let (handler, _rx) = RecordingHandler::new();
    let app = spawn_app(&[], handler).await;

    assert_error(app.get("/nope").await, StatusCode::NOT_FOUND).await;
    let response = app.http.post(format!("{}/hooks", app.address)).body("{}").send().await.expect("sent");
    assert_error(response, StatusCode::NOT_FOUND).await;
    assert_error(app.get("/webhook").await, StatusCode::METHOD_NOT_ALLOWED).await;
    let response = app.http.post(format!("{}/healthz", app.address)).send().await.expect("sent");
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED).await;

    app.stop().await;
}

#[tokio::test]
async fn every_recorded_github_payload_is_accepted() {
    let (handler, mut rx) = RecordingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_QUEUE_CAPACITY", "1000")], handler).await;

    let files = json_files(&fixtures_dir());
    assert!(files.len() >= 250, "found only {} payloads", files.len());

    let mut queued = HashSet::new();
    let mut failures = Vec::new();
    for path in &files {
        let event = path
            .parent()
            .and_then(Path::file_name)
            .and_then(|name| name.to_str())
            .expect("payload sits in a folder named after its event");
        let id = new_id();
        let body = std::fs::read(path).expect("payload readable");
        let (status, answer) = status_json(app.webhook(event, &id, body).send().await.expect("sent")).await;
        let expected = if event == "ping" {
            (StatusCode::OK, json!({ "status": "pong" }))
        } else {
            (StatusCode::ACCEPTED, json!({ "delivery": id, "status": "queued" }))
        };
        if (status, &answer) == (expected.0, &expected.1) {
            if event != "ping" {
                queued.insert(id);
            }
        } else {
            let name = path.strip_prefix(fixtures_dir()).unwrap_or(path).display().to_string();
            failures.push(format!("{name} (event {event}): {status} {answer}"));
        }
    }
    assert!(failures.is_empty(), "{} of {} payloads refused:\n{}", failures.len(), files.len(), failures.join("\n"));

    let pings = files.iter().filter(|p| p.parent().and_then(Path::file_name).is_some_and(|n| n == "ping")).count();
    assert!(pings > 0);
    let received: HashSet<String> = receive_n(&mut rx, files.len() - pings).await.into_iter().collect();
    assert_eq!(received, queued);

    app.stop().await;
    assert_nothing_more(&mut rx);
}
