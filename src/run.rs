//! Process-level entry points shared by the `webhookd` binary and by programs
//! that embed the daemon with their own handler (see `examples/`): load the
//! configuration, start logging and the runtime, serve, and turn the result
//! into the contract's exit codes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{ConfigError, Env, Settings};
use crate::handler::Handler;
use crate::{startup, telemetry};

/// Exit code of a runtime failure (port in use, deliveries abandoned).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code of bad configuration or usage.
pub const EXIT_CONFIG: u8 = 2;

/// Runs the daemon with `handler`, configured from `env_file` (or `.env`) and
/// the environment, until SIGTERM or SIGINT.
pub fn serve_from_env(env_file: Option<&Path>, handler: Arc<dyn Handler>) -> ExitCode {
    match Env::load(env_file) {
        Ok(env) => serve(&env, handler),
        Err(e) => config_error(&e),
    }
}

/// Runs the daemon with `handler` on the configuration in `env`.
pub fn serve(env: &Env, handler: Arc<dyn Handler>) -> ExitCode {
    let settings = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = telemetry::init(settings.log_format, &settings.log_filter) {
        return config_error(&e);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(startup::serve_until_signalled(&settings, handler)) {
        Ok(report) => {
            tracing::info!(exit_code = report.exit_code(), "webhookd stopped");
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "webhookd failed");
            eprintln!("webhookd: {e:#}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Validated settings, or exit code 2 after printing every problem.
pub fn load_settings(env: &Env) -> Result<Settings, ExitCode> {
    Settings::from_env(env).map_err(|errors| {
        eprintln!("webhookd: invalid configuration:");
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

/// Prints a configuration error; exit code 2.
pub fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("webhookd: {e}");
    ExitCode::from(EXIT_CONFIG)
}

/// A multi-threaded Tokio runtime, or exit code 1.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("webhookd: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_RUNTIME)
    })
}
