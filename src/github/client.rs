//! The `GitHub` type: the process's one `reqwest::Client` with the API base
//! URL, the credential, per-credential limits and the ETag cache. Handlers
//! get a `GitHubApi`: the same client seen from one delivery (its App
//! installation). Every GitHub request carries the headers GitHub asks for
//! (and only GitHub requests: `forward` shares the client, not them). Answers
//! are read up to `MAX_ANSWER_BYTES`. Without
//! a credential it runs dry: each call is logged and none is sent.
//!
//! Retries: connection failures, timeouts and 502/503/504 are retried with
//! exponential backoff and full jitter, within `ClientRetry`'s attempts and
//! time budget; other 4xx are final. A write whose first try may have reached
//! GitHub (timeout, 5xx) is retried only when it is idempotent (GET, PUT,
//! PATCH, DELETE, or a POST the caller marks idempotent); a refused connection
//! reached nobody and is always retried. A TLS failure is not retried here.
//!
//! Rate limits never hold a worker for long: a pause of up to
//! `IN_REQUEST_WAIT` is waited out in place, a longer one (found before the
//! request or started by its answer) ends the request at once with
//! `GitHubError::Paused`, and so does an empty content budget (`budget`):
//! the delivery waits in the queue, not in a worker. The concurrency permit
//! is held until the answer's body is read, so the cap bounds connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

use super::alarm::CredentialAlarm;
use super::auth::{AppAuth, Auth, Exchanged, bearer};
use super::budget::ContentBudget;
use super::credential::CredentialKey;
use super::deployment::DeploymentLimits;
use super::error::GitHubError;
use super::etag::{Cached, EtagCache};
use super::installs::InstallationIds;
use super::limits::Limiter;
use super::read::read_capped;
use super::tls;
use super::wire::{error_message, github_headers};
use crate::config::{ClientRetry, GitHubCredential, GitHubSettings};
use crate::telemetry::metrics::Metrics;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest rate-limit pause a request waits out in place; a longer one ends
/// the request with `GitHubError::Paused` and frees the worker.
pub const IN_REQUEST_WAIT: Duration = Duration::from_secs(3);
/// Most bytes of a GitHub answer read. The largest page webhookd reads is a
/// default page (30 items) of issue comments, each at most 65,536 characters
/// (4 bytes each at worst): about 7.5 MiB; twice that leaves room for the
/// JSON around them.
pub const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
/// Redirects followed at most for one GitHub request.
const MAX_REDIRECTS: usize = 5;

pub struct GitHub {
    pub(super) http: reqwest::Client,
    api_url: Url,
    /// `None` means dry run.
    auth: Option<Auth>,
    limits: Mutex<HashMap<CredentialKey, Arc<Limiter>>>,
    /// Content-creating requests left per credential (GitHub's 80/min, 500/h).
    budgets: Mutex<HashMap<CredentialKey, ContentBudget>>,
    /// Set while GitHub refuses the App's own credentials (`/readyz` reads it).
    alarm: CredentialAlarm,
    etags: EtagCache,
    concurrency: usize,
    write_interval: Duration,
    retry: ClientRetry,
    metrics: Arc<Metrics>,
    /// Pauses and write slots shared with the deployment's other instances.
    deployment: Option<Arc<dyn DeploymentLimits>>,
    /// The App installation of each organisation or repository whose webhook
    /// was read (`hooks`), found with the App's JWT.
    pub(super) installation_ids: InstallationIds,
}

/// Who a request runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunAs {
    /// A delivery's App installation (ignored with token authentication).
    Installation(Option<u64>),
    /// The GitHub App itself, with its JWT (App authentication only).
    App,
}

/// A GitHub answer with a 2xx status (or a 304 served from the cache).
#[derive(Debug)]
pub struct GitHubResponse {
    pub status: StatusCode,
    pub body: Bytes,
    /// Served from the ETag cache after a `304 Not Modified`.
    pub from_cache: bool,
    /// The `rel="next"` page, from the `Link` header.
    pub next: Option<String>,
}

impl GitHubResponse {
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// What a call did.
#[derive(Debug)]
pub enum Reply {
    Sent(GitHubResponse),
    /// Dry run: the call was logged, not sent.
    DryRun,
}

/// One request.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Option<&'a Value>,
    /// Safe to send twice (the second has no further effect). GET, HEAD, PUT,
    /// PATCH and DELETE are; a POST only when the caller says so.
    pub idempotent: bool,
    /// Its content-budget token was taken beforehand
    /// (`GitHubApi::take_content_budget`).
    pub prepaid: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: &'a str, body: Option<&'a Value>) -> Self {
        let idempotent = method != Method::POST;
        Self { method, path, body, idempotent, prepaid: false }
    }

    /// Marks a content-creating request whose budget token the caller took
    /// already.
    pub fn prepaid(mut self) -> Self {
        self.prepaid = true;
        self
    }

    /// Marks a POST as safe to repeat (adding labels, requesting reviewers).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

impl GitHub {
    /// Builds the process's one HTTP client.
    pub fn new(settings: &GitHubSettings, metrics: Arc<Metrics>) -> Result<Self, GitHubError> {
        // No default headers: GitHub's go on GitHub requests only (`github_headers`),
        // never to a `forward` receiver through the same client.
        let mut builder = reqwest::Client::builder()
            .redirect(redirect_policy(&settings.api_url))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT);
        // Trust: the bundled web PKI roots, the system store, the operator's CA file.
        let system = tls::system_anchors(settings.trust.ssl_cert_file.as_deref());
        for anchor in system.into_iter().chain(settings.trust.extra_anchors.iter().cloned()) {
            builder = builder.add_root_certificate(anchor);
        }
        let http = builder.build().map_err(|e| GitHubError::ClientBuild(e.to_string()))?;
        let auth = match &settings.credential {
            None => None,
            Some(GitHubCredential::Token(token)) => Some(Auth::Token(bearer(token.expose_secret())?)),
            Some(GitHubCredential::App { app_id, key }) => Some(Auth::App(AppAuth::new(*app_id, key.clone()))),
        };
        Ok(Self {
            http,
            api_url: settings.api_url.clone(),
            auth,
            limits: Mutex::new(HashMap::new()),
            budgets: Mutex::new(HashMap::new()),
            alarm: CredentialAlarm::default(),
            etags: EtagCache::new(settings.cache_bytes),
            concurrency: settings.concurrency,
            write_interval: settings.write_interval,
            retry: settings.retry,
            metrics,
            deployment: None,
            installation_ids: InstallationIds::default(),
        })
    }

    /// Shares rate-limit pauses and write spacing with the other instances
    /// of a deployment (a store several instances use provides them).
    pub fn with_deployment_limits(mut self, deployment: Option<Arc<dyn DeploymentLimits>>) -> Self {
        self.deployment = deployment;
        self
    }

    /// Pauses every request on `credential` for `length`: a rate limit
    /// another instance of the deployment met.
    pub fn pause_from_elsewhere(&self, credential: &CredentialKey, length: Duration) {
        self.limiter(credential).pause_for(length);
    }

    /// True when no credential is configured and calls are only logged.
    /// Drops the last reference to the client, closing its pooled
    /// connections: the shutdown's last step, once every worker is gone.
    pub fn close(client: Arc<Self>) {
        match Arc::try_unwrap(client) {
            Ok(client) => {
                drop(client);
                tracing::info!("GitHub client dropped: pooled connections closed");
            }
            Err(shared) => {
                tracing::warn!(references = Arc::strong_count(&shared), "GitHub client still referenced at shutdown");
            }
        }
    }

    pub fn is_dry_run(&self) -> bool {
        self.auth.is_none()
    }

    /// True under GitHub App authentication.
    pub(super) fn is_app(&self) -> bool {
        matches!(self.auth, Some(Auth::App(_)))
    }

    /// The flag `/readyz` reads: set while GitHub refuses the App's credentials.
    pub fn credential_alarm(&self) -> CredentialAlarm {
        self.alarm.clone()
    }

    /// Until when requests on `credential` are paused for a rate limit, if
    /// they are now: the queue may hold that credential's deliveries back.
    pub fn paused_until(&self, credential: &CredentialKey) -> Option<SystemTime> {
        let limiter = self.limits.lock().unwrap_or_else(PoisonError::into_inner).get(credential).cloned()?;
        limiter.paused_until().map(wall_clock)
    }

    /// Whether some credential is paused for a rate limit now: workers waiting
    /// on it are doing as GitHub asks, not stuck.
    pub fn is_paused(&self) -> bool {
        self.limits.lock().unwrap_or_else(PoisonError::into_inner).values().any(|l| l.paused_until().is_some())
    }

    /// The limiter of a credential, created on first use.
    fn limiter(&self, credential: &CredentialKey) -> Arc<Limiter> {
        self.limits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(credential.clone())
            .or_insert_with(|| {
                let limiter = Limiter::new(self.concurrency, self.write_interval);
                Arc::new(match &self.deployment {
                    Some(deployment) => limiter.shared_with(deployment.clone(), credential.clone()),
                    None => limiter,
                })
            })
            .clone()
    }

    /// The credential and `Authorization` value for a request.
    async fn authorize(
        &self,
        auth: &Auth,
        run_as: RunAs,
        rejected: Option<&HeaderValue>,
    ) -> Result<(CredentialKey, HeaderValue), GitHubError> {
        match (auth, run_as) {
            // `send_as` refuses `RunAs::App` under a token before it gets here.
            (Auth::Token(header), _) => Ok((CredentialKey::Token, header.clone())),
            // A JWT is signed per request: it is no secret worth caching, and
            // GitHub accepts it for 10 minutes only.
            (Auth::App(app), RunAs::App) => Ok((CredentialKey::App, app.jwt_header()?)),
            (Auth::App(app), RunAs::Installation(installation)) => {
                let id = installation.ok_or(GitHubError::NoInstallation)?;
                match app.installation_token(&self.http, &self.api_url, id, rejected).await {
                    Ok((header, exchanged)) => {
                        // Only an exchange proves the App's id and key work: a
                        // cached token of another installation says nothing.
                        if exchanged == Exchanged::Yes {
                            self.alarm.clear();
                        }
                        Ok((CredentialKey::Installation(id), header))
                    }
                    Err(e) => {
                        if matches!(e, GitHubError::AppCredentials(_)) {
                            let _ = self.alarm.raise(&e.to_string());
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    pub(super) async fn send(&self, request: &Request<'_>, installation: Option<u64>) -> Result<Reply, GitHubError> {
        self.send_as(request, RunAs::Installation(installation)).await
    }

    pub(super) async fn send_as(&self, request: &Request<'_>, run_as: RunAs) -> Result<Reply, GitHubError> {
        let Request { method, path, body, idempotent, prepaid } = request;
        let path = self.relative_path(path)?;
        let Some(auth) = &self.auth else {
            tracing::info!(%method, path, body = body.map(|b| b.to_string()), "dry run: GitHub call not sent (no credential configured)");
            return Ok(Reply::DryRun);
        };
        let route = route_template(&path);
        if run_as == RunAs::App && !matches!(auth, Auth::App(_)) {
            return Err(GitHubError::AppOnly { method: method.to_string(), path: route });
        }
        let host = self.api_url.host_str().unwrap_or("the GitHub API host").to_owned();
        let started = Instant::now();
        let write = !matches!(*method, Method::GET | Method::HEAD);
        // GitHub's "content-creating" requests: a POST that makes something new.
        let creates_content = *method == Method::POST && !*idempotent && !*prepaid;
        let mut rejected: Option<HeaderValue> = None;
        let mut renewed = false;
        let mut content_token_taken = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (credential, authorization) = self.authorize(auth, run_as, rejected.as_ref()).await?;
            let limiter = self.limiter(&credential);
            if let Some(until) = limiter.paused_until() {
                if until.saturating_duration_since(Instant::now()) > IN_REQUEST_WAIT {
                    return Err(self.paused(credential, until));
                }
            }
            let permit = match limiter.acquire(write, IN_REQUEST_WAIT).await {
                Ok(permit) => permit,
                Err(until) => return Err(self.paused(credential, until)),
            };
            // Once per request, and only when it will be sent: a request that
            // ends paused, or is sent again (a renewed token, a retry), spends
            // no more than the one token.
            if creates_content && !content_token_taken {
                self.take_content_tokens(&credential, 1)?;
                content_token_taken = true;
            }
            let url = format!("{}{}", self.api_url.as_str().trim_end_matches('/'), path);
            let mut builder =
                github_headers(self.http.request(method.clone(), url)).header(AUTHORIZATION, authorization.clone());
            let cached = if *method == Method::GET { self.etags.get(&credential, &path) } else { None };
            if let Some(hit) = &cached {
                builder = builder.header(IF_NONE_MATCH, hit.etag.clone());
            }
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let result = builder.send().await;
            let failure = match result {
                Err(e) => {
                    drop(permit);
                    self.count(method, &route, "error");
                    // A refused connection reached nobody; anything later may have.
                    let retry = (e.is_connect() || *idempotent) && !e.is_builder();
                    let error = GitHubError::transport(method.as_str(), &path, &host, e);
                    // A certificate the client does not trust will not be trusted in a second.
                    (retry && !matches!(error, GitHubError::Tls(_)), error)
                }
                Ok(response) => {
                    let status = response.status();
                    self.count(method, &route, status.as_str());
                    let headers = response.headers().clone();
                    let next = next_link(&headers);
                    // The permit covers the body too: a connection is in use until it is read.
                    let answer = read_capped(response, MAX_ANSWER_BYTES).await;
                    drop(permit);
                    let answer = answer.map_err(|e| GitHubError::transport(method.as_str(), &path, &host, e))?;
                    if answer.truncated && status.is_success() {
                        return Err(GitHubError::AnswerTooLarge {
                            method: method.to_string(),
                            path: path.clone(),
                            limit: MAX_ANSWER_BYTES,
                        });
                    }
                    // An error answer cut short still has its status and the start of its message.
                    let body = answer.bytes;
                    let message = if status.is_success() { String::new() } else { error_message(&body) };
                    let pause = limiter.observe(status, &headers, &message);
                    if let Some(remaining) = limiter.remaining() {
                        self.metrics
                            .github_rate_limit_remaining
                            .with_label_values(&[&credential.to_string()])
                            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
                    }
                    if let Some(pause) = pause {
                        self.metrics.github_pauses.with_label_values(&[pause.reason.label()]).inc();
                        self.metrics
                            .github_pause_seconds
                            .with_label_values(&[pause.reason.label()])
                            .inc_by(pause.length.as_secs_f64());
                        tracing::warn!(
                            credential = %credential,
                            reason = pause.reason.label(),
                            pause_secs = pause.length.as_secs_f64(),
                            "GitHub rate limit: every request on this credential pauses"
                        );
                        if let Some(deployment) = &self.deployment {
                            deployment.publish_pause(&credential, pause.length).await;
                        }
                    }
                    if status == StatusCode::NOT_MODIFIED {
                        if let Some(hit) = cached {
                            return Ok(Reply::Sent(GitHubResponse {
                                status: StatusCode::OK,
                                body: hit.body,
                                from_cache: true,
                                // A 304 need not repeat `Link`: the cached page's holds.
                                next: next.or(hit.next),
                            }));
                        }
                    }
                    if status.is_success() {
                        if *method == Method::GET {
                            if let Some(etag) = headers.get(ETAG) {
                                let answer = Cached { etag: etag.clone(), body: body.clone(), next: next.clone() };
                                self.etags.put(&credential, &path, answer);
                            }
                        }
                        if credential == CredentialKey::App {
                            // A JWT accepted proves the App's id and key work.
                            self.alarm.clear();
                        }
                        return Ok(Reply::Sent(GitHubResponse { status, body, from_cache: false, next }));
                    }
                    if status == StatusCode::UNAUTHORIZED && credential == CredentialKey::App {
                        // The JWT refused: a new one, signed by the same key, would be too.
                        let error = GitHubError::AppCredentials(format!("401 to {method} {route}: {message}"));
                        let _ = self.alarm.raise(&error.to_string());
                        return Err(error);
                    }
                    if status == StatusCode::UNAUTHORIZED && matches!(auth, Auth::App(_)) && !renewed {
                        // The installation token may have been revoked or expired early: renew once.
                        tracing::info!(credential = %credential, "GitHub answered 401: renewing the installation token once");
                        renewed = true;
                        rejected = Some(authorization);
                        attempt -= 1;
                        continue;
                    }
                    let rate_limited = pause.is_some();
                    if rate_limited {
                        // A pause this answer started (or one already running) that is too
                        // long to wait out here: the delivery waits in the queue.
                        if let Some(until) = limiter.paused_until() {
                            if until.saturating_duration_since(Instant::now()) > IN_REQUEST_WAIT {
                                return Err(self.paused(credential, until));
                            }
                        }
                    }
                    let retry = rate_limited || (matches!(status.as_u16(), 502..=504) && *idempotent);
                    let error = GitHubError::Status {
                        method: method.to_string(),
                        path: path.clone(),
                        status,
                        message,
                        rate_limited,
                    };
                    (retry, error)
                }
            };
            let (retry, error) = failure;
            let wait = full_jitter(self.retry.base, attempt);
            let out_of_budget = started.elapsed() + wait > self.retry.budget;
            if !retry || attempt >= self.retry.attempts || out_of_budget {
                return Err(error);
            }
            self.metrics.github_retries.with_label_values(&[retry_reason(&error)]).inc();
            tracing::debug!(%method, path, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying GitHub request");
            tokio::time::sleep(wait).await;
        }
    }

    /// The error that hands a delivery back to the queue until `until`.
    fn paused(&self, credential: CredentialKey, until: Instant) -> GitHubError {
        self.metrics.github_deferrals.with_label_values(&[&credential.to_string()]).inc();
        GitHubError::Paused { credential, until: wall_clock(until) }
    }

    /// Takes `count` content-budget tokens of `installation`'s credential at
    /// once, or none: lets a caller about to make that many content-creating
    /// requests (sent `prepaid`) defer before doing anything else, instead
    /// of redoing its other work each time a single token frees.
    pub(super) fn take_content_budget(&self, installation: Option<u64>, count: u32) -> Result<(), GitHubError> {
        match (&self.auth, installation) {
            (Some(Auth::Token(_)), _) => self.take_content_tokens(&CredentialKey::Token, count),
            (Some(Auth::App(_)), Some(id)) => self.take_content_tokens(&CredentialKey::Installation(id), count),
            _ => Ok(()),
        }
    }

    /// Takes `count` tokens of `credential`'s content budget, or none and
    /// says when they free.
    fn take_content_tokens(&self, credential: &CredentialKey, count: u32) -> Result<(), GitHubError> {
        let now = Instant::now();
        let mut budgets = self.budgets.lock().unwrap_or_else(PoisonError::into_inner);
        let budget = budgets.entry(credential.clone()).or_insert_with(|| ContentBudget::new(now));
        let taken = budget.try_take(now, count);
        let label = credential.to_string();
        for (window, left) in budget.remaining() {
            self.metrics.github_content_budget_remaining.with_label_values(&[&label, window]).set(left);
        }
        drop(budgets);
        taken.map_err(|until| {
            tracing::info!(credential = %credential, "content-creating budget (80/min, 500/h) spent: the delivery waits in the queue");
            self.paused(credential.clone(), until)
        })
    }

    /// `path` as a path below the API URL; absolute URLs (from `Link`) must
    /// point below it.
    fn relative_path(&self, path: &str) -> Result<String, GitHubError> {
        if path.starts_with('/') {
            return Ok(path.to_owned());
        }
        let base = self.api_url.as_str().trim_end_matches('/');
        match path.strip_prefix(base) {
            Some(rest) if rest.starts_with('/') => Ok(rest.to_owned()),
            _ => Err(GitHubError::InvalidPath(path.to_owned())),
        }
    }

    fn count(&self, method: &Method, route: &str, status: &str) {
        self.metrics.github_requests.with_label_values(&[method.as_str(), status]).inc();
        self.metrics.github_requests_by_route.with_label_values(&[method.as_str(), route, status]).inc();
    }
}

/// The shared client follows a redirect only from a URL under the GitHub API
/// URL to another one under it (GitHub answers 301/307 for a renamed or
/// transferred repository), at most `MAX_REDIRECTS` times. Anything else is
/// handed back as the 3xx it is: a `forward` receiver's redirect is a failure,
/// and the signed body is never re-sent where the rule did not say.
fn redirect_policy(api_url: &Url) -> reqwest::redirect::Policy {
    let base = format!("{}/", api_url.as_str().trim_end_matches('/'));
    reqwest::redirect::Policy::custom(move |attempt| {
        let within_api = |url: &Url| url.as_str().starts_with(&base);
        if !within_api(attempt.url()) || !attempt.previous().iter().all(within_api) {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// Full jitter: a random wait up to the exponential step.
fn full_jitter(base: Duration, attempt: u32) -> Duration {
    let step = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    step.mul_f64(fastrand::f64())
}

fn retry_reason(error: &GitHubError) -> &'static str {
    match error {
        GitHubError::Transport { .. } => "transport",
        GitHubError::Status { rate_limited: true, .. } => "rate_limit",
        GitHubError::Status { .. } => "server_error",
        _ => "other",
    }
}

/// `rel="next"` from a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim() == r#"rel="next""#).then(|| url.trim().trim_matches(['<', '>']).to_owned())
    })
}

/// Path segments GitHub's REST API uses as words, kept in a route template;
/// every other segment is a name or an id and becomes a placeholder, so
/// metric labels stay a bounded set whatever paths are called.
const LITERAL_SEGMENTS: &[&str] = &[
    "access_tokens",
    "actions",
    "app",
    "assignees",
    "attempts",
    "branches",
    "check-runs",
    "check-suites",
    "collaborators",
    "comments",
    "commits",
    "compare",
    "contents",
    "deliveries",
    "deployments",
    "dispatches",
    "environments",
    "events",
    "git",
    "heads",
    "hook",
    "hooks",
    "installation",
    "installations",
    "issues",
    "labels",
    "members",
    "memberships",
    "merge",
    "milestones",
    "orgs",
    "permission",
    "pulls",
    "reactions",
    "ref",
    "refs",
    "releases",
    "repos",
    "repositories",
    "requested_reviewers",
    "reviews",
    "runs",
    "search",
    "secrets",
    "status",
    "statuses",
    "tags",
    "teams",
    "timeline",
    "trees",
    "user",
    "users",
    "variables",
    "workflows",
];

/// The placeholder of the segment after a word that is always followed by a
/// name (`/orgs/NAME`, `/labels/NAME`), when that name is not a number or SHA.
fn name_after(word: &str) -> Option<&'static str> {
    Some(match word {
        "orgs" => "{org}",
        "users" | "collaborators" | "assignees" | "members" | "memberships" => "{user}",
        "teams" => "{team}",
        "labels" => "{label}",
        "commits" | "statuses" => "{ref}",
        "environments" | "secrets" | "variables" | "workflows" => "{name}",
        _ => return None,
    })
}

/// Words after which the rest of the path is one name that may hold slashes
/// (branch names, file paths).
fn rest_after(word: &str) -> Option<&'static str> {
    Some(match word {
        "heads" | "tags" => "{ref}",
        "branches" => "{branch}",
        "contents" => "{path}",
        "compare" => "{basehead}",
        _ => return None,
    })
}

/// Segments kept at most; a longer path ends in `/...`.
const MAX_TEMPLATE_SEGMENTS: usize = 10;

/// The path with names and ids replaced by placeholders, a bounded metric
/// label: `/repos/{owner}/{repo}/issues/{n}/comments`, `/orgs/{org}/hooks`.
pub fn route_template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut out = String::new();
    // The previous segment when it was kept as a word (not a placeholder).
    let mut word: Option<&str> = None;
    let mut i = 0;
    while i < segments.len() {
        if i >= MAX_TEMPLATE_SEGMENTS {
            out.push_str("/...");
            break;
        }
        let segment = segments[i];
        out.push('/');
        i += 1;
        if word == Some("repos") && i < segments.len() {
            // `/repos/OWNER/REPO`: both are names, whatever they spell.
            out.push_str("{owner}/{repo}");
            i += 1;
            word = None;
            continue;
        }
        if let Some(rest) = word.and_then(rest_after).filter(|_| !segment.is_empty()) {
            out.push_str(rest);
            break;
        }
        let name_slot = word.and_then(name_after);
        if segment.is_empty() || (LITERAL_SEGMENTS.contains(&segment) && name_slot.is_none()) {
            out.push_str(segment);
            word = Some(segment);
            continue;
        }
        word = None;
        if segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("{n}");
        } else if segment.len() == 40 && segment.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("{sha}");
        } else {
            out.push_str(name_slot.unwrap_or("{name}"));
        }
    }
    out
}

/// An `Instant` ahead as a wall-clock time (what the queue schedules by).
fn wall_clock(at: Instant) -> SystemTime {
    SystemTime::now() + at.saturating_duration_since(Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_hide_every_name_and_id() {
        let sha = "a".repeat(40);
        let cases = [
            ("/repos/octo/hello/issues/12/comments", "/repos/{owner}/{repo}/issues/{n}/comments"),
            ("/repos/issues/comments/issues/12", "/repos/{owner}/{repo}/issues/{n}"),
            ("/app/installations/99/access_tokens", "/app/installations/{n}/access_tokens"),
            (&format!("/repos/o/r/statuses/{sha}"), "/repos/{owner}/{repo}/statuses/{sha}"),
            ("/repos/o/r/statuses/main", "/repos/{owner}/{repo}/statuses/{ref}"),
            ("/repos/o/r/issues?page=2", "/repos/{owner}/{repo}/issues"),
            ("/orgs/acme/hooks", "/orgs/{org}/hooks"),
            ("/orgs/acme/hooks/7/deliveries/8/attempts", "/orgs/{org}/hooks/{n}/deliveries/{n}/attempts"),
            ("/orgs/acme/hooks/7/deliveries?per_page=100&cursor=v1_9", "/orgs/{org}/hooks/{n}/deliveries"),
            ("/orgs/acme/installation", "/orgs/{org}/installation"),
            ("/app/hook/deliveries?per_page=100", "/app/hook/deliveries"),
            ("/app/hook/deliveries/8/attempts", "/app/hook/deliveries/{n}/attempts"),
            ("/repos/o/r/hooks/7/deliveries/8/attempts", "/repos/{owner}/{repo}/hooks/{n}/deliveries/{n}/attempts"),
            ("/repos/o/r/installation", "/repos/{owner}/{repo}/installation"),
            ("/orgs/repos/members/issues", "/orgs/{org}/members/{user}"),
            ("/users/octocat", "/users/{user}"),
            ("/users/octocat/repos", "/users/{user}/repos"),
            ("/repos/o/r/git/refs/heads/feature/deep/branch", "/repos/{owner}/{repo}/git/refs/heads/{ref}"),
            ("/repos/o/r/git/ref/tags/v1.0", "/repos/{owner}/{repo}/git/ref/tags/{ref}"),
            ("/repos/o/r/issues/1/labels/good%20first%20issue", "/repos/{owner}/{repo}/issues/{n}/labels/{label}"),
            ("/repos/o/r/issues/1/labels/comments", "/repos/{owner}/{repo}/issues/{n}/labels/{label}"),
            ("/repos/o/r/issues/1/labels", "/repos/{owner}/{repo}/issues/{n}/labels"),
            ("/repos/o/r/pulls/3/requested_reviewers", "/repos/{owner}/{repo}/pulls/{n}/requested_reviewers"),
            ("/repos/o/r/check-runs", "/repos/{owner}/{repo}/check-runs"),
            (
                &format!("/repos/o/r/commits/{sha}/check-runs?check_name=ci"),
                "/repos/{owner}/{repo}/commits/{sha}/check-runs",
            ),
            ("/repos/o/r/commits/main/status", "/repos/{owner}/{repo}/commits/{ref}/status"),
            ("/repos/o/r/contents/src/lib.rs", "/repos/{owner}/{repo}/contents/{path}"),
            ("/repos/o/r/branches/release/1.x/protection", "/repos/{owner}/{repo}/branches/{branch}"),
            ("/repos/o/r/dispatches", "/repos/{owner}/{repo}/dispatches"),
            ("/repos/o/r/unknown-word/x", "/repos/{owner}/{repo}/{name}/{name}"),
            ("/something/else", "/{name}/{name}"),
            ("/repos/o", "/repos/{name}"),
            ("/a/b/c/d/e/f/g/h/i/j/k/l", "/{name}/{name}/{name}/{name}/{name}/{name}/{name}/{name}/{name}/{name}/..."),
        ];
        for (path, template) in cases {
            assert_eq!(route_template(path), template, "{path}");
        }
    }

    #[test]
    fn next_link_is_found() {
        let mut headers = HeaderMap::new();
        headers.insert(
            LINK,
            HeaderValue::from_static(
                r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#,
            ),
        );
        assert_eq!(next_link(&headers).as_deref(), Some("https://api.github.com/x?page=2"));
        headers.insert(LINK, HeaderValue::from_static(r#"<https://api.github.com/x?page=1>; rel="prev""#));
        assert_eq!(next_link(&headers), None);
    }

    #[test]
    fn full_jitter_stays_below_the_step() {
        for attempt in 1..6 {
            let wait = full_jitter(Duration::from_millis(100), attempt);
            assert!(wait <= Duration::from_millis(100) * (1 << (attempt - 1)));
        }
    }
}
