//! The one GitHub API client of the process. It is built once at start, shared
//! by every worker (so connections are pooled and reused), and dropped only
//! after the workers have stopped, which closes its pooled connections.

mod client;
mod error;

pub use client::{GitHub, GitHubResponse, Reply};
pub use error::GitHubError;

/// The GitHub REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// The media type GitHub recommends in `Accept`.
pub const ACCEPT: &str = "application/vnd.github+json";
/// `User-Agent` of every request: webhookd and its version.
pub const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));
