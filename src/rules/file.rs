//! The rules file as written: TOML with the spans of the values that are
//! checked beyond their type (globs, templates, expressions), so every mistake
//! is reported with its file, line and column. Unknown keys and unknown
//! actions are refused by serde (`deny_unknown_fields`, enum variants), whose
//! messages list what may be written instead.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// One mistake in a rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path.display(), self.line, self.column, self.message)
    }
}

impl RulesError {
    /// An error at byte `offset` of `source`.
    pub fn at(path: &Path, source: &str, offset: usize, message: impl Into<String>) -> Self {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self { path: path.to_path_buf(), line, column, message: message.into() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default, rename = "rule")]
    pub rules: Vec<RawRule>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    /// `event` or `event.action`, one or a list.
    pub on: Spanned<OneOrMany>,
    pub repository: Option<Spanned<OneOrMany>>,
    pub organization: Option<Spanned<OneOrMany>>,
    pub sender: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub skip_bots: bool,
    pub branch: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub labels: Vec<String>,
    pub draft: Option<bool>,
    #[serde(rename = "if")]
    pub condition: Option<Spanned<String>>,
    pub actions: Spanned<Vec<Spanned<RawAction>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAction {
    Comment(Spanned<String>),
    AddLabels(Vec<Spanned<String>>),
    RemoveLabels(Vec<Spanned<String>>),
    Assign(Vec<Spanned<String>>),
    RequestReviewers(Vec<Spanned<String>>),
    Close(bool),
    Reopen(bool),
    Status(RawStatus),
    CheckRun(RawCheckRun),
    Dispatch(RawDispatch),
    Forward(RawForward),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    pub state: Spanned<String>,
    pub context: Spanned<String>,
    pub description: Option<Spanned<String>>,
    pub target_url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckRun {
    pub name: Spanned<String>,
    pub conclusion: Spanned<String>,
    pub title: Option<Spanned<String>>,
    pub summary: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDispatch {
    pub event_type: Spanned<String>,
    #[serde(default)]
    pub client_payload: std::collections::BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForward {
    pub url: Spanned<String>,
    /// Name of the environment variable holding this forward's signing secret.
    pub secret_env: Option<Spanned<String>>,
    /// File holding this forward's signing secret.
    pub secret_file: Option<Spanned<String>>,
}
