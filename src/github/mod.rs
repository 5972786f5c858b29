//! The one GitHub API client of the process. It is built once at start, shared
//! by every worker (so connections are pooled and reused), and dropped only
//! after the workers have stopped, which closes its pooled connections.
//! `auth` picks the credential, `limits` keeps GitHub's rate-limit guidance
//! per credential, `etag` answers repeated GETs from `304`s.

mod api;
mod auth;
mod client;
mod error;
mod etag;
mod forward;
mod limits;
mod read;

pub use api::GitHubApi;
pub use auth::CredentialKey;
pub use client::{GitHub, GitHubResponse, MAX_ANSWER_BYTES, Reply, Request, route_template};
pub use error::GitHubError;
pub use forward::MAX_FORWARD_ANSWER_BYTES;
pub use limits::PauseReason;

/// The GitHub REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// The media type GitHub recommends in `Accept`.
pub const ACCEPT: &str = "application/vnd.github+json";
/// `User-Agent` of every request: webhookd and its version.
pub const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));
