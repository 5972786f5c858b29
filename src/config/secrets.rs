//! Secrets: read from a variable or from a file (one per line), such as a
//! systemd credential under `$CREDENTIALS_DIRECTORY`. Values are held in
//! `SecretString`, whose `Debug` prints `[REDACTED]`; errors name the variable
//! and the path, never the content.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{ConfigError, Env};

/// Where systemd's `LoadCredential=` puts credential files.
const CREDENTIALS_DIRECTORY: &str = "CREDENTIALS_DIRECTORY";

/// Reads the secrets named by `var` (a comma-separated list) or `var_file`
/// (one per line). Setting both is an error: which one wins would be a guess.
pub fn read_list(env: &Env, var: &str, var_file: &str) -> Result<Option<Vec<SecretString>>, ConfigError> {
    let values: Vec<String> = match (env.get(var), env.get(var_file)) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(var, format!("set either {var} or {var_file}, not both")));
        }
        (Some(list), None) => list.split(',').map(|s| s.trim().to_owned()).collect(),
        (None, Some(path)) => {
            read_file(env, var_file, path)?.lines().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
        }
        (None, None) => return Ok(None),
    };
    if values.is_empty() || values.iter().any(String::is_empty) {
        let source = if env.get(var).is_some() { var } else { var_file };
        return Err(ConfigError::invalid(source, "contains an empty secret"));
    }
    Ok(Some(values.into_iter().map(SecretString::from).collect()))
}

/// Reads one secret from `var` or `var_file` (first non-empty line).
pub fn read_one(env: &Env, var: &str, var_file: &str) -> Result<Option<SecretString>, ConfigError> {
    match read_list(env, var, var_file)? {
        Some(mut list) if list.len() == 1 => Ok(list.pop()),
        Some(_) => Err(ConfigError::invalid(var, "expected a single value, found several")),
        None => Ok(None),
    }
}

/// Reads the file a `*_FILE` variable names. A relative path that does not
/// exist is looked up in `$CREDENTIALS_DIRECTORY`, so units can say
/// `WEBHOOKD_SECRET_FILE=webhook-secret` next to `LoadCredential=webhook-secret:…`.
pub fn read_file(env: &Env, var: &str, path: &str) -> Result<String, ConfigError> {
    let path = resolve(env, Path::new(path));
    std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::invalid(var, format!("cannot read {}: {e}", path.display())))
}

/// The path a `*_FILE` variable means, after the credentials-directory lookup.
pub fn resolve(env: &Env, path: &Path) -> PathBuf {
    if path.is_relative() && !path.exists() {
        if let Some(dir) = env.get(CREDENTIALS_DIRECTORY) {
            return Path::new(dir).join(path);
        }
    }
    path.to_path_buf()
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn exposed(list: &[SecretString]) -> Vec<&str> {
        list.iter().map(|s| s.expose_secret()).collect()
    }

    #[test]
    fn comma_separated_secrets_are_all_read() {
        let env = Env::from_pairs([("S", "one, two")]);
        let list = read_list(&env, "S", "S_FILE").expect("ok").expect("some");
        assert_eq!(exposed(&list), ["one", "two"]);
    }

    #[test]
    fn file_holds_one_secret_per_line_and_relative_names_use_credentials_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("webhook-secret"), "alpha\n\nbeta\n").expect("write");
        let env = Env::from_pairs([
            ("S_FILE", "webhook-secret"),
            ("CREDENTIALS_DIRECTORY", dir.path().to_str().expect("utf8")),
        ]);
        let list = read_list(&env, "S", "S_FILE").expect("ok").expect("some");
        assert_eq!(exposed(&list), ["alpha", "beta"]);
    }

    #[test]
    fn errors_name_the_variable_and_never_the_value() {
        let env = Env::from_pairs([("S", "hunter2"), ("S_FILE", "/x")]);
        let err = read_list(&env, "S", "S_FILE").expect_err("both set").to_string();
        assert!(err.contains("S_FILE") && !err.contains("hunter2"), "{err}");

        let env = Env::from_pairs([("S", "hunter2,,")]);
        let err = read_list(&env, "S", "S_FILE").expect_err("empty item").to_string();
        assert!(err.starts_with("S:") && !err.contains("hunter2"), "{err}");

        let env = Env::from_pairs([("S_FILE", "/definitely/not/here")]);
        let err = read_list(&env, "S", "S_FILE").expect_err("missing").to_string();
        assert!(err.contains("S_FILE") && err.contains("/definitely/not/here"), "{err}");
    }

    #[test]
    fn debug_output_is_redacted() {
        let env = Env::from_pairs([("S", "hunter2")]);
        let list = read_list(&env, "S", "S_FILE").expect("ok").expect("some");
        assert!(!format!("{list:?}").contains("hunter2"));
    }
}
