//! Rules end to end: real payloads through the running daemon produce exactly
//! the expected GitHub requests; filters keep other deliveries out; a
//! retried delivery does not comment twice; SIGHUP with a broken file keeps
//! the old rules.

use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use secrecy::SecretString;
use serde_json::{Value, json};
use webhookd::config::Env;
use webhookd::rules::RulesHandler;
use webhookd::telemetry::metrics::Metrics;
use wiremock::matchers::{any, body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;
use crate::process::*;

/// Writes `rules` to a file in a fresh folder (kept alive by the result).
fn rules_file(rules: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("rules.toml");
    std::fs::write(&file, rules).expect("write rules");
    let file = file.to_str().expect("utf8").to_owned();
    (dir, file)
}

/// Starts the app with the rules `rules`, a token and `github` as the API,
/// plus `extra` variables; the folder holding the rules file lives as long
/// as the result.
async fn spawn_rules_app(github: &MockServer, rules: &str, extra: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let (dir, file) = rules_file(rules);
    let mut pairs: Vec<(&str, &str)> = extra.to_vec();
    pairs.push(("WEBHOOKD_RULES", &file));
    let env = Env::from_pairs(pairs.iter().copied());
    let handler =
        Arc::new(RulesHandler::load(file.clone().into(), &env, Arc::new(Metrics::new())).expect("rules load"));
    let api = github.uri();
    let mut vars = vec![("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN), ("WEBHOOKD_GITHUB_API_URL", api.as_str())];
    vars.extend_from_slice(extra);
    (spawn_app(&vars, handler).await, dir)
}

/// Runs the app with `rules` against `github` (and extra variables), posts
/// one delivery of `event` from `fixture` with id `id`, and stops once it has
/// been processed (the drain finishes it).
async fn deliver_through_rules(
    github: &MockServer,
    rules: &str,
    event: &str,
    fixture_path: &str,
    id: &str,
    extra: &[(&str, &str)],
) {
    let (app, _dir) = spawn_rules_app(github, rules, extra).await;
    let response = app.webhook(event, id, fixture(fixture_path)).send().await.expect("sent");
    assert_eq!(response.status().as_u16(), 202);
    app.stop().await;
}

/// Issue 1's comments on `github`: a POST creates one (recorded, in the
/// returned list), a GET lists those made, so a retry can find its mark.
async fn mount_comments(github: &MockServer) -> Arc<Mutex<Vec<Value>>> {
    let comments: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let record = comments.clone();
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(move |request: &Request| {
            record.lock().expect("lock").push(serde_json::from_slice(&request.body).expect("json"));
            ResponseTemplate::new(201).set_body_json(json!({"id": 1}))
        })
        .mount(github)
        .await;
    let listed = comments.clone();
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(move |_: &Request| {
            ResponseTemplate::new(200).set_body_json(Value::Array(listed.lock().expect("lock").clone()))
        })
        .mount(github)
        .await;
    comments
}

async fn expect_call(github: &MockServer, verb: &str, url_path: &str, body: Value) {
    Mock::given(method(verb))
        .and(path(url_path))
        .and(header("authorization", format!("Bearer {TEST_TOKEN}").as_str()))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({})))
        .expect(1)
        .mount(github)
        .await;
}

const REPO: &str = "/repos/Codertocat/Hello-World";
const PR_HEAD: &str = "ec26c3e57ca3a959ca5aad62de7213c562f8c821";
const PUSH_AFTER: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";

#[tokio::test]
async fn issue_actions_make_exactly_the_expected_requests() {
    let github = MockServer::start().await;
    let rules = r#"
        [[rule]]
        name = "triage"
        on = "issues.opened"
        [[rule.actions]]
        comment = "Thanks @{{ sender.login }} for #{{ issue.number }}"
        [[rule.actions]]
        add_labels = ["triage", "from-{{ sender.login }}"]
        [[rule.actions]]
        remove_labels = ["needs info"]
        [[rule.actions]]
        assign = ["{{ repository.owner.login }}"]
        [[rule.actions]]
        close = true
        [[rule.actions]]
        reopen = true
    "#;
    let id = "11111111-1111-1111-1111-111111111111";
    let mark = format!("<!-- webhookd delivery={id} rule=triage action=0 -->");
    expect_call(
        &github,
        "POST",
        &format!("{REPO}/issues/1/comments"),
        json!({"body": format!("Thanks @Codertocat for #1\n\n{mark}")}),
    )
    .await;
    expect_call(&github, "POST", &format!("{REPO}/issues/1/labels"), json!({"labels": ["triage", "from-Codertocat"]}))
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!("{REPO}/issues/1/labels/needs%20info")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Label does not exist"})))
        .expect(1)
        .mount(&github)
        .await;
    expect_call(&github, "POST", &format!("{REPO}/issues/1/assignees"), json!({"assignees": ["Codertocat"]})).await;
    expect_call(&github, "PATCH", &format!("{REPO}/issues/1"), json!({"state": "closed"})).await;
    expect_call(&github, "PATCH", &format!("{REPO}/issues/1"), json!({"state": "open"})).await;
    deliver_through_rules(&github, rules, "issues", "issues/opened.payload.json", id, &[]).await;
    github.verify().await;
}

#[tokio::test]
async fn pull_request_and_commit_actions_make_exactly_the_expected_requests() {
    let github = MockServer::start().await;
    let rules = r#"
        [[rule]]
        name = "pr"
        on = "pull_request.opened"
        [[rule.actions]]
        request_reviewers = ["octocat"]
        [[rule.actions]]
        status = { state = "pending", context = "webhookd/review", description = "PR #{{ number }} waits", target_url = "https://ci.example/{{ number }}" }
        [[rule.actions]]
        check_run = { name = "policy", conclusion = "success", title = "Policy for {{ pull_request.title }}", summary = "All good" }
        [[rule.actions]]
        dispatch = { event_type = "pr-opened", client_payload = { number = "{{ number }}", author = "{{ sender.login }}" } }
    "#;
    let id = "22222222-2222-2222-2222-222222222222";
    expect_call(&github, "POST", &format!("{REPO}/pulls/2/requested_reviewers"), json!({"reviewers": ["octocat"]}))
        .await;
    expect_call(
        &github,
        "POST",
        &format!("{REPO}/statuses/{PR_HEAD}"),
        json!({"state": "pending", "context": "webhookd/review", "description": "PR #2 waits", "target_url": "https://ci.example/2"}),
    )
    .await;
    expect_call(
        &github,
        "POST",
        &format!("{REPO}/check-runs"),
        json!({
            "name": "policy", "head_sha": PR_HEAD, "status": "completed", "conclusion": "success",
            "external_id": format!("webhookd:{id}:pr:2"),
            "output": {"title": "Policy for Update the README with new information.", "summary": "All good"}
        }),
    )
    .await;
    expect_call(
        &github,
        "POST",
        &format!("{REPO}/dispatches"),
        json!({"event_type": "pr-opened", "client_payload": {"number": "2", "author": "Codertocat"}}),
    )
    .await;
    deliver_through_rules(&github, rules, "pull_request", "pull_request/opened.payload.json", id, &[]).await;
    github.verify().await;
}

#[tokio::test]
async fn a_push_sets_a_status_on_the_pushed_commit() {
    let github = MockServer::start().await;
    let rules = r#"
        [[rule]]
        name = "push"
        on = "push"
        branch = "master"
        [[rule.actions]]
        status = { state = "success", context = "webhookd/push" }
    "#;
    expect_call(
        &github,
        "POST",
        &format!("{REPO}/statuses/{PUSH_AFTER}"),
        json!({"state": "success", "context": "webhookd/push"}),
    )
    .await;
    deliver_through_rules(&github, rules, "push", "push/with-new-branch.payload.json", "33333333-3333", &[]).await;
    github.verify().await;
}

#[tokio::test]
async fn forward_posts_the_delivery_unchanged_with_a_fresh_signature() {
    let github = MockServer::start().await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/github"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&receiver)
        .await;
    let rules = format!(
        r#"
        [[rule]]
        name = "audit"
        on = ["issues", "push"]
        [[rule.actions]]
        forward = {{ url = "{}/hooks/github", secret_env = "AUDIT_SECRET" }}
    "#,
        receiver.uri()
    );
    let id = "44444444-4444";
    deliver_through_rules(
        &github,
        &rules,
        "issues",
        "issues/opened.payload.json",
        id,
        &[("AUDIT_SECRET", "audit-s3cret")],
    )
    .await;
    receiver.verify().await;
    let requests = receiver.received_requests().await.expect("recording");
    let forwarded = &requests[0];
    let original = fixture("issues/opened.payload.json");
    assert_eq!(forwarded.body, original, "the body is forwarded unchanged");
    let header = |name: &str| forwarded.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    assert_eq!(header("x-github-event"), "issues");
    assert_eq!(header("x-github-delivery"), id);
    assert_eq!(header("content-type"), "application/json");
    let expected = webhookd::webhook::signature::sign(&SecretString::from("audit-s3cret"), &original);
    assert_eq!(header("x-hub-signature-256"), expected, "signed with the rule's own secret");
    assert!(github.received_requests().await.expect("recording").is_empty(), "forward is not a GitHub call");
}

#[tokio::test]
async fn filters_keep_other_deliveries_out() {
    let github = MockServer::start().await;
    Mock::given(any()).respond_with(ResponseTemplate::new(201)).expect(0).mount(&github).await;
    for (rules, event, payload) in [
        // Another repository.
        ("repository = \"octo-org/*\"\non = \"issues.opened\"", "issues", "issues/opened.payload.json"),
        // Another organisation.
        ("organization = \"octo-org\"\non = \"issues.opened\"", "issues", "issues/opened.payload.json"),
        // Another sender.
        ("sender = \"dependabot*\"\non = \"issues.opened\"", "issues", "issues/opened.payload.json"),
        // A non-matching branch.
        ("branch = \"release/*\"\non = \"push\"", "push", "push/with-new-branch.payload.json"),
        // A false expression.
        ("if = \"issue.number > 100\"\non = \"issues.opened\"", "issues", "issues/opened.payload.json"),
        // A label that is not there.
        ("labels = [\"wontfix\"]\non = \"issues.opened\"", "issues", "issues/opened.payload.json"),
        // Drafts only.
        ("draft = true\non = \"pull_request.opened\"", "pull_request", "pull_request/opened.payload.json"),
        // Another action of the event.
        ("on = \"issues.closed\"", "issues", "issues/opened.payload.json"),
    ] {
        let rules = format!("[[rule]]\nname = \"filtered\"\n{rules}\n[[rule.actions]]\nadd_labels = [\"x\"]\n");
        deliver_through_rules(&github, &rules, event, payload, &uuid::Uuid::new_v4().to_string(), &[]).await;
    }
    // A bot sender with skip_bots: the fixture's sender made a bot.
    let mut bot: Value = serde_json::from_slice(&fixture("issues/opened.payload.json")).expect("json");
    bot["sender"]["login"] = json!("renovate[bot]");
    bot["sender"]["type"] = json!("Bot");
    let (_rules_dir, file) = rules_file(
        "[[rule]]\nname = \"humans\"\non = \"issues\"\nskip_bots = true\n[[rule.actions]]\nadd_labels = [\"x\"]\n",
    );
    let env = Env::from_pairs([("WEBHOOKD_RULES", file.as_str())]);
    let handler = Arc::new(RulesHandler::load(file.clone().into(), &env, Arc::new(Metrics::new())).expect("load"));
    let api = github.uri();
    let app = spawn_app(&[("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN), ("WEBHOOKD_GITHUB_API_URL", &api)], handler).await;
    assert_eq!(app.post_webhook("issues", serde_json::to_vec(&bot).expect("json")).await.status().as_u16(), 202);
    app.stop().await;
    github.verify().await;
}

#[tokio::test]
async fn a_template_failing_at_run_time_fails_its_action_only() {
    let github = MockServer::start().await;
    expect_call(&github, "POST", &format!("{REPO}/issues/1/labels"), json!({"labels": ["still-runs"]})).await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(ResponseTemplate::new(201))
        .expect(0)
        .mount(&github)
        .await;
    let rules = r#"
        [[rule]]
        name = "broken template"
        on = "issues.opened"
        [[rule.actions]]
        comment = "Severity: {{ issue.severity }}"
        [[rule.actions]]
        add_labels = ["still-runs"]
    "#;
    deliver_through_rules(&github, rules, "issues", "issues/opened.payload.json", "55555555-5555", &[]).await;
    github.verify().await;
}

#[tokio::test]
async fn a_retried_delivery_does_not_comment_twice() {
    let github = MockServer::start().await;
    // GitHub creates the comment, then the answer is lost (502).
    let created: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
    let record = created.clone();
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).expect("json");
            record.lock().expect("lock").push(body);
            ResponseTemplate::new(502)
        })
        .mount(&github)
        .await;
    let listed = created.clone();
    let (looked, mut looked_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(move |_: &Request| {
            let _ = looked.send(());
            ResponseTemplate::new(200).set_body_json(Value::Array(listed.lock().expect("lock").clone()))
        })
        .mount(&github)
        .await;
    let (app, _dir) = spawn_rules_app(
        &github,
        "[[rule]]\nname = \"welcome\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"Welcome!\"\n",
        &[("WEBHOOKD_RETRY_BACKOFF", "50ms")],
    )
    .await;
    assert_eq!(app.post_webhook("issues", fixture("issues/opened.payload.json")).await.status().as_u16(), 202);
    // The second attempt looks for the first one's comment...
    tokio::time::timeout(WAIT, looked_rx.recv()).await.expect("the retry came in time").expect("open");
    // ...and the drain lets it finish.
    app.stop().await;
    let posts = created.lock().expect("lock").clone();
    assert_eq!(posts.len(), 1, "the retry found the first comment and did not post again: {posts:?}");
    assert!(
        posts[0]["body"].as_str().expect("body").contains("<!-- webhookd delivery="),
        "the comment carries its mark"
    );
}

/// A rule's GitHub call meets a rate limit longer than a request may wait:
/// the delivery is deferred (no attempt spent, the worker freed), runs again
/// once the pause is over, finds its own comment by its mark and only does
/// what is left.
#[tokio::test]
async fn a_rate_limited_rule_is_deferred_and_resumes_without_repeating_its_comment() {
    let github = MockServer::start().await;
    let comments = mount_comments(&github).await;
    // The first label call meets a secondary limit of 4 s (past the client's
    // in-request wait); later ones succeed.
    let (labelled, mut labelled_rx) = tokio::sync::mpsc::unbounded_channel::<std::time::Instant>();
    let label_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = label_calls.clone();
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/labels")))
        .respond_with(move |_: &Request| {
            let _ = labelled.send(std::time::Instant::now());
            if counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                ResponseTemplate::new(403)
                    .insert_header("retry-after", "4")
                    .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}))
            } else {
                ResponseTemplate::new(200).set_body_json(json!([]))
            }
        })
        .mount(&github)
        .await;
    let (app, _dir) = spawn_rules_app(
        &github,
        "[[rule]]\nname = \"welcome\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"Welcome!\"\n[[rule.actions]]\nadd_labels = [\"triage\"]\n",
        &[("WEBHOOKD_MAX_ATTEMPTS", "1")],
    )
    .await;
    assert_eq!(app.post_webhook("issues", fixture("issues/opened.payload.json")).await.status().as_u16(), 202);
    let limited_at = tokio::time::timeout(WAIT, labelled_rx.recv()).await.expect("first label call").expect("open");
    let resumed_at = tokio::time::timeout(WAIT, labelled_rx.recv()).await.expect("resumed in time").expect("open");
    assert!(
        resumed_at - limited_at >= std::time::Duration::from_secs(4),
        "resumed after {:?}, before the pause ended",
        resumed_at - limited_at
    );
    let data = app.data.clone();
    let metrics = app.metrics.clone();
    app.stop().await;
    assert_eq!(comments.lock().expect("lock").len(), 1, "the comment was not posted again");
    assert_eq!(label_calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(metrics.deliveries_processed.with_label_values(&["issues", "deferred"]).get(), 1);
    // With WEBHOOKD_MAX_ATTEMPTS=1, a spent attempt would have made it dead.
    let conn = webhookd::queue::sqlite::admin::open(&data.path().join("webhookd.db")).expect("open store");
    let done = webhookd::queue::sqlite::admin::list(&conn, Some("done"), None, 10).expect("list");
    assert_eq!(done.iter().map(|r| r.attempts).collect::<Vec<_>>(), vec![1], "done on its one attempt");
}

/// Past the content budget (80 comments a minute), a delivery whose rule
/// also labels is deferred before any of its actions: its labels are not
/// added again each time a token frees and a worker takes it up.
#[tokio::test]
async fn past_the_content_budget_a_delivery_defers_before_repeating_its_other_actions() {
    const DELIVERIES: u64 = 83;
    let github = MockServer::start().await;
    let count = |counter: &Arc<std::sync::atomic::AtomicUsize>, status: u16| {
        let counter = counter.clone();
        move |_: &Request| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(status).set_body_json(json!({"id": 1}))
        }
    };
    let labels = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let comments = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(r"/issues/\d+/labels$"))
        .respond_with(count(&labels, 200))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(r"/issues/\d+/comments$"))
        .respond_with(count(&comments, 201))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(r"/issues/\d+/comments$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&github)
        .await;
    let (app, _dir) = spawn_rules_app(
        &github,
        "[[rule]]\nname = \"welcome\"\non = \"issues.opened\"\n[[rule.actions]]\nadd_labels = [\"triage\"]\n[[rule.actions]]\ncomment = \"Welcome!\"\n",
        &[("WEBHOOKD_WORKERS", "8")],
    )
    .await;
    for number in 1..=DELIVERIES {
        assert_eq!(app.post_webhook("issues", issue_body(number)).await.status().as_u16(), 202);
    }
    // 80 at once, then one every 0.75 s: the last three within a few seconds.
    let deadline = std::time::Instant::now() + WAIT;
    while comments.load(std::sync::atomic::Ordering::SeqCst) < DELIVERIES as usize {
        assert!(std::time::Instant::now() < deadline, "only {comments:?} comments in time");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let metrics = app.metrics.clone();
    app.stop().await;
    assert_eq!(comments.load(std::sync::atomic::Ordering::SeqCst), DELIVERIES as usize);
    assert_eq!(
        labels.load(std::sync::atomic::Ordering::SeqCst),
        DELIVERIES as usize,
        "labels added again on a deferral"
    );
    assert!(
        metrics.deliveries_processed.with_label_values(&["issues", "deferred"]).get() >= 1,
        "the budget deferred some"
    );
}

#[tokio::test]
async fn rules_test_prints_the_calls_and_sends_nothing() {
    let (_dir, file) = rules_file(
        "[[rule]]\nname = \"triage\"\non = \"issues.opened\"\n[[rule.actions]]\nadd_labels = [\"triage\"]\n\n[[rule]]\nname = \"prs\"\non = \"pull_request\"\n[[rule.actions]]\nclose = true\n",
    );
    let payload = fixtures_dir().join("issues/opened.payload.json");
    let (code, out) = run_webhookd(
        &["rules", "test", "--event", "issues", payload.to_str().expect("utf8")],
        &[("WEBHOOKD_RULES", &file)],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(r#"add_labels: POST /repos/Codertocat/Hello-World/issues/1/labels {"labels":["triage"]}"#),
        "{out}"
    );
    assert!(out.contains(r#"rule "prs": no match"#), "{out}");
}

#[tokio::test]
async fn check_reports_each_kind_of_mistake_with_line_and_column() {
    for (rules, line_column, words) in [
        (
            "[[rule]]\nname = \"a\"\non = \"push\"\nrepo = \"x\"\n[[rule.actions]]\nclose = true\n",
            ":4:1:",
            "unknown field `repo`",
        ),
        (
            "[[rule]]\nname = \"a\"\non = \"push\"\n[[rule.actions]]\ncommment = \"x\"\n",
            ":5:1:",
            "unknown variant `commment`",
        ),
        (
            "[[rule]]\nname = \"a\"\non = \"push\"\n[[rule.actions]]\nadd_labels = \"bug\"\n",
            ":5:14:",
            "expected a sequence",
        ),
        (
            "[[rule]]\nname = \"a\"\non = \"push\"\nbranch = \"a/[b\"\n[[rule.actions]]\nclose = true\n",
            ":4:10:",
            "glob",
        ),
        ("[[rule]]\nname = \"a\"\non = \"push\"\n[[rule.actions]]\ncomment = \"{{ x \"\n", ":5:11:", "template"),
        ("[[rule]]\nname = \"a\"\non = \"push\"\nif = \"a >\"\n[[rule.actions]]\nclose = true\n", ":4:6:", "`if`"),
        (
            "[[rule]]\nname = \"a\"\non = \"push\"\n[[rule.actions]]\nforward = { url = \"https://x\" }\n",
            ":4:1:",
            "secret_env",
        ),
    ] {
        let (_dir, file) = rules_file(rules);
        let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_RULES", &file)]).await;
        assert_eq!(code, 2, "{out}");
        assert!(
            out.contains(&format!("{file}{line_column}")) && out.contains(words),
            "expected {line_column} {words:?}:\n{out}"
        );
    }
    let (_dir, file) = rules_file(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/rules.toml")).expect("example"),
    );
    let (code, out) = run_webhookd(&["check"], &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_RULES", &file)]).await;
    assert_eq!(code, 0, "examples/rules.toml must pass check: {out}");
}

#[tokio::test]
async fn sighup_with_a_broken_file_keeps_the_old_rules() {
    let github = MockServer::start().await;
    let bodies: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let record = bodies.clone();
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).expect("json");
            let text = body["body"].as_str().unwrap_or("").lines().next().unwrap_or("").to_owned();
            record.lock().expect("lock").push(text);
            ResponseTemplate::new(201).set_body_json(json!({}))
        })
        .mount(&github)
        .await;
    let rules_for = |version: &str| {
        format!("[[rule]]\nname = \"r\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"{version}\"\n")
    };
    let (_dir, file) = rules_file(&rules_for("v1"));
    let api = github.uri();
    let mut daemon = Daemon::start(
        &webhookd_bin(),
        &[
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", &api),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
            ("WEBHOOKD_RULES", &file),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let deliver = |address: String| {
        let http = http.clone();
        async move {
            let id = uuid::Uuid::new_v4().to_string();
            signed_delivery(&http, &address, TEST_SECRET, "issues", &id, fixture("issues/opened.payload.json"))
                .send()
                .await
                .expect("sent")
                .status()
                .as_u16()
        }
    };
    assert_eq!(deliver(daemon.address.clone()).await, 202);
    daemon.wait_for_line("rule matched").await;

    std::fs::write(
        &file,
        "[[rule]]\nname = \"r\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"{{ broken\"\n",
    )
    .expect("write");
    daemon.signal(Signal::SIGHUP);
    let refused = daemon.wait_for_line("reload refused").await;
    assert!(refused.contains("rules.toml:5:11"), "the refusal says where: {refused}");
    assert_eq!(deliver(daemon.address.clone()).await, 202);
    daemon.wait_for_line("rule matched").await;

    std::fs::write(&file, rules_for("v2")).expect("write");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for_line("\"summary\":\"1 rules\"").await;
    assert_eq!(deliver(daemon.address.clone()).await, 202);
    daemon.wait_for_line("rule matched").await;

    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
    assert_eq!(*bodies.lock().expect("lock"), ["v1", "v1", "v2"], "the broken file was refused, the good one taken");
}

#[tokio::test]
async fn a_replayed_delivery_does_not_comment_again() {
    let github = MockServer::start().await;
    let created = mount_comments(&github).await;
    // The label action fails for good, so the delivery ends dead after the comment was made.
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/1/labels")))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"message": "Validation Failed"})))
        .mount(&github)
        .await;
    let (_dir, file) = rules_file(
        "[[rule]]\nname = \"r\"\non = \"issues.opened\"\n[[rule.actions]]\ncomment = \"hello\"\n[[rule.actions]]\nadd_labels = [\"x\"]\n",
    );
    let env = Env::from_pairs([("WEBHOOKD_RULES", file.as_str())]);
    let api = github.uri();
    let data = Arc::new(tempfile::tempdir().expect("data"));
    let store = format!("sqlite:{}", data.path().join("webhookd.db").display());
    let handler = Arc::new(RulesHandler::load(file.clone().into(), &env, Arc::new(Metrics::new())).expect("load"));
    let vars = [("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN), ("WEBHOOKD_GITHUB_API_URL", api.as_str())];
    let app = spawn_app_in(data.clone(), &vars, handler).await;
    let id = "77777777-7777";
    assert_eq!(
        app.webhook("issues", id, fixture("issues/opened.payload.json")).send().await.expect("sent").status().as_u16(),
        202
    );
    app.stop().await;
    let (_, dead) = run_webhookd(&["deliveries", "list", "--status", "dead"], &[("WEBHOOKD_STORE", &store)]).await;
    assert!(dead.contains(id), "{dead}");

    let handler = Arc::new(RulesHandler::load(file.clone().into(), &env, Arc::new(Metrics::new())).expect("load"));
    let app = spawn_app_in(data.clone(), &vars, handler).await;
    let (looked, mut looked_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/issues/1/comments")))
        .respond_with({
            let listed = created.clone();
            move |_: &Request| {
                let _ = looked.send(());
                ResponseTemplate::new(200).set_body_json(Value::Array(listed.lock().expect("lock").clone()))
            }
        })
        .with_priority(1)
        .mount(&github)
        .await;
    let (code, out) = run_webhookd(&["deliveries", "replay", id], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    tokio::time::timeout(WAIT, looked_rx.recv()).await.expect("the replay looked for its comment").expect("open");
    app.stop().await;
    assert_eq!(created.lock().expect("lock").len(), 1, "the replay did not post the comment again");
}
