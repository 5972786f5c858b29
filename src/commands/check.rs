//! `webhookd check`: validates the whole configuration, opens nothing, and
//! prints a summary that never shows a secret.

use std::process::ExitCode;

use crate::config::{Env, GitHubCredential, StoreKind};
use crate::run::load_settings;

pub fn check(env: &Env) -> ExitCode {
    let s = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let credential = match &s.github.credential {
        Some(GitHubCredential::Token(_)) => "token",
        None => "none (dry run: calls are logged, not sent)",
    };
    let store = match &s.store {
        StoreKind::Memory => "memory (volatile: lost if the process dies)".to_owned(),
        StoreKind::Sqlite(path) => format!("sqlite:{} (durable)", path.display()),
    };
    println!("configuration OK");
    println!("  listen            {}", s.listen);
    println!("  webhook secrets   {} configured", s.secrets.len());
    println!("  GitHub API        {}", s.github.api_url);
    println!("  GitHub credential {credential}");
    println!("  workers           {}", s.workers);
    println!("  store             {store}");
    println!("  queue capacity    {}", s.queue_capacity);
    println!("  retention         {}", humantime::format_duration(s.retention));
    println!("  attempts          {} (backoff from {})", s.max_attempts, humantime::format_duration(s.retry_backoff));
    println!("  max body          {} bytes", s.max_body);
    println!("  shutdown timeout  {}", humantime::format_duration(s.shutdown_timeout));
    println!("  rules             none: deliveries are logged only");
    ExitCode::SUCCESS
}
