//! From the file as written (`file`) to checked rules, collecting every
//! mistake with its position.

use std::collections::BTreeMap;
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use minijinja::Environment;
use secrecy::SecretString;
use toml::Spanned;

use super::file::{OneOrMany, RawAction, RawFile, RawRule, RulesError};
use super::{Action, Rule, Template, Trigger};
use crate::config::Env;

/// States a commit status may have.
const STATUS_STATES: [&str; 4] = ["error", "failure", "pending", "success"];
/// Conclusions a completed check run may have.
/// (`stale` is GitHub's own: apps cannot set it.)
const CHECK_CONCLUSIONS: [&str; 7] =
    ["action_required", "cancelled", "failure", "neutral", "success", "skipped", "timed_out"];

struct Checker<'a> {
    path: &'a Path,
    source: &'a str,
    env: &'a Env,
    /// Compiled templates are registered here, once, by a generated name.
    templates: &'a mut Environment<'static>,
    template_count: usize,
    errors: Vec<RulesError>,
}

pub(super) fn compile(
    path: &Path,
    source: &str,
    env: &Env,
    templates: &mut Environment<'static>,
) -> Result<Vec<Rule>, Vec<RulesError>> {
    let raw: RawFile = toml::from_str(source).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        vec![RulesError::at(path, source, offset, e.message().trim().to_owned())]
    })?;
    let mut checker = Checker { path, source, env, templates, template_count: 0, errors: Vec::new() };
    let mut names = std::collections::HashSet::new();
    let mut rules = Vec::new();
    for raw_rule in raw.rules {
        if !names.insert(raw_rule.name.get_ref().trim().to_owned()) {
            checker.error(
                raw_rule.name.span().start,
                format!("a rule named {:?} exists already: names must be unique", raw_rule.name.get_ref()),
            );
        }
        if let Some(rule) = checker.rule(raw_rule) {
            rules.push(rule);
        }
    }
    if checker.errors.is_empty() { Ok(rules) } else { Err(checker.errors) }
}

impl Checker<'_> {
    fn error(&mut self, offset: usize, message: impl Into<String>) {
        self.errors.push(RulesError::at(self.path, self.source, offset, message));
    }

    fn rule(&mut self, raw: RawRule) -> Option<Rule> {
        let before = self.errors.len();
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            self.error(raw.name.span().start, "a rule needs a non-empty name");
        }
        let on = self.triggers(&raw.on);
        let repository =
            raw.repository.as_ref().and_then(|g| self.globs(g, "repository", "owner/name, e.g. \"octo-org/*\""));
        let organization =
            raw.organization.as_ref().and_then(|g| self.globs(g, "organization", "a login, e.g. \"octo-*\""));
        let sender = raw.sender.as_ref().and_then(|g| self.globs(g, "sender", "a login, e.g. \"dependabot*\""));
        let branch = raw.branch.as_ref().and_then(|g| self.globs(g, "branch", "a branch name, e.g. \"release/*\""));
        let condition = raw.condition.as_ref().map(|c| {
            if let Err(e) = check_expression(self.templates, c.get_ref()) {
                self.error(
                    c.span().start,
                    format!(
                        "`if` does not compile: {e} (write an expression such as \"pull_request.additions > 500\")"
                    ),
                );
            }
            c.get_ref().clone()
        });
        if raw.actions.get_ref().is_empty() {
            self.error(raw.actions.span().start, "a rule needs at least one action");
        }
        let actions: Vec<Action> = raw.actions.into_inner().into_iter().filter_map(|a| self.action(a)).collect();
        (self.errors.len() == before).then_some(Rule {
            name,
            on,
            repository,
            organization,
            sender,
            skip_bots: raw.skip_bots,
            branch,
            labels: raw.labels,
            draft: raw.draft,
            condition,
            actions,
        })
    }

    fn triggers(&mut self, on: &Spanned<OneOrMany>) -> Vec<Trigger> {
        let list = on.get_ref().to_vec();
        if list.is_empty() {
            self.error(on.span().start, "`on` needs at least one event, e.g. \"pull_request.opened\" or \"push\"");
        }
        let mut triggers = Vec::new();
        for item in list {
            let (event, action) = match item.split_once('.') {
                Some((event, action)) => (event, Some(action.to_owned())),
                None => (item.as_str(), None),
            };
            let valid =
                |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid(event) || action.as_deref().is_some_and(|a| !valid(a)) {
                self.error(on.span().start, format!("`on` entry {item:?} is not an event: write \"event\" or \"event.action\", e.g. \"issues.opened\""));
                continue;
            }
            triggers.push(Trigger { event: event.to_owned(), action });
        }
        triggers
    }

    fn globs(&mut self, patterns: &Spanned<OneOrMany>, key: &str, hint: &str) -> Option<GlobSet> {
        let mut builder = GlobSetBuilder::new();
        for pattern in patterns.get_ref().to_vec() {
            match Glob::new(&pattern) {
                Ok(glob) => {
                    builder.add(glob);
                }
                Err(e) => {
                    self.error(
                        patterns.span().start,
                        format!("`{key}` glob {pattern:?} is invalid: {} (write {hint})", e.kind()),
                    );
                    return None;
                }
            }
        }
        builder.build().ok()
    }

    fn template(&mut self, source: &Spanned<String>, key: &str) -> Template {
        let name = format!("t{}", self.template_count);
        self.template_count += 1;
        if let Err(e) = self.templates.add_template_owned(name.clone(), source.get_ref().clone()) {
            self.error(
                source.span().start,
                format!("`{key}` template does not compile: {e} (write text with {{{{ payload.field }}}} placeholders, e.g. \"Thanks @{{{{ sender.login }}}}!\")"),
            );
        }
        Template { name, source: source.get_ref().clone() }
    }

    fn templates_of(&mut self, list: &[Spanned<String>], key: &str) -> Vec<Template> {
        list.iter().map(|t| self.template(t, key)).collect()
    }

    fn one_of(&mut self, value: &Spanned<String>, key: &str, allowed: &[&str]) -> String {
        if !allowed.contains(&value.get_ref().as_str()) {
            self.error(
                value.span().start,
                format!("`{key}` must be one of {}, got {:?}", allowed.join(", "), value.get_ref()),
            );
        }
        value.get_ref().clone()
    }

    fn action(&mut self, raw: Spanned<RawAction>) -> Option<Action> {
        let at = raw.span().start;
        Some(match raw.into_inner() {
            RawAction::Comment(body) => Action::Comment(self.template(&body, "comment")),
            RawAction::AddLabels(labels) => Action::AddLabels(self.templates_of(&labels, "add_labels")),
            RawAction::RemoveLabels(labels) => Action::RemoveLabels(self.templates_of(&labels, "remove_labels")),
            RawAction::Assign(users) => Action::Assign(self.templates_of(&users, "assign")),
            RawAction::RequestReviewers(users) => {
                Action::RequestReviewers(self.templates_of(&users, "request_reviewers"))
            }
            RawAction::Close(true) => Action::Close,
            RawAction::Reopen(true) => Action::Reopen,
            RawAction::Close(false) | RawAction::Reopen(false) => {
                self.error(at, "write `close = true` or `reopen = true`, or remove the action");
                return None;
            }
            RawAction::Status(s) => Action::Status {
                state: self.one_of(&s.state, "state", &STATUS_STATES),
                context: self.template(&s.context, "context"),
                description: s.description.as_ref().map(|t| self.template(t, "description")),
                target_url: s.target_url.as_ref().map(|t| self.template(t, "target_url")),
            },
            RawAction::CheckRun(c) => Action::CheckRun {
                name: self.template(&c.name, "name"),
                conclusion: self.one_of(&c.conclusion, "conclusion", &CHECK_CONCLUSIONS),
                title: c.title.as_ref().map(|t| self.template(t, "title")),
                summary: c.summary.as_ref().map(|t| self.template(t, "summary")),
            },
            RawAction::Dispatch(d) => Action::Dispatch {
                event_type: self.template(&d.event_type, "event_type"),
                client_payload: d
                    .client_payload
                    .iter()
                    .map(|(k, v)| (k.clone(), self.template(v, "client_payload")))
                    .collect::<BTreeMap<_, _>>(),
            },
            RawAction::Forward(f) => {
                let url = f.url.get_ref().clone();
                if url::Url::parse(&url).map_or(true, |u| !matches!(u.scheme(), "http" | "https")) {
                    self.error(f.url.span().start, format!("`url` must be an http(s) URL, got {url:?}"));
                }
                let secret = match (&f.secret_env, &f.secret_file) {
                    (Some(var), None) => match self.env.get(var.get_ref()) {
                        Some(value) => SecretString::from(value.to_owned()),
                        None => {
                            self.error(
                                var.span().start,
                                format!("`secret_env`: the variable {} is not set", var.get_ref()),
                            );
                            return None;
                        }
                    },
                    (None, Some(file)) => {
                        match super::super::config::read_secret_file(self.env, "secret_file", file.get_ref()) {
                            Ok(value) => value,
                            Err(e) => {
                                self.error(file.span().start, e.to_string());
                                return None;
                            }
                        }
                    }
                    _ => {
                        self.error(at, "`forward` needs exactly one of secret_env = \"VARIABLE\" or secret_file = \"PATH\" (the receiver's webhook secret)");
                        return None;
                    }
                };
                Action::Forward { url, secret }
            }
        })
    }
}

/// Template delimiters, which have no place in an expression.
const DELIMITERS: [&str; 6] = ["{{", "}}", "{%", "%}", "{#", "#}"];

/// Whether `expression` compiles. An `if` is an expression, never a
/// template: delimiters are refused first, since minijinja 2.24's lexer
/// panics on `}}` in expression mode (found by fuzzing). Any other panic
/// from the compiler is caught too: a rules file must get an error, never
/// take down `check`, the start or a reload.
fn check_expression(templates: &Environment<'static>, expression: &str) -> Result<(), String> {
    if let Some(delimiter) = DELIMITERS.iter().find(|d| expression.contains(**d)) {
        return Err(format!("an expression holds no template delimiters such as `{delimiter}`"));
    }
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        templates.compile_expression(expression).map(|_| ()).map_err(|e| e.to_string())
    }));
    compiled.unwrap_or_else(|_| Err("the template engine could not parse it".to_owned()))
}
