//! The one GitHub API client of the process. It is built once at start, shared
//! by every worker (so connections are pooled and reused), and dropped only
//! after the workers have stopped, which closes its pooled connections.
//! `auth` picks the credential, `limits` keeps GitHub's rate-limit guidance
//! per credential, `etag` answers repeated GETs from `304`s, `hooks` reads
//! a webhook's deliveries and asks for redeliveries.

//!
//! The modules depend one way (no module imports one above it):
//! - bottom: `credential`, `wire`, `read`, `tls`, `budget`, `alarm`,
//!   `deployment`, `installs`, `error` (uses `credential`, `tls`), `etag`
//!   and `limits` (use `credential`, `deployment`);
//! - `auth` (uses `error`, `read`, `wire`);
//! - `client` (the `GitHub` type: uses everything below it);
//! - top: `api` (`GitHubApi`, on `client`), `forward` (on `client`'s types)
//!   and `hooks` (webhook deliveries, on `client`).

mod alarm;
mod api;
mod auth;
mod budget;
mod client;
mod credential;
mod deployment;
mod error;
mod etag;
mod forward;
mod hooks;
mod installs;
mod limits;
mod read;
mod tls;
mod wire;

pub use alarm::CredentialAlarm;
pub use api::GitHubApi;
pub use client::{GitHub, GitHubResponse, IN_REQUEST_WAIT, MAX_ANSWER_BYTES, Reply, Request, route_template};
pub use credential::CredentialKey;
pub use deployment::{DeploymentLimits, PauseListener};
pub use error::GitHubError;
pub use forward::MAX_FORWARD_ANSWER_BYTES;
pub use hooks::{DeliveriesPage, HookDelivery};
pub use limits::PauseReason;
pub use wire::{ACCEPT_JSON as ACCEPT, API_VERSION, WEBHOOKD_AGENT as USER_AGENT};
