//! The `webhookd` binary: parses the command line, loads the configuration and
//! runs one command. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
//! configuration or usage.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use webhookd::cli::{Cli, Command, SendArgs};
use webhookd::config::{Env, GitHubCredential};
use webhookd::run::{EXIT_CONFIG, EXIT_RUNTIME, config_error, load_settings, runtime};
use webhookd::webhook::headers::EventName;
use webhookd::{LogHandler, run, send};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match Env::load(cli.env_file.as_deref()) {
        Ok(env) => env,
        Err(e) => return config_error(&e),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run::serve(&env, Arc::new(LogHandler)),
        Command::Check => check(&env),
        Command::Send(args) => send(&env, &args),
    }
}

fn check(env: &Env) -> ExitCode {
    let s = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let credential = match &s.github.credential {
        Some(GitHubCredential::Token(_)) => "token",
        None => "none (dry run: calls are logged, not sent)",
    };
    println!("configuration OK");
    println!("  listen            {}", s.listen);
    println!("  webhook secrets   {} configured", s.secrets.len());
    println!("  GitHub API        {}", s.github.api_url);
    println!("  GitHub credential {credential}");
    println!("  workers           {}", s.workers);
    println!("  store             memory (volatile), capacity {}", s.queue_capacity);
    println!("  dedup window      {}", humantime::format_duration(s.retention));
    println!("  max body          {} bytes", s.max_body);
    println!("  shutdown timeout  {}", humantime::format_duration(s.shutdown_timeout));
    println!("  rules             none: deliveries are logged only");
    ExitCode::SUCCESS
}

fn send(env: &Env, args: &SendArgs) -> ExitCode {
    let settings = match load_settings(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let event = match EventName::parse(&args.event) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("webhookd: --event: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let Some(secret) = settings.secrets.first() else {
        eprintln!("webhookd: WEBHOOKD_SECRET: required to sign the delivery");
        return ExitCode::from(EXIT_CONFIG);
    };
    let url = args.url.clone().unwrap_or_else(|| send::default_url(settings.listen));
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(send::send_file(secret, &args.file, &event, &url)) {
        Ok(sent) => {
            println!("delivery {} -> HTTP {}", sent.delivery_id, sent.status);
            println!("{}", sent.body);
            if (200..300).contains(&sent.status) { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
        }
        Err(e) => {
            eprintln!("webhookd: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
