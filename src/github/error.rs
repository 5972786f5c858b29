//! Errors of GitHub API calls, with the one question callers ask of them:
//! could trying again later succeed?

use reqwest::StatusCode;

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
    /// No credential could be had for the request.
    #[error("GitHub authentication failed: {0}")]
    Auth(String),
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
            Self::Transport { .. } => true,
            Self::Status { status, rate_limited, .. } => status.is_server_error() || *rate_limited,
            // A failed token exchange is usually GitHub being unwell; a bad key fails at start.
            Self::Auth(_) => true,
            Self::InvalidPath(_) | Self::NoInstallation => false,
        }
    }
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
}
