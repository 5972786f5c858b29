//! The GitHub delivery headers webhookd routes and deduplicates on. Values end
//! up in logs and metric labels, so they are checked to be short and plain.

use std::fmt;

use actix_web::http::header::HeaderMap;

/// Longest delivery id accepted (GitHub sends 36-character GUIDs).
const MAX_DELIVERY_ID_LEN: usize = 128;
/// Longest event name accepted (GitHub's longest is under 40).
const MAX_EVENT_LEN: usize = 64;
/// Longest value kept from the optional informational headers.
const MAX_INFO_HEADER_LEN: usize = 128;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("invalid {0} header: {1}")]
    Invalid(&'static str, &'static str),
}

/// `X-GitHub-Delivery`: unique per delivery, the same on a redelivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn parse(raw: &str) -> Result<Self, HeaderError> {
        const NAME: &str = "X-GitHub-Delivery";
        if raw.is_empty() || raw.len() > MAX_DELIVERY_ID_LEN {
            return Err(HeaderError::Invalid(NAME, "expected 1 to 128 characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')) {
            return Err(HeaderError::Invalid(NAME, "expected letters, digits, '-', '_', '.' or ':'"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `X-GitHub-Event`, such as `push` or `pull_request`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct EventName(String);

impl EventName {
    pub fn parse(raw: &str) -> Result<Self, HeaderError> {
        const NAME: &str = "X-GitHub-Event";
        if raw.is_empty()
            || raw.len() > MAX_EVENT_LEN
            || !raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(HeaderError::Invalid(NAME, "expected an event name such as push or pull_request"));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The headers of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubHeaders {
    pub event: EventName,
    pub delivery_id: DeliveryId,
    /// `X-GitHub-Hook-ID`: which webhook configuration sent it.
    pub hook_id: Option<String>,
    /// `X-GitHub-Hook-Installation-Target-Type` (`repository`, `organization`, `integration`…).
    pub target_type: Option<String>,
    /// `X-GitHub-Hook-Installation-Target-ID`.
    pub target_id: Option<String>,
}

impl GitHubHeaders {
    pub fn parse(headers: &HeaderMap) -> Result<Self, HeaderError> {
        let required = |name: &'static str| -> Result<&str, HeaderError> {
            let value = headers.get(name).ok_or(HeaderError::Missing(name))?;
            value.to_str().map_err(|_| HeaderError::Invalid(name, "not visible ASCII"))
        };
        let optional = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= MAX_INFO_HEADER_LEN)
                .map(str::to_owned)
        };
        Ok(Self {
            event: EventName::parse(required("X-GitHub-Event")?)?,
            delivery_id: DeliveryId::parse(required("X-GitHub-Delivery")?)?,
            hook_id: optional("X-GitHub-Hook-ID"),
            target_type: optional("X-GitHub-Hook-Installation-Target-Type"),
            target_id: optional("X-GitHub-Hook-Installation-Target-ID"),
        })
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn parses_all_github_headers() {
        let h = GitHubHeaders::parse(&headers(&[
            ("x-github-event", "issues"),
            ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
            ("x-github-hook-id", "292430182"),
            ("x-github-hook-installation-target-type", "repository"),
            ("x-github-hook-installation-target-id", "79929171"),
        ]))
        .expect("valid");
        assert_eq!(h.event.as_str(), "issues");
        assert_eq!(h.delivery_id.as_str(), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
        assert_eq!(h.hook_id.as_deref(), Some("292430182"));
        assert_eq!(h.target_type.as_deref(), Some("repository"));
        assert_eq!(h.target_id.as_deref(), Some("79929171"));
    }

    #[test]
    fn missing_headers_are_named() {
        let err = GitHubHeaders::parse(&headers(&[("x-github-delivery", "1")])).expect_err("no event");
        assert_eq!(err, HeaderError::Missing("X-GitHub-Event"));
        let err = GitHubHeaders::parse(&headers(&[("x-github-event", "push")])).expect_err("no id");
        assert_eq!(err, HeaderError::Missing("X-GitHub-Delivery"));
    }

    #[test]
    fn odd_values_are_refused() {
        assert!(EventName::parse("Push!").is_err());
        assert!(EventName::parse("projects_v2_item").is_ok(), "event names may hold digits");
        assert!(DeliveryId::parse("a b").is_err());
        assert!(DeliveryId::parse(&"x".repeat(129)).is_err());
    }
}
