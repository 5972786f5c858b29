//! `webhookd check`: validates the whole configuration, opens nothing, and
//! prints a summary that never shows a secret.

use std::process::ExitCode;

use crate::config::{Env, GitHubCredential, StoreKind};
use crate::rules::RuleSet;
use crate::run::{load_settings, rules_errors};

pub fn check(env: &Env) -> ExitCode {
    let s = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let credential = match &s.github.credential {
        Some(GitHubCredential::Token(_)) => "token".to_owned(),
        Some(GitHubCredential::App { app_id, .. }) => format!("GitHub App {app_id} (installation tokens)"),
        None => "none (dry run: calls are logged, not sent)".to_owned(),
    };
    let rules = match &s.rules {
        None => "none: deliveries are logged only".to_owned(),
        Some(path) => match RuleSet::load(path, env) {
            Ok(set) => format!("{} rules in {}", set.rules.len(), path.display()),
            Err(errors) => return rules_errors(&errors),
        },
    };
    let store = match &s.store {
        StoreKind::Memory => "memory (volatile: lost if the process dies)".to_owned(),
        StoreKind::Sqlite(path) => format!("sqlite:{} (durable)", path.display()),
        StoreKind::Postgres(url) => {
            format!("{} ({}; durable, shared by every instance using it)", url.shown(), url.details())
        }
    };
    out!("configuration OK");
    out!("  listen            {}", s.listen);
    out!("  webhook secrets   {} configured", s.secrets.len());
    out!("  GitHub API        {}", crate::redact::url(&s.github.api_url));
    out!("  GitHub credential {credential}");
    out!(
        "  GitHub pacing     {} in flight, writes {} apart, timeout {}",
        s.github.concurrency,
        humantime::format_duration(s.github.write_interval),
        humantime::format_duration(s.github.request_timeout)
    );
    let system = s.github.trust.ssl_cert_file.as_deref().unwrap_or("the system bundle");
    let trust = match &s.github.trust.ca_file {
        Some(path) => format!(
            "web PKI roots, {system}, {} certificates from {}",
            s.github.trust.extra_anchors.len(),
            path.display()
        ),
        None => format!("web PKI roots, {system}"),
    };
    out!("  GitHub trust      {trust} (GitHub calls and forward)");
    let cache = match s.github.cache_bytes {
        0 => "off".to_owned(),
        bytes => format!("{bytes} bytes of conditional-GET answers at most"),
    };
    out!("  GitHub cache      {cache}");
    out!("  workers           {}", s.workers);
    out!("  store             {store}");
    out!("  queue capacity    {}", s.queue_capacity);
    out!("  retention         {}", humantime::format_duration(s.retention));
    out!("  attempts          {} (backoff from {})", s.max_attempts, humantime::format_duration(s.retry_backoff));
    out!("  max body          {} bytes, within {}", s.max_body, humantime::format_duration(s.body_timeout));
    out!("  max connections   {}", s.max_connections);
    out!("  body memory       {} bytes for every body being received, together", s.body_memory);
    out!("  shutdown timeout  {}", humantime::format_duration(s.shutdown_timeout));
    out!("  stall timeout     {} (systemd watchdog)", humantime::format_duration(s.stall_timeout));
    out!("  recovery          {}", recovery_line(&s));
    out!("  rules             {rules}");
    ExitCode::SUCCESS
}

/// Whether recovery of failed deliveries runs, how often, and which hooks
/// it watches (those learned from deliveries are in the store: not opened).
fn recovery_line(s: &crate::config::Settings) -> String {
    let r = &s.recovery;
    if !r.enabled {
        return "off (WEBHOOKD_RECOVERY=off)".to_owned();
    }
    let mut hooks: Vec<String> = Vec::new();
    match &s.github.credential {
        None => return "off (no GitHub credential: dry run)".to_owned(),
        Some(GitHubCredential::App { .. }) => hooks.push("app (App auth)".to_owned()),
        Some(GitHubCredential::Token(_)) => {}
    }
    hooks.extend(r.hooks.iter().filter(|h| **h != crate::recovery::HookSpec::App).map(|h| format!("{h} (configured)")));
    hooks.push("the repository and organization hooks deliveries come from".to_owned());
    format!(
        "every {}, {} back at first; watching {}",
        humantime::format_duration(r.interval),
        humantime::format_duration(r.window),
        hooks.join(", ")
    )
}
