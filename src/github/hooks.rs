//! A webhook's deliveries as GitHub recorded them, and asking GitHub to make
//! one again: how deliveries GitHub failed to make are recovered.
//!
//! The App's own webhook is read as the App (its JWT). An organisation's or a
//! repository's is read with the token, or under App authentication as the
//! App's installation on that account or repository, looked up once with the
//! JWT and remembered (`installs`). Every call goes through `send`: pacing,
//! rate limits, pauses, retries and metrics as for any other request.

use std::time::SystemTime;

use reqwest::Method;
use serde::Deserialize;

use super::client::{GitHub, Reply, Request, RunAs, route_template};
use super::error::GitHubError;
use crate::config::HookSpec;

/// Deliveries asked for per page (GitHub's most).
const PER_PAGE: u32 = 100;
/// Longest organisation, owner or repository name accepted (GitHub's
/// repository names are at most 100 characters, logins 39).
const MAX_NAME_CHARS: usize = 100;

/// What a watched webhook means to the GitHub API: its path, and whose
/// installation may call on it. (The hook itself, as the operator writes
/// it, is `config::HookSpec`.)
impl HookSpec {
    /// The hook's path below the API URL.
    fn path(&self) -> Result<String, GitHubError> {
        Ok(match self {
            Self::App => "/app/hook".to_owned(),
            Self::Org { org, hook_id } => format!("/orgs/{}/hooks/{hook_id}", name(org)?),
            Self::Repo { repo, hook_id } => format!("/repos/{}/hooks/{hook_id}", repository(repo)?),
        })
    }

    /// Where the App's installation on the hook's account or repository is
    /// found, and the key it is remembered under; `None` for the App's own.
    fn installation_lookup(&self) -> Result<Option<(String, String)>, GitHubError> {
        Ok(match self {
            Self::App => None,
            Self::Org { org, .. } => {
                let org = name(org)?;
                Some((format!("/orgs/{org}/installation"), format!("org:{}", org.to_ascii_lowercase())))
            }
            Self::Repo { repo, .. } => {
                let repo = repository(repo)?;
                Some((format!("/repos/{repo}/installation"), format!("repo:{}", repo.to_ascii_lowercase())))
            }
        })
    }
}

/// `text` if it can be an organisation, owner or repository name: one path
/// segment of the characters GitHub allows in them.
fn name(text: &str) -> Result<&str, GitHubError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    let fits = !text.is_empty() && text.len() <= MAX_NAME_CHARS && text.bytes().all(allowed);
    if fits && text != "." && text != ".." { Ok(text) } else { Err(GitHubError::InvalidTarget(text.to_owned())) }
}

/// `owner/name`, both parts checked.
fn repository(repo: &str) -> Result<&str, GitHubError> {
    let invalid = || GitHubError::InvalidTarget(repo.to_owned());
    let (owner, rest) = repo.split_once('/').ok_or_else(invalid)?;
    name(owner).and_then(|_| name(rest)).map_err(|_| invalid())?;
    Ok(repo)
}

/// One attempt GitHub made (or failed to make) to deliver an event.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct HookDelivery {
    /// This attempt.
    pub id: u64,
    /// The `X-GitHub-Delivery` every attempt of the event shares.
    pub guid: String,
    /// RFC 3339.
    pub delivered_at: String,
    pub redelivery: bool,
    /// "OK" when it succeeded, otherwise e.g. "Invalid HTTP Response: 503".
    pub status: String,
    /// 0 when the receiver did not answer.
    pub status_code: u16,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
}

impl HookDelivery {
    /// When GitHub made the attempt; `None` if GitHub's time does not read.
    pub fn delivered_at(&self) -> Option<SystemTime> {
        let text = self.delivered_at.trim();
        // humantime reads UTC written as `Z` only.
        let utc = text.strip_suffix("+00:00").map(|t| format!("{t}Z"));
        humantime::parse_rfc3339(utc.as_deref().unwrap_or(text)).ok()
    }

    /// Whether the receiver took it.
    pub fn succeeded(&self) -> bool {
        self.status == "OK" || (200..300).contains(&self.status_code)
    }
}

/// One page of a hook's deliveries, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveriesPage {
    pub items: Vec<HookDelivery>,
    /// The next (older) page's cursor, to pass back to `hook_deliveries`;
    /// `None` on the last page.
    pub next: Option<String>,
}

impl GitHub {
    /// One page of a hook's deliveries, newest first (`page` None: the
    /// first), 100 a page. A dry run reads an empty page. A hook that is gone
    /// or may not be read answers `GitHubError::Status` 404 (under App
    /// authentication, also when the App is not installed on the hook's
    /// account or repository), a refusal 403 (`rate_limited` false).
    pub async fn hook_deliveries(&self, hook: &HookSpec, page: Option<&str>) -> Result<DeliveriesPage, GitHubError> {
        let mut path = format!("{}/deliveries?per_page={PER_PAGE}", hook.path()?);
        if let Some(cursor) = page {
            path.push_str("&cursor=");
            path.extend(form_urlencoded::byte_serialize(cursor.as_bytes()));
        }
        let response = match self.on_hook(hook, &Request::new(Method::GET, &path, None)).await? {
            Reply::Sent(response) => response,
            Reply::DryRun => return Ok(DeliveriesPage::default()),
        };
        let items = deliveries(&response.body)
            .map_err(|reason| GitHubError::NotJson { path: route_template(&path), reason })?;
        let next = response.next.as_deref().and_then(|link| {
            let cursor = cursor_of(link);
            if cursor.is_none() {
                tracing::warn!(hook = %hook, "GitHub's next page of webhook deliveries has no cursor: paging stops here");
            }
            cursor
        });
        Ok(DeliveriesPage { items, next })
    }

    /// Asks GitHub to deliver attempt `delivery_id` again (GitHub answers
    /// 202). Sent as idempotent (retried after a timeout or 5xx, no content
    /// budget spent): a second redelivery reaches webhookd with the same
    /// `X-GitHub-Delivery`, which it deduplicates. Dry run: logged only.
    pub async fn redeliver(&self, hook: &HookSpec, delivery_id: u64) -> Result<(), GitHubError> {
        let path = format!("{}/deliveries/{delivery_id}/attempts", hook.path()?);
        self.on_hook(hook, &Request::new(Method::POST, &path, None).idempotent()).await.map(drop)
    }

    /// Whether this client's credential can read `hook`'s deliveries at all:
    /// the App's own webhook needs App authentication, and a dry run reads
    /// nothing. (Whether GitHub grants it shows on the first call.)
    pub fn can_read(&self, hook: &HookSpec) -> bool {
        !self.is_dry_run() && (self.is_app() || *hook != HookSpec::App)
    }

    /// Sends `request` as whoever may call on `hook`.
    async fn on_hook(&self, hook: &HookSpec, request: &Request<'_>) -> Result<Reply, GitHubError> {
        let lookup = hook.installation_lookup()?;
        let run_as = match &lookup {
            None => RunAs::App,
            Some(_) if !self.is_app() => RunAs::Installation(None),
            Some((path, key)) => RunAs::Installation(Some(self.installation_of(path, key).await?)),
        };
        let result = self.send_as(request, run_as).await;
        if let (Err(e), Some((_, key))) = (&result, &lookup) {
            // The installation may have changed (reinstalled, repository
            // transferred): look it up again next time.
            let stale =
                matches!(e, GitHubError::InstallationRemoved { .. } | GitHubError::InstallationSuspended { .. })
                    || matches!(e, GitHubError::Status { status, .. } if *status == reqwest::StatusCode::NOT_FOUND);
            if self.is_app() && stale {
                self.installation_ids.forget(key);
            }
        }
        result
    }

    /// The App's installation on an account or repository (`path` finds it):
    /// remembered, or asked of GitHub with the JWT.
    async fn installation_of(&self, path: &str, key: &str) -> Result<u64, GitHubError> {
        if let Some(id) = self.installation_ids.get(key) {
            return Ok(id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let response = match self.send_as(&Request::new(Method::GET, path, None), RunAs::App).await? {
            Reply::Sent(response) => response,
            // Only under App authentication, which is never a dry run.
            Reply::DryRun => return Err(GitHubError::NoInstallation),
        };
        let found: Installation = serde_json::from_slice(&response.body)
            .map_err(|e| GitHubError::NotJson { path: route_template(path), reason: e.to_string() })?;
        tracing::debug!(installation = found.id, route = route_template(path), "App installation found");
        self.installation_ids.put(key.to_owned(), found.id);
        Ok(found.id)
    }
}

/// A page's deliveries. One that does not read is skipped with a warning:
/// it could not be redelivered anyway, and failing the page would stop
/// recovery at it for good.
fn deliveries(body: &[u8]) -> Result<Vec<HookDelivery>, String> {
    let list: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(list
        .iter()
        .filter_map(|item| match HookDelivery::deserialize(item) {
            Ok(delivery) => Some(delivery),
            Err(e) => {
                let id = item.get("id").and_then(serde_json::Value::as_u64);
                tracing::warn!(id, error = %e, "a webhook delivery GitHub listed does not read: skipped");
                None
            }
        })
        .collect())
}

/// The `cursor` of a `rel="next"` link.
fn cursor_of(link: &str) -> Option<String> {
    let query = link.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "cursor").map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests;
