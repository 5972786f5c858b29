//! The test harness: `spawn_app` starts the real application on port 0 with a
//! test secret, `TestApp::post_webhook` signs deliveries like GitHub does, and
//! `ConnectionCounter` stands between the app and the mock GitHub to count
//! the TCP connections the shared client opens and closes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use webhookd::config::{Env, Settings};
use webhookd::shutdown::StopReport;
use webhookd::telemetry::metrics::Metrics;
use webhookd::webhook::signature;
use webhookd::{Application, Delivery, GitHubApi, Handler, HandlerError};

pub const TEST_SECRET: &str = "test-webhook-secret-5f1c";
pub const TEST_TOKEN: &str = "ghp_testtoken0123456789abcdef";
/// Upper bound on any wait in these tests: reaching it means the test failed.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct TestApp {
    pub address: String,
    /// The store's folder: a fresh SQLite database per app unless the test
    /// chose `WEBHOOKD_STORE` itself.
    pub data: Arc<tempfile::TempDir>,
    pub http: reqwest::Client,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    running: JoinHandle<anyhow::Result<StopReport>>,
}

/// Starts the app with the test secret, port 0, a fresh durable store and
/// `extra` variables.
pub async fn spawn_app(extra: &[(&str, &str)], handler: Arc<dyn Handler>) -> TestApp {
    spawn_app_in(Arc::new(tempfile::tempdir().expect("data dir")), extra, handler).await
}

/// As `spawn_app`, with the store in `data` (to restart on the same store).
pub async fn spawn_app_in(data: Arc<tempfile::TempDir>, extra: &[(&str, &str)], handler: Arc<dyn Handler>) -> TestApp {
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    let mut env = Env::from_pairs([
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_LISTEN", "127.0.0.1:0"),
        ("WEBHOOKD_STORE", store.as_str()),
        // Tests about pacing set their own; the others need not wait 1 s per write.
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
    ]);
    for (k, v) in extra {
        env.set(*k, *v);
    }
    let settings = Settings::from_env(&env).expect("test settings are valid");
    let app = Application::build(&settings, handler).await.expect("app builds");
    let address = format!("http://{}", app.local_addr());
    let metrics = app.metrics();
    let (stop, stopped) = oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp { address, data, http: reqwest::Client::new(), metrics, stop: Some(stop), running }
}

impl TestApp {
    /// A delivery request signed with the test secret.
    pub fn webhook(&self, event: &str, delivery_id: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        signed_delivery(&self.http, &self.address, TEST_SECRET, event, delivery_id, body)
    }

    /// Posts a signed delivery with a fresh id.
    pub async fn post_webhook(&self, event: &str, body: Vec<u8>) -> reqwest::Response {
        self.webhook(event, &uuid::Uuid::new_v4().to_string(), body).send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(format!("{}{path}", self.address)).send().await.expect("request sent")
    }

    /// Runs the shutdown sequence and returns its report.
    pub async fn stop(mut self) -> StopReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT, &mut self.running)
            .await
            .expect("app stops in time")
            .expect("app task did not panic")
            .expect("app stops cleanly")
    }
}

/// A delivery request to the daemon at `address`, signed with `secret` the
/// way GitHub signs.
pub fn signed_delivery(
    http: &reqwest::Client,
    address: &str,
    secret: &str,
    event: &str,
    delivery_id: &str,
    body: Vec<u8>,
) -> reqwest::RequestBuilder {
    let signature = signature::sign(&SecretString::from(secret), &body);
    http.post(format!("{address}/webhook"))
        .header("Content-Type", "application/json")
        .header("X-GitHub-Event", event)
        .header("X-GitHub-Delivery", delivery_id)
        .header("X-Hub-Signature-256", signature)
        .body(body)
}

/// The `issues.opened` fixture with its issue number set to `number`.
pub fn issue_body(number: u64) -> Vec<u8> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&fixture("issues/opened.payload.json")).expect("fixture is JSON");
    payload["issue"]["number"] = number.into();
    serde_json::to_vec(&payload).expect("serialise")
}

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/github-payloads")
}

/// A payload from `tests/fixtures/github-payloads/`, e.g. `issues/opened.payload.json`.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(path)).expect("fixture exists")
}

/// Reports each processed delivery id on a channel, so tests await events
/// instead of sleeping.
pub struct RecordingHandler {
    processed: mpsc::UnboundedSender<String>,
}

impl RecordingHandler {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (processed, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { processed }), rx)
    }
}

#[async_trait]
impl Handler for RecordingHandler {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let _ = self.processed.send(delivery.id().to_string());
        Ok(())
    }
}

/// Comments on the issue of an `issues` delivery through the shared client,
/// then reports the delivery id.
pub struct CommentingHandler {
    processed: mpsc::UnboundedSender<String>,
}

impl CommentingHandler {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (processed, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { processed }), rx)
    }
}

#[async_trait]
impl Handler for CommentingHandler {
    async fn handle(&self, delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let payload = delivery.payload()?;
        let repo = delivery.routing.repository.as_deref().unwrap_or("unknown/unknown");
        let number = payload["issue"]["number"].as_u64().unwrap_or(0);
        let body = serde_json::json!({ "body": format!("seen {}", delivery.id()) });
        github.post(&format!("/repos/{repo}/issues/{number}/comments"), &body).await?;
        let _ = self.processed.send(delivery.id().to_string());
        Ok(())
    }
}

/// Labels the issue of an `issues` delivery through the shared client (an
/// idempotent POST: outside the content-creation budget of 80 a minute that
/// would pace hundreds of comments), then reports the delivery id.
pub struct LabellingHandler {
    processed: mpsc::UnboundedSender<String>,
}

impl LabellingHandler {
    pub fn new() -> (Arc<Self>, mpsc::UnboundedReceiver<String>) {
        let (processed, rx) = mpsc::unbounded_channel();
        (Arc::new(Self { processed }), rx)
    }
}

#[async_trait]
impl Handler for LabellingHandler {
    async fn handle(&self, delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let payload = delivery.payload()?;
        let repo = delivery.routing.repository.as_deref().unwrap_or("unknown/unknown");
        let number = payload["issue"]["number"].as_u64().unwrap_or(0);
        let labels = serde_json::json!({ "labels": ["seen"] });
        github.post_idempotent(&format!("/repos/{repo}/issues/{number}/labels"), &labels).await?;
        let _ = self.processed.send(delivery.id().to_string());
        Ok(())
    }
}

/// Receives `n` ids from `rx`, failing the test if they do not come in time.
pub async fn receive_n(rx: &mut mpsc::UnboundedReceiver<String>, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    while ids.len() < n {
        match tokio::time::timeout(WAIT, rx.recv()).await {
            Ok(Some(id)) => ids.push(id),
            Ok(None) => panic!("handler channel closed after {} of {n}", ids.len()),
            Err(_) => panic!("only {} of {n} deliveries processed in time", ids.len()),
        }
    }
    ids
}

/// A TCP proxy in front of the mock GitHub that counts connections: how many
/// were accepted, and how many are still open.
pub struct ConnectionCounter {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    open: watch::Receiver<usize>,
}

impl ConnectionCounter {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let accepted = Arc::new(AtomicUsize::new(0));
        let (open_tx, open) = watch::channel(0usize);
        let open_tx = Arc::new(open_tx);
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                open_tx.send_modify(|n| *n += 1);
                let open_tx = open_tx.clone();
                tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    open_tx.send_modify(|n| *n -= 1);
                });
            }
        });
        Self { address, accepted, open }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Waits until every accepted connection has been closed.
    pub async fn wait_all_closed(&self) -> Result<(), usize> {
        let mut open = self.open.clone();
        match tokio::time::timeout(WAIT, open.wait_for(|n| *n == 0)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(self.open()),
        }
    }
}

/// Reads a raw answer until the server closes the connection (a reset once
/// bytes arrived counts as a close), failing the test after `WAIT`;
/// `context` goes into the failure message.
pub async fn read_to_close(stream: &mut TcpStream, context: &str) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(_) if !raw.is_empty() => break,
                Err(e) => panic!("reading the answer failed: {e} ({context})"),
            }
        }
    })
    .await;
    read.unwrap_or_else(|_| {
        panic!("connection not closed in time ({context}); read so far: {:?}", String::from_utf8_lossy(&raw))
    });
    raw
}

/// Where the PostgreSQL tests find a server: a URL of a user who may create
/// databases.
pub const TEST_DATABASE_VAR: &str = "WEBHOOKD_TEST_DATABASE_URL";

/// A fresh, empty database on the server `WEBHOOKD_TEST_DATABASE_URL`
/// names, dropped (connections and all) when the value is dropped: tests
/// run in parallel without seeing each other's rows, notifications or
/// advisory locks.
pub struct TestDatabase {
    admin: String,
    name: String,
    /// `postgres://…/NAME`: the test database, with the admin URL's user,
    /// password and parameters.
    pub url: String,
}

/// A new database; `None` (after one line saying how to run the test) when
/// `WEBHOOKD_TEST_DATABASE_URL` is unset.
pub async fn test_database() -> Option<TestDatabase> {
    use sqlx::Connection;
    let Ok(admin) = std::env::var(TEST_DATABASE_VAR) else {
        // Once, and past the harness's capture (which hides what passing
        // tests print): the reader must see it.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "PostgreSQL store tests skipped: set {TEST_DATABASE_VAR}=postgres://postgres@127.0.0.1:5432/test \
                 (any server where that user may create databases) to run them"
            );
        });
        return None;
    };
    let name = format!("webhookd_api_{:016x}", fastrand::u64(..));
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("the test PostgreSQL server answers");
    sqlx::raw_sql(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.expect("CREATE DATABASE");
    conn.close().await.ok();
    let mut url = url::Url::parse(&admin).expect("WEBHOOKD_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    Some(TestDatabase { admin, name, url: url.to_string() })
}

impl TestDatabase {
    /// A connection to the test database, to prepare or inspect it.
    pub async fn connect(&self) -> sqlx::PgConnection {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&self.url).await.expect("the test database answers")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: a thread of its own does the
        // async work and is waited for.
        let dropped = std::thread::spawn(move || {
            use sqlx::Connection;
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.ok()?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.ok()
            })
        });
        let _ = dropped.join();
    }
}
