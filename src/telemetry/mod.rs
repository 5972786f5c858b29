//! Logging through `tracing`: text or JSON lines on stderr, filtered by
//! `RUST_LOG`. Payload bodies and secrets are never logged; spans carry the
//! delivery id, event, action and repository instead.

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber. Fails (naming `RUST_LOG`) on a bad filter.
pub fn init(format: LogFormat, filter: &str) -> Result<(), ConfigError> {
    let filter =
        EnvFilter::try_new(filter).map_err(|e| ConfigError::invalid("RUST_LOG", format!("invalid log filter: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, embedding) keeps the first subscriber.
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}
