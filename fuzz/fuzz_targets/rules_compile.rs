//! `RuleSet::parse`: a rules file (TOML, globs, templates, expressions)
//! compiled from arbitrary text.
//!
//! Invariants: every error has a line and column inside the file and names
//! the file; an accepted set has unique non-empty names, at least one trigger
//! and one action per rule; the value of a variable a `forward` action names
//! (its signing secret) never appears in an error.
//!
//! Skipped inputs: a `secret_file` naming anything but a plain relative file
//! name (the fuzzer must not read `/dev/zero` or a terminal and stall). An
//! `if` holding `}}` once panicked inside minijinja 2.24's lexer (see
//! fuzz/regressions/README.md); the rules compiler now refuses it.
#![no_main]

use std::collections::HashSet;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use webhookd::config::Env;
use webhookd::rules::RuleSet;

/// The forward secret the compile can read (`secret_env = "HOOK_SECRET"`).
const SECRET: &str = "fuzz-forward-secret-Zq8v";

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else { return };
    if skipped(source) {
        return;
    }
    let env = Env::from_pairs([("HOOK_SECRET", SECRET)]);
    let path = Path::new("fuzz-rules.toml");
    match RuleSet::parse(path, source, &env) {
        Ok(set) => {
            let mut names = HashSet::new();
            for rule in &set.rules {
                assert!(!rule.name.is_empty(), "a rule without a name was accepted");
                assert!(names.insert(rule.name.clone()), "duplicate rule name {:?} accepted", rule.name);
                assert!(!rule.on.is_empty(), "rule {:?} has no trigger", rule.name);
                assert!(!rule.actions.is_empty(), "rule {:?} has no action", rule.name);
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "refused without a reason");
            let lines = source.matches('\n').count() + 1;
            for e in &errors {
                assert!(e.line >= 1 && e.line <= lines, "line {} outside 1..={lines}: {e}", e.line);
                assert!(e.column >= 1, "column 0: {e}");
                let shown = e.to_string();
                assert!(shown.starts_with("fuzz-rules.toml:"), "{shown}");
                if !source.contains(SECRET) {
                    assert!(!shown.contains(SECRET), "the forward secret leaked: {shown}");
                }
            }
        }
    }
});

/// Whether the file (if it is TOML at all) has a `secret_file` naming more
/// than a plain file name in the working directory.
fn skipped(source: &str) -> bool {
    fn walk(value: &toml::Value) -> bool {
        match value {
            toml::Value::Table(table) => table.iter().any(|(k, v)| {
                (k == "secret_file"
                    && v.as_str().is_none_or(|p| p.is_empty() || p.contains(['/', '\\']) || p.starts_with('.')))
                    || walk(v)
            }),
            toml::Value::Array(items) => items.iter().any(walk),
            _ => false,
        }
    }
    toml::from_str::<toml::Value>(source).is_ok_and(|v| walk(&v))
}
