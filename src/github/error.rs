//! Errors of GitHub API calls, with the one question callers ask of them:
//! could trying again later succeed?

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// GitHub answered with a status other than 2xx.
    #[error("GitHub answered {status} to {method} {path}: {message}")]
    Status { method: String, path: String, status: StatusCode, message: String },
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
}

impl GitHubError {
    /// Whether the same request may succeed later: transport failures,
    /// 5xx answers and rate limits (403/429). Any other 4xx is final.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS || *status == StatusCode::FORBIDDEN
            }
            Self::InvalidPath(_) => false,
        }
    }
}
