//! Does a delivery match a rule? Pure: the rule, the delivery and its payload
//! in, a yes or the reason for no out (shown by `webhookd rules test`).

use serde_json::Value;

use super::{Rule, RuleSet};
use crate::delivery::Delivery;

/// Why a rule does not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mismatch {
    /// A filter says no.
    Filtered(String),
    /// The `if` expression fails on this payload (a field it lacks, a typo).
    Broken(String),
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Filtered(reason) | Self::Broken(reason) => f.write_str(reason),
        }
    }
}

/// Checks every filter of `rule`, cheapest first.
pub fn check(
    set: &RuleSet,
    rule: &Rule,
    delivery: &Delivery,
    payload: &Value,
    ctx: &minijinja::Value,
) -> Result<(), Mismatch> {
    filters(rule, delivery, payload).map_err(Mismatch::Filtered)?;
    if let Some(condition) = &rule.condition {
        match set.evaluate(condition, ctx) {
            Ok(true) => {}
            Ok(false) => return Err(Mismatch::Filtered(format!("`if` {condition:?} is false"))),
            Err(e) => return Err(Mismatch::Broken(format!("`if` {condition:?} cannot be evaluated: {e}"))),
        }
    }
    Ok(())
}

fn filters(rule: &Rule, delivery: &Delivery, payload: &Value) -> Result<(), String> {
    let event = delivery.event().as_str();
    let action = delivery.action();
    if !rule.on.iter().any(|t| t.event == event && (t.action.is_none() || t.action.as_deref() == action)) {
        return Err(format!("listens to other events than {}", delivery.kind()));
    }
    let str_at = |pointer: &str| payload.pointer(pointer).and_then(Value::as_str);
    if let Some(globs) = &rule.repository {
        let repo = str_at("/repository/full_name").unwrap_or("");
        if !globs.is_match(repo) {
            return Err(format!("repository {repo:?} does not match"));
        }
    }
    if let Some(globs) = &rule.organization {
        let org = str_at("/organization/login").or_else(|| str_at("/repository/owner/login")).unwrap_or("");
        if !globs.is_match(org) {
            return Err(format!("organization {org:?} does not match"));
        }
    }
    let sender = str_at("/sender/login").unwrap_or("");
    if let Some(globs) = &rule.sender {
        if !globs.is_match(sender) {
            return Err(format!("sender {sender:?} does not match"));
        }
    }
    if rule.skip_bots && (str_at("/sender/type") == Some("Bot") || sender.ends_with("[bot]")) {
        return Err(format!("sender {sender:?} is a bot"));
    }
    if let Some(globs) = &rule.branch {
        let Some(branch) = branch_of(payload) else { return Err("the delivery names no branch".into()) };
        if !globs.is_match(branch) {
            return Err(format!("branch {branch:?} does not match"));
        }
    }
    if !rule.labels.is_empty() {
        let present = labels_of(payload);
        if let Some(missing) = rule.labels.iter().find(|l| !present.contains(&l.as_str())) {
            return Err(format!("label {missing:?} is not present"));
        }
    }
    if let Some(draft) = rule.draft {
        let is_draft = payload.pointer("/pull_request/draft").and_then(Value::as_bool);
        if is_draft != Some(draft) {
            return Err(format!("draft is not {draft}"));
        }
    }
    Ok(())
}

/// The branch a delivery is about: a pushed branch, a pull request's base
/// branch, or the branch created or deleted.
pub fn branch_of(payload: &Value) -> Option<&str> {
    if let Some(base) = payload.pointer("/pull_request/base/ref").and_then(Value::as_str) {
        return Some(base);
    }
    let git_ref = payload.get("ref").and_then(Value::as_str)?;
    if let Some(branch) = git_ref.strip_prefix("refs/heads/") {
        return Some(branch);
    }
    // create/delete events give a bare name with ref_type.
    (payload.get("ref_type").and_then(Value::as_str) == Some("branch")).then_some(git_ref)
}

/// Names of the labels on the issue or pull request.
fn labels_of(payload: &Value) -> Vec<&str> {
    ["/issue/labels", "/pull_request/labels"]
        .iter()
        .filter_map(|p| payload.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter_map(|l| l.get("name").and_then(Value::as_str))
        .collect()
}
