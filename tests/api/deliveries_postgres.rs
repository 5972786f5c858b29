//! `webhookd deliveries` against the PostgreSQL store: a real `webhookd
//! serve` stores deliveries (one ends dead), then the commands list, show,
//! replay (announcing it, so a running instance picks it up; never touching
//! a delivery another instance holds) and prune them. An unreachable server
//! exits 1 naming the host, never the password.

use nix::sys::signal::Signal;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::postgres::PgListener;
use tokio::sync::mpsc;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::helpers::*;
use crate::helpers::{TestDatabase, test_database};
use crate::process::*;

const LABELS_1: &str = "/repos/Codertocat/Hello-World/issues/1/labels";
const LABELS_2: &str = "/repos/Codertocat/Hello-World/issues/2/labels";

/// Labelling issue 1 succeeds; issue 2 fails for good (422), so its
/// delivery ends dead.
async fn github() -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(LABELS_1))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([{ "name": "seen" }])))
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path(LABELS_2))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({ "message": "Validation Failed" })))
        .mount(&github)
        .await;
    github
}

/// `webhookd serve` on the database `db`, labelling every opened issue on `github`.
async fn serve(db: &TestDatabase, github: &MockServer, rules: &tempfile::TempDir) -> Daemon {
    let rules_file = rules.path().join("rules.toml");
    std::fs::write(
        &rules_file,
        "[[rule]]\nname = \"label\"\non = \"issues.opened\"\n[[rule.actions]]\nadd_labels = [\"seen\"]\n",
    )
    .expect("write rules");
    let api = github.uri();
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_STORE", db.url.as_str()),
        ("WEBHOOKD_RULES", rules_file.to_str().expect("utf8")),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", api.as_str()),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
    ];
    let workdir = std::sync::Arc::new(tempfile::tempdir().expect("workdir"));
    Daemon::start_command(workdir, &webhookd_bin(), &["serve"], &env).await
}

async fn stop(mut daemon: Daemon) {
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
}

/// A fresh database holding three finished deliveries, stored and processed
/// by a real daemon: `[a (issue 1, done), b (issue 2, dead), c (issue 1, done)]`.
async fn three_deliveries() -> Option<(TestDatabase, [String; 3])> {
    let db = test_database().await?;
    let github = github().await;
    let rules = tempfile::tempdir().expect("rules dir");
    let daemon = serve(&db, &github, &rules).await;
    let http = reqwest::Client::new();
    let ids = ["a", "b", "c"].map(|name| format!("{name}-{}", uuid::Uuid::new_v4()));
    for (id, issue) in ids.iter().zip([1, 2, 1]) {
        let sent = signed_delivery(&http, &daemon.address, TEST_SECRET, "issues", id, issue_body(issue));
        assert_eq!(sent.send().await.expect("sent").status().as_u16(), 202);
    }
    // The drain processes every delivery answered 202 before the exit.
    stop(daemon).await;
    Some((db, ids))
}

async fn deliveries(db: &TestDatabase, args: &[&str]) -> (i32, String) {
    let mut all = vec!["deliveries"];
    all.extend_from_slice(args);
    run_webhookd(&all, &[("WEBHOOKD_STORE", db.url.as_str())]).await
}

async fn deliveries_json(db: &TestDatabase, args: &[&str]) -> Value {
    let (code, out) = deliveries(db, args).await;
    assert_eq!(code, 0, "{args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} prints JSON ({e}): {out}"))
}

fn ids_of(rows: &Value) -> Vec<&str> {
    rows.as_array().expect("an array").iter().map(|r| r["delivery_id"].as_str().expect("id")).collect()
}

#[tokio::test]
async fn postgres_list_and_show_read_what_the_daemon_stored() {
    let Some((db, [a, b, c])) = three_deliveries().await else { return };

    let all = deliveries_json(&db, &["list", "--json"]).await;
    assert_eq!(ids_of(&all), [&c, &b, &a], "newest first: {all}");
    let states: Vec<&str> = all.as_array().expect("rows").iter().map(|r| r["state"].as_str().expect("state")).collect();
    assert_eq!(states, ["done", "dead", "done"], "{all}");

    let dead = deliveries_json(&db, &["list", "--status", "dead", "--json"]).await;
    assert_eq!(ids_of(&dead), [&b], "{dead}");
    assert_eq!(dead[0]["attempts"], 1, "a permanent failure is not retried: {dead}");
    assert!(dead[0]["last_error"].as_str().expect("an error").contains("422"), "{dead}");
    assert_eq!(ids_of(&deliveries_json(&db, &["list", "--event", "push", "--json"]).await), Vec::<&str>::new());
    assert_eq!(ids_of(&deliveries_json(&db, &["list", "--event", "issues", "--limit", "1", "--json"]).await), [&c]);
    let (code, table) = deliveries(&db, &["list"]).await;
    assert_eq!(code, 0, "{table}");
    assert!(table.starts_with("DELIVERY") && table.contains(&a) && table.contains("issues.opened"), "{table}");

    let shown = deliveries_json(&db, &["show", &a, "--json"]).await;
    assert_eq!((shown["delivery_id"].as_str(), shown["state"].as_str()), (Some(a.as_str()), Some("done")), "{shown}");
    assert_eq!((shown["event"].as_str(), shown["action"].as_str()), (Some("issues"), Some("opened")), "{shown}");
    assert_eq!((shown["attempts"].as_u64(), shown["content_kind"].as_str()), (Some(1), Some("json")), "{shown}");
    assert!(shown["finished_at"].as_i64() >= shown["received_at"].as_i64(), "{shown}");
    assert_eq!(shown["payload"]["issue"]["number"], 1, "the stored body reads back: {shown}");
    assert!(shown.get("owner").is_none(), "no instance holds a finished delivery: {shown}");
    let (code, text) = deliveries(&db, &["show", &b]).await;
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("state         dead") && text.contains("422"), "{text}");

    let (code, out) = deliveries(&db, &["show", "no-such-delivery"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no delivery \"no-such-delivery\""), "{out}");
}

#[tokio::test]
async fn postgres_replay_wakes_a_running_instance_and_leaves_held_deliveries_alone() {
    let Some((db, [a, b, c])) = three_deliveries().await else { return };
    let github = github().await;
    // Issue 2 can be labelled now; the call is reported.
    let (labelled, mut labelled_rx) = mpsc::unbounded_channel();
    Mock::given(method("POST"))
        .and(path(LABELS_2))
        .respond_with(move |_: &Request| {
            let _ = labelled.send(());
            ResponseTemplate::new(200).set_body_json(json!([{ "name": "seen" }]))
        })
        .with_priority(1)
        .mount(&github)
        .await;
    let rules = tempfile::tempdir().expect("rules dir");
    let daemon = serve(&db, &github, &rules).await;
    let mut listener = PgListener::connect(&db.url).await.expect("listen");
    listener.listen("webhookd_queued").await.expect("LISTEN");

    let (code, out) = deliveries(&db, &["replay", &b]).await;
    assert_eq!((code, out.trim()), (0, "1 deliveries queued again"), "{out}");
    let woken = tokio::time::timeout(WAIT, listener.recv()).await.expect("announced in time").expect("notification");
    assert_eq!(woken.channel(), "webhookd_queued");
    tokio::time::timeout(WAIT, labelled_rx.recv()).await.expect("the instance ran the replay").expect("open");
    stop(daemon).await;
    let shown = deliveries_json(&db, &["show", &b, "--json"]).await;
    assert_eq!((shown["state"].as_str(), shown["attempts"].as_u64()), (Some("done"), Some(1)), "{shown}");
    assert_eq!(shown["last_error"], Value::Null, "{shown}");

    // Another instance holds a: a replay must not take it from it.
    let mut conn = db.connect().await;
    sqlx::query(
        "UPDATE webhookd_deliveries SET state = 'running', owner = 'elsewhere:7:0', lease_token = 42,
                lease_until = webhookd_now_ms() + 600000, finished_at = NULL
         WHERE delivery_id = $1",
    )
    .bind(&a)
    .execute(&mut conn)
    .await
    .expect("hold a");
    let (code, out) = deliveries(&db, &["replay", &a, "no-such-delivery"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0 deliveries queued again"), "{out}");
    assert!(out.contains(&format!("running now, left alone (replay once it has finished): {a}")), "{out}");
    assert!(out.contains("not in the store: no-such-delivery"), "{out}");
    let held =
        sqlx::query("SELECT state, owner, lease_token, attempts FROM webhookd_deliveries WHERE delivery_id = $1")
            .bind(&a)
            .fetch_one(&mut conn)
            .await
            .expect("a");
    let held: (String, String, i64, i32) =
        (held.get("state"), held.get("owner"), held.get("lease_token"), held.get("attempts"));
    assert_eq!(held, ("running".into(), "elsewhere:7:0".into(), 42, 1), "the held delivery was touched");
    let (code, text) = deliveries(&db, &["show", &a]).await;
    assert!(code == 0 && text.contains("held by       elsewhere:7:0"), "{text}");

    // Every done delivery: b and c, not the held a.
    let (code, out) = deliveries(&db, &["replay", "--status", "done"]).await;
    assert_eq!((code, out.trim()), (0, "2 done deliveries queued again"), "{out}");
    let queued = deliveries_json(&db, &["list", "--status", "queued", "--json"]).await;
    assert_eq!(ids_of(&queued), [&c, &b], "{queued}");
    assert!(queued.as_array().expect("rows").iter().all(|r| r["attempts"] == 0 && r["last_error"].is_null()));
}

#[tokio::test]
async fn postgres_prune_deletes_only_finished_deliveries_past_the_retention() {
    let Some((db, [a, b, c])) = three_deliveries().await else { return };
    let prune = |retention: &'static str| {
        let url = db.url.clone();
        async move {
            run_webhookd(
                &["deliveries", "prune"],
                &[("WEBHOOKD_STORE", url.as_str()), ("WEBHOOKD_RETENTION", retention)],
            )
            .await
        }
    };
    let (code, out) = prune("1h").await;
    assert_eq!((code, out.trim()), (0, "0 finished deliveries older than 1h deleted"), "{out}");

    // a waits again: not finished, so never pruned.
    let (code, out) = deliveries(&db, &["replay", &a]).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = prune("0s").await;
    assert_eq!((code, out.trim()), (0, "2 finished deliveries older than 0s deleted"), "{out}");
    let left = deliveries_json(&db, &["list", "--json"]).await;
    assert_eq!(ids_of(&left), [&a], "{left}");
    assert_eq!(left[0]["state"], "queued");
    for gone in [&b, &c] {
        assert_eq!(deliveries(&db, &["show", gone]).await.0, 1, "{gone} was pruned");
    }
}

#[tokio::test]
async fn postgres_database_webhookd_never_used_is_refused_and_left_as_it_was() {
    let Some(db) = test_database().await else { return };
    for args in [&["list"][..], &["replay", "x"], &["prune"]] {
        let (code, out) = deliveries(&db, args).await;
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains("not a webhookd database"), "{args:?}: {out}");
    }
    let mut conn = db.connect().await;
    let tables: i64 = sqlx::query("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'webhookd%'")
        .fetch_one(&mut conn)
        .await
        .expect("count")
        .get(0);
    assert_eq!(tables, 0, "nothing was created");
}

#[tokio::test]
async fn an_unreachable_postgres_server_exits_one_naming_the_host_not_the_password() {
    // Nothing listens on port 1.
    let store = "postgres://webhookd:pg-pass-7c1e@127.0.0.1:1/webhookd";
    for args in [&["deliveries", "list"][..], &["deliveries", "replay", "x"], &["deliveries", "prune"]] {
        let (code, out) = run_webhookd(args, &[("WEBHOOKD_STORE", store)]).await;
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(out.contains("cannot reach PostgreSQL at 127.0.0.1:1"), "{args:?}: {out}");
        assert!(!out.contains("pg-pass-7c1e"), "the password leaked: {out}");
    }
}
