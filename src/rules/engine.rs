//! The rules engine as the daemon's handler: every matching rule's actions
//! run in file order; a failing action is logged with the delivery id and the
//! others still run. The rule set is swapped whole on reload; a delivery
//! finishes on the rules it started with.
//!
//! No double effects where GitHub lets us tell: a delivery may run again
//! after a failure (or a crash), so the comments and check runs webhookd
//! creates carry a mark (a hidden comment line, a check run's
//! `external_id`), and a retried delivery looks for the mark before creating
//! them again. Labels, assignees, reviewers, open/closed and statuses set a
//! state and are safe to repeat. `dispatch` and `forward` leave nothing to
//! look for: a retry sends them again (at least once, as documented).
//!
//! A paused credential (a rate limit longer than a request may wait) stops
//! the delivery at once: the actions left are not tried, and the whole
//! delivery is deferred, to run again from the first action when the pause
//! ends; the marks keep the actions already done from being done twice.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::Value;

use super::plan::{self, Call, Once};
use super::{RuleSet, RulesError};
use crate::config::Env;
use crate::delivery::Delivery;
use crate::github::{CredentialKey, GitHubApi, GitHubError, Request};
use crate::handler::{Handler, HandlerError};
use crate::telemetry::metrics::Metrics;

pub struct RulesHandler {
    path: PathBuf,
    current: RwLock<Arc<RuleSet>>,
    metrics: Arc<Metrics>,
}

/// How one action ended.
enum ActionFailure {
    Retryable(String),
    Permanent(String),
    /// The credential is paused: the delivery is deferred as a whole.
    Deferred {
        credential: CredentialKey,
        until: SystemTime,
    },
}

impl RulesHandler {
    /// Loads the rules at `path`; every problem is returned.
    pub fn load(path: PathBuf, env: &Env, metrics: Arc<Metrics>) -> Result<Self, Vec<RulesError>> {
        let set = RuleSet::load(&path, env)?;
        Ok(Self { path, current: RwLock::new(Arc::new(set)), metrics })
    }

    /// The rules in force.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Re-reads the rules file; a broken one is refused and the old rules stay.
    pub fn reload(&self, env: &Env) -> Result<usize, Vec<RulesError>> {
        let set = RuleSet::load(&self.path, env)?;
        let count = set.rules.len();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        Ok(count)
    }

    async fn run_calls(
        &self,
        calls: Vec<Call>,
        delivery: &Delivery,
        github: &GitHubApi<'_>,
    ) -> Result<(), ActionFailure> {
        for call in calls {
            match call {
                Call::GitHub { method, path, body, idempotent, ok_status, once } => {
                    if let Some(once) = &once {
                        if !delivery.first_run && already_done(github, once).await.map_err(classify)? {
                            tracing::info!(%method, path, "already done by an earlier attempt; not repeated");
                            continue;
                        }
                    }
                    // Content-creating calls were paid for before the actions ran.
                    let mut request = Request::new(method, &path, body.as_ref()).prepaid();
                    if idempotent {
                        request = request.idempotent();
                    }
                    match github.request(request).await {
                        Ok(_) => {}
                        Err(GitHubError::Status { status, .. }) if Some(status.as_u16()) == ok_status => {}
                        Err(e) => return Err(classify(e)),
                    }
                }
                Call::Forward { url, headers, body } => {
                    github.forward(&url, &headers, body).await.map_err(classify)?;
                }
            }
        }
        Ok(())
    }
}

fn classify(e: GitHubError) -> ActionFailure {
    match e {
        GitHubError::Paused { credential, until } => ActionFailure::Deferred { credential, until },
        e if e.is_retryable() => ActionFailure::Retryable(e.to_string()),
        e => ActionFailure::Permanent(e.to_string()),
    }
}

/// Whether an earlier attempt already wrote what `once` marks.
async fn already_done(github: &GitHubApi<'_>, once: &Once) -> Result<bool, GitHubError> {
    let mut items = Box::pin(github.paginate(&once.list));
    while let Some(item) = items.next().await {
        let item = item?;
        // The check-runs list wraps its items in an object.
        let inner = item.get("check_runs").and_then(Value::as_array).cloned().unwrap_or_else(|| vec![item]);
        if inner.iter().any(|i| i.get(once.field).and_then(Value::as_str).is_some_and(|v| v.contains(&once.mark))) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[async_trait]
impl Handler for RulesHandler {
    async fn handle(&self, delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        let set = self.current();
        let payload = delivery.payload()?;
        let ctx = plan::context(delivery, payload);
        let mut retryable = Vec::new();
        let mut permanent = Vec::new();
        let mut matched = Vec::new();
        for rule in &set.rules {
            match super::matcher::check(&set, rule, delivery, payload, &ctx) {
                Ok(()) => matched.push(rule),
                Err(super::matcher::Mismatch::Filtered(reason)) => {
                    tracing::debug!(rule = rule.name, reason, "rule does not match");
                }
                Err(super::matcher::Mismatch::Broken(reason)) => {
                    // Likely a typo in the rule: say so louder than a plain mismatch.
                    tracing::warn!(rule = rule.name, reason, "rule skipped: its condition cannot be evaluated");
                }
            }
        }
        // With the content budget spent, defer before any action runs: every
        // worker that takes one of these deliveries while a token is short
        // would otherwise redo its labels and forwards first, each time.
        // Taking every token it needs at once, it cannot lose a race for the
        // last one halfway through either.
        let content = matched.iter().flat_map(|rule| &rule.actions).filter(|a| a.creates_content()).count();
        if content > 0 {
            if let Err(GitHubError::Paused { credential, until }) =
                github.take_content_budget(u32::try_from(content).unwrap_or(u32::MAX))
            {
                tracing::info!(%credential, "content-creating budget spent; the delivery is deferred before any action");
                return Err(HandlerError::Deferred { credential, until });
            }
        }
        for rule in matched {
            tracing::info!(rule = rule.name, "rule matched");
            self.metrics.rule_matches.with_label_values(&[&rule.name]).inc();
            for (index, action) in rule.actions.iter().enumerate() {
                let result = match plan::plan(&set, rule, index, action, delivery, payload, &ctx) {
                    Ok(calls) => self.run_calls(calls, delivery, github).await,
                    Err(e) => Err(ActionFailure::Permanent(e)),
                };
                let outcome = match result {
                    Ok(()) => "ok",
                    Err(ActionFailure::Deferred { credential, until }) => {
                        tracing::info!(
                            rule = rule.name,
                            action = action.kind(),
                            %credential,
                            "GitHub credential paused for a rate limit; the delivery is deferred"
                        );
                        self.metrics.rule_actions.with_label_values(&[&rule.name, "deferred"]).inc();
                        return Err(HandlerError::Deferred { credential, until });
                    }
                    Err(ActionFailure::Retryable(e)) => {
                        tracing::warn!(
                            rule = rule.name,
                            action = action.kind(),
                            error = e,
                            "action failed; the delivery will retry"
                        );
                        retryable.push(format!("{} {}: {e}", rule.name, action.kind()));
                        "failed"
                    }
                    Err(ActionFailure::Permanent(e)) => {
                        tracing::error!(rule = rule.name, action = action.kind(), error = e, "action failed");
                        permanent.push(format!("{} {}: {e}", rule.name, action.kind()));
                        "failed"
                    }
                };
                self.metrics.rule_actions.with_label_values(&[&rule.name, outcome]).inc();
            }
        }
        // Retrying re-runs every action: the safe ones repeat harmlessly and
        // the marked ones are found and skipped.
        if !retryable.is_empty() {
            retryable.extend(permanent);
            return Err(HandlerError::Retryable(anyhow::anyhow!(retryable.join("; "))));
        }
        if !permanent.is_empty() {
            return Err(HandlerError::Permanent(anyhow::anyhow!(permanent.join("; "))));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_credential_is_a_deferral_not_a_failure() {
        let until = SystemTime::now();
        let paused = GitHubError::Paused { credential: CredentialKey::Token, until };
        assert!(matches!(
            classify(paused),
            ActionFailure::Deferred { credential: CredentialKey::Token, until: u } if u == until
        ));
        assert!(matches!(classify(GitHubError::InvalidPath("x".into())), ActionFailure::Permanent(_)));
    }
}
