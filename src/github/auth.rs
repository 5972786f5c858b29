//! Who a request runs as. A token is used as it is. A GitHub App signs a
//! short JWT with its private key and exchanges it for an installation token
//! per installation (the one named in the delivery's `installation.id`).
//! Installation tokens are cached and renewed ahead of expiry; callers that
//! need the same installation's token at once wait for one exchange.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

use super::error::GitHubError;
use super::read::read_capped;
use super::wire::{error_message, github_headers};

/// JWTs claim to be issued this long ago, against clock drift (GitHub's advice).
const JWT_BACKDATE: Duration = Duration::from_secs(60);
/// JWT lifetime; GitHub accepts at most 10 minutes.
const JWT_LIFETIME: Duration = Duration::from_secs(9 * 60);
/// Most bytes of a token exchange answer read (GitHub's is under 1 KiB,
/// with the permissions and repositories it lists, a few KiB).
const MAX_TOKEN_ANSWER_BYTES: usize = 1024 * 1024;
/// Installation tokens (valid one hour) are renewed this long before they expire.
const RENEW_AHEAD: Duration = Duration::from_secs(5 * 60);

/// Whether a token came from a fresh exchange (which proves the App's own
/// credentials work) or from the cache (which proves nothing about them now).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exchanged {
    Yes,
    No,
}

pub(crate) enum Auth {
    Token(HeaderValue),
    App(AppAuth),
}

pub(crate) struct AppAuth {
    app_id: u64,
    key: jsonwebtoken::EncodingKey,
    installations: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Option<InstallationToken>>>>>,
}

struct InstallationToken {
    header: HeaderValue,
    renew_at: Instant,
}

#[derive(Serialize)]
struct Claims {
    iat: u64,
    exp: u64,
    iss: String,
}

#[derive(Deserialize)]
struct AccessToken {
    token: String,
    expires_at: String,
}

/// A bearer `Authorization` value, marked sensitive so it never prints.
pub(crate) fn bearer(secret: &str) -> Result<HeaderValue, GitHubError> {
    let mut value = HeaderValue::try_from(format!("Bearer {secret}"))
        .map_err(|_| GitHubError::Auth("the credential holds characters not allowed in an HTTP header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

impl AppAuth {
    pub(crate) fn new(app_id: u64, key: jsonwebtoken::EncodingKey) -> Self {
        Self { app_id, key, installations: Mutex::new(HashMap::new()) }
    }

    /// A fresh JWT as an `Authorization` value: requests as the App itself
    /// (its own webhook, finding an installation).
    pub(crate) fn jwt_header(&self) -> Result<HeaderValue, GitHubError> {
        bearer(&self.jwt()?)
    }

    /// A fresh JWT authenticating as the App itself.
    fn jwt(&self) -> Result<String, GitHubError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let claims = Claims {
            iat: (now - JWT_BACKDATE.min(now)).as_secs(),
            exp: (now + JWT_LIFETIME).as_secs(),
            iss: self.app_id.to_string(),
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256), &claims, &self.key)
            .map_err(|e| GitHubError::Auth(format!("signing the App JWT failed: {e}")))
    }

    /// The installation's token: cached, or exchanged now. `rejected` is a
    /// token GitHub just answered 401 to: it is renewed unless another caller
    /// already replaced it.
    pub(crate) async fn installation_token(
        &self,
        http: &reqwest::Client,
        api_url: &Url,
        installation: u64,
        rejected: Option<&HeaderValue>,
    ) -> Result<(HeaderValue, Exchanged), GitHubError> {
        let slot =
            self.installations.lock().unwrap_or_else(PoisonError::into_inner).entry(installation).or_default().clone();
        // One exchange per installation at a time: the others wait here and
        // then find the fresh token.
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref() {
            let still_good = Instant::now() < token.renew_at;
            let is_rejected = rejected.is_some_and(|r| r.as_bytes() == token.header.as_bytes());
            if still_good && !is_rejected {
                return Ok((token.header.clone(), Exchanged::No));
            }
        }
        let fresh = self.exchange(http, api_url, installation).await?;
        let header = fresh.header.clone();
        *cached = Some(fresh);
        Ok((header, Exchanged::Yes))
    }

    async fn exchange(
        &self,
        http: &reqwest::Client,
        api_url: &Url,
        installation: u64,
    ) -> Result<InstallationToken, GitHubError> {
        let path = format!("/app/installations/{installation}/access_tokens");
        let url = format!("{}{path}", api_url.as_str().trim_end_matches('/'));
        let host = api_url.host_str().unwrap_or("the GitHub API host").to_owned();
        let transport = |e: reqwest::Error| GitHubError::transport("POST", &path, &host, e);
        let request = github_headers(http.post(&url)).header(AUTHORIZATION, bearer(&self.jwt()?)?);
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let rate_limited = response.headers().contains_key("retry-after");
        // A token answer is a few hundred bytes.
        let answer = read_capped(response, MAX_TOKEN_ANSWER_BYTES).await.map_err(transport)?;
        let body = answer.bytes;
        if !status.is_success() {
            return Err(exchange_failure(status, installation, error_message(&body), rate_limited));
        }
        if answer.truncated {
            return Err(GitHubError::Auth(format!(
                "the installation token answer for installation {installation} is longer than {MAX_TOKEN_ANSWER_BYTES} bytes"
            )));
        }
        let token: AccessToken = serde_json::from_slice(&body)
            .map_err(|e| GitHubError::Auth(format!("unreadable installation token answer: {e}")))?;
        let lifetime = humantime::parse_rfc3339(&token.expires_at)
            .ok()
            .and_then(|at| at.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        tracing::info!(installation, expires_in_secs = lifetime.as_secs(), "installation token obtained");
        Ok(InstallationToken {
            header: bearer(&token.token)?,
            renew_at: Instant::now() + lifetime.saturating_sub(RENEW_AHEAD),
        })
    }
}

/// What a failed token exchange means: the App's own credentials refused
/// (401), the installation gone (404) or suspended (403 that is no rate
/// limit) are final and named; anything else (5xx, 429) may pass.
fn exchange_failure(status: StatusCode, installation: u64, message: String, rate_limited: bool) -> GitHubError {
    let rate_limit = rate_limited || message.to_ascii_lowercase().contains("rate limit");
    match status.as_u16() {
        401 => GitHubError::AppCredentials(format!("401 to the installation token exchange: {message}")),
        404 => GitHubError::InstallationRemoved { installation },
        403 if !rate_limit => GitHubError::InstallationSuspended { installation, message },
        _ => GitHubError::Auth(format!(
            "GitHub answered {status} to the installation token exchange for installation {installation}: {message}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_exchange_failures_are_classified() {
        let fail = |code: u16, message: &str, rate_limited: bool| {
            exchange_failure(StatusCode::from_u16(code).expect("status"), 7, message.into(), rate_limited)
        };
        assert!(matches!(fail(401, "A JSON web token could not be decoded", false), GitHubError::AppCredentials(_)));
        assert!(matches!(fail(404, "Not Found", false), GitHubError::InstallationRemoved { installation: 7 }));
        assert!(matches!(
            fail(403, "This installation has been suspended", false),
            GitHubError::InstallationSuspended { .. }
        ));
        for (code, message, rate_limited) in [
            (403, "API rate limit exceeded", false),
            (403, "", true),
            (429, "", false),
            (500, "", false),
            (502, "", false),
        ] {
            let error = fail(code, message, rate_limited);
            assert!(matches!(error, GitHubError::Auth(_)) && error.is_retryable(), "{code}: {error}");
        }
        for code in [401, 404, 403] {
            assert!(!fail(code, "", false).is_retryable(), "{code} is final");
        }
    }
}
