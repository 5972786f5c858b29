//! Rules: GitHub automation from a TOML file, with no code. A rule names the
//! events it listens to, optional filters and an optional expression, and a
//! list of actions; every matching rule runs, in file order.
//!
//! The file is checked whole when it loads (`webhookd check`, start, SIGHUP):
//! unknown keys and actions, wrong types, bad globs, and templates and
//! expressions that do not compile are each reported with file, line and
//! column. A template can still fail at run time (a field the payload lacks):
//! that fails its action only, as does one that exceeds a render's limits
//! (`render`: fuel and output length).

mod compile;
pub mod engine;
pub mod file;
pub mod matcher;
pub mod plan;
pub mod render;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use globset::GlobSet;
use minijinja::{Environment, UndefinedBehavior};
use secrecy::SecretString;

use crate::config::Env;
pub use engine::RulesHandler;
pub use file::RulesError;
pub use render::{MAX_RENDERED_CHARS, RenderError, TEMPLATE_FUEL};

/// A checked rules file.
pub struct RuleSet {
    pub path: PathBuf,
    pub rules: Vec<Rule>,
    /// Renders templates and evaluates expressions; undefined values are
    /// errors; each render or evaluation gets `TEMPLATE_FUEL`.
    env: Environment<'static>,
}

/// `event`, or `event.action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub event: String,
    pub action: Option<String>,
}

pub struct Rule {
    pub name: String,
    pub on: Vec<Trigger>,
    pub repository: Option<GlobSet>,
    pub organization: Option<GlobSet>,
    pub sender: Option<GlobSet>,
    pub skip_bots: bool,
    pub branch: Option<GlobSet>,
    pub labels: Vec<String>,
    pub draft: Option<bool>,
    /// A minijinja expression over the payload, checked to compile.
    pub condition: Option<String>,
    pub actions: Vec<Action>,
}

/// A template, compiled once when the rules load and kept, by `name`, in the
/// rule set's environment; `source` is kept for messages.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    pub source: String,
}

impl Template {
    /// The source for messages, its start only when it is long.
    pub fn shown(&self) -> String {
        const SHOWN_CHARS: usize = 80;
        if self.source.chars().count() <= SHOWN_CHARS {
            return self.source.clone();
        }
        format!("{}…", self.source.chars().take(SHOWN_CHARS).collect::<String>())
    }
}

pub enum Action {
    Comment(Template),
    AddLabels(Vec<Template>),
    RemoveLabels(Vec<Template>),
    Assign(Vec<Template>),
    RequestReviewers(Vec<Template>),
    Close,
    Reopen,
    Status { state: String, context: Template, description: Option<Template>, target_url: Option<Template> },
    CheckRun { name: Template, conclusion: String, title: Option<Template>, summary: Option<Template> },
    Dispatch { event_type: Template, client_payload: BTreeMap<String, Template> },
    Forward { url: String, secret: SecretString },
}

impl Action {
    /// Whether the action creates content (a comment, a check run, a
    /// dispatch): GitHub budgets those per credential (80/min, 500/h).
    pub fn creates_content(&self) -> bool {
        matches!(self, Self::Comment(_) | Self::CheckRun { .. } | Self::Dispatch { .. })
    }

    /// The action's key in the rules file.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Comment(_) => "comment",
            Self::AddLabels(_) => "add_labels",
            Self::RemoveLabels(_) => "remove_labels",
            Self::Assign(_) => "assign",
            Self::RequestReviewers(_) => "request_reviewers",
            Self::Close => "close",
            Self::Reopen => "reopen",
            Self::Status { .. } => "status",
            Self::CheckRun { .. } => "check_run",
            Self::Dispatch { .. } => "dispatch",
            Self::Forward { .. } => "forward",
        }
    }
}

impl RuleSet {
    /// Reads and checks the rules file at `path`. `env` supplies the secrets
    /// that `forward` actions name.
    pub fn load(path: &Path, env: &Env) -> Result<Self, Vec<RulesError>> {
        let source = std::fs::read_to_string(path).map_err(|e| {
            vec![RulesError {
                path: path.to_path_buf(),
                line: 0,
                column: 0,
                message: format!("cannot read the rules file: {e}"),
            }]
        })?;
        Self::parse(path, &source, env)
    }

    /// Checks rules given as text (`path` names them in errors).
    pub fn parse(path: &Path, source: &str, env: &Env) -> Result<Self, Vec<RulesError>> {
        let mut template_env = Environment::new();
        template_env.set_undefined_behavior(UndefinedBehavior::Strict);
        template_env.set_fuel(Some(TEMPLATE_FUEL));
        let rules = compile::compile(path, source, env, &mut template_env)?;
        Ok(Self { path: path.to_path_buf(), rules, env: template_env })
    }

    /// Renders a template (compiled at load) against a delivery's context,
    /// within the render limits.
    pub fn render(&self, template: &Template, ctx: &minijinja::Value) -> Result<String, RenderError> {
        render::render_capped(&self.env.get_template(&template.name)?, ctx)
    }

    /// Evaluates an expression against a delivery's context (with the same fuel).
    pub fn evaluate(&self, expression: &str, ctx: &minijinja::Value) -> Result<bool, RenderError> {
        Ok(self.env.compile_expression(expression)?.eval(ctx)?.is_true())
    }
}
