//! The monitoring files against the real daemon: every metric name the
//! Grafana dashboard (`deploy/grafana/webhookd.json`) and the alert rules
//! (`deploy/prometheus/alerts.yml`) use is one `/metrics` exposes, and every
//! metric it exposes is documented in `docs/metrics.md`. The daemon is
//! driven (a rule commenting through a mock GitHub that rate-limits once, a
//! bad signature, a duplicate, a recovery pass) until every family has a
//! series: labelled families are not exposed before they have one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::{TEST_SECRET, TEST_TOKEN, WAIT, issue_body, signed_delivery};
use crate::process::{Daemon, webhookd_bin};

const RULES: &str = r#"
[[rule]]
name = "thank"
on = "issues.opened"
[[rule.actions]]
comment = "Thanks!"
"#;
const COMMENTS: &str = r"^/repos/Codertocat/Hello-World/issues/\d+/comments$";
const DELIVERIES: &str = "/repos/octo/app/hooks/7/deliveries";

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_file(relative)).unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
}

/// A mock GitHub that rate-limits the first comment (a secondary limit
/// longer than a request waits in place: the delivery is deferred), fails
/// the first read of the hook's deliveries (the client retries it), and
/// reports a quota on every answer.
async fn mock_github() -> MockServer {
    let github = MockServer::start().await;
    let quota = |status: u16| ResponseTemplate::new(status).insert_header("x-ratelimit-remaining", "4321");
    Mock::given(method("POST"))
        .and(path_regex(COMMENTS))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "4"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(COMMENTS))
        .respond_with(quota(201).set_body_json(json!({"id": 1})))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(COMMENTS))
        .respond_with(quota(200).set_body_json(json!([])))
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path(DELIVERIES))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path(DELIVERIES))
        .respond_with(quota(200).set_body_json(json!([])))
        .mount(&github)
        .await;
    github
}

async fn scrape(http: &reqwest::Client, daemon: &Daemon) -> String {
    let answer = http.get(format!("{}/metrics", daemon.address)).send().await.expect("metrics");
    assert_eq!(answer.status().as_u16(), 200);
    answer.text().await.expect("metrics text")
}

/// Scrapes until every needle is in the exposition (each is a sample line's
/// start); returns it.
async fn scrape_until(http: &reqwest::Client, daemon: &Daemon, needles: &[&str]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = scrape(http, daemon).await;
        let missing: Vec<_> = needles.iter().filter(|n| !text.lines().any(|l| l.starts_with(**n))).collect();
        if missing.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "never exposed: {missing:?}\n{text}\n{}", daemon.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Metric families in an exposition, by name, with their type.
fn families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_owned(), words.next()?.to_owned()))
        })
        .collect()
}

/// Whether `name` is a series of one of `families`: a family itself, or the
/// `_bucket`, `_sum` or `_count` series of a histogram (`_sum`, `_count` of a
/// summary).
fn is_exposed(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    ["_bucket", "_sum", "_count"].iter().any(|suffix| {
        name.strip_suffix(suffix)
            .and_then(|base| families.get(base))
            .is_some_and(|kind| kind == "histogram" || (kind == "summary" && *suffix != "_bucket"))
    })
}

/// The names starting `webhookd_` in a PromQL expression: identifiers, so
/// not inside one (`my_webhookd_x`), and not label values without the
/// prefix (`job="webhookd"`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut names = BTreeSet::new();
    for (at, _) in expr.match_indices("webhookd_") {
        if expr[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let len = expr[at..].find(|c: char| !is_ident(c)).unwrap_or(expr.len() - at);
        names.insert(expr[at..at + len].to_owned());
    }
    names
}

/// Every metric name in the dashboard's queries: panel targets' `expr` and
/// template variables' `query` and `definition`, wherever they nest.
fn dashboard_names(dashboard: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut stack = vec![dashboard];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(fields) => {
                for (key, field) in fields {
                    match field {
                        Value::String(text) if matches!(key.as_str(), "expr" | "query" | "definition") => {
                            names.extend(metric_names(text));
                        }
                        other => stack.push(other),
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// Every metric name in the rules' `expr:` values, inline or block scalars
/// (the lines indented deeper than the key). Comments are skipped.
fn rule_names(rules: &str) -> BTreeSet<String> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let mut names = BTreeSet::new();
    let mut block: Option<usize> = None;
    for line in rules.lines() {
        let code = line.split_once('#').map_or(line, |(code, _)| code);
        if code.trim().is_empty() {
            continue;
        }
        if let Some(key_indent) = block {
            if indent(code) > key_indent {
                names.extend(metric_names(code));
                continue;
            }
            block = None;
        }
        // The key's column: `expr` of `- expr:` is right of the dash.
        let key = code.trim_start();
        let key = key.strip_prefix('-').map_or(key, str::trim_start);
        if let Some(value) = key.strip_prefix("expr:") {
            names.extend(metric_names(value));
            block = Some(code.len() - key.len());
        }
    }
    names
}

#[test]
fn names_are_extracted_from_promql_only_where_they_are_metrics() {
    let expr = r#"sum by (le) (rate(webhookd_a_bucket{job="webhookd", x="webhookd_label"}[5m])) / my_webhookd_b + webhookd_c:rate"#;
    let names: Vec<_> = metric_names(expr).into_iter().collect();
    assert_eq!(names, ["webhookd_a_bucket", "webhookd_c:rate", "webhookd_label"], "a quoted value is kept: stricter");
    let rules = "groups:\n  - rules:\n      - expr: webhookd_x == 0 # webhookd_comment\n        for: 1m\n      - expr: >-\n          webhookd_y\n          or webhookd_z\n        labels: {a: webhookd_not_expr}\n";
    let names: Vec<_> = rule_names(rules).into_iter().collect();
    assert_eq!(names, ["webhookd_x", "webhookd_y", "webhookd_z"]);
    let families = BTreeMap::from([
        ("webhookd_h".to_owned(), "histogram".to_owned()),
        ("webhookd_c".to_owned(), "counter".to_owned()),
    ]);
    assert!(is_exposed("webhookd_h_bucket", &families) && is_exposed("webhookd_c", &families));
    assert!(!is_exposed("webhookd_c_bucket", &families) && !is_exposed("webhookd_nope", &families));
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exposed_metrics_and_every_exposed_metric_is_documented() {
    let github = mock_github().await;
    let workdir = tempfile::tempdir().expect("workdir");
    let rules = workdir.path().join("rules.toml");
    std::fs::write(&rules, RULES).expect("write rules");
    let env = [
        ("WEBHOOKD_SECRET", TEST_SECRET),
        ("WEBHOOKD_RULES", rules.to_str().expect("utf-8 path")),
        ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
        ("WEBHOOKD_GITHUB_API_URL", &github.uri()),
        ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
        ("WEBHOOKD_RECOVERY_HOOKS", "repo:octo/app:7"),
    ];
    let daemon = Daemon::start(&webhookd_bin(), &env).await;
    let http = reqwest::Client::new();

    // The recovery pass at start, its first read retried; before any
    // delivery, whose rate limit would pause it.
    scrape_until(
        &http,
        &daemon,
        &[
            r#"webhookd_recovery_runs_total{outcome="ok"} 1"#,
            r#"webhookd_github_retries_total{reason="server_error"} 1"#,
        ],
    )
    .await;

    let id = uuid::Uuid::new_v4().to_string();
    // Accepted, then answered as a duplicate.
    for expected in [202, 200] {
        let answer = signed_delivery(&http, &daemon.address, TEST_SECRET, "issues", &id, issue_body(1)).send().await;
        assert_eq!(answer.expect("sent").status().as_u16(), expected);
    }
    let forged = signed_delivery(&http, &daemon.address, "not-the-secret", "issues", "forged-1", issue_body(2));
    assert_eq!(forged.send().await.expect("sent").status().as_u16(), 401);

    // Deferred by the rate limit first, then commented once it ends.
    let exposition = scrape_until(
        &http,
        &daemon,
        &[
            r#"webhookd_deliveries_processed_total{event="issues",outcome="deferred"} 1"#,
            r#"webhookd_deliveries_processed_total{event="issues",outcome="ok"} 1"#,
            r#"webhookd_deliveries_duplicate_total{event="issues"} 1"#,
            r#"webhookd_deliveries_rejected_total{reason="signature"} 1"#,
            r#"webhookd_github_deferrals_total{credential="token"}"#,
            r#"webhookd_github_rate_limit_remaining{credential="token"} 4321"#,
            "webhookd_ready 1",
        ],
    )
    .await;
    let exposed = families(&exposition);

    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/webhookd.json")).expect("the dashboard is valid JSON");
    let from_dashboard = dashboard_names(&dashboard);
    let from_alerts = rule_names(&read("deploy/prometheus/alerts.yml"));
    // The extraction found the queries (an empty set would pass vacuously).
    assert!(from_dashboard.contains("webhookd_processing_duration_seconds_bucket"), "{from_dashboard:?}");
    assert!(from_dashboard.len() >= 20, "{from_dashboard:?}");
    assert!(from_alerts.contains("webhookd_ready") && from_alerts.len() >= 7, "{from_alerts:?}");
    for (file, names) in
        [("deploy/grafana/webhookd.json", &from_dashboard), ("deploy/prometheus/alerts.yml", &from_alerts)]
    {
        let unknown: Vec<_> = names.iter().filter(|name| !is_exposed(name, &exposed)).collect();
        assert!(unknown.is_empty(), "{file} uses metrics /metrics does not expose: {unknown:?}\n{exposition}");
    }

    let docs = read("docs/metrics.md");
    let undocumented: Vec<_> = exposed.keys().filter(|name| !docs.contains(&format!("`{name}`"))).collect();
    assert!(undocumented.is_empty(), "docs/metrics.md does not document {undocumented:?}");
}
