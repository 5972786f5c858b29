//! SIGHUP: re-read the rules file and the secret files without a restart.
//! Each part checks what it reads before it swaps; a broken file is refused
//! with a log line and the old version stays in force.

use std::sync::Arc;

use crate::config::{self, Env};
use crate::rules::RulesHandler;
use crate::webhook::signature::{SharedVerifier, SignatureVerifier};

/// Something SIGHUP re-reads.
pub trait Reloadable: Send + Sync {
    /// What it is, for the log.
    fn name(&self) -> &'static str;
    /// Re-reads; `Ok` says what is in force now, `Err` why the old stays.
    fn reload(&self, env: &Env) -> Result<String, String>;
}

impl Reloadable for SharedVerifier {
    fn name(&self) -> &'static str {
        "webhook secrets"
    }

    fn reload(&self, env: &Env) -> Result<String, String> {
        let secrets = config::webhook_secrets(env).map_err(|e| e.to_string())?;
        self.replace(SignatureVerifier::new(&secrets));
        Ok(format!("{} secrets", secrets.len()))
    }
}

impl Reloadable for RulesHandler {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn reload(&self, env: &Env) -> Result<String, String> {
        match RulesHandler::reload(self, env) {
            Ok(count) => Ok(format!("{count} rules")),
            Err(errors) => Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
        }
    }
}

/// Re-reads everything in `parts` at each SIGHUP, until the task is dropped.
pub async fn reload_on_sighup(mut hangups: tokio::signal::unix::Signal, env: Env, parts: Vec<Arc<dyn Reloadable>>) {
    while hangups.recv().await.is_some() {
        // The env file and process environment are as at start; the files
        // they name (rules, *_FILE secrets) are read again.
        for part in &parts {
            match part.reload(&env) {
                Ok(summary) => tracing::info!(part = part.name(), summary, "reloaded on SIGHUP"),
                Err(error) => {
                    tracing::error!(part = part.name(), error, "reload refused; the previous version stays in force")
                }
            }
        }
    }
}
