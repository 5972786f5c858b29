//! What every GitHub request carries and how GitHub's error answers read:
//! shared by the API client and the token exchange.

use reqwest::header::{ACCEPT, USER_AGENT};
use serde_json::Value;

/// The GitHub REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// The media type GitHub recommends in `Accept`.
pub const ACCEPT_JSON: &str = "application/vnd.github+json";
/// `User-Agent` of every request: webhookd and its version.
pub const WEBHOOKD_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));
/// Longest error message kept from a GitHub answer.
const MAX_ERROR_MESSAGE_CHARS: usize = 300;

/// GitHub's headers, set on each GitHub request (not as client defaults, which
/// would reach `forward` receivers too).
pub(super) fn github_headers(builder: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    builder.header(ACCEPT, ACCEPT_JSON).header("X-GitHub-Api-Version", API_VERSION).header(USER_AGENT, WEBHOOKD_AGENT)
}

/// GitHub's `message` field, or the start of the body.
pub(crate) fn error_message(body: &[u8]) -> String {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
}
