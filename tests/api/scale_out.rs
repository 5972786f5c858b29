//! Issue 13's proofs: several `webhookd` processes share one PostgreSQL
//! store. Each test runs the real binary with rules that label the issue of
//! every `issues.opened` delivery (one GitHub call per delivery, the issue
//! number naming the delivery), on a fresh database, and reads what happened
//! from the calls GitHub received. Each instance's API URL carries its own
//! path prefix, so the calls also say which instance made them.
//!
//! Skipped, saying so, without `WEBHOOKD_TEST_DATABASE_URL`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::io::AsyncReadExt;
use tokio::sync::watch;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::{TEST_SECRET, TEST_TOKEN, WAIT, issue_body, signed_delivery};
use crate::helpers::{TestDatabase, test_database};
use crate::pg_proxy::CutProxy;
use crate::process::{Daemon, webhookd_bin};

const RULES: &str = r#"
[[rule]]
name = "seen"
on = "issues.opened"
[[rule.actions]]
add_labels = ["seen"]
"#;

/// A label call GitHub received.
#[derive(Debug, Clone)]
struct LabelCall {
    /// The path prefix of the instance that made it.
    instance: String,
    owner: String,
    number: u64,
    at: Instant,
}

/// The label calls received so far, with a signal on each new one so tests
/// await them instead of sleeping.
#[derive(Clone)]
struct Calls {
    seen: Arc<Mutex<Vec<LabelCall>>>,
    count: Arc<watch::Sender<usize>>,
}

impl Calls {
    fn new() -> Self {
        Self { seen: Arc::default(), count: Arc::new(watch::channel(0).0) }
    }

    fn record(&self, call: LabelCall) {
        let mut seen = self.seen.lock().expect("calls");
        seen.push(call);
        self.count.send_replace(seen.len());
    }

    fn all(&self) -> Vec<LabelCall> {
        self.seen.lock().expect("calls").clone()
    }

    /// Waits up to `within` until `done` holds for the calls received;
    /// fails the test naming `what` otherwise.
    async fn wait_for(&self, what: &str, within: Duration, done: impl Fn(&[LabelCall]) -> bool) -> Vec<LabelCall> {
        let deadline = tokio::time::Instant::now() + within;
        let mut changed = self.count.subscribe();
        loop {
            let calls = self.all();
            if done(&calls) {
                return calls;
            }
            if tokio::time::timeout_at(deadline, changed.changed()).await.is_err() {
                panic!("{what}: not within {within:?}; {} label calls so far", calls.len());
            }
        }
    }
}

/// `/PREFIX/repos/OWNER/REPO/issues/NUMBER/labels`.
fn parse_label_path(path: &str) -> Option<LabelCall> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        ["", instance, "repos", owner, _, "issues", number, "labels"] => Some(LabelCall {
            instance: (*instance).to_owned(),
            owner: (*owner).to_owned(),
            number: number.parse().ok()?,
            at: Instant::now(),
        }),
        _ => None,
    }
}

/// How many calls each issue number got, among those `keep` selects.
fn per_number(calls: &[LabelCall], keep: impl Fn(&LabelCall) -> bool) -> HashMap<u64, usize> {
    let mut counts = HashMap::new();
    for call in calls.iter().filter(|c| keep(c)) {
        *counts.entry(call.number).or_default() += 1;
    }
    counts
}

/// How many calls each instance made.
fn per_instance(calls: &[LabelCall]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for call in calls {
        *counts.entry(call.instance.clone()).or_default() += 1;
    }
    counts
}

/// Whether every number in `numbers` got a call `keep` selects.
fn covers(calls: &[LabelCall], numbers: impl IntoIterator<Item = u64>, keep: impl Fn(&LabelCall) -> bool) -> bool {
    let got = per_number(calls, keep);
    numbers.into_iter().all(|n| got.contains_key(&n))
}

/// The label endpoint: records each call, answers as `answer` says.
struct LabelEndpoint<F> {
    calls: Calls,
    answer: F,
}

impl<F: Fn(&LabelCall) -> ResponseTemplate + Send + Sync + 'static> Respond for LabelEndpoint<F> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Some(call) = parse_label_path(request.url.path()) else { return ResponseTemplate::new(404) };
        // Answered first: whoever sees the call recorded sees what the answer did.
        let answer = (self.answer)(&call);
        self.calls.record(call);
        answer
    }
}

/// A mock GitHub whose label endpoint answers as `answer` says, plus App
/// installation tokens for whoever asks.
async fn mock_github(answer: impl Fn(&LabelCall) -> ResponseTemplate + Send + Sync + 'static) -> (MockServer, Calls) {
    let github = MockServer::start().await;
    let calls = Calls::new();
    Mock::given(method("POST"))
        .and(path_regex(r"^/[^/]+/repos/[^/]+/[^/]+/issues/\d+/labels$"))
        .respond_with(LabelEndpoint { calls: calls.clone(), answer })
        .mount(&github)
        .await;
    let expires = humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600)).to_string();
    Mock::given(method("POST"))
        .and(path_regex(r"^/[^/]+/app/installations/\d+/access_tokens$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "token": "ghs_test", "expires_at": expires })))
        .mount(&github)
        .await;
    (github, calls)
}

fn labelled() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!([{ "name": "seen" }]))
}

/// What every instance of a test shares: the store, the rules, the
/// credentials; each instance adds its API URL and its own settings.
struct Deployment {
    store: String,
    rules: String,
    auth: Vec<(&'static str, String)>,
    _files: tempfile::TempDir,
}

impl Deployment {
    /// Instances authenticating with a token.
    fn with_token(store: &str) -> Self {
        Self::new(store, |_| vec![("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN.to_owned())])
    }

    /// Instances authenticating as one GitHub App (installation tokens).
    fn with_app(store: &str) -> Self {
        Self::new(store, |dir| {
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key generation");
            let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem");
            let path = dir.path().join("app.pem");
            std::fs::write(&path, pem.as_bytes()).expect("write key");
            vec![
                ("WEBHOOKD_GITHUB_APP_ID", "42".to_owned()),
                ("WEBHOOKD_GITHUB_APP_KEY_FILE", path.display().to_string()),
            ]
        })
    }

    fn new(store: &str, auth: impl FnOnce(&tempfile::TempDir) -> Vec<(&'static str, String)>) -> Self {
        let files = tempfile::tempdir().expect("dir");
        let rules = files.path().join("rules.toml");
        std::fs::write(&rules, RULES).expect("write rules");
        let auth = auth(&files);
        Self { store: store.to_owned(), rules: rules.display().to_string(), auth, _files: files }
    }

    /// Starts `webhookd` calling GitHub at `api`, with `extra` settings.
    async fn start(&self, api: &str, extra: &[(&str, &str)]) -> Daemon {
        let mut env: Vec<(&str, &str)> = vec![
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_STORE", &self.store),
            ("WEBHOOKD_RULES", &self.rules),
            ("WEBHOOKD_GITHUB_API_URL", api),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
        ];
        env.extend(self.auth.iter().map(|(k, v)| (*k, v.as_str())));
        env.extend_from_slice(extra);
        Daemon::start(&webhookd_bin(), &env).await
    }
}

async fn post(http: &reqwest::Client, address: &str, id: &str, body: Vec<u8>) -> reqwest::Response {
    signed_delivery(http, address, TEST_SECRET, "issues", id, body).send().await.expect("request sent")
}

/// Stops `daemon` with SIGTERM and expects a clean exit.
async fn stop(mut daemon: Daemon) -> String {
    daemon.signal(Signal::SIGTERM);
    let status = daemon.wait().await;
    let output = daemon.output();
    assert_eq!(status.code(), Some(0), "{output}");
    output
}

/// Every stored delivery: id to (state, runs, attempts).
async fn stored(db: &TestDatabase) -> HashMap<String, (String, i32, i32)> {
    let mut conn = db.connect().await;
    let rows = sqlx::query("SELECT delivery_id, state, runs, attempts FROM webhookd_deliveries")
        .fetch_all(&mut conn)
        .await
        .expect("read the store");
    rows.iter()
        .map(|r| {
            let get = |i: usize| r.try_get::<i32, _>(i).expect("column");
            (r.try_get(0).expect("id"), (r.try_get(1).expect("state"), get(2), get(3)))
        })
        .collect()
}

#[tokio::test]
async fn three_instances_process_a_thousand_deliveries_once_each_and_share_deduplication() {
    const DELIVERIES: u64 = 1_000;
    let Some(db) = test_database().await else { return };
    let (github, calls) = mock_github(|_| labelled()).await;
    let deployment = Deployment::with_token(&db.url);
    // Started together: the migration lock serialises their schema setup.
    let apis: Vec<String> = (0..3).map(|k| format!("{}/i{k}", github.uri())).collect();
    let instances =
        futures::future::join_all(apis.iter().map(|api| deployment.start(api, &[("WEBHOOKD_WORKERS", "4")]))).await;
    let addresses: Arc<Vec<String>> = Arc::new(instances.iter().map(|d| d.address.clone()).collect());

    let http = reqwest::Client::new();
    let sending = Arc::new(tokio::sync::Semaphore::new(100));
    let mut tasks = tokio::task::JoinSet::new();
    for number in 1..=DELIVERIES {
        let (http, addresses, sending) = (http.clone(), addresses.clone(), sending.clone());
        tasks.spawn(async move {
            let _turn = sending.acquire().await.expect("semaphore");
            let id = uuid::Uuid::new_v4().to_string();
            let first = (number % 3) as usize;
            let answer = post(&http, &addresses[first], &id, issue_body(number)).await;
            assert_eq!(answer.status().as_u16(), 202, "delivery {number}");
            if number % 10 == 0 {
                // GitHub's redelivery, to another instance.
                let again = post(&http, &addresses[(first + 1) % 3], &id, issue_body(number)).await;
                assert_eq!(again.status().as_u16(), 200, "redelivery of {number}");
                let answer: Value = again.json().await.expect("json");
                assert_eq!(answer, json!({ "delivery": id, "status": "duplicate" }));
            }
            id
        });
    }
    let mut accepted = HashSet::new();
    while let Some(id) = tasks.join_next().await {
        accepted.insert(id.expect("sender task"));
    }
    assert_eq!(accepted.len(), DELIVERIES as usize);

    calls.wait_for("every delivery processed", Duration::from_secs(40), |c| covers(c, 1..=DELIVERIES, |_| true)).await;
    for instance in instances {
        stop(instance).await;
    }
    let calls = calls.all();
    let counts = per_number(&calls, |_| true);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "processed more than once (issue, calls): {twice:?}");
    assert_eq!(calls.len(), DELIVERIES as usize, "one GitHub call per delivery, duplicates none");
    let by_instance = per_instance(&calls);
    assert_eq!(by_instance.len(), 3, "every instance took part: {by_instance:?}");

    let rows = stored(&db).await;
    assert_eq!(rows.keys().cloned().collect::<HashSet<_>>(), accepted);
    let odd: Vec<_> = rows.iter().filter(|(_, (state, runs, _))| state != "done" || *runs != 1).collect();
    assert!(odd.is_empty(), "every row done after one run: {odd:?}");
}

/// A GitHub that takes each request and never answers: what reaches it is
/// in flight until the caller dies. Records the label calls it receives.
async fn black_hole(calls: Calls) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let calls = calls.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                let mut recorded = false;
                // Records the request line, then holds the connection until
                // the caller closes it (it is killed).
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    if !recorded {
                        head.extend_from_slice(&buf[..n]);
                        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&head[..end]);
                            if let Some(call) = line.split(' ').nth(1).and_then(parse_label_path) {
                                calls.record(call);
                            }
                            recorded = true;
                        }
                    }
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn deliveries_in_flight_on_a_killed_instance_are_processed_by_the_others_after_its_lease() {
    const LEASE: Duration = Duration::from_secs(3);
    const DELIVERIES: u64 = 40;
    let Some(db) = test_database().await else { return };
    let (github, calls) = mock_github(|_| labelled()).await;
    let hole = black_hole(calls.clone()).await;
    let deployment = Deployment::with_token(&db.url);
    let settings = [("WEBHOOKD_LEASE", "3s"), ("WEBHOOKD_WORKERS", "4")];
    let survivors = [
        deployment.start(&format!("{}/s0", github.uri()), &settings).await,
        deployment.start(&format!("{}/s1", github.uri()), &settings).await,
    ];
    let mut victim = deployment.start(&format!("http://{hole}/victim"), &settings).await;

    let http = reqwest::Client::new();
    let mut accepted = HashSet::new();
    for number in 1..=DELIVERIES {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(post(&http, &victim.address, &id, issue_body(number)).await.status().as_u16(), 202);
        accepted.insert(id);
    }
    // Every delivery is done by a survivor or in flight on the victim, and
    // the victim holds at least one.
    let at_victim = |c: &LabelCall| c.instance == "victim";
    let calls_now = calls
        .wait_for("the victim holding deliveries, the rest processed", WAIT, |c| {
            c.iter().any(at_victim) && covers(c, 1..=DELIVERIES, |_| true)
        })
        .await;
    let held: HashSet<u64> = per_number(&calls_now, at_victim).into_keys().collect();

    // Alive, the victim renews its leases: nobody takes its deliveries over
    // even past the lease. (Only time can show that nothing happens.)
    tokio::time::sleep(LEASE + Duration::from_secs(1)).await;
    let early: Vec<_> = calls.all().into_iter().filter(|c| !at_victim(c) && held.contains(&c.number)).collect();
    assert!(early.is_empty(), "taken over from a live instance: {early:?}\n{}", victim.output());

    victim.signal(Signal::SIGKILL);
    let killed = Instant::now();
    assert_eq!(victim.wait().await.code(), None, "killed by a signal");
    let within = LEASE + Duration::from_secs(5);
    calls
        .wait_for("the killed instance's deliveries taken over", within, |c| {
            covers(c, held.iter().copied(), |call| !at_victim(call))
        })
        .await;
    let took = killed.elapsed();

    let mut outputs = String::new();
    for survivor in survivors {
        outputs.push_str(&stop(survivor).await);
    }
    assert!(outputs.contains("took over deliveries whose instance stopped renewing its lease"), "{outputs}");
    let calls = calls.all();
    let counts = per_number(&calls, |c| !at_victim(c));
    assert_eq!(counts.len(), DELIVERIES as usize, "every acknowledged delivery processed: {counts:?}");
    assert!(counts.values().all(|n| *n == 1), "the survivors processed each once: {counts:?}");
    let rows = stored(&db).await;
    assert_eq!(rows.keys().cloned().collect::<HashSet<_>>(), accepted);
    let runs_of = |runs: i32| rows.values().filter(|(state, r, _)| state == "done" && *r == runs).count();
    assert_eq!(runs_of(2), held.len(), "the held ones ran twice, on the victim and after it: {rows:?}");
    assert_eq!(runs_of(1), DELIVERIES as usize - held.len(), "{rows:?}");
    eprintln!("{} held by the killed instance, taken over {took:?} after the kill", held.len());
}

/// Polls `/readyz` until it answers `status`; returns the answer's body.
async fn readiness(http: &reqwest::Client, address: &str, status: u16) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let answer = http.get(format!("{address}/readyz")).send().await.expect("readyz");
        if answer.status().as_u16() == status {
            return answer.json().await.expect("json");
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(http: &reqwest::Client, address: &str) -> String {
    let answer = http.get(format!("{address}/metrics")).send().await.expect("metrics");
    answer.text().await.expect("metrics text")
}

#[tokio::test]
async fn a_lost_database_refuses_deliveries_and_processing_resumes_by_itself_once_each() {
    const WORKERS: usize = 2;
    // Trust authentication ignores it; it must still never be shown.
    const PASSWORD: &str = "pw-never-shown-5e1c";
    let Some(db) = test_database().await else { return };
    let mut url = url::Url::parse(&db.url).expect("url");
    let server = format!("{}:{}", url.host_str().expect("host"), url.port().unwrap_or(5432));
    let upstream = tokio::net::lookup_host(&server).await.expect("resolve").next().expect("an address");
    let proxy = CutProxy::start(upstream).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.address.port())).expect("port");
    url.set_password(Some(PASSWORD)).expect("password");
    let (github, calls) = mock_github(|_| labelled().set_delay(Duration::from_millis(300))).await;
    let deployment = Deployment::with_token(url.as_str());
    // The cut must end within the lease for in-flight outcomes to be recorded.
    let settings = [("WEBHOOKD_WORKERS", "2"), ("WEBHOOKD_LEASE", "10s")];
    let mut daemon = deployment.start(&format!("{}/i0", github.uri()), &settings).await;
    let http = reqwest::Client::new();
    let mut accepted = HashSet::new();
    let mut post_accepted = async |number: u64| {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(post(&http, &daemon.address, &id, issue_body(number)).await.status().as_u16(), 202);
        accepted.insert(id);
    };
    for number in 1..=10 {
        post_accepted(number).await;
    }
    calls.wait_for("processing under way", WAIT, |c| !c.is_empty()).await;

    proxy.cut().await;
    let calls_at_cut = calls.all().len();
    let mut refused = HashSet::new();
    for number in 101..=105 {
        let id = uuid::Uuid::new_v4().to_string();
        let sent = Instant::now();
        let answer = post(&http, &daemon.address, &id, issue_body(number)).await;
        assert_eq!(answer.status().as_u16(), 503, "delivery {number} while the database is cut");
        assert!(sent.elapsed() < Duration::from_secs(10), "answered within GitHub's 10 s: {:?}", sent.elapsed());
        assert!(answer.headers().contains_key("retry-after"), "{:?}", answer.headers());
        let error: Value = answer.json().await.expect("json");
        assert!(error["error"].as_str().is_some_and(|e| e.contains("retry later")), "{error}");
        refused.insert(id);
    }
    let ready = readiness(&http, &daemon.address, 503).await;
    assert_eq!(ready["status"], "store_unwritable", "{ready}");
    let why = ready["error"].as_str().expect("error").to_owned();
    assert!(why.contains("PostgreSQL at 127.0.0.1") && why.contains("refused until"), "{why}");
    assert!(!why.contains(PASSWORD), "{why}");
    // The alerts' view agrees (a scrape while cut waits out the queue count).
    let metrics = scrape(&http, &daemon.address).await;
    assert!(metrics.contains("\nwebhookd_store_writable 0\n") && metrics.contains("\nwebhookd_ready 0\n"), "{metrics}");
    // A delivery in flight at the cut finished its GitHub call but could
    // not record it: it keeps trying.
    daemon.wait_for_line("recording the outcome failed; trying again").await;
    let during = calls.all().len() - calls_at_cut;
    assert!(during <= WORKERS, "{during} calls while cut: only those in flight at the cut may finish");

    proxy.restore();
    readiness(&http, &daemon.address, 200).await;
    let metrics = scrape(&http, &daemon.address).await;
    assert!(metrics.contains("\nwebhookd_store_writable 1\n") && metrics.contains("\nwebhookd_ready 1\n"), "{metrics}");
    // Nothing is sent again: what was queued before the cut goes on.
    calls.wait_for("the deliveries from before the cut", WAIT, |c| covers(c, 1..=10, |_| true)).await;
    let mut post_accepted = async |number: u64| {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(post(&http, &daemon.address, &id, issue_body(number)).await.status().as_u16(), 202);
        accepted.insert(id);
    };
    for number in 201..=205 {
        post_accepted(number).await;
    }
    calls.wait_for("the deliveries from after the cut", WAIT, |c| covers(c, 201..=205, |_| true)).await;

    let output = stop(daemon).await;
    assert!(output.contains("the PostgreSQL store answers again"), "{output}");
    assert!(!output.contains(PASSWORD), "the password reached the logs:\n{output}");
    let counts = per_number(&calls.all(), |_| true);
    let expected: HashSet<u64> = (1..=10).chain(201..=205).collect();
    assert_eq!(counts.keys().copied().collect::<HashSet<_>>(), expected, "refused ones never processed");
    assert!(counts.values().all(|n| *n == 1), "each processed once: {counts:?}");
    let rows = stored(&db).await;
    assert_eq!(rows.keys().cloned().collect::<HashSet<_>>(), accepted, "refused ones not stored");
    assert!(rows.values().all(|(state, _, _)| state == "done"), "{rows:?}");
}

/// An `issues.opened` delivery of `installation` (its repository owned by
/// `org-{installation}`) for issue `number`.
fn issue_of(installation: u64, number: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "action": "opened",
        "installation": { "id": installation },
        "repository": { "full_name": format!("org-{installation}/repo") },
        "issue": { "number": number },
    }))
    .expect("serialise")
}

#[tokio::test]
async fn a_secondary_rate_limit_met_by_one_instance_pauses_that_installation_on_the_others() {
    /// The limit's `retry-after`: longer than the client waits out in place.
    const RETRY_AFTER: Duration = Duration::from_secs(5);
    assert!(RETRY_AFTER > webhookd::github::IN_REQUEST_WAIT);
    let Some(db) = test_database().await else { return };
    // Installation 1's first call meets a secondary limit; then GitHub agrees.
    let limited: Arc<Mutex<Option<Instant>>> = Arc::default();
    let limit = limited.clone();
    let (github, calls) = mock_github(move |call| {
        let mut limit = limit.lock().expect("limit");
        if call.owner == "org-1" && limit.is_none() {
            *limit = Some(call.at);
            return ResponseTemplate::new(403)
                .insert_header("retry-after", RETRY_AFTER.as_secs().to_string().as_str())
                .set_body_json(json!({ "message": "You have exceeded a secondary rate limit." }));
        }
        labelled()
    })
    .await;
    let deployment = Deployment::with_app(&db.url);
    let settings = [("WEBHOOKD_WORKERS", "2")];
    let a = deployment.start(&format!("{}/a", github.uri()), &settings).await;
    let b = deployment.start(&format!("{}/b", github.uri()), &settings).await;
    let http = reqwest::Client::new();
    let mut accepted = HashSet::new();
    let mut post_accepted = async |address: &str, installation: u64, number: u64| {
        let id = uuid::Uuid::new_v4().to_string();
        assert_eq!(post(&http, address, &id, issue_of(installation, number)).await.status().as_u16(), 202);
        accepted.insert(id);
    };

    post_accepted(&a.address, 1, 1).await;
    calls.wait_for("instance A calling for installation 1", WAIT, |c| c.iter().any(|c| c.owner == "org-1")).await;
    let limited_at = limited.lock().expect("limit").expect("the limit was met");
    let pause_ends = limited_at + RETRY_AFTER;
    wait_for_pause(&db).await;
    // A stops: B is the only instance left that could take installation 1's
    // deliveries, and B's own client never met the limit.
    stop(a).await;

    for number in 2..=6 {
        post_accepted(&b.address, 1, number).await;
    }
    for number in 1..=5 {
        post_accepted(&b.address, 2, number).await;
    }
    calls.wait_for("installation 2 served meanwhile", WAIT, |c| covers(c, 1..=5, |c| c.owner == "org-2")).await;
    assert!(Instant::now() < pause_ends, "installation 2's phase outlasted the pause: the test proves nothing");
    let after_limit = |c: &LabelCall| c.owner == "org-1" && c.at > limited_at;
    let calls = calls.wait_for("installation 1 after the pause", WAIT, |c| covers(c, 1..=6, after_limit)).await;
    let early: Vec<_> = calls.iter().filter(|c| after_limit(c) && c.at < pause_ends).collect();
    assert!(early.is_empty(), "installation 1 called {:?} before its pause ended: {early:?}", RETRY_AFTER);
    let counts = per_number(&calls, after_limit);
    assert!(counts.values().all(|n| *n == 1), "each once after the pause: {counts:?}");
    assert!(calls.iter().filter(|c| after_limit(c)).all(|c| c.instance == "b"), "{calls:?}");

    stop(b).await;
    let rows = stored(&db).await;
    assert_eq!(rows.keys().cloned().collect::<HashSet<_>>(), accepted);
    let odd: Vec<_> = rows.iter().filter(|(_, (state, _, attempts))| state != "done" || *attempts != 1).collect();
    assert!(odd.is_empty(), "all done, the wait spending no attempt: {odd:?}");
}

/// Waits until a credential's pause is in the shared store.
async fn wait_for_pause(db: &TestDatabase) {
    let mut conn = db.connect().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let paused = sqlx::query("SELECT credential FROM webhookd_pauses")
            .fetch_optional(&mut conn)
            .await
            .expect("read the pauses");
        if paused.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "no pause recorded in the store");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
