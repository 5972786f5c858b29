//! The shared client as one delivery sees it: requests on behalf of the
//! delivery's installation, pagination, and the rules' `forward` to URLs
//! outside GitHub through the same pooled connections.

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::GitHubError;
use super::client::{GitHub, GitHubResponse, Reply, Request, error_message};

/// The shared client seen from one delivery.
#[derive(Clone, Copy)]
pub struct GitHubApi<'a> {
    github: &'a GitHub,
    installation: Option<u64>,
}

impl<'a> GitHubApi<'a> {
    pub(super) fn new(github: &'a GitHub, installation: Option<u64>) -> Self {
        Self { github, installation }
    }

    pub fn is_dry_run(&self) -> bool {
        self.github.is_dry_run()
    }

    pub async fn request(&self, request: Request<'_>) -> Result<Reply, GitHubError> {
        self.github.send(&request, self.installation).await
    }

    pub async fn get(&self, path: &str) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::GET, path, None)).await
    }

    /// A POST that must not be repeated blindly (it creates something).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::POST, path, Some(body))).await
    }

    /// A POST whose repetition has no further effect.
    pub async fn post_idempotent(&self, path: &str, body: &Value) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::POST, path, Some(body)).idempotent()).await
    }

    /// POSTs `body` to a URL outside GitHub (the rules' `forward`) through the
    /// same shared client, with `headers`. Dry run: logged, not sent. Not
    /// retried here: the delivery's own retry covers it.
    pub async fn forward(&self, url: &str, headers: &[(String, String)], body: Bytes) -> Result<Reply, GitHubError> {
        // The URL may carry credentials (user:pass@, ?token=): logs and errors
        // show it without them.
        let shown = redact_url(url);
        if self.is_dry_run() {
            tracing::info!(url = shown, bytes = body.len(), "dry run: forward not sent (no credential configured)");
            return Ok(Reply::DryRun);
        }
        let url_for_errors = shown.clone();
        let url = url.to_owned();
        let mut request = self.github.http.post(&url).body(body);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let transport = |e: reqwest::Error| GitHubError::Transport {
            method: "POST".into(),
            path: url_for_errors.clone(),
            source: e.without_url(),
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            return Ok(Reply::Sent(GitHubResponse { status, body, from_cache: false, next: None }));
        }
        Err(GitHubError::Status {
            method: "POST".into(),
            path: shown,
            status,
            message: error_message(&body),
            rate_limited: false,
        })
    }

    /// Every item of a paginated list, following `Link: rel="next"`.
    pub fn paginate(&self, path: &str) -> impl Stream<Item = Result<Value, GitHubError>> + 'a {
        let api = *self;
        let first = Some(path.to_owned());
        futures::stream::unfold((first, Vec::<Value>::new().into_iter()), move |(mut next, mut items)| async move {
            loop {
                if let Some(item) = items.next() {
                    return Some((Ok(item), (next, items)));
                }
                let page = next.take()?;
                match api.get(&page).await {
                    Ok(Reply::Sent(response)) => {
                        next = response.next.clone();
                        items = match response.json() {
                            Ok(Value::Array(list)) => list.into_iter(),
                            Ok(other) => vec![other].into_iter(),
                            Err(e) => {
                                let error = GitHubError::Auth(format!("page {page} is not JSON: {e}"));
                                return Some((Err(error), (None, Vec::new().into_iter())));
                            }
                        };
                    }
                    Ok(Reply::DryRun) => return None,
                    Err(e) => return Some((Err(e), (None, Vec::new().into_iter()))),
                }
            }
        })
    }
}

/// `url` without userinfo and query, for logs and errors.
fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_urls_are_shown_without_credentials() {
        assert_eq!(redact_url("https://user:pw@hooks.example/in?token=s3cret"), "https://hooks.example/in");
    }
}
