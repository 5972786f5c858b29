//! The rules' `forward`: POSTs a delivery to a receiver outside GitHub
//! through the shared client's pooled connections, but not as a GitHub call:
//! - none of GitHub's headers, only the rule's, `Content-Type` and webhookd's
//!   `User-Agent`;
//! - no redirect is followed (the client's policy follows only redirects
//!   within the GitHub API URL): a 3xx is a failure, so the signed body
//!   never goes anywhere the rule did not name;
//! - at most `MAX_FORWARD_ANSWER_BYTES` of the answer are read, and only its
//!   status is kept: the receiver's words never reach logs or the store.

use bytes::Bytes;
use reqwest::header::USER_AGENT;

use super::client::{GitHubResponse, Reply};
use super::error::GitHubError;
use super::read::read_capped;
use super::wire::WEBHOOKD_AGENT;

/// Most bytes of a forward receiver's answer read; past them the connection
/// is dropped. Only the status counts, the few KB let a short answer's
/// connection go back to the pool.
pub const MAX_FORWARD_ANSWER_BYTES: usize = 4 * 1024;

/// POSTs `body` to `url` with `headers`. Not retried here: the delivery's
/// own retry covers it.
pub(super) async fn forward(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Reply, GitHubError> {
    // The URL may carry credentials (user:pass@, ?token=): logs and errors
    // show it without them.
    let shown = crate::redact::url_str(url);
    let mut request = http.post(url).header(USER_AGENT, WEBHOOKD_AGENT).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let host = url::Url::parse(url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    let transport = |e: reqwest::Error| match super::tls::describe_tls_failure(&e, &host) {
        Some(message) => GitHubError::Tls(format!("forward to {shown}: {message}")),
        None => GitHubError::ForwardTransport { url: shown.clone(), source: e.without_url() },
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    if !status.is_success() {
        // Dropped unread: an error answer's body is of no use to us.
        return Err(GitHubError::Receiver { url: shown, status });
    }
    let answer = read_capped(response, MAX_FORWARD_ANSWER_BYTES).await.map_err(transport)?;
    Ok(Reply::Sent(GitHubResponse { status, body: answer.bytes, from_cache: false, next: None }))
}
