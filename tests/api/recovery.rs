//! Recovery of deliveries GitHub failed to make, with the real binary against
//! a mock GitHub that keeps a repository hook's delivery attempts: which
//! events are asked for again (once, remembered across a restart), the
//! redelivered events processed once, `webhookd recover`, and the pacing of
//! redelivery requests.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use tokio::process::Command;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{TEST_SECRET, TEST_TOKEN, WAIT, issue_body, signed_delivery};
use crate::process::{Daemon, webhookd_bin};

const HOOK: &str = "repo:octo/app:7";
const DELIVERIES: &str = "/repos/octo/app/hooks/7/deliveries";
const ATTEMPTS: &str = r"^/repos/octo/app/hooks/7/deliveries/(\d+)/attempts$";
const LABELS: &str = r"^/repos/Codertocat/Hello-World/issues/(\d+)/labels$";
const ATTEMPT_PATH: (&str, &str) = ("/repos/octo/app/hooks/7/deliveries/", "/attempts");
const LABEL_PATH: (&str, &str) = ("/repos/Codertocat/Hello-World/issues/", "/labels");

const RULES: &str = r#"
[[rule]]
name = "seen"
on = "issues.opened"
[[rule.actions]]
add_labels = ["seen"]
"#;

/// One attempt GitHub made to deliver an event.
#[derive(Debug, Clone)]
struct Attempt {
    id: u64,
    guid: String,
    at: SystemTime,
    ok: bool,
}

impl Attempt {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": humantime::format_rfc3339_seconds(self.at).to_string(),
            "redelivery": false,
            "status": if self.ok { "OK" } else { "Invalid HTTP Response: 503" },
            "status_code": if self.ok { 200 } else { 503 },
            "event": "issues",
            "action": "opened",
            "installation_id": null,
            "repository_id": 1,
        })
    }
}

fn attempt(id: u64, guid: &str, ago_secs: u64, ok: bool) -> Attempt {
    Attempt { id, guid: guid.to_owned(), at: SystemTime::now() - Duration::from_secs(ago_secs), ok }
}

/// The hook's attempts as GitHub keeps them, listed newest first in pages of
/// `page` with an opaque `cursor` in the `Link` header's next page.
#[derive(Clone)]
struct Hook {
    attempts: Arc<Mutex<Vec<Attempt>>>,
    page: usize,
}

impl Hook {
    fn new(attempts: Vec<Attempt>, page: usize) -> Self {
        Self { attempts: Arc::new(Mutex::new(attempts)), page }
    }

    fn add(&self, attempt: Attempt) {
        self.attempts.lock().expect("attempts").push(attempt);
    }
}

impl Respond for Hook {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let cursor = request.url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned());
        let start = match cursor.as_deref().map(|c| c.strip_prefix("v1_").and_then(|n| n.parse::<usize>().ok())) {
            None => 0,
            Some(Some(n)) => n,
            // A cursor GitHub never gave: the test fails on the error it causes.
            Some(None) => return ResponseTemplate::new(422).set_body_json(json!({"message": "bad cursor"})),
        };
        let mut all = self.attempts.lock().expect("attempts").clone();
        all.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
        let end = (start + self.page).min(all.len());
        let body: Vec<Value> = all.get(start..end).unwrap_or_default().iter().map(Attempt::json).collect();
        let mut answer = ResponseTemplate::new(200).set_body_json(body);
        if end < all.len() {
            let base = format!("{}://{}", request.url.scheme(), request.url.authority());
            let link = format!(r#"<{base}{DELIVERIES}?cursor=v1_{end}&per_page=100>; rel="next""#);
            answer = answer.insert_header("Link", link.as_str());
        }
        answer
    }
}

/// A mock GitHub with `hook`'s deliveries, accepting redelivery requests
/// (202) and label calls.
async fn mock_github(hook: &Hook) -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("GET")).and(path(DELIVERIES)).respond_with(hook.clone()).mount(&github).await;
    Mock::given(method("POST"))
        .and(path_regex(ATTEMPTS))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(LABELS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{"name": "seen"}])))
        .mount(&github)
        .await;
    github
}

/// The number in the paths `github` received as POST `PREFIX{number}SUFFIX`, in order.
async fn numbers(github: &MockServer, (prefix, suffix): (&str, &str)) -> Vec<u64> {
    github
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .filter_map(|r| r.url.path().strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok())
        .collect()
}

/// The redelivery requests received: attempt ids, in order.
async fn redeliveries(github: &MockServer) -> Vec<u64> {
    numbers(github, ATTEMPT_PATH).await
}

fn counts(ids: &[u64]) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for id in ids {
        *counts.entry(*id).or_default() += 1;
    }
    counts
}

/// The store, rules and settings every daemon of one test shares.
struct Setup {
    dir: tempfile::TempDir,
    store: String,
    rules: String,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let store = format!("sqlite:{}", dir.path().join("webhookd.db").display());
        let rules = dir.path().join("rules.toml");
        std::fs::write(&rules, RULES).expect("write rules");
        let rules = rules.display().to_string();
        Self { dir, store, rules }
    }

    fn env<'a>(&'a self, api: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_STORE", self.store.as_str()),
            ("WEBHOOKD_RULES", self.rules.as_str()),
            ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", api),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
            ("WEBHOOKD_RECOVERY_HOOKS", HOOK),
        ];
        env.extend_from_slice(extra);
        env
    }

    async fn start(&self, api: &str, extra: &[(&str, &str)]) -> Daemon {
        Daemon::start(&webhookd_bin(), &self.env(api, extra)).await
    }

    /// Runs `webhookd ARGS` to completion; exit code, stdout, stderr.
    async fn run(&self, api: &str, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(webhookd_bin())
            .args(args)
            .env_clear()
            .envs(self.env(api, &[]))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output();
        let out = tokio::time::timeout(WAIT, out).await.expect("recover ends in time").expect("webhookd runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }
}

/// Waits for the INFO line of `daemon`'s pass over the hook, parsed.
async fn pass_line(daemon: &mut Daemon) -> Value {
    loop {
        let line = daemon.wait_for_line(r#""recovery pass""#).await;
        let line: Value = serde_json::from_str(&line).expect("JSON log line");
        if line.to_string().contains(HOOK) {
            return line;
        }
    }
}

/// A field of a JSON log line, wherever the format puts fields.
fn field(line: &Value, name: &str) -> Value {
    line.get(name).or_else(|| line.get("fields").and_then(|f| f.get(name))).cloned().unwrap_or(Value::Null)
}

async fn stop(mut daemon: Daemon) -> String {
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait().await;
    let output = daemon.output();
    assert_eq!(status.code(), Some(0), "{output}");
    output
}

fn guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[tokio::test]
async fn exactly_the_failed_unheld_events_are_asked_for_once_and_remembered_across_a_restart() {
    let (ok, held, twice, once, recovered) = (guid(), guid(), guid(), guid(), guid());
    let hook = Hook::new(
        vec![
            attempt(101, &ok, 600, true),
            attempt(102, &held, 590, false),
            attempt(103, &twice, 580, false),
            attempt(104, &twice, 300, false),
            attempt(105, &once, 570, false),
            attempt(106, &recovered, 560, false),
            attempt(107, &recovered, 200, true),
        ],
        2,
    );
    let github = mock_github(&hook).await;
    let api = github.uri();
    let setup = Setup::new();

    // webhookd stores one of the events GitHub thinks failed (its answer was lost).
    let daemon = setup.start(&api, &[("WEBHOOKD_RECOVERY", "off")]).await;
    let response =
        signed_delivery(&reqwest::Client::new(), &daemon.address, TEST_SECRET, "issues", &held, issue_body(1))
            .send()
            .await
            .expect("sent");
    assert_eq!(response.status().as_u16(), 202);
    stop(daemon).await;
    assert!(redeliveries(&github).await.is_empty(), "recovery off asks nothing");

    let mut daemon = setup.start(&api, &[]).await;
    let line = pass_line(&mut daemon).await;
    let posts = redeliveries(&github).await;
    assert_eq!(counts(&posts), HashMap::from([(104, 1), (105, 1)]), "{posts:?}\n{}", daemon.output());
    assert_eq!(field(&line, "events"), json!(5), "{line}");
    assert_eq!(field(&line, "failed"), json!(3), "{line}");
    assert_eq!(field(&line, "held"), json!(1), "{line}");
    assert_eq!(field(&line, "requested"), json!(2), "{line}");
    assert_eq!(field(&line, "pages"), json!(4), "{line}");
    let cursors: Vec<String> = github
        .received_requests()
        .await
        .expect("recording")
        .iter()
        .filter(|r| r.method.as_str() == "GET" && r.url.path() == DELIVERIES)
        .map(|r| r.url.query_pairs().find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned()).unwrap_or_default())
        .collect();
    assert_eq!(cursors, ["", "v1_2", "v1_4", "v1_6"], "each page asked with the previous page's cursor");
    stop(daemon).await;

    // GitHub's redelivery of `once` failed too; `twice`'s has not come yet.
    hook.add(Attempt { id: 108, guid: once.clone(), at: SystemTime::now() + Duration::from_secs(2), ok: false });
    let mut daemon = setup.start(&api, &[]).await;
    let line = pass_line(&mut daemon).await;
    let posts = redeliveries(&github).await;
    assert_eq!(counts(&posts), HashMap::from([(104, 1), (105, 1), (108, 1)]), "{posts:?}\n{}", daemon.output());
    assert_eq!(field(&line, "requested"), json!(1), "{line}");
    assert_eq!(field(&line, "pending"), json!(1), "{line}");
    stop(daemon).await;
}

#[tokio::test]
async fn redelivered_events_are_processed_once_each() {
    let events: Vec<(u64, String)> = (1..=3).map(|n| (n, guid())).collect();
    let hook = Hook::new(events.iter().map(|(n, g)| attempt(200 + n, g, 600 - n * 10, false)).collect(), 100);
    let github = mock_github(&hook).await;
    let api = github.uri();
    let setup = Setup::new();

    let daemon = setup.start(&api, &[]).await;
    let http = reqwest::Client::new();
    let mut delivered = Vec::new();
    let deadline = Instant::now() + WAIT;
    // GitHub: each redelivery asked for arrives as the same delivery again.
    while delivered.len() < events.len() {
        for id in redeliveries(&github).await {
            if delivered.contains(&id) {
                continue;
            }
            let (number, guid) = events.iter().find(|(n, _)| 200 + n == id).expect("an attempt the hook listed");
            let response = signed_delivery(&http, &daemon.address, TEST_SECRET, "issues", guid, issue_body(*number))
                .send()
                .await
                .expect("sent");
            assert_eq!(response.status().as_u16(), 202);
            hook.add(attempt(300 + number, guid, 0, true));
            delivered.push(id);
        }
        assert!(Instant::now() < deadline, "only {delivered:?} asked for within {WAIT:?}\n{}", daemon.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + WAIT;
    while numbers(&github, LABEL_PATH).await.len() < events.len() {
        assert!(Instant::now() < deadline, "not every redelivered event processed\n{}", daemon.output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stopping drains: whatever else would run has run.
    stop(daemon).await;
    assert_eq!(counts(&numbers(&github, LABEL_PATH).await), HashMap::from([(1, 1), (2, 1), (3, 1)]));
    assert_eq!(counts(&redeliveries(&github).await), HashMap::from([(201, 1), (202, 1), (203, 1)]));
}

#[tokio::test]
async fn recover_dry_run_reports_and_asks_nothing_and_fails_when_github_cannot_be_read() {
    let (a, b, c) = (guid(), guid(), guid());
    let hook = Hook::new(vec![attempt(1, &a, 300, true), attempt(2, &b, 200, false), attempt(3, &c, 100, false)], 2);
    let github = mock_github(&hook).await;
    let setup = Setup::new();
    // `recover` reads an existing store: serve creates it.
    stop(setup.start(&github.uri(), &[("WEBHOOKD_RECOVERY", "off")]).await).await;
    let (code, stdout, stderr) = setup.run(&github.uri(), &["recover", "--dry-run", "--json", "--hook", HOOK]).await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    let reports: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
    let report = &reports[0];
    assert_eq!(reports.as_array().map(Vec::len), Some(1), "{reports}");
    assert_eq!(report["hook"], json!(HOOK), "{reports}");
    assert_eq!(report["events"], json!(3), "{reports}");
    assert_eq!(report["failed"], json!(2), "{reports}");
    assert_eq!(report["held"], json!(0), "{reports}");
    assert_eq!(report["requested"], json!(2), "{reports}");
    assert_eq!(report["pages"], json!(2), "{reports}");
    assert_eq!(report["error"], Value::Null, "{reports}");
    assert!(redeliveries(&github).await.is_empty(), "a dry run asks nothing");

    for status in [500, 404] {
        let broken = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path(DELIVERIES))
            .respond_with(ResponseTemplate::new(status).set_body_json(json!({"message": "no"})))
            .mount(&broken)
            .await;
        let (code, stdout, stderr) = setup.run(&broken.uri(), &["recover", "--hook", HOOK]).await;
        assert_eq!(code, 1, "listing answered {status}: {stdout}{stderr}");
        assert!(stdout.contains(HOOK), "the hook that failed is named: {stdout}");
    }
}

#[tokio::test]
async fn redelivery_requests_are_paced_by_the_write_interval() {
    let hook = Hook::new((1..=4).map(|n| attempt(n, &guid(), 100 * n, false)).collect(), 100);
    let times: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let github = MockServer::start().await;
    Mock::given(method("GET")).and(path(DELIVERIES)).respond_with(hook.clone()).mount(&github).await;
    let record = times.clone();
    Mock::given(method("POST"))
        .and(path_regex(ATTEMPTS))
        .respond_with(move |_: &Request| {
            record.lock().expect("times").push(Instant::now());
            ResponseTemplate::new(202).set_body_json(json!({}))
        })
        .mount(&github)
        .await;
    let setup = Setup::new();
    let mut daemon = setup.start(&github.uri(), &[("WEBHOOKD_GITHUB_WRITE_INTERVAL", "300ms")]).await;
    let line = pass_line(&mut daemon).await;
    assert_eq!(field(&line, "requested"), json!(4), "{line}");
    let times = times.lock().expect("times").clone();
    assert_eq!(times.len(), 4);
    let gap = times.windows(2).map(|w| w[1] - w[0]).min().expect("gaps");
    assert!(gap >= Duration::from_millis(250), "redelivery requests {gap:?} apart");
    stop(daemon).await;
}
