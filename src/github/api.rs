//! The shared client as one delivery sees it: requests on behalf of the
//! delivery's installation, pagination, and the rules' `forward` to URLs
//! outside GitHub through the same pooled connections.

use bytes::Bytes;
use futures::Stream;
use reqwest::Method;
use serde_json::Value;

use super::client::{GitHub, Reply, Request};
use super::error::GitHubError;

impl GitHub {
    /// The client as seen from a delivery of this App installation (ignored
    /// with token authentication).
    pub fn for_installation(&self, installation: Option<u64>) -> GitHubApi<'_> {
        GitHubApi { github: self, installation }
    }
}

/// The shared client seen from one delivery.
#[derive(Clone, Copy)]
pub struct GitHubApi<'a> {
    github: &'a GitHub,
    installation: Option<u64>,
}

impl<'a> GitHubApi<'a> {
    pub fn is_dry_run(&self) -> bool {
        self.github.is_dry_run()
    }

    /// Takes `count` tokens of the content budget (80/min, 500/h) for
    /// requests sent `prepaid` later, all or none: `GitHubError::Paused`
    /// until they are there.
    pub fn take_content_budget(&self, count: u32) -> Result<(), GitHubError> {
        self.github.take_content_budget(self.installation, count)
    }

    pub async fn request(&self, request: Request<'_>) -> Result<Reply, GitHubError> {
        self.github.send(&request, self.installation).await
    }

    pub async fn get(&self, path: &str) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::GET, path, None)).await
    }

    /// A POST that must not be repeated blindly (it creates something): it
    /// counts against the credential's content budget (80/min, 500/h).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::POST, path, Some(body))).await
    }

    /// A POST whose repetition has no further effect.
    pub async fn post_idempotent(&self, path: &str, body: &Value) -> Result<Reply, GitHubError> {
        self.request(Request::new(Method::POST, path, Some(body)).idempotent()).await
    }

    /// POSTs `body` to a URL outside GitHub (the rules' `forward`) through the
    /// same shared client, with `headers` and none of GitHub's (see
    /// `forward`). Dry run: logged, not sent.
    pub async fn forward(&self, url: &str, headers: &[(String, String)], body: Bytes) -> Result<Reply, GitHubError> {
        if self.is_dry_run() {
            let shown = crate::redact::url_str(url);
            tracing::info!(url = shown, bytes = body.len(), "dry run: forward not sent (no credential configured)");
            return Ok(Reply::DryRun);
        }
        super::forward::forward(&self.github.http, url, headers, body).await
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
                                let error = GitHubError::NotJson { path: route_of(&page), reason: e.to_string() };
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

/// A page's path for an error message: without its query (a `Link` URL may
/// carry anything) and without the API URL in front.
fn route_of(page: &str) -> String {
    let path = page.split('?').next().unwrap_or(page);
    match url::Url::parse(path) {
        Ok(url) => url.path().to_owned(),
        Err(_) => path.to_owned(),
    }
}
