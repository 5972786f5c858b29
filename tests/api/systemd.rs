//! Plays systemd: a notification socket and a watchdog for the built binary,
//! and a listening socket passed as fd 3 (socket activation) across a restart.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::net::UnixDatagram;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;
use crate::process::*;

const RULES: &str = "[[rule]]\nname = \"thank\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"thanks\"\n";

/// Messages the daemon sends to the notification socket, as they come.
struct Notifications {
    socket: UnixDatagram,
}

impl Notifications {
    fn bind(path: &Path) -> Self {
        Self { socket: UnixDatagram::bind(path).expect("bind notify socket") }
    }

    /// The next message, within `within`.
    async fn next(&self, within: Duration) -> Option<String> {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(within, self.socket.recv(&mut buf)).await {
            Ok(Ok(n)) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }

    /// Waits for a message containing `needle`, returning it.
    async fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        while let Some(message) = self.next(deadline.saturating_duration_since(Instant::now())).await {
            if message.contains(needle) {
                return message;
            }
        }
        panic!("no notification containing {needle:?}");
    }
}

/// A server that accepts connections and never answers: a wedged GitHub.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (address, task)
}

#[tokio::test]
async fn notifies_ready_watchdog_and_stopping_and_the_watchdog_stops_when_workers_are_wedged() {
    let dir = tempfile::tempdir().expect("dir");
    let socket_path = dir.path().join("notify.sock");
    let notifications = Notifications::bind(&socket_path);
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let (github, _hole) = black_hole().await;
    let mut daemon = Daemon::start(
        &webhookd_bin(),
        &[
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", &github),
            ("WEBHOOKD_GITHUB_TIMEOUT", "1h"),
            ("WEBHOOKD_RULES", rules.to_str().expect("utf8")),
            ("WEBHOOKD_WORKERS", "1"),
            ("WEBHOOKD_STALL_TIMEOUT", "1s"),
            ("WEBHOOKD_SHUTDOWN_TIMEOUT", "1"),
            ("NOTIFY_SOCKET", socket_path.to_str().expect("utf8")),
            ("WATCHDOG_USEC", "300000"),
        ],
    )
    .await;
    let ready = notifications.wait_for("READY=1").await;
    assert!(ready.contains("STATUS=queued 0"), "{ready}");
    let health = reqwest::get(format!("{}/healthz", daemon.address)).await.expect("healthz");
    assert_eq!(health.status().as_u16(), 200, "serving once READY=1 is sent");
    for _ in 0..3 {
        notifications.wait_for("WATCHDOG=1").await;
    }

    // Wedge the only worker on a GitHub call that never answers.
    let body = fixture("issues/opened.payload.json");
    let response = signed_delivery(&reqwest::Client::new(), &daemon.address, TEST_SECRET, "issues", "wedge-1", body)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status().as_u16(), 202);
    // Notifications arrive in order: after this one, no ping may follow.
    let unhealthy = notifications.wait_for("STATUS=unhealthy").await;
    assert!(unhealthy.contains("WEBHOOKD_STALL_TIMEOUT") && !unhealthy.contains("WATCHDOG=1"), "{unhealthy}");
    // Watch for five watchdog intervals.
    let watch_until = Instant::now() + Duration::from_millis(1500);
    while let Some(message) = notifications.next(watch_until.saturating_duration_since(Instant::now())).await {
        assert!(!message.contains("WATCHDOG=1"), "a ping went out while the pool was wedged: {message}");
    }

    daemon.signal(Signal::SIGTERM);
    notifications.wait_for("STOPPING=1").await;
    // The wedged delivery stays queued in the store; a clean stop.
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
}

/// Starts the daemon on `listener`'s socket as systemd would: fd 3,
/// LISTEN_FDS=1, LISTEN_PID of the daemon itself (the shell's pid, which
/// `exec` keeps).
async fn start_socket_activated(
    listener: &std::net::TcpListener,
    workdir: Arc<tempfile::TempDir>,
    env: &[(&str, &str)],
) -> Daemon {
    let fd = listener.as_raw_fd();
    let script = format!("exec 3<&{fd}; export LISTEN_FDS=1 LISTEN_PID=$$; exec {} serve", webhookd_bin().display());
    // bash: dash cannot redirect descriptors above 9.
    Daemon::start_command(workdir, Path::new("/bin/bash"), &["-c", &script], env).await
}

#[tokio::test]
async fn socket_activation_serves_the_inherited_socket_and_a_restart_refuses_no_delivery() {
    let github = MockServer::start().await;
    let commented: Arc<Mutex<Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
    let record = commented.clone();
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/.+/issues/\d+/comments$"))
        .respond_with(move |request: &Request| {
            let number = request.url.path().split('/').nth(5).and_then(|n| n.parse().ok()).unwrap_or(0);
            record.lock().expect("lock").push(number);
            ResponseTemplate::new(201).set_body_json(json!({}))
        })
        .mount(&github)
        .await;
    let dir = Arc::new(tempfile::tempdir().expect("dir"));
    let rules = dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    // The daemon inherits it, as from systemd.
    fcntl(listener.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty())).expect("clear close-on-exec");
    let api = github.uri();
    let rules_path = rules.to_str().expect("utf8").to_owned();
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", api.as_str()),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
        ("WEBHOOKD_RULES", rules_path.as_str()),
    ];
    let mut first = start_socket_activated(&listener, dir.clone(), &env).await;
    assert_eq!(first.address, address, "it serves the inherited socket, not WEBHOOKD_LISTEN");

    // A sender that keeps posting, one connection per delivery, throughout.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sender = tokio::spawn({
        let (stop, sent, address) = (stop.clone(), sent.clone(), address.clone());
        async move {
            let http = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client");
            let mut answers = Vec::new();
            let mut number = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                number += 1;
                let id = uuid::Uuid::new_v4().to_string();
                let answer = signed_delivery(&http, &address, TEST_SECRET, "issues", &id, issue_body(number))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string());
                answers.push((number, answer));
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            answers
        }
    });
    let sent_at_least = |n: u64| {
        let sent = sent.clone();
        async move {
            let deadline = Instant::now() + WAIT;
            while sent.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "the sender stalled");
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    sent_at_least(20).await;

    // Restart on the same socket while the sender goes on.
    first.signal(Signal::SIGTERM);
    assert_eq!(first.wait().await.code(), Some(0), "{}", first.output());
    let mut second = start_socket_activated(&listener, dir.clone(), &env).await;
    let after_restart = sent.load(std::sync::atomic::Ordering::SeqCst);
    sent_at_least(after_restart + 20).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let answers = sender.await.expect("sender");
    second.signal(Signal::SIGTERM);
    assert_eq!(second.wait().await.code(), Some(0), "{}", second.output());

    let refused: Vec<_> = answers.iter().filter(|(_, a)| a != &Ok(202)).collect();
    assert!(refused.is_empty(), "deliveries not answered 202 across the restart: {refused:?}");
    let commented: HashSet<u64> = commented.lock().expect("lock").iter().copied().collect();
    for (number, _) in &answers {
        assert!(commented.contains(number), "delivery {number} was answered 202 but never processed");
    }
}
