//! `webhookd store backup` and `store verify` with the real binary: a backup
//! taken while deliveries keep arriving and none can be processed, restored
//! as docs/backup.md says, gives a daemon every delivery acknowledged before
//! the backup began; and the exit codes of what cannot be backed up.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;
use crate::process::*;

/// Every opened issue gets a label: one GitHub call per delivery processed.
const RULES: &str = "[[rule]]\nname = \"label\"\non = \"issues.opened\"\n[[rule.actions]]\nadd_labels = [\"seen\"]\n";

/// A GitHub that answers nothing in time: the one worker stays on its first
/// delivery, and every other one waits in the store.
async fn stuck_github() -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(600)))
        .mount(&github)
        .await;
    github
}

/// A GitHub that labels at once and reports each issue number labelled.
async fn labelling_github() -> (MockServer, mpsc::UnboundedReceiver<u64>) {
    let github = MockServer::start().await;
    let (tx, rx) = mpsc::unbounded_channel();
    Mock::given(method("POST"))
        .and(path_regex(r"/issues/\d+/labels$"))
        .respond_with(move |request: &Request| {
            let number = request.url.path().trim_end_matches("/labels").rsplit('/').next().and_then(|n| n.parse().ok());
            let _ = tx.send(number.expect("an issue number in the path"));
            ResponseTemplate::new(200).set_body_json(serde_json::json!([]))
        })
        .mount(&github)
        .await;
    (github, rx)
}

async fn start_daemon(workdir: Arc<tempfile::TempDir>, github: &MockServer, rules: &Path) -> Daemon {
    let api = github.uri();
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", api.as_str()),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
        ("WEBHOOKD_RULES", rules.to_str().expect("utf-8")),
        ("WEBHOOKD_WORKERS", "1"),
    ];
    Daemon::start_in(workdir, &webhookd_bin(), &env).await
}

/// Posts issues 1, 2, ... until `stop`, recording each one answered 2xx.
fn keep_posting(
    address: String,
    acknowledged: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut number = 0;
        while !stop.load(Ordering::SeqCst) {
            number += 1;
            let id = uuid::Uuid::new_v4().to_string();
            let request = signed_delivery(&http, &address, TEST_SECRET, "issues", &id, issue_body(number));
            let status = request.send().await.expect("sent").status();
            assert!(status.is_success(), "delivery {number}: {status}");
            acknowledged.lock().expect("lock").push(number);
        }
    })
}

fn acknowledged_now(acknowledged: &Mutex<Vec<u64>>) -> Vec<u64> {
    acknowledged.lock().expect("lock").clone()
}

#[tokio::test]
async fn a_backup_under_load_restored_gives_a_daemon_every_delivery_acknowledged_before_it() {
    let rules_dir = tempfile::tempdir().expect("rules dir");
    let rules = rules_dir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("rules");
    let github = stuck_github().await;
    let workdir = Arc::new(tempfile::tempdir().expect("workdir"));
    let mut daemon = start_daemon(workdir.clone(), &github, &rules).await;
    let store = format!("sqlite:{}", workdir.path().join("data/webhookd.db").display());

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = keep_posting(daemon.address.clone(), acknowledged.clone(), stop.clone());
    // Enough waiting to fill a few pages of the database before the backup.
    while acknowledged_now(&acknowledged).len() < 200 {
        tokio::task::yield_now().await;
    }
    let backups = tempfile::tempdir().expect("backups");
    let backup = backups.path().join("webhookd-backup.db");
    let before = acknowledged_now(&acknowledged);
    let (code, out) =
        run_webhookd(&["store", "backup", backup.to_str().expect("utf-8")], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("backup written to") && out.contains("deliveries"), "{out}");
    let stored: usize = out.split(": ").nth(1).and_then(|s| s.split(' ').next()?.parse().ok()).expect("a count");
    assert!(stored >= before.len(), "{} acknowledged before the backup: {out}", before.len());
    // Deliveries kept being acknowledged while it ran; a second backup, to damage below.
    let damaged = backups.path().join("damaged.db");
    let (code, out) =
        run_webhookd(&["store", "backup", damaged.to_str().expect("utf-8")], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("sender");
    let all: HashSet<u64> = acknowledged_now(&acknowledged).into_iter().collect();
    assert!(all.len() > before.len(), "posting went on during the backups");

    // An existing destination is refused, naming it.
    let (code, out) =
        run_webhookd(&["store", "backup", backup.to_str().expect("utf-8")], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains(backup.to_str().expect("utf-8")) && out.contains("exists"), "{out}");

    // The daemon dies; its store is lost with it.
    daemon.signal(Signal::SIGKILL);
    daemon.wait().await;
    drop(workdir);

    let (code, out) = run_webhookd(&["store", "verify", backup.to_str().expect("utf-8")], &[]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 problems: sound"), "{out}");

    // Restore as docs/backup.md says: the backup and its body folder become the store.
    let restored = Arc::new(tempfile::tempdir().expect("restored workdir"));
    let data = restored.path().join("data");
    std::fs::create_dir(&data).expect("data folder");
    std::fs::rename(&backup, data.join("webhookd.db")).expect("move the database");
    std::fs::rename(backups.path().join("webhookd-backup.db.bodies"), data.join("webhookd.db.bodies"))
        .expect("move the bodies");
    let (github, mut labelled) = labelling_github().await;
    let mut daemon = start_daemon(restored, &github, &rules).await;
    let mut missing: HashSet<u64> = before.iter().copied().collect();
    let waited = tokio::time::timeout(WAIT, async {
        while !missing.is_empty() {
            let number = labelled.recv().await.expect("github runs");
            assert!(all.contains(&number), "issue {number} was never acknowledged");
            missing.remove(&number);
        }
    })
    .await;
    assert!(waited.is_ok(), "acknowledged before the backup, but not restored: {missing:?}");
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());

    // A backup with a body cut short: verify names the delivery and exits 1.
    let segments = backups.path().join("damaged.db.bodies");
    let segment = std::fs::read_dir(&segments).expect("bodies").next().expect("a segment").expect("entry").path();
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("open");
    file.set_len(file.metadata().expect("metadata").len() - 1).expect("truncate");
    let (code, out) = run_webhookd(&["store", "verify", damaged.to_str().expect("utf-8")], &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("past the end of its segment") && out.contains("NOT sound"), "{out}");
}

#[tokio::test]
async fn what_cannot_be_backed_up_or_verified_exits_2_saying_why() {
    let dir = tempfile::tempdir().expect("dir");
    let dest = dir.path().join("backup.db");
    let dest = dest.to_str().expect("utf-8");

    let (code, out) = run_webhookd(&["store", "backup", dest], &[("WEBHOOKD_STORE", "memory")]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEBHOOKD_STORE") && out.contains("memory"), "{out}");

    let postgres = "postgres://webhookd:hunter2@127.0.0.1:1/webhookd";
    let (code, out) = run_webhookd(&["store", "backup", dest], &[("WEBHOOKD_STORE", postgres)]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("pg_dump") && out.contains("docs/backup.md") && !out.contains("hunter2"), "{out}");

    let missing = dir.path().join("nothing.db");
    let store = format!("sqlite:{}", missing.display());
    let (code, out) = run_webhookd(&["store", "backup", dest], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing.db"), "{out}");

    let (code, out) = run_webhookd(&["store", "verify", missing.to_str().expect("utf-8")], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing.db"), "{out}");
    assert!(!missing.exists() && !dir.path().join("backup.db").exists(), "nothing was created");
}
