//! The shared GitHub client against a mock GitHub on loopback: App
//! authentication, retries, rate limits, pacing, conditional requests and
//! pagination, with faults injected by the mock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use serde_json::json;
use webhookd::config::{ClientRetry, GitHubCredential, GitHubSettings};
use webhookd::github::{GitHub, GitHubError, Reply};
use webhookd::telemetry::metrics::Metrics;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::helpers::WAIT;

const APP_ID: u64 = 42;

fn settings(api: &str, credential: Option<GitHubCredential>) -> GitHubSettings {
    GitHubSettings {
        api_url: api.parse().expect("url"),
        credential,
        concurrency: 10,
        write_interval: Duration::ZERO,
        request_timeout: Duration::from_secs(5),
        retry: ClientRetry { attempts: 4, base: Duration::from_millis(20), budget: Duration::from_secs(10) },
        ..GitHubSettings::default()
    }
}

fn client(settings: &GitHubSettings) -> GitHub {
    GitHub::new(settings, Arc::new(Metrics::new())).expect("client")
}

fn token_client(api: &str) -> GitHub {
    client(&settings(api, Some(GitHubCredential::Token("ghp_test".to_owned().into()))))
}

fn sent(reply: Reply) -> webhookd::github::GitHubResponse {
    match reply {
        Reply::Sent(response) => response,
        Reply::DryRun => panic!("not a dry run"),
    }
}

/// A fresh RSA key pair: the private key as the App's, the public one for the mock.
struct AppKeys {
    private_pem: String,
    public_pem: String,
}

fn app_keys() -> AppKeys {
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("key generation");
    AppKeys {
        private_pem: key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem").to_string(),
        public_pem: key.to_public_key().to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).expect("pem"),
    }
}

fn app_credential(keys: &AppKeys) -> GitHubCredential {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).expect("key");
    GitHubCredential::App { app_id: APP_ID, key }
}

#[derive(serde::Deserialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

/// The token exchange endpoint: checks the JWT's signature and claims like
/// GitHub, counts exchanges, and hands out `ghs_<installation>_<n>` tokens
/// valid for `lifetime`.
struct TokenExchange {
    public_pem: String,
    exchanges: Arc<AtomicUsize>,
    lifetime: Duration,
}

impl Respond for TokenExchange {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = self.exchanges.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(jwt) = request.headers.get("authorization").and_then(|v| v.to_str().ok()?.strip_prefix("Bearer "))
        else {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "no JWT"}));
        };
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(self.public_pem.as_bytes()).expect("public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        let claims = match jsonwebtoken::decode::<Claims>(jwt, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return ResponseTemplate::new(401).set_body_json(json!({"message": format!("bad JWT: {e}")})),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("now").as_secs();
        let backdated = claims.iat + 50 <= now && claims.iat + 70 >= now;
        let short_lived = claims.exp > now && claims.exp - claims.iat <= 600;
        if claims.iss != APP_ID.to_string() || !backdated || !short_lived {
            return ResponseTemplate::new(401).set_body_json(json!({"message": "bad claims"}));
        }
        let installation = request.url.path().split('/').nth(3).unwrap_or("?");
        let expires = SystemTime::now() + self.lifetime;
        ResponseTemplate::new(201).set_body_json(json!({
            "token": format!("ghs_{installation}_{n}"),
            "expires_at": humantime::format_rfc3339_seconds(expires).to_string(),
        }))
    }
}

async fn mount_exchange(github: &MockServer, keys: &AppKeys, lifetime: Duration) -> Arc<AtomicUsize> {
    let exchanges = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(r"^/app/installations/\d+/access_tokens$"))
        .respond_with(TokenExchange { public_pem: keys.public_pem.clone(), exchanges: exchanges.clone(), lifetime })
        .mount(github)
        .await;
    exchanges
}

#[tokio::test]
async fn app_auth_signs_a_valid_jwt_and_fifty_concurrent_calls_cause_one_exchange() {
    let github = MockServer::start().await;
    let keys = app_keys();
    let exchanges = mount_exchange(&github, &keys, Duration::from_secs(3600)).await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .and(header("authorization", "Bearer ghs_7_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"full_name": "o/r"})))
        .expect(50)
        .mount(&github)
        .await;
    let client = Arc::new(client(&settings(&github.uri(), Some(app_credential(&keys)))));
    let calls = (0..50).map(|_| {
        let client = client.clone();
        async move { client.for_installation(Some(7)).get("/repos/o/r").await }
    });
    for result in futures::future::join_all(calls).await {
        assert_eq!(sent(result.expect("call succeeds")).json().expect("json")["full_name"], "o/r");
    }
    assert_eq!(exchanges.load(Ordering::SeqCst), 1, "one token exchange for 50 concurrent calls");
    // App auth needs the installation a delivery names.
    let err = client.for_installation(None).get("/repos/o/r").await.expect_err("no installation");
    assert!(matches!(err, GitHubError::NoInstallation) && !err.is_retryable());
    github.verify().await;
}

#[tokio::test]
async fn an_expiring_installation_token_is_renewed_and_a_401_renews_once() {
    let github = MockServer::start().await;
    let keys = app_keys();
    // Tokens live 60 s: inside the 5-minute renewal margin, so each use renews.
    let exchanges = mount_exchange(&github, &keys, Duration::from_secs(60)).await;
    Mock::given(method("GET"))
        .and(path("/user"))
        .respond_with(|request: &Request| {
            let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
            ResponseTemplate::new(200).set_body_json(json!({ "auth": auth }))
        })
        .mount(&github)
        .await;
    let gh = client(&settings(&github.uri(), Some(app_credential(&keys))));
    let api = gh.for_installation(Some(9));
    let first = sent(api.get("/user").await.expect("first")).json().expect("json");
    let second = sent(api.get("/user").await.expect("second")).json().expect("json");
    assert_eq!(first["auth"], "Bearer ghs_9_1");
    assert_eq!(second["auth"], "Bearer ghs_9_2", "the expiring token was renewed");
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);

    // 401 with the current token: renewed once, then the call succeeds.
    let github = MockServer::start().await;
    let exchanges = mount_exchange(&github, &keys, Duration::from_secs(3600)).await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .and(header("authorization", "Bearer ghs_3_1"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .and(header("authorization", "Bearer ghs_3_2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&github)
        .await;
    let gh = client(&settings(&github.uri(), Some(app_credential(&keys))));
    gh.for_installation(Some(3)).get("/repos/o/r").await.expect("succeeds after one renewal");
    assert_eq!(exchanges.load(Ordering::SeqCst), 2);
    github.verify().await;

    // A 401 that persists is not renewed again and again.
    let github = MockServer::start().await;
    let exchanges = mount_exchange(&github, &keys, Duration::from_secs(3600)).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})))
        .expect(2)
        .mount(&github)
        .await;
    let gh = client(&settings(&github.uri(), Some(app_credential(&keys))));
    let err = gh.for_installation(Some(3)).get("/repos/o/r").await.expect_err("still 401");
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(exchanges.load(Ordering::SeqCst), 2, "renewed once only");
    github.verify().await;
}

#[tokio::test]
async fn server_errors_are_retried_other_4xx_are_not_and_unsafe_writes_are_not_repeated() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues/1/labels"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(2)
        .expect(2)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues/1/labels"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!([{"name": "bug"}])))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/missing"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/o/r/issues/1/comments"))
        .respond_with(ResponseTemplate::new(502))
        .expect(1)
        .mount(&github)
        .await;
    let gh = token_client(&github.uri());
    let api = gh.for_installation(None);

    let labels = api.post_idempotent("/repos/o/r/issues/1/labels", &json!({"labels": ["bug"]})).await;
    assert_eq!(sent(labels.expect("third try succeeds")).status.as_u16(), 201);

    let err = api.get("/repos/o/missing").await.expect_err("404");
    assert!(!err.is_retryable() && err.to_string().contains("Not Found"), "{err}");

    // A comment may have been created before the 502: not repeated here; the
    // delivery's own retry (with its duplicate check) takes over.
    let err = api.post("/repos/o/r/issues/1/comments", &json!({"body": "hi"})).await.expect_err("502");
    assert!(err.is_retryable(), "{err}");
    github.verify().await;
}

#[tokio::test]
async fn a_get_that_times_out_is_retried() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .up_to_n_times(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .expect(1)
        .mount(&github)
        .await;
    let mut s = settings(&github.uri(), Some(GitHubCredential::Token("ghp_test".to_owned().into())));
    s.request_timeout = Duration::from_millis(300);
    let gh = client(&s);
    let body = sent(gh.for_installation(None).get("/repos/o/r").await.expect("retried")).json().expect("json");
    assert_eq!(body["ok"], true);
    github.verify().await;
}

/// Answers per installation token; the first request of installation 1 gets
/// a secondary rate limit. Records when each request arrived, and tells the
/// test when the limit was handed out.
struct SecondaryLimit {
    arrivals: Arc<Mutex<Vec<(String, Instant)>>>,
    limited: Mutex<Option<tokio::sync::oneshot::Sender<Instant>>>,
}

impl Respond for SecondaryLimit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let auth = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let now = Instant::now();
        self.arrivals.lock().expect("lock").push((auth.clone(), now));
        if auth.starts_with("Bearer ghs_1_") {
            if let Some(tell) = self.limited.lock().expect("lock").take() {
                let _ = tell.send(now);
                return ResponseTemplate::new(403)
                    .insert_header("retry-after", "2")
                    .set_body_json(json!({"message": "You have exceeded a secondary rate limit."}));
            }
        }
        ResponseTemplate::new(200).set_body_json(json!({}))
    }
}

#[tokio::test]
async fn a_secondary_limit_pauses_every_request_of_that_credential_and_no_other() {
    let github = MockServer::start().await;
    let keys = app_keys();
    mount_exchange(&github, &keys, Duration::from_secs(3600)).await;
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let (tell, limited) = tokio::sync::oneshot::channel();
    Mock::given(method("GET"))
        .respond_with(SecondaryLimit { arrivals: arrivals.clone(), limited: Mutex::new(Some(tell)) })
        .mount(&github)
        .await;
    let metrics = Arc::new(Metrics::new());
    let gh =
        Arc::new(GitHub::new(&settings(&github.uri(), Some(app_credential(&keys))), metrics.clone()).expect("client"));

    let first = tokio::spawn({
        let gh = gh.clone();
        async move { gh.for_installation(Some(1)).get("/repos/a/x").await.map(|_| Instant::now()) }
    });
    let limited_at = tokio::time::timeout(WAIT, limited).await.expect("limit in time").expect("told");
    // The client has read the 403 once it counts the pause (no event to
    // await here, so poll that counter, bounded).
    let pauses = metrics.github_pauses.with_label_values(&["secondary"]);
    let deadline = Instant::now() + WAIT;
    while pauses.get() == 0 {
        assert!(Instant::now() < deadline, "the pause was never recorded");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Another worker on the same credential, and one on another credential.
    let same = tokio::spawn({
        let gh = gh.clone();
        async move { gh.for_installation(Some(1)).get("/repos/a/y").await.map(|_| Instant::now()) }
    });
    let other = tokio::spawn({
        let gh = gh.clone();
        async move { gh.for_installation(Some(2)).get("/repos/b/z").await.map(|_| Instant::now()) }
    });
    let other_done = other.await.expect("task").expect("other credential succeeds");
    assert!(other_done - limited_at < Duration::from_secs(1), "another credential is not paused");
    same.await.expect("task").expect("same credential succeeds after the pause");
    first.await.expect("task").expect("the limited request succeeds after the pause");

    let arrivals = arrivals.lock().expect("lock").clone();
    for (auth, at) in &arrivals {
        if auth.starts_with("Bearer ghs_1_") && *at > limited_at {
            assert!(
                *at - limited_at >= Duration::from_secs(2),
                "{auth} reached GitHub {:?} into the pause",
                *at - limited_at
            );
        }
    }
    assert_eq!(arrivals.iter().filter(|(auth, _)| auth.starts_with("Bearer ghs_1_")).count(), 3);
}

#[tokio::test]
async fn with_no_quota_left_the_next_request_waits_for_the_reset() {
    let github = MockServer::start().await;
    let reset = SystemTime::now().duration_since(UNIX_EPOCH).expect("now").as_secs() + 2;
    Mock::given(method("GET"))
        .and(path("/first"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({})),
        )
        .mount(&github)
        .await;
    let second_arrived = Arc::new(Mutex::new(None::<SystemTime>));
    let record = second_arrived.clone();
    Mock::given(method("GET"))
        .and(path("/second"))
        .respond_with(move |_: &Request| {
            *record.lock().expect("lock") = Some(SystemTime::now());
            ResponseTemplate::new(200).set_body_json(json!({}))
        })
        .mount(&github)
        .await;
    let gh = token_client(&github.uri());
    let api = gh.for_installation(None);
    api.get("/first").await.expect("first");
    api.get("/second").await.expect("second");
    let arrived = second_arrived.lock().expect("lock").expect("second arrived");
    assert!(arrived >= UNIX_EPOCH + Duration::from_secs(reset), "the second request came before the reset");
}

/// A mock that counts requests in flight (wiremock cannot): each takes 50 ms.
async fn counting_server() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let (now, max) = (in_flight.clone(), max_in_flight.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("http://{}", listener.local_addr().expect("addr"));
    let server = actix_web::HttpServer::new(move || {
        let (now, max) = (now.clone(), max.clone());
        actix_web::App::new().default_service(actix_web::web::to(move || {
            let (now, max) = (now.clone(), max.clone());
            async move {
                let current = now.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(current, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                actix_web::HttpResponse::Created().json(json!({}))
            }
        }))
    })
    .workers(2)
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (address, in_flight, max_in_flight)
}

#[tokio::test]
async fn writes_are_spaced_by_the_interval_and_requests_stay_within_the_concurrency_cap() {
    let (address, _, max_in_flight) = counting_server().await;
    let mut s = settings(&address, Some(GitHubCredential::Token("ghp_test".to_owned().into())));
    s.concurrency = 3;
    s.write_interval = Duration::from_millis(200);
    let gh = Arc::new(client(&s));

    let started = Instant::now();
    let writes = (0..20).map(|i| {
        let gh = gh.clone();
        async move { gh.for_installation(None).post("/repos/o/r/issues/1/comments", &json!({"body": i})).await }
    });
    for result in futures::future::join_all(writes).await {
        result.expect("write");
    }
    assert!(started.elapsed() >= Duration::from_millis(3800), "20 writes 200 ms apart took {:?}", started.elapsed());

    let reads = (0..30).map(|_| {
        let gh = gh.clone();
        async move { gh.for_installation(None).get("/repos/o/r").await }
    });
    for result in futures::future::join_all(reads).await {
        result.expect("read");
    }
    let max = max_in_flight.load(Ordering::SeqCst);
    assert!(max <= 3, "{max} requests were in flight at once; the cap is 3");
    assert_eq!(max, 3, "30 concurrent reads should fill the cap");
}

#[tokio::test]
async fn a_repeated_get_is_answered_304_and_served_from_the_cache() {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/labels"))
        .and(header("if-none-match", "\"v1\""))
        .respond_with(ResponseTemplate::new(304))
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/o/r/labels"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("etag", "\"v1\"").set_body_json(json!([{"name": "bug"}])),
        )
        .expect(1)
        .mount(&github)
        .await;
    let gh = token_client(&github.uri());
    let api = gh.for_installation(None);
    let first = sent(api.get("/repos/o/r/labels").await.expect("first"));
    let second = sent(api.get("/repos/o/r/labels").await.expect("second"));
    assert!(!first.from_cache && second.from_cache);
    assert_eq!(second.json().expect("json"), json!([{"name": "bug"}]));
    github.verify().await;
}

#[tokio::test]
async fn paginate_follows_link_next_through_every_page() {
    let github = MockServer::start().await;
    let base = github.uri();
    for page in 1..=3u32 {
        let mut response = ResponseTemplate::new(200).set_body_json(json!([page * 10, page * 10 + 1]));
        if page < 3 {
            let link = format!("<{base}/repos/o/r/issues?page={}>; rel=\"next\"", page + 1);
            response = response.insert_header("link", link.as_str());
        }
        let matcher = if page == 1 {
            Mock::given(method("GET"))
                .and(path("/repos/o/r/issues"))
                .and(wiremock::matchers::query_param_is_missing("page"))
        } else {
            Mock::given(method("GET"))
                .and(path("/repos/o/r/issues"))
                .and(wiremock::matchers::query_param("page", page.to_string().as_str()))
        };
        matcher.respond_with(response).expect(1).mount(&github).await;
    }
    let gh = token_client(&base);
    let api = gh.for_installation(None);
    let items: Vec<u64> =
        api.paginate("/repos/o/r/issues").map(|item| item.expect("item").as_u64().expect("number")).collect().await;
    assert_eq!(items, [10, 11, 20, 21, 30, 31]);
    github.verify().await;
}

#[tokio::test]
async fn a_bad_app_key_file_exits_two_naming_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let key = dir.path().join("app.private-key.pem");
    std::fs::write(&key, "not a key").expect("write");
    let key = key.to_str().expect("utf8");
    let (code, out) = crate::process::run_webhookd(
        &["check"],
        &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_APP_ID", "42"), ("WEBHOOKD_GITHUB_APP_KEY_FILE", key)],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("WEBHOOKD_GITHUB_APP_KEY_FILE") && out.contains(key), "{out}");
}

#[tokio::test]
async fn a_delivery_whose_github_call_fails_retryably_goes_back_to_the_store_and_succeeds_later() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/repos/Codertocat/Hello-World/issues/1/comments"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .expect(1)
        .mount(&github)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/Codertocat/Hello-World/issues/1/comments"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 1})))
        .expect(1)
        .mount(&github)
        .await;
    let (handler, mut processed) = crate::helpers::CommentingHandler::new();
    let api = github.uri();
    let app = crate::helpers::spawn_app(
        &[
            ("WEBHOOKD_GITHUB_TOKEN", crate::helpers::TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", &api),
            ("WEBHOOKD_RETRY_BACKOFF", "50ms"),
        ],
        handler,
    )
    .await;
    let response = app.post_webhook("issues", crate::helpers::fixture("issues/opened.payload.json")).await;
    assert_eq!(response.status().as_u16(), 202);
    crate::helpers::receive_n(&mut processed, 1).await;
    // The handler reports before its worker records the outcome: read the
    // metrics once the drain has let the worker finish.
    let registry = app.metrics.clone();
    app.stop().await;
    let metrics = registry.encode();
    assert!(metrics.contains(r#"webhookd_deliveries_processed_total{event="issues",outcome="retry"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"webhookd_deliveries_processed_total{event="issues",outcome="ok"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"webhookd_github_route_requests_total{method="POST",route="/repos/{owner}/{repo}/issues/{n}/comments",status="502"} 1"#), "{metrics}");
    github.verify().await;
}
