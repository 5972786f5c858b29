//! The configuration parsers: `Settings::from_env` over arbitrary variables
//! (numbers, durations, URLs, store, log filter and format, secrets, the
//! GitHub credential), and the env-file reader (`Env::load`) over an
//! arbitrary file.
//!
//! Invariants: nothing panics; an error names the variable it is about; the
//! secrets (`WEBHOOKD_SECRET`, `WEBHOOKD_GITHUB_TOKEN`) never reach an error:
//! replacing them with different text of the same shape (commas, spaces and
//! the byte length of each character kept) gives the very same errors; an
//! env-file error never quotes the file.
//!
//! Skipped, because they touch the machine rather than parse: `*_FILE`
//! variables (they read files) and a `WEBHOOKD_LISTEN` that is not a literal
//! address (it would resolve a host name).
#![no_main]

use std::net::SocketAddr;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use webhookd::config::{Env, Settings};

const VARS: [&str; 22] = [
    "WEBHOOKD_LISTEN",
    "WEBHOOKD_SECRET",
    "WEBHOOKD_GITHUB_TOKEN",
    "WEBHOOKD_GITHUB_APP_ID",
    "WEBHOOKD_GITHUB_API_URL",
    "WEBHOOKD_GITHUB_CONCURRENCY",
    "WEBHOOKD_GITHUB_WRITE_INTERVAL",
    "WEBHOOKD_GITHUB_TIMEOUT",
    "WEBHOOKD_WORKERS",
    "WEBHOOKD_STORE",
    "WEBHOOKD_QUEUE_CAPACITY",
    "WEBHOOKD_RETENTION",
    "WEBHOOKD_MAX_ATTEMPTS",
    "WEBHOOKD_RETRY_BACKOFF",
    "WEBHOOKD_MAX_BODY",
    "WEBHOOKD_SHUTDOWN_TIMEOUT",
    "WEBHOOKD_STALL_TIMEOUT",
    "WEBHOOKD_RULES",
    "WEBHOOKD_LOG_FORMAT",
    "RUST_LOG",
    // Settings other branches add (issue 11); unknown ones are ignored.
    "WEBHOOKD_BODY_TIMEOUT",
    "WEBHOOKD_MAX_CONNECTIONS",
];
const SECRET_VARS: [&str; 2] = ["WEBHOOKD_SECRET", "WEBHOOKD_GITHUB_TOKEN"];

#[derive(Debug, Arbitrary)]
enum Input {
    Vars(Vec<(u8, String)>),
    EnvFile(Vec<u8>),
}

fuzz_target!(|input: Input| match input {
    Input::Vars(pairs) => vars(pairs),
    Input::EnvFile(bytes) => env_file(&bytes),
});

fn vars(pairs: Vec<(u8, String)>) {
    let pairs: Vec<(&str, String)> = pairs
        .into_iter()
        .take(40)
        .map(|(i, value)| (VARS[usize::from(i) % VARS.len()], value))
        .filter(|(name, value)| {
            *name != "WEBHOOKD_LISTEN" || value.trim().is_empty() || value.parse::<SocketAddr>().is_ok()
        })
        .collect();
    let errors = |pairs: &[(&str, String)]| match Settings::from_env(&Env::from_pairs(pairs.iter().cloned())) {
        Ok(_) => None,
        Err(e) => Some(e.to_string()),
    };
    let first = errors(&pairs);
    if let Some(text) = &first {
        for line in text.lines() {
            let var = line.split(':').next().unwrap_or_default();
            assert!(var == "RUST_LOG" || var.starts_with("WEBHOOKD_"), "error without a variable: {line:?}");
        }
    }
    let reshaped: Vec<(&str, String)> = pairs
        .iter()
        .map(|(name, value)| (*name, if SECRET_VARS.contains(name) { reshape(value) } else { value.clone() }))
        .collect();
    assert_eq!(first, errors(&reshaped), "an error depends on a secret's text");
}

/// Different text of the same shape: separators and whitespace stay, every
/// other character becomes a different one of the same UTF-8 length.
fn reshape(secret: &str) -> String {
    secret
        .chars()
        .map(|c| match c {
            ',' => c,
            c if c.is_whitespace() || c.is_ascii_control() => c,
            c if c.is_ascii() => {
                if c == 'x' {
                    'y'
                } else {
                    'x'
                }
            }
            c => {
                let pair = match c.len_utf8() {
                    2 => ['é', 'ü'],
                    3 => ['€', '₤'],
                    _ => ['😀', '😁'],
                };
                if c == pair[0] { pair[1] } else { pair[0] }
            }
        })
        .collect()
}

fn env_file(bytes: &[u8]) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("fuzz.env");
    if std::fs::write(&path, bytes).is_err() {
        return;
    }
    let Err(error) = Env::load(Some(&path)) else { return };
    let shown = error.to_string();
    let prefix = format!("{}: ", path.display());
    let reason =
        shown.strip_prefix(&prefix).unwrap_or_else(|| panic!("env-file error does not name the file: {shown:?}"));
    // A parse error says where, never what: fixed text around numbers.
    let without_digits = |s: &str| s.chars().filter(|c| !c.is_ascii_digit()).collect::<String>();
    let allowed = [
        "line 1, column 1: expected NAME=value (quote values with spaces or '#')",
        "column 1: expected NAME=value (quote values with spaces or '#')",
        "stream did not contain valid UTF-8",
        "cannot read this env file",
    ];
    assert!(
        allowed.iter().any(|a| without_digits(a) == without_digits(reason)),
        "env-file error may quote the file: {reason:?}"
    );
}
