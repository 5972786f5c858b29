//! The PostgreSQL store as an operator meets it: `WEBHOOKD_STORE` or
//! `WEBHOOKD_STORE_FILE`, what `check` and the logs show of the URL (never
//! its password), and the exit codes of a start that cannot use the server:
//! 2 for a bad URL or a schema from a newer webhookd, 1 for a server that
//! cannot be reached. Tests that need a server skip without
//! `WEBHOOKD_TEST_DATABASE_URL`.

use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::process::Command;

use crate::helpers::{TEST_SECRET, test_database};
use crate::process::{Daemon, webhookd_bin};

/// The two places a URL carries a password; neither may ever be printed.
const USERINFO_PASSWORD: &str = "pw-userinfo-7d3a5e";
const PARAMETER_PASSWORD: &str = "pw-parameter-91c4b0";
/// A start that cannot use its store must say so well within this.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Runs `webhookd ARGS` with only `env`, killed if it outlives `START_LIMIT`;
/// returns the exit code and stdout + stderr.
async fn run_within_limit(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let workdir = tempfile::tempdir().expect("workdir");
    let run = Command::new(webhookd_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(workdir.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(START_LIMIT, run)
        .await
        .unwrap_or_else(|_| panic!("webhookd {args:?} still running after {START_LIMIT:?}"))
        .expect("webhookd runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn assert_no_password(output: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!output.contains(secret), "the password {secret:?} was printed:\n{output}");
    }
}

/// `url` with a password in its userinfo and in a `password=` parameter,
/// and the passwords to look for. A URL that already has one keeps it (the
/// server wants it); one without is for a server that asks for none, which
/// then ignores the made-up ones.
fn with_passwords(url: &str) -> (String, Vec<String>) {
    let mut url = url::Url::parse(url).expect("a URL");
    match url.password() {
        Some(existing) => {
            let existing = existing.to_owned();
            (url.to_string(), vec![existing])
        }
        None => {
            url.set_password(Some(USERINFO_PASSWORD)).expect("a URL with a host takes a password");
            url.query_pairs_mut().append_pair("password", PARAMETER_PASSWORD);
            (url.to_string(), vec![USERINFO_PASSWORD.to_owned(), PARAMETER_PASSWORD.to_owned()])
        }
    }
}

#[tokio::test]
async fn an_unreachable_server_exits_1_naming_the_host_and_not_the_password() {
    let store = format!("postgres://postgres:{USERINFO_PASSWORD}@127.0.0.1:1/test?password={PARAMETER_PASSWORD}");
    let (code, output) = run_within_limit(
        &["serve"],
        &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_LISTEN", "127.0.0.1:0"), ("WEBHOOKD_STORE", &store)],
    )
    .await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("cannot reach PostgreSQL at 127.0.0.1:1"), "{output}");
    assert_no_password(&output, &[USERINFO_PASSWORD, PARAMETER_PASSWORD]);
}

#[tokio::test]
async fn a_database_the_server_does_not_have_exits_2_as_a_configuration_error() {
    let Ok(admin) = std::env::var(crate::helpers::TEST_DATABASE_VAR) else { return };
    let mut url = url::Url::parse(&admin).expect("a URL");
    url.set_path("/webhookd_no_such_database");
    let (code, output) = run_within_limit(
        &["serve"],
        &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_LISTEN", "127.0.0.1:0"), ("WEBHOOKD_STORE", url.as_str())],
    )
    .await;
    // Not "unreachable" (exit 1, which systemd would retry forever): the
    // server answered, and refused what the configuration asks for.
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("webhookd_no_such_database"), "{output}");
}

#[tokio::test]
async fn a_bad_store_url_exits_2_naming_the_variable_and_not_the_password() {
    let store = format!(
        "postgres://app:{USERINFO_PASSWORD}@db.example:5432/hooks?sslmode=sometimes&password={PARAMETER_PASSWORD}"
    );
    for command in ["serve", "check"] {
        let (code, output) = run_within_limit(
            &[command],
            &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_LISTEN", "127.0.0.1:0"), ("WEBHOOKD_STORE", &store)],
        )
        .await;
        assert_eq!(code, 2, "{command}: {output}");
        assert!(output.contains("WEBHOOKD_STORE: not a usable PostgreSQL URL"), "{command}: {output}");
        assert!(output.contains("db.example:5432/hooks"), "{command}: {output}");
        assert_no_password(&output, &[USERINFO_PASSWORD, PARAMETER_PASSWORD]);
    }

    // The same from a file is named by the file's variable.
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("store-url");
    std::fs::write(&file, format!("{store}\n")).expect("write");
    let file = file.to_str().expect("utf8");
    let (code, output) =
        run_within_limit(&["serve"], &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE_FILE", file)]).await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("WEBHOOKD_STORE_FILE:") && output.contains(file), "{output}");
    assert_no_password(&output, &[USERINFO_PASSWORD, PARAMETER_PASSWORD]);

    let (code, output) = run_within_limit(
        &["check"],
        &[("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", "memory"), ("WEBHOOKD_STORE_FILE", file)],
    )
    .await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("set either WEBHOOKD_STORE or WEBHOOKD_STORE_FILE, not both"), "{output}");
}

#[tokio::test]
async fn check_shows_the_store_without_its_password_from_the_variable_or_a_credential_file() {
    let store = format!(
        "postgresql://app:{USERINFO_PASSWORD}@db.example:6432/hooks?sslmode=require&password={PARAMETER_PASSWORD}"
    );
    let credentials = tempfile::tempdir().expect("credentials directory");
    std::fs::write(credentials.path().join("store-url"), format!("\n{store}\n")).expect("write");
    let credentials = credentials.path().to_str().expect("utf8");
    for source in [
        vec![("WEBHOOKD_STORE", store.as_str())],
        vec![("WEBHOOKD_STORE_FILE", "store-url"), ("CREDENTIALS_DIRECTORY", credentials)],
    ] {
        let mut env = vec![("WEBHOOKD_SECRET", TEST_SECRET)];
        env.extend(source);
        // `check` opens nothing: db.example need not exist.
        let (code, output) = run_within_limit(&["check"], &env).await;
        assert_eq!(code, 0, "{output}");
        let line = output.lines().find(|l| l.trim_start().starts_with("store ")).expect("a store line");
        assert!(line.contains("postgresql://db.example:6432/hooks"), "{line}");
        assert!(line.contains("user app, database hooks, sslmode require"), "{line}");
        assert_no_password(&output, &[USERINFO_PASSWORD, PARAMETER_PASSWORD]);
    }
}

#[tokio::test]
async fn the_startup_log_shows_the_store_without_its_password() {
    let Some(db) = test_database().await else { return };
    let (store, passwords) = with_passwords(&db.url);
    let passwords: Vec<&str> = passwords.iter().map(String::as_str).collect();
    let credentials = tempfile::tempdir().expect("credentials directory");
    std::fs::write(credentials.path().join("store-url"), format!("{store}\n")).expect("write");
    let credentials_dir = credentials.path().to_str().expect("utf8");

    let mut daemon = Daemon::start(
        &webhookd_bin(),
        &[
            ("WEBHOOKD_SECRET", TEST_SECRET),
            ("WEBHOOKD_STORE_FILE", "store-url"),
            ("CREDENTIALS_DIRECTORY", credentials_dir),
        ],
    )
    .await;
    let started = daemon.output();
    let line = started.lines().find(|l| l.contains("webhookd started")).expect("the startup line");
    let line: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    let shown = line["store"].as_str().expect("store field");
    let database = db.url.rsplit('/').next().expect("a database name");
    assert!(shown.starts_with("postgres://") && shown.ends_with(&format!("/{database}")), "{shown}");
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait().await.success(), "{}", daemon.output());
    assert_no_password(&daemon.output(), &passwords);
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_exits_2() {
    let Some(db) = test_database().await else { return };
    let env = [("WEBHOOKD_SECRET", TEST_SECRET), ("WEBHOOKD_STORE", db.url.as_str())];
    // A first start sets the schema up.
    let mut daemon = Daemon::start(&webhookd_bin(), &env).await;
    daemon.signal(Signal::SIGTERM);
    assert!(daemon.wait().await.success(), "{}", daemon.output());
    // As a newer webhookd would leave it.
    let mut conn = db.connect().await;
    let updated = sqlx::query("UPDATE webhookd_schema SET version = 999")
        .execute(&mut conn)
        .await
        .expect("the schema version is recorded");
    assert_eq!(updated.rows_affected(), 1);

    let (code, output) = run_within_limit(&["serve"], &[("WEBHOOKD_LISTEN", "127.0.0.1:0"), env[0], env[1]]).await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("newer webhookd (schema version 999)"), "{output}");
    assert!(output.contains("upgrade"), "{output}");
}
