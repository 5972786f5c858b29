//! webhookd: a GitHub webhook receiver and processing daemon.
//!
//! A delivery flows one way:
//! `http` (receive: size, content type, `webhook::signature`, `webhook::headers`,
//! `delivery` parse) → `queue` (bounded, deduplicated hand-off behind the
//! `DeliveryQueue` trait) → `worker` (a pool running a `handler::Handler`) →
//! `github` (the one shared API client). `startup` builds all of it from
//! `config::Settings`; `shutdown` owns the ordered stop; `recovery` asks GitHub
//! to redeliver what it failed to deliver; `lifecycle` turns signals into a
//! stop; `telemetry` holds logging and metrics; `send` is the CLI's
//! signed-delivery sender. docs/architecture.md draws the module graph (one
//! way, checked by a test).

pub mod cli;
pub mod commands;
pub mod config;
pub mod delivery;
pub mod github;
pub mod handler;
pub mod http;
pub mod lifecycle;
pub mod queue;
pub mod recovery;
pub mod redact;
pub mod reload;
pub mod retry;
pub mod rules;
pub mod run;
pub mod send;
pub mod shutdown;
pub mod startup;
pub mod systemd;
pub mod telemetry;
pub mod webhook;
pub mod worker;

pub use delivery::Delivery;
pub use github::{GitHub, GitHubApi};
pub use handler::{Handler, HandlerError, LogHandler};
pub use startup::Application;
