//! Where configuration values come from: an optional env file overlaid by the
//! real process environment. The process environment is never modified (in
//! edition 2024 `set_var` is unsafe for good reason); instead both sources are
//! merged into one map that the rest of the configuration reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The file read when `--env-file` is not given, if it exists.
pub const DEFAULT_ENV_FILE: &str = ".env";

/// A snapshot of configuration variables. Empty values count as unset.
#[derive(Clone, Default)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    /// Reads `env_file` (or `.env` when present), then the process environment,
    /// which wins over the file.
    pub fn load(env_file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        let file = match env_file {
            Some(path) => Some(path.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_ENV_FILE)).filter(|p| p.is_file()),
        };
        if let Some(path) = file {
            let entries = dotenvy::from_path_iter(&path).map_err(|e| env_file_error(&path, e))?;
            for entry in entries {
                let (key, value) = entry.map_err(|e| env_file_error(&path, e))?;
                vars.insert(key, value);
            }
        }
        // An empty variable counts as unset, so it does not hide the file's value.
        vars.extend(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(_, v)| !v.is_empty()),
        );
        Ok(Self { vars })
    }

    /// An environment made of exactly these pairs (tests, embedding).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// The value of `name`, or `None` when it is unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Sets a variable, overriding any earlier value.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.vars.insert(name.into(), value.into());
    }
}

fn env_file_error(path: &Path, err: dotenvy::Error) -> ConfigError {
    // dotenvy's messages quote the offending line, which may hold a secret:
    // report only where the problem is.
    let reason = match err {
        dotenvy::Error::LineParse(line, index) => {
            let number = std::fs::read_to_string(path)
                .ok()
                .and_then(|text| text.lines().position(|l| l.trim_end() == line.trim_end()))
                .map_or_else(String::new, |n| format!("line {}, ", n + 1));
            format!("{number}column {}: expected NAME=value (quote values with spaces or '#')", index + 1)
        }
        dotenvy::Error::Io(e) => e.to_string(),
        _ => "cannot read this env file".to_owned(),
    };
    ConfigError::File { path: path.to_path_buf(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_count_as_unset() {
        let env = Env::from_pairs([("A", ""), ("B", "x")]);
        assert_eq!(env.get("A"), None);
        assert_eq!(env.get("B"), Some("x"));
        assert_eq!(env.get("C"), None);
    }

    #[test]
    fn env_file_is_read_and_missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.env");
        std::fs::write(&path, "WEBHOOKD_TEST_ONLY_VAR=from-file\n").expect("write");
        let env = Env::load(Some(&path)).expect("loads");
        assert_eq!(env.get("WEBHOOKD_TEST_ONLY_VAR"), Some("from-file"));

        let missing = dir.path().join("nope.env");
        let err = Env::load(Some(&missing)).err().expect("missing file fails");
        assert!(err.to_string().contains("nope.env"), "{err}");
    }

    #[test]
    fn env_file_parse_errors_do_not_quote_the_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.env");
        std::fs::write(&path, "GOOD=1\nthis is 'not valid s3cr3t\n").expect("write");
        let err = Env::load(Some(&path)).err().expect("bad file fails").to_string();
        assert!(err.contains("bad.env") && err.contains("line 2"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
