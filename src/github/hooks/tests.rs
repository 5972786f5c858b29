//! `hooks` against a mock GitHub: who each call runs as, paging by the
//! `Link` cursor, the installation lookup, redeliveries, errors and metrics.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use reqwest::StatusCode;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use serde_json::{Value, json};
use wiremock::matchers::{body_string, header, method, path, path_regex, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::config::{ClientRetry, GitHubCredential, GitHubSettings};
use crate::telemetry::metrics::Metrics;

const APP_ID: u64 = 42;

/// One RSA key pair for every test here: generating one takes a while.
struct AppKeys {
    private_pem: String,
    public_pem: String,
}

fn keys() -> &'static AppKeys {
    static KEYS: OnceLock<AppKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key generation");
        AppKeys {
            private_pem: key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem").to_string(),
            public_pem: key.to_public_key().to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem"),
        }
    })
}

fn client(api: &str, credential: Option<GitHubCredential>) -> (GitHub, Arc<Metrics>) {
    let settings = GitHubSettings {
        api_url: api.parse().expect("url"),
        credential,
        write_interval: Duration::ZERO,
        request_timeout: Duration::from_secs(5),
        retry: ClientRetry { attempts: 3, base: Duration::from_millis(10), budget: Duration::from_secs(5) },
        ..GitHubSettings::default()
    };
    let metrics = Arc::new(Metrics::new());
    (GitHub::new(&settings, metrics.clone()).expect("client"), metrics)
}

fn app_client(api: &str) -> (GitHub, Arc<Metrics>) {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys().private_pem.as_bytes()).expect("key");
    client(api, Some(GitHubCredential::App { app_id: APP_ID, key }))
}

fn token_client(api: &str) -> (GitHub, Arc<Metrics>) {
    client(api, Some(GitHubCredential::Token("ghp_test".to_owned().into())))
}

/// Matches a request carrying `Authorization: Bearer JWT` with a JWT the
/// App's key signed for the App, as GitHub checks it.
struct AppJwt;

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
}

impl wiremock::Match for AppJwt {
    fn matches(&self, request: &wiremock::Request) -> bool {
        let Some(jwt) = request.headers.get("authorization").and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "))
        else {
            return false;
        };
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(keys().public_pem.as_bytes()).expect("public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        jsonwebtoken::decode::<Claims>(jwt, &key, &validation).is_ok_and(|data| data.claims.iss == APP_ID.to_string())
    }
}

/// A delivery as GitHub lists it (GitHub's documented example, varied).
fn item(id: u64, status_code: u16) -> Value {
    json!({
        "id": id,
        "guid": format!("0b989ba4-242f-11e5-81e1-c7b6966d2516-{id}"),
        "delivered_at": "2019-06-03T00:57:16Z",
        "redelivery": false,
        "duration": 0.27,
        "status": if status_code == 200 { "OK".to_owned() } else { format!("Invalid HTTP Response: {status_code}") },
        "status_code": status_code,
        "event": "issues",
        "action": "opened",
        "installation_id": 123,
        "repository_id": 456,
        "throttled_at": null
    })
}

/// The exchange of installation `id`'s token: only with the App's JWT,
/// `expect`ed `times`.
async fn mount_exchange(github: &MockServer, id: u64, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!("/app/installations/{id}/access_tokens")))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "token": format!("ghs_{id}"),
            "expires_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now() + Duration::from_secs(3600)).to_string(),
        })))
        .expect(times)
        .mount(github)
        .await;
}

#[tokio::test]
async fn the_app_hook_is_read_with_the_jwt_page_by_page_following_the_link_cursor() {
    let github = MockServer::start().await;
    let next = format!("<{}/app/hook/deliveries?per_page=100&cursor=v1_2%2Bx>; rel=\"next\"", github.uri());
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(query_param("per_page", "100"))
        .and(query_param_is_missing("cursor"))
        .and(AppJwt)
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .set_body_json(json!([item(3, 200), item(2, 0)])),
        )
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(query_param("per_page", "100"))
        .and(query_param("cursor", "v1_2+x"))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([item(1, 503)])))
        .expect(1)
        .mount(&github)
        .await;
    // No installation token is involved.
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(500)).expect(0).mount(&github).await;
    let (client, _) = app_client(&github.uri());
    assert!(client.can_read(&HookSpec::App));

    let first = client.hook_deliveries(&HookSpec::App, None).await.expect("first page");
    let ids: Vec<u64> = first.items.iter().map(|d| d.id).collect();
    assert_eq!(ids, [3, 2]);
    assert_eq!(first.next.as_deref(), Some("v1_2+x"), "the cursor, decoded");
    let newest = &first.items[0];
    assert!(newest.succeeded() && !first.items[1].succeeded());
    assert_eq!((newest.event.as_str(), newest.action.as_deref()), ("issues", Some("opened")));
    assert_eq!((newest.installation_id, newest.repository_id), (Some(123), Some(456)));
    assert!(newest.guid.starts_with("0b989ba4-") && !newest.redelivery);

    let second = client.hook_deliveries(&HookSpec::App, first.next.as_deref()).await.expect("second page");
    assert_eq!(second.items.iter().map(|d| d.id).collect::<Vec<_>>(), [1]);
    assert_eq!(second.items[0].status_code, 503);
    assert_eq!(second.next, None, "the last page");
    github.verify().await;
}

#[tokio::test]
async fn a_first_page_answered_304_without_a_link_still_leads_to_the_next() {
    let github = MockServer::start().await;
    let next = format!("<{}/app/hook/deliveries?per_page=100&cursor=c2>; rel=\"next\"", github.uri());
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .and(header("if-none-match", "\"p1\""))
        .respond_with(ResponseTemplate::new(304))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("link", next.as_str())
                .insert_header("etag", "\"p1\"")
                .set_body_json(json!([item(3, 200)])),
        )
        .expect(1)
        .mount(&github)
        .await;
    let (client, _) = app_client(&github.uri());
    let fresh = client.hook_deliveries(&HookSpec::App, None).await.expect("page");
    let cached = client.hook_deliveries(&HookSpec::App, None).await.expect("page again");
    assert_eq!(cached.items.len(), 1);
    assert_eq!((fresh.next.as_deref(), cached.next.as_deref()), (Some("c2"), Some("c2")));
    github.verify().await;
}

#[tokio::test]
async fn org_and_repo_hooks_under_app_auth_run_as_their_installation_looked_up_once() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octo/hello/installation"))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 77, "account": {"login": "octo"}})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/installation"))
        .and(AppJwt)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 78})))
        .expect(1)
        .mount(&github)
        .await;
    mount_exchange(&github, 77, 1).await;
    mount_exchange(&github, 78, 1).await;
    Mock::given(method("GET"))
        .and(path_regex("(?i)^/repos/octo/hello/hooks/5/deliveries$"))
        .and(header("authorization", "Bearer ghs_77"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([item(9, 502)])))
        .expect(2)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/octo/hello/hooks/5/deliveries/9/attempts"))
        .and(header("authorization", "Bearer ghs_77"))
        .and(body_string(""))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/orgs/acme/hooks/6/deliveries/10/attempts"))
        .and(header("authorization", "Bearer ghs_78"))
        .respond_with(ResponseTemplate::new(202))
        .expect(2)
        .mount(&github)
        .await;
    let (client, metrics) = app_client(&github.uri());
    // Names are case-insensitive on GitHub: one lookup for both spellings.
    let repo = HookSpec::Repo { repo: "octo/hello".into(), hook_id: 5 };
    let same_repo = HookSpec::Repo { repo: "Octo/Hello".into(), hook_id: 5 };
    let org = HookSpec::Org { org: "acme".into(), hook_id: 6 };
    assert!(client.can_read(&repo) && client.can_read(&org));

    let page = client.hook_deliveries(&repo, None).await.expect("repo page");
    assert_eq!(page.items[0].id, 9);
    client.redeliver(&repo, 9).await.expect("redelivery");
    assert_eq!(client.installation_ids.get("repo:octo/hello"), Some(77));
    client.hook_deliveries(&same_repo, None).await.expect("repo page again");
    client.redeliver(&org, 10).await.expect("org redelivery");
    client.redeliver(&org, 10).await.expect("org redelivery again");
    github.verify().await;

    // Metric labels name no account, repository or id.
    let text = metrics.encode();
    for route in [
        "/repos/{owner}/{repo}/installation",
        "/orgs/{org}/installation",
        "/repos/{owner}/{repo}/hooks/{n}/deliveries",
        "/repos/{owner}/{repo}/hooks/{n}/deliveries/{n}/attempts",
        "/orgs/{org}/hooks/{n}/deliveries/{n}/attempts",
    ] {
        assert!(text.contains(&format!("route=\"{route}\"")), "{route} missing from:\n{text}");
    }
    for secret in ["octo", "hello", "acme", "/5/", "/9/", "77", "78"] {
        let leaked = text.lines().filter(|l| l.contains("route=")).find(|l| l.contains(secret));
        assert!(leaked.is_none(), "{secret} in {leaked:?}");
    }
}

#[tokio::test]
async fn an_installation_that_no_longer_answers_is_looked_up_again() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/installation"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 78})))
        .expect(2)
        .mount(&github)
        .await;
    mount_exchange(&github, 78, 1).await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/hooks/6/deliveries"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .expect(2)
        .mount(&github)
        .await;
    let (client, _) = app_client(&github.uri());
    let org = HookSpec::Org { org: "acme".into(), hook_id: 6 };
    for _ in 0..2 {
        let error = client.hook_deliveries(&org, None).await.expect_err("404");
        assert!(matches!(error, GitHubError::Status { status: StatusCode::NOT_FOUND, .. }), "{error}");
    }
    github.verify().await;
}

#[tokio::test]
async fn under_a_token_org_and_repo_hooks_use_it_and_the_app_hook_is_refused_unsent() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/orgs/acme/hooks/6/deliveries"))
        .and(header("authorization", "Bearer ghp_test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/hooks/5/deliveries"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"message": "Resource not accessible"})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/gone/hooks/5/deliveries"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .expect(1)
        .mount(&github)
        .await;
    let (client, _) = token_client(&github.uri());
    let org = HookSpec::Org { org: "acme".into(), hook_id: 6 };
    assert!(client.can_read(&org) && !client.can_read(&HookSpec::App));

    let page = client.hook_deliveries(&org, None).await.expect("org page");
    assert!(page.items.is_empty() && page.next.is_none());
    let refused = client.hook_deliveries(&HookSpec::Repo { repo: "o/r".into(), hook_id: 5 }, None).await;
    assert!(
        matches!(refused, Err(GitHubError::Status { status: StatusCode::FORBIDDEN, rate_limited: false, .. })),
        "{refused:?}"
    );
    let gone = client.hook_deliveries(&HookSpec::Repo { repo: "o/gone".into(), hook_id: 5 }, None).await;
    assert!(matches!(gone, Err(GitHubError::Status { status: StatusCode::NOT_FOUND, .. })), "{gone:?}");
    let app = client.hook_deliveries(&HookSpec::App, None).await.expect_err("a token cannot read the App's hook");
    assert!(matches!(app, GitHubError::AppOnly { .. }) && !app.is_retryable(), "{app}");
    assert!(app.to_string().contains("/app/hook/deliveries"), "{app}");
    github.verify().await;
}

#[tokio::test]
async fn redeliveries_are_idempotent_posts_that_spend_no_content_budget() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/hooks/5/deliveries/8/attempts"))
        .respond_with(ResponseTemplate::new(202))
        .expect(81)
        .mount(&github)
        .await;
    let (client, metrics) = token_client(&github.uri());
    let repo = HookSpec::Repo { repo: "o/r".into(), hook_id: 5 };
    // The content budget allows 80 content-creating requests a minute.
    for n in 0..81 {
        client.redeliver(&repo, 8).await.unwrap_or_else(|e| panic!("redelivery {n}: {e}"));
    }
    assert!(!metrics.encode().contains("webhookd_github_content_budget_remaining{"), "no budget token taken");
    github.verify().await;
}

#[tokio::test]
async fn a_refused_jwt_raises_the_credential_alarm_and_a_success_clears_it() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"message": "A JSON web token could not be decoded"})),
        )
        .up_to_n_times(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/app/hook/deliveries"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&github)
        .await;
    let (client, _) = app_client(&github.uri());
    let error = client.hook_deliveries(&HookSpec::App, None).await.expect_err("401");
    assert!(matches!(error, GitHubError::AppCredentials(_)) && !error.is_retryable(), "{error}");
    assert!(client.credential_alarm().problem().is_some_and(|p| p.contains("/app/hook/deliveries")));
    client.hook_deliveries(&HookSpec::App, None).await.expect("accepted");
    assert_eq!(client.credential_alarm().problem(), None);
    github.verify().await;
}

#[tokio::test]
async fn a_dry_run_reads_nothing_and_sends_nothing() {
    let github = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(500)).expect(0).mount(&github).await;
    let (client, _) = client(&github.uri(), None);
    let repo = HookSpec::Repo { repo: "o/r".into(), hook_id: 5 };
    assert!(!client.can_read(&repo) && !client.can_read(&HookSpec::App));
    let page = client.hook_deliveries(&repo, None).await.expect("dry run");
    assert!(page.items.is_empty() && page.next.is_none());
    client.redeliver(&HookSpec::App, 1).await.expect("dry run");
    github.verify().await;
}

#[test]
fn names_that_would_not_stay_one_path_segment_are_refused() {
    for repo in ["o/r", "my-org/my.repo_1", "O/R"] {
        HookSpec::Repo { repo: repo.into(), hook_id: 1 }.path().expect(repo);
    }
    for repo in ["o", "o/r/x", "/r", "o/", "o/..", "o/r?x=1", "o/r#x", "o%2Fr/x", "ö/r", &"r".repeat(101)] {
        let error = HookSpec::Repo { repo: repo.into(), hook_id: 1 }.path().expect_err(repo);
        assert!(matches!(error, GitHubError::InvalidTarget(_)), "{repo}");
    }
    for org in ["", ".", "a/b", "a b"] {
        assert!(HookSpec::Org { org: org.into(), hook_id: 1 }.path().is_err(), "{org}");
    }
    assert_eq!(HookSpec::Org { org: "acme".into(), hook_id: 7 }.path().expect("org"), "/orgs/acme/hooks/7");
    assert_eq!(HookSpec::App.path().expect("app"), "/app/hook");
}

#[test]
fn deliveries_read_as_github_writes_them() {
    let mut odd = item(4, 200);
    odd["action"] = Value::Null;
    odd["installation_id"] = Value::Null;
    odd["repository_id"] = Value::Null;
    let mut broken = item(5, 200);
    broken["status_code"] = json!("two hundred");
    let body = serde_json::to_vec(&json!([item(6, 200), odd, broken])).expect("json");
    let read = deliveries(&body).expect("page");
    assert_eq!(read.iter().map(|d| d.id).collect::<Vec<_>>(), [6, 4], "the unreadable one is skipped");
    assert_eq!((read[1].action.as_ref(), read[1].installation_id, read[1].repository_id), (None, None, None));
    assert!(deliveries(b"{\"message\": \"oops\"}").is_err(), "not a list");

    let at = read[0].delivered_at().expect("time");
    assert_eq!(at.duration_since(UNIX_EPOCH).expect("after 1970").as_secs(), 1_559_523_436);
    let mut offset = read[0].clone();
    offset.delivered_at = "2019-06-03T00:57:16+00:00".into();
    assert_eq!(offset.delivered_at(), Some(at));
    offset.delivered_at = "yesterday".into();
    assert_eq!(offset.delivered_at(), None);

    let mut attempt = read[0].clone();
    for (status, code, ok) in [
        ("OK", 200, true),
        ("OK", 0, true),
        ("Accepted", 202, true),
        ("Invalid HTTP Response: 503", 503, false),
        ("timed out", 0, false),
    ] {
        attempt.status = status.into();
        attempt.status_code = code;
        assert_eq!(attempt.succeeded(), ok, "{status} {code}");
    }
}

#[test]
fn the_cursor_is_read_from_the_next_link() {
    assert_eq!(
        cursor_of("https://api.github.com/app/hook/deliveries?per_page=100&cursor=v1_12%3D").as_deref(),
        Some("v1_12=")
    );
    assert_eq!(cursor_of("/app/hook/deliveries?cursor=abc#frag").as_deref(), Some("abc"));
    assert_eq!(cursor_of("https://api.github.com/app/hook/deliveries?page=2"), None);
    assert_eq!(cursor_of("https://api.github.com/app/hook/deliveries"), None);
}
