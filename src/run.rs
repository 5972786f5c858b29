//! Process-level entry points shared by the `webhookd` binary and by programs
//! that embed the daemon with their own handler (see `examples/`): load the
//! configuration, start logging and the runtime, serve, and turn the result
//! into the contract's exit codes.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::{ConfigError, Env, Settings};
use crate::handler::{Handler, LogHandler};
use crate::reload::Reloadable;
use crate::rules::{RulesError, RulesHandler};
use crate::telemetry::metrics::Metrics;
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
    serve_with(env, |_, _| Ok((handler, Vec::new())))
}

/// The `webhookd serve` daemon: the rules of `WEBHOOKD_RULES`, reloaded on
/// SIGHUP, or, without rules, a handler that logs each delivery.
pub fn serve_default(env: &Env) -> ExitCode {
    serve_with(env, |settings, metrics| match &settings.rules {
        None => Ok((Arc::new(LogHandler) as Arc<dyn Handler>, Vec::new())),
        Some(path) => {
            let rules =
                Arc::new(RulesHandler::load(path.clone(), env, metrics).map_err(|errors| rules_errors(&errors))?);
            tracing::info!(rules = rules.current().rules.len(), path = %path.display(), "rules loaded");
            Ok((rules.clone() as Arc<dyn Handler>, vec![rules as Arc<dyn Reloadable>]))
        }
    })
}

type HandlerParts = (Arc<dyn Handler>, Vec<Arc<dyn Reloadable>>);

fn serve_with(env: &Env, handler: impl FnOnce(&Settings, Arc<Metrics>) -> Result<HandlerParts, ExitCode>) -> ExitCode {
    let settings = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = telemetry::init(settings.log_format, &settings.log_filter) {
        return config_error(&e);
    }
    let metrics = Arc::new(Metrics::new());
    let (handler, reloadable) = match handler(&settings, metrics.clone()) {
        Ok(parts) => parts,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(startup::serve_until_signalled(&settings, env, handler, metrics, reloadable)) {
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

/// Prints every mistake of a rules file; exit code 2.
pub fn rules_errors(errors: &[RulesError]) -> ExitCode {
    eprintln!("webhookd: invalid rules (WEBHOOKD_RULES):");
    for e in errors {
        eprintln!("  {e}");
    }
    ExitCode::from(EXIT_CONFIG)
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
