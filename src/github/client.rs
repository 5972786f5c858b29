//! The `GitHub` type: one `reqwest::Client` plus the API base URL and the
//! credential. Every request carries the headers GitHub asks for. Without a
//! credential it runs dry: each call is logged and none is sent.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

use super::{API_VERSION, GitHubError};
use crate::config::{GitHubCredential, GitHubSettings};
use crate::telemetry::metrics::Metrics;

/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a whole request may take, answer included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest error message kept from a GitHub answer.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

pub struct GitHub {
    http: reqwest::Client,
    api_url: Url,
    /// `Authorization` header value, marked sensitive; `None` means dry run.
    authorization: Option<HeaderValue>,
    metrics: Arc<Metrics>,
}

/// A GitHub answer with a 2xx status.
#[derive(Debug)]
pub struct GitHubResponse {
    pub status: StatusCode,
    pub body: Bytes,
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

impl GitHub {
    /// Builds the process's one HTTP client.
    pub fn new(settings: &GitHubSettings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(super::ACCEPT));
        headers.insert("X-GitHub-Api-Version", HeaderValue::from_static(API_VERSION));
        headers.insert(USER_AGENT, HeaderValue::from_static(super::USER_AGENT));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()?;
        let authorization = match &settings.credential {
            None => None,
            Some(GitHubCredential::Token(token)) => {
                let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose_secret())).map_err(|_| {
                    anyhow::anyhow!("WEBHOOKD_GITHUB_TOKEN: contains characters not allowed in an HTTP header")
                })?;
                value.set_sensitive(true);
                Some(value)
            }
        };
        Ok(Self { http, api_url: settings.api_url.clone(), authorization, metrics })
    }

    /// True when no credential is configured and calls are only logged.
    pub fn is_dry_run(&self) -> bool {
        self.authorization.is_none()
    }

    pub async fn get(&self, path: &str) -> Result<Reply, GitHubError> {
        self.request(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, GitHubError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// Sends one request to `path` (such as `/repos/o/r/issues/1/comments`),
    /// relative to the configured API URL.
    pub async fn request(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Reply, GitHubError> {
        if !path.starts_with('/') {
            return Err(GitHubError::InvalidPath(path.to_owned()));
        }
        let Some(authorization) = &self.authorization else {
            tracing::info!(%method, path, body = body.map(|b| b.to_string()), "dry run: GitHub call not sent (no credential configured)");
            return Ok(Reply::DryRun);
        };
        let url = format!("{}{}", self.api_url.as_str().trim_end_matches('/'), path);
        let mut request = self.http.request(method.clone(), url).header(AUTHORIZATION, authorization.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let transport = |source: reqwest::Error| GitHubError::Transport {
            method: method.to_string(),
            path: path.to_owned(),
            source: source.without_url(),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.metrics.github_requests.with_label_values(&[method.as_str(), "error"]).inc();
                return Err(transport(e));
            }
        };
        let status = response.status();
        self.metrics.github_requests.with_label_values(&[method.as_str(), status.as_str()]).inc();
        let quota_spent = response.headers().get("x-ratelimit-remaining").is_some_and(|v| v.as_bytes() == b"0");
        let retry_after = response.headers().contains_key(reqwest::header::RETRY_AFTER);
        let body = response.bytes().await.map_err(transport)?;
        tracing::debug!(%method, path, status = status.as_u16(), "GitHub call");
        if status.is_success() {
            Ok(Reply::Sent(GitHubResponse { status, body }))
        } else {
            let message = error_message(&body);
            let rate_limited = matches!(status.as_u16(), 403 | 429)
                && (quota_spent || retry_after || message.to_ascii_lowercase().contains("rate limit"));
            Err(GitHubError::Status {
                method: method.to_string(),
                path: path.to_owned(),
                status,
                message,
                rate_limited,
            })
        }
    }
}

/// GitHub's `message` field, or the start of the body.
fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}
