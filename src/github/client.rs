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
//! reached nobody and is always retried. Rate limits pause the credential and
//! the request goes again after the pause if the budget allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, ETAG, HeaderMap, HeaderValue, IF_NONE_MATCH, LINK, USER_AGENT};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

use super::api::GitHubApi;
use super::auth::{AppAuth, Auth, CredentialKey, bearer};
use super::etag::EtagCache;
use super::limits::Limiter;
use super::read::read_capped;
use super::{API_VERSION, GitHubError};
use crate::config::{ClientRetry, GitHubCredential, GitHubSettings};
use crate::telemetry::metrics::Metrics;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest error message kept from a GitHub answer.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;
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
    etags: EtagCache,
    concurrency: usize,
    write_interval: Duration,
    retry: ClientRetry,
    metrics: Arc<Metrics>,
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
}

impl<'a> Request<'a> {
    pub fn new(method: Method, path: &'a str, body: Option<&'a Value>) -> Self {
        let idempotent = method != Method::POST;
        Self { method, path, body, idempotent }
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
        let http = reqwest::Client::builder()
            .redirect(redirect_policy(&settings.api_url))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(|e| GitHubError::Auth(format!("building the HTTP client failed: {e}")))?;
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
            etags: EtagCache::default(),
            concurrency: settings.concurrency,
            write_interval: settings.write_interval,
            retry: settings.retry,
            metrics,
        })
    }

    /// True when no credential is configured and calls are only logged.
    pub fn is_dry_run(&self) -> bool {
        self.auth.is_none()
    }

    /// The client as seen from a delivery of this App installation (ignored
    /// with token authentication).
    pub fn for_installation(&self, installation: Option<u64>) -> GitHubApi<'_> {
        GitHubApi::new(self, installation)
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
            .or_insert_with(|| Arc::new(Limiter::new(self.concurrency, self.write_interval)))
            .clone()
    }

    /// The credential and `Authorization` value for a request.
    async fn authorize(
        &self,
        auth: &Auth,
        installation: Option<u64>,
        rejected: Option<&HeaderValue>,
    ) -> Result<(CredentialKey, HeaderValue), GitHubError> {
        match auth {
            Auth::Token(header) => Ok((CredentialKey::Token, header.clone())),
            Auth::App(app) => {
                let id = installation.ok_or(GitHubError::NoInstallation)?;
                let header = app.installation_token(&self.http, &self.api_url, id, rejected).await?;
                Ok((CredentialKey::Installation(id), header))
            }
        }
    }

    pub(super) async fn send(&self, request: &Request<'_>, installation: Option<u64>) -> Result<Reply, GitHubError> {
        let Request { method, path, body, idempotent } = request;
        let path = self.relative_path(path)?;
        let Some(auth) = &self.auth else {
            tracing::info!(%method, path, body = body.map(|b| b.to_string()), "dry run: GitHub call not sent (no credential configured)");
            return Ok(Reply::DryRun);
        };
        let route = route_template(&path);
        let started = Instant::now();
        let write = !matches!(*method, Method::GET | Method::HEAD);
        let mut rejected: Option<HeaderValue> = None;
        let mut renewed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (credential, authorization) = self.authorize(auth, installation, rejected.as_ref()).await?;
            let limiter = self.limiter(&credential);
            let permit = limiter.acquire(write).await;
            let url = format!("{}{}", self.api_url.as_str().trim_end_matches('/'), path);
            let mut builder =
                github_headers(self.http.request(method.clone(), url)).header(AUTHORIZATION, authorization.clone());
            let cached = if *method == Method::GET { self.etags.get(&credential, &path) } else { None };
            if let Some((etag, _)) = &cached {
                builder = builder.header(IF_NONE_MATCH, etag.clone());
            }
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let result = builder.send().await;
            drop(permit);
            let failure = match result {
                Err(e) => {
                    self.count(method, &route, "error");
                    // A refused connection reached nobody; anything later may have.
                    let retry = (e.is_connect() || *idempotent) && !e.is_builder();
                    (
                        retry,
                        GitHubError::Transport {
                            method: method.to_string(),
                            path: path.clone(),
                            source: e.without_url(),
                        },
                    )
                }
                Ok(response) => {
                    let status = response.status();
                    self.count(method, &route, status.as_str());
                    let headers = response.headers().clone();
                    let next = next_link(&headers);
                    let answer = read_capped(response, MAX_ANSWER_BYTES).await.map_err(|e| GitHubError::Transport {
                        method: method.to_string(),
                        path: path.clone(),
                        source: e.without_url(),
                    })?;
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
                    }
                    if status == StatusCode::NOT_MODIFIED {
                        if let Some((_, cached)) = cached {
                            return Ok(Reply::Sent(GitHubResponse {
                                status: StatusCode::OK,
                                body: cached,
                                from_cache: true,
                                next,
                            }));
                        }
                    }
                    if status.is_success() {
                        if *method == Method::GET {
                            if let Some(etag) = headers.get(ETAG) {
                                self.etags.put(&credential, &path, etag.clone(), body.clone());
                            }
                        }
                        return Ok(Reply::Sent(GitHubResponse { status, body, from_cache: false, next }));
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
            // A pause longer than the budget: the delivery's own retry waits instead.
            let pause_left = limiter.paused_until().map(|until| until.saturating_duration_since(Instant::now()));
            let pause_too_long = pause_left.is_some_and(|left| started.elapsed() + left > self.retry.budget);
            if !retry || attempt >= self.retry.attempts || out_of_budget || pause_too_long {
                return Err(error);
            }
            self.metrics.github_retries.with_label_values(&[retry_reason(&error)]).inc();
            tracing::debug!(%method, path, attempt, wait_ms = wait.as_millis() as u64, error = %error, "retrying GitHub request");
            tokio::time::sleep(wait).await;
        }
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

/// GitHub's headers, set on each GitHub request (not as client defaults, which
/// would reach `forward` receivers too).
pub(super) fn github_headers(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    builder
        .header(ACCEPT, super::ACCEPT)
        .header("X-GitHub-Api-Version", API_VERSION)
        .header(USER_AGENT, super::USER_AGENT)
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

/// The path with ids replaced by placeholders, a bounded metric label:
/// `/repos/{owner}/{repo}/issues/{n}/comments`.
pub fn route_template(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut out = String::new();
    for (i, segment) in path.split('/').enumerate().skip(1) {
        out.push('/');
        let is_repo_part = path.starts_with("/repos/") && (i == 2 || i == 3);
        if is_repo_part {
            out.push_str(if i == 2 { "{owner}" } else { "{repo}" });
        } else if segment.bytes().all(|b| b.is_ascii_digit()) && !segment.is_empty() {
            out.push_str("{n}");
        } else if segment.len() == 40 && segment.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("{sha}");
        } else {
            out.push_str(segment);
        }
    }
    out
}

/// GitHub's `message` field, or the start of the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_templates_hide_ids() {
        assert_eq!(route_template("/repos/octo/hello/issues/12/comments"), "/repos/{owner}/{repo}/issues/{n}/comments");
        assert_eq!(route_template("/app/installations/99/access_tokens"), "/app/installations/{n}/access_tokens");
        assert_eq!(
            route_template(&format!("/repos/o/r/statuses/{}", "a".repeat(40))),
            "/repos/{owner}/{repo}/statuses/{sha}"
        );
        assert_eq!(route_template("/repos/o/r/issues?page=2"), "/repos/{owner}/{repo}/issues");
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
