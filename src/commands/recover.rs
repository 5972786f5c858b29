//! `webhookd recover`: one recovery pass now, printing per hook what it
//! found and asked for (`--dry-run`: what it would ask). Exit 0 when every
//! hook was read, 1 when GitHub (or the store) could not be.

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::RecoverArgs;
use crate::config::Env;
use crate::github::GitHub;
use crate::recovery::{HookRegistry, HookSpec, PassOptions, Recovery};
use crate::run::{EXIT_CONFIG, EXIT_RUNTIME, load_settings, runtime};
use crate::telemetry::metrics::Metrics;

pub fn recover(env: &Env, args: &RecoverArgs) -> ExitCode {
    let settings = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut hooks = Vec::new();
    for text in &args.hook {
        match HookSpec::parse(text) {
            Ok(spec) => hooks.push(spec),
            Err(e) => {
                eprintln!("webhookd: --hook {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let metrics = Arc::new(Metrics::new());
        let github = match GitHub::new(&settings.github, metrics.clone()) {
            Ok(github) => Arc::new(github),
            Err(e) => {
                eprintln!("webhookd: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        if github.is_dry_run() {
            eprintln!("webhookd: recover needs a GitHub credential (WEBHOOKD_GITHUB_TOKEN or a GitHub App)");
            return ExitCode::from(EXIT_CONFIG);
        }
        let ledger = match crate::queue::open_ledger(&settings.store).await {
            Ok(ledger) => ledger,
            Err(e) => {
                eprintln!("webhookd: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let registry = Arc::new(HookRegistry::default());
        let recovery = Recovery::new(github, ledger, settings.recovery.clone(), registry, metrics);
        let hooks = if hooks.is_empty() { None } else { Some(hooks) };
        let options = PassOptions { window: settings.recovery.window, since: args.since, dry_run: args.dry_run };
        let reports = recovery.pass(hooks, &options).await;
        if args.json {
            out!("{}", serde_json::to_string_pretty(&reports).unwrap_or_default());
        } else if reports.is_empty() {
            out!("no hook to read: name one with --hook, or set WEBHOOKD_RECOVERY_HOOKS (or use GitHub App auth)");
        } else {
            let asked = if args.dry_run { "would ask" } else { "asked" };
            out!(
                "{:<40} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8}",
                "hook",
                "events",
                "failed",
                "held",
                asked,
                "pending",
                "gave up"
            );
            for r in &reports {
                out!(
                    "{:<40} {:>7} {:>7} {:>6} {:>9} {:>8} {:>8}",
                    r.hook,
                    r.events,
                    r.failed,
                    r.held,
                    r.requested,
                    r.pending,
                    r.gave_up
                );
                if let Some(error) = &r.error {
                    out!("  {}: {error}", r.hook);
                }
                if r.truncated {
                    out!("  {}: read the newest {} pages only", r.hook, crate::recovery::pass::MAX_PAGES);
                }
            }
        }
        if reports.iter().any(|r| r.error.is_some()) { ExitCode::from(EXIT_RUNTIME) } else { ExitCode::SUCCESS }
    })
}
