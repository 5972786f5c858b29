//! `webhookd rules test --event E FILE`: what the rules would do with a
//! payload, call by call (method, path, body), and why each rule that does
//! not match does not. Sends nothing.

use std::path::Path;
use std::process::ExitCode;

use bytes::Bytes;

use crate::cli::RulesCommand;
use crate::config::Env;
use crate::delivery::Delivery;
use crate::rules::{RuleSet, matcher, plan};
use crate::run::{EXIT_CONFIG, rules_errors};
use crate::webhook::body::ContentKind;
use crate::webhook::headers::{DeliveryId, EventName, GitHubHeaders};

pub fn rules(env: &Env, command: &RulesCommand) -> ExitCode {
    match command {
        RulesCommand::Test { event, file } => test(env, event, file),
    }
}

fn test(env: &Env, event: &str, file: &Path) -> ExitCode {
    let Some(path) = env.get("WEBHOOKD_RULES") else {
        eprintln!("webhookd: WEBHOOKD_RULES: set it to the rules file to test");
        return ExitCode::from(EXIT_CONFIG);
    };
    let set = match RuleSet::load(Path::new(path), env) {
        Ok(set) => set,
        Err(errors) => return rules_errors(&errors),
    };
    let delivery = match read_delivery(event, file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("webhookd: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Ok(payload) = delivery.payload() else {
        eprintln!("webhookd: {}: not a JSON payload", file.display());
        return ExitCode::from(EXIT_CONFIG);
    };
    let ctx = plan::context(&delivery, payload);
    out!("{} ({}), {} rules:", file.display(), delivery.kind(), set.rules.len());
    for rule in &set.rules {
        if let Err(reason) = matcher::check(&set, rule, &delivery, payload, &ctx) {
            out!("rule {:?}: no match: {reason}", rule.name);
            continue;
        }
        out!("rule {:?}: matches", rule.name);
        for (index, action) in rule.actions.iter().enumerate() {
            match plan::plan(&set, rule, index, action, &delivery, payload, &ctx) {
                Ok(calls) => {
                    for call in calls {
                        out!("  {}: {}", action.kind(), call.describe());
                    }
                }
                Err(e) => out!("  {}: would fail: {e}", action.kind()),
            }
        }
    }
    out!("(nothing was sent)");
    ExitCode::SUCCESS
}

fn read_delivery(event: &str, file: &Path) -> Result<Delivery, String> {
    let body = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let headers = GitHubHeaders {
        event: EventName::parse(event).map_err(|e| format!("--event: {e}"))?,
        delivery_id: DeliveryId::parse("rules-test").map_err(|e| e.to_string())?,
        hook_id: None,
        target_type: None,
        target_id: None,
    };
    let mut delivery = Delivery::from_verified(headers, ContentKind::Json, Bytes::from(body))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    delivery.attempt = 1;
    Ok(delivery)
}
