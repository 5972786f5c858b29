//! Logging through `tracing`: text or JSON lines on stderr, filtered by
//! `RUST_LOG`. Payload bodies and secrets are never logged; spans carry the
//! delivery id, event, action and repository instead. Logs of libraries that
//! use the `log` crate (reqwest, rustls) come through the same filter.

pub mod metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{ConfigError, LogFormat};

/// Installs the global subscriber writing to stderr. Fails (naming
/// `RUST_LOG`) on a bad filter.
pub fn init(format: LogFormat, filter: &str) -> Result<(), ConfigError> {
    init_with_writer(format, filter, std::io::stderr, std::io::stderr().is_terminal())
}

/// As `init`, writing to `writer` (tests capture logs this way). A second call
/// keeps the first subscriber.
pub fn init_with_writer<W>(format: LogFormat, filter: &str, writer: W, ansi: bool) -> Result<(), ConfigError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(filter).map_err(|e| ConfigError::invalid("RUST_LOG", format!("invalid log filter: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(ansi);
    let _already_set = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
    };
    Ok(())
}
