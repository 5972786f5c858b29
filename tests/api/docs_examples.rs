//! The documentation's examples are run, so that they cannot rot.
//!
//! In README.md and docs/*.md:
//! - a ```` ```toml ```` block holding `[[rule]]` must pass `webhookd check`
//!   (exit 0); one whose info string says `toml invalid` must fail it (exit 2);
//!   a variable a forward names (`secret_env = "NAME"`) is set for it;
//! - a ```` ```console ```` block is a transcript: each `$ [VAR=value…] webhookd …`
//!   line is run (in a scratch folder where `rules.toml` is the nearest rules
//!   example above it, `examples/` and `tests/` are the repository's), every
//!   line printed under it must appear in the output, and `$ echo $?` is
//!   followed by the exit code;
//! - a ```` ```sh ```` block made only of `WEBHOOKD_…=value` lines is an
//!   environment file and must pass `webhookd --env-file FILE check` (with a
//!   webhook secret added when the block names none: an excerpt);
//! - every `WEBHOOKD_*` variable the code reads is documented in
//!   docs/configuration.md, and every one the docs name exists;
//! - every relative link points to a file that exists (and an anchor, if
//!   given, to a heading in it).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::process::run_webhookd_in;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, repository-relative, in a stable order.
fn doc_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| PathBuf::from("docs").join(entry.expect("docs entry").file_name()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    files.sort();
    files.insert(0, PathBuf::from("README.md"));
    files
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One fenced code block.
struct Block {
    /// `file:line` of the opening fence, for messages.
    at: String,
    /// The info string's words (`toml`, `invalid`).
    info: Vec<String>,
    body: String,
}

impl Block {
    fn lang(&self) -> &str {
        self.info.first().map_or("", String::as_str)
    }

    fn is_rules(&self) -> bool {
        self.lang() == "toml" && self.body.lines().any(|l| l.trim() == "[[rule]]")
    }
}

/// The fenced blocks of a Markdown text, in order. Fences may be indented (in
/// a list); the body loses the fence's indentation.
fn blocks(path: &Path, text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<(usize, usize, Vec<String>, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match &mut open {
            None if trimmed.starts_with("```") => {
                let info = trimmed.trim_start_matches('`').split_whitespace().map(str::to_owned).collect();
                open = Some((index + 1, line.len() - trimmed.len(), info, String::new()));
            }
            None => {}
            Some(_) if trimmed == "```" => {
                let (line_no, _, info, body) = open.take().expect("open block");
                out.push(Block { at: format!("{}:{line_no}", path.display()), info, body });
            }
            Some((_, indent, _, body)) => {
                let cut = line.char_indices().nth(*indent).map_or(line.len(), |(i, _)| i);
                let cut = if line[..cut].trim().is_empty() { cut } else { 0 };
                body.push_str(&line[cut..]);
                body.push('\n');
            }
        }
    }
    assert!(open.is_none(), "{}: a code block is never closed", path.display());
    out
}

/// A scratch working directory as a reader of the docs has it: the
/// repository's `examples/` and `tests/`, and `rules.toml` when given.
fn scratch(rules: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("scratch dir");
    for shared in ["examples", "tests"] {
        std::os::unix::fs::symlink(repo().join(shared), dir.path().join(shared)).expect("symlink");
    }
    if let Some(rules) = rules {
        std::fs::write(dir.path().join("rules.toml"), rules).expect("write rules.toml");
    }
    dir
}

#[tokio::test]
async fn rules_examples_pass_check_and_those_marked_invalid_fail_it() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in doc_files() {
        for block in blocks(&path, &read(&path)).into_iter().filter(Block::is_rules) {
            let dir = scratch(Some(&block.body));
            let mut env = vec![("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_RULES", "rules.toml")];
            env.extend(forward_secrets(&block.body).into_iter().map(|name| (name, "example")));
            let (code, out) = run_webhookd_in(dir.path(), &["check"], &env).await;
            let want = if block.info.iter().any(|w| w == "invalid") { 2 } else { 0 };
            if code != want {
                failures.push(format!("{}: `webhookd check` exited {code}, expected {want}:\n{out}", block.at));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The cookbook alone has more: finding (almost) none means the markers broke.
    assert!(checked >= 10, "only {checked} rules examples found");
}

/// The variables a rules example's forwards read (`secret_env = "NAME"`).
fn forward_secrets(rules: &str) -> Vec<&str> {
    rules
        .split("secret_env")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('=')?.trim_start().strip_prefix('"')?.split_once('"'))
        .map(|(name, _)| name)
        .collect()
}

/// One `$ ` line of a transcript with what is printed under it.
struct Step {
    command: String,
    expected: Vec<String>,
}

fn steps(body: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for line in body.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            steps.push(Step { command: command.trim().to_owned(), expected: Vec::new() });
        } else if let Some(step) = steps.last_mut() {
            let line = line.trim();
            if !line.is_empty() && line != "…" {
                step.expected.push(line.to_owned());
            }
        }
    }
    steps
}

#[tokio::test]
async fn console_transcripts_match_what_webhookd_prints() {
    let mut failures = Vec::new();
    let mut commands = 0;
    for path in doc_files() {
        let mut rules: Option<String> = None;
        for block in blocks(&path, &read(&path)) {
            if block.is_rules() {
                rules = Some(block.body.clone());
            }
            if block.lang() != "console" {
                continue;
            }
            let dir = scratch(rules.as_deref());
            let mut last_code: Option<i32> = None;
            for step in steps(&block.body) {
                let failure = if step.command == "echo $?" {
                    let want = step.expected.join("\n");
                    match last_code {
                        Some(code) if code.to_string() == want => None,
                        code => Some(format!("exit code {code:?}, the transcript says {want}")),
                    }
                } else {
                    let words: Vec<&str> = step.command.split_whitespace().collect();
                    let split = words.iter().position(|w| !w.contains('=')).unwrap_or(words.len());
                    let env: Vec<(&str, &str)> =
                        words[..split].iter().map(|w| w.split_once('=').expect("an assignment")).collect();
                    if words.get(split) != Some(&"webhookd") || step.command.contains(['"', '\'', '|', '>']) {
                        Some("a console block runs only `[VAR=value …] webhookd ARGS` (no quotes, pipes or redirections); use ```sh for other commands".to_owned())
                    } else {
                        commands += 1;
                        let (code, out) = run_webhookd_in(dir.path(), &words[split + 1..], &env).await;
                        last_code = Some(code);
                        let printed: BTreeSet<&str> = out.lines().map(str::trim).collect();
                        let missing: Vec<&String> =
                            step.expected.iter().filter(|line| !printed.contains(line.as_str())).collect();
                        (!missing.is_empty())
                            .then(|| format!("not printed: {missing:#?}\nprinted (exit {code}):\n{out}"))
                    }
                };
                if let Some(failure) = failure {
                    failures.push(format!("{}: `$ {}`: {failure}", block.at, step.command));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(commands >= 5, "only {commands} transcript commands found");
}

/// A `sh` block whose every line is a comment or `WEBHOOKD_…=value`/`RUST_LOG=…`.
fn env_file(block: &Block) -> Option<&str> {
    // A line with a space is a command with variables in front, not a file line.
    let assignment = |line: &str| {
        !line.contains(char::is_whitespace)
            && line.split_once('=').is_some_and(|(name, _)| {
                (name.starts_with("WEBHOOKD_") || name == "RUST_LOG")
                    && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
    };
    let lines = block.body.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    (block.lang() == "sh" && lines.clone().count() > 0 && lines.clone().all(assignment)).then_some(&block.body)
}

#[tokio::test]
async fn environment_examples_pass_check() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for path in doc_files() {
        for block in blocks(&path, &read(&path)) {
            let Some(vars) = env_file(&block) else { continue };
            let dir = scratch(None);
            std::fs::write(dir.path().join("example.env"), vars).expect("write env file");
            let secret: &[(&str, &str)] =
                if vars.contains("WEBHOOKD_SECRET") { &[] } else { &[("WEBHOOKD_SECRET", "s")] };
            let (code, out) = run_webhookd_in(dir.path(), &["--env-file", "example.env", "check"], secret).await;
            if code != 0 {
                failures.push(format!("{}: `webhookd check` exited {code}:\n{out}", block.at));
            }
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 2, "only {checked} environment examples found");
}

/// Every `WEBHOOKD_…` name in `text` (a run of capitals, digits and `_`).
fn variable_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("WEBHOOKD_") {
        let tail = &rest[at..];
        let end =
            tail.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')).unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_');
        if name.len() > "WEBHOOKD_".len() {
            names.insert(name.to_owned());
        }
        rest = &tail[end.max(1)..];
    }
    names
}

/// The variable names the code quotes (`"WEBHOOKD_…"`), anywhere under src/.
fn variables_in_code() -> BTreeSet<String> {
    fn walk(dir: &Path, names: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("src is readable") {
            let path = entry.expect("src entry").path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).expect("source");
                // Only whole literals (`"WEBHOOKD_LEASE"`), not messages that start with a name.
                for piece in text.split("\"WEBHOOKD_").skip(1) {
                    let end = piece.find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
                    if let Some(end) = end.filter(|&end| end > 0 && piece[end..].starts_with('"')) {
                        names.insert(format!("WEBHOOKD_{}", &piece[..end]));
                    }
                }
            }
        }
    }
    let mut names = BTreeSet::new();
    walk(&repo().join("src"), &mut names);
    names
}

#[test]
fn every_variable_is_documented_and_every_documented_one_exists() {
    let code = variables_in_code();
    assert!(code.contains("WEBHOOKD_SECRET") && code.len() > 20, "the scan of src/ found too little: {code:?}");
    let configuration = read(Path::new("docs/configuration.md"));
    // The test suite's own variables are documented with the tests, not here.
    let undocumented: Vec<&String> = code
        .iter()
        .filter(|name| !name.starts_with("WEBHOOKD_TEST_") && !configuration.contains(&format!("`{name}`")))
        .collect();
    assert!(undocumented.is_empty(), "read by the code but not in docs/configuration.md: {undocumented:?}");
    for path in doc_files() {
        let unknown: Vec<String> =
            variable_names(&read(&path)).into_iter().filter(|name| !code.contains(name)).collect();
        assert!(unknown.is_empty(), "{} names variables the code does not read: {unknown:?}", path.display());
    }
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if !in_code && line.starts_with('#') {
            out.insert(anchor(line.trim_start_matches('#')));
        }
    }
    out
}

/// The targets of the `[text](target)` links of a Markdown text.
fn link_targets(text: &str) -> Vec<String> {
    text.split("](")
        .skip(1)
        .filter_map(|rest| rest.split_once(')').map(|(target, _)| target.trim().to_owned()))
        .collect()
}

#[test]
fn relative_links_resolve() {
    let mut files = doc_files();
    files.push(PathBuf::from("deploy/README.md"));
    let mut broken = Vec::new();
    for path in &files {
        let text = read(path);
        for target in link_targets(&text) {
            if target.starts_with("http://") || target.starts_with("https://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((&target, ""));
            let resolved =
                if file.is_empty() { path.clone() } else { normalise(&path.parent().expect("a parent").join(file)) };
            let full = repo().join(&resolved);
            if !full.exists() {
                broken.push(format!("{}: {target}: no such file", path.display()));
                continue;
            }
            if !fragment.is_empty() && full.extension().is_some_and(|ext| ext == "md") {
                let heads = anchors(&std::fs::read_to_string(&full).expect("linked doc"));
                if !heads.contains(fragment) {
                    broken.push(format!("{}: {target}: no heading with anchor #{fragment}", path.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}
