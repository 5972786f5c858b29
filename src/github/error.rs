//! Errors of GitHub API calls, with the one question callers ask of them:
//! could trying again later succeed?

use std::time::SystemTime;

use reqwest::StatusCode;

use super::credential::CredentialKey;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub answered with a status other than 2xx.
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Status {
        method: String,
        path: String,
        status: StatusCode,
        message: String,
        /// A 403 or 429 that is a rate limit (quota spent, `retry-after`, or a
        /// secondary-limit message), as opposed to a refusal.
        rate_limited: bool,
    },
    /// The request did not complete (connection, TLS, timeout).
    #[error("GitHub request {method} {path} failed: {source}")]
    Transport {
        method: String,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// The caller asked for a path that is not a GitHub API path.
    #[error("invalid GitHub API path {0:?}: it must start with '/'")]
    InvalidPath(String),
    /// No credential could be had for the request, for a reason that may
    /// pass (GitHub unwell, an unreadable token answer).
    #[error("GitHub authentication failed: {0}")]
    Auth(String),
    /// GitHub refused the App's JWT (401 on the token exchange or on a request
    /// as the App; the text says which): the App id or private key is wrong,
    /// or the host clock is far off. No delivery can succeed until the
    /// operator fixes it.
    #[error(
        "GitHub refused the App's credentials ({0}): check WEBHOOKD_GITHUB_APP_ID, the private key in WEBHOOKD_GITHUB_APP_KEY_FILE and the host clock"
    )]
    AppCredentials(String),
    /// The token exchange answered 404: the App is no longer installed there.
    #[error(
        "GitHub App installation {installation} was not found (404 to the token exchange): the App was uninstalled from that account, or the delivery names another App's installation"
    )]
    InstallationRemoved { installation: u64 },
    /// The token exchange answered 403: the installation is suspended.
    #[error(
        "GitHub App installation {installation} is suspended (403 to the token exchange: {message}): an owner of that account must unsuspend the App"
    )]
    InstallationSuspended { installation: u64, message: String },
    /// A 2xx page of a paginated list that does not parse as JSON.
    #[error("GitHub's page {path} is not JSON: {reason}")]
    NotJson { path: String, reason: String },
    /// The HTTP client could not be built (trust store, TLS settings).
    #[error("building the GitHub HTTP client failed: {0}")]
    ClientBuild(String),
    /// The TLS handshake failed: "TLS handshake with HOST failed: REASON".
    #[error("{0}")]
    Tls(String),
    /// GitHub's answer was longer than the cap; the rest was not read.
    #[error("GitHub's answer to {method} {path} is longer than {limit} bytes; it was not read further")]
    AnswerTooLarge { method: String, path: String, limit: usize },
    /// A `forward` receiver answered with a status other than 2xx. Only the
    /// status is kept: the receiver's body is not ours to log.
    #[error("forward to {url}: receiver answered {status}{}", redirect_note(*.status))]
    Receiver { url: String, status: StatusCode },
    /// A `forward` did not complete (connection, TLS, timeout).
    #[error("forward to {url} failed: {source}")]
    ForwardTransport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The credential is paused for a rate limit longer than a request may
    /// wait: the delivery goes back to the queue, due when the pause ends,
    /// without spending an attempt, and the worker takes another delivery.
    #[error("GitHub rate limit: {credential} is paused until {}", humantime::format_rfc3339_seconds(*.until))]
    Paused { credential: CredentialKey, until: SystemTime },
    /// A request only the GitHub App itself may make (its own webhook's
    /// deliveries), under token authentication.
    #[error(
        "{method} {path} can only be made as the GitHub App (WEBHOOKD_GITHUB_APP_ID and WEBHOOKD_GITHUB_APP_KEY_FILE), not with a token"
    )]
    AppOnly { method: String, path: String },
    /// An organisation or repository name that cannot be a GitHub one (it
    /// would not stay one path segment).
    #[error(
        "invalid webhook target {0:?}: an organisation is a login, a repository owner/name, of letters, digits, '-', '_' and '.'"
    )]
    InvalidTarget(String),
    /// GitHub App authentication needs the installation a delivery names.
    #[error("this delivery names no installation (installation.id), which GitHub App authentication needs")]
    NoInstallation,
}

impl GitHubError {
    /// Whether the same request may succeed later: transport failures,
    /// 5xx answers and rate limits. Any other 4xx (a 403 that is a refusal
    /// included) is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::ForwardTransport { .. } | Self::Paused { .. } | Self::Tls(_) => true,
            // A proxy's error page in place of JSON is usually passing.
            Self::NotJson { .. } => true,
            Self::Status { status, rate_limited, .. } => status.is_server_error() || *rate_limited,
            // GitHub unwell (5xx) or an answer that did not read.
            Self::Auth(_) => true,
            // Only the operator (or an account owner) can change these.
            Self::AppCredentials(_)
            | Self::InstallationRemoved { .. }
            | Self::InstallationSuspended { .. }
            | Self::ClientBuild(_) => false,
            // A receiver that is down or busy may answer later; a redirect or a refusal will not change.
            Self::Receiver { status, .. } => status.is_server_error() || matches!(status.as_u16(), 408 | 429),
            // The same request would get the same answer.
            Self::AnswerTooLarge { .. }
            | Self::InvalidPath(_)
            | Self::NoInstallation
            | Self::AppOnly { .. }
            | Self::InvalidTarget(_) => false,
        }
    }
}

impl GitHubError {
    /// A request that did not complete: a TLS failure says so plainly and
    /// names `host`, anything else is a transport failure.
    pub(super) fn transport(method: &str, path: &str, host: &str, error: reqwest::Error) -> Self {
        match super::tls::describe_tls_failure(&error, host) {
            Some(message) => Self::Tls(message),
            None => Self::Transport { method: method.to_owned(), path: path.to_owned(), source: error.without_url() },
        }
    }
}

/// Says why a 3xx from a receiver is a failure.
fn redirect_note(status: StatusCode) -> &'static str {
    if status.is_redirection() { " (redirects are not followed)" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, rate_limited: bool) -> GitHubError {
        GitHubError::Status {
            method: "POST".into(),
            path: "/repos/o/r/issues/1/comments".into(),
            status: StatusCode::from_u16(code).expect("status"),
            message: String::new(),
            rate_limited,
        }
    }

    #[test]
    fn server_errors_and_rate_limits_are_retryable_other_4xx_are_final() {
        assert!(status(502, false).is_retryable());
        assert!(status(503, false).is_retryable());
        assert!(status(403, true).is_retryable());
        assert!(status(429, true).is_retryable());
        assert!(!status(403, false).is_retryable(), "a 403 refusal is final");
        assert!(!status(404, false).is_retryable());
        assert!(!status(422, false).is_retryable());
        assert!(!GitHubError::InvalidPath("x".into()).is_retryable());
    }

    fn receiver(code: u16) -> GitHubError {
        GitHubError::Receiver {
            url: "https://hooks.example/in".into(),
            status: StatusCode::from_u16(code).expect("status"),
        }
    }

    #[test]
    fn receiver_answers_are_not_labelled_as_github() {
        assert_eq!(
            receiver(307).to_string(),
            "forward to https://hooks.example/in: receiver answered 307 Temporary Redirect (redirects are not followed)"
        );
        assert_eq!(
            receiver(500).to_string(),
            "forward to https://hooks.example/in: receiver answered 500 Internal Server Error"
        );
        assert!(receiver(500).is_retryable() && receiver(429).is_retryable());
        assert!(!receiver(307).is_retryable() && !receiver(404).is_retryable());
    }
}
