//! The `webhookd` binary: parses the command line, loads the configuration and
//! runs one command. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
//! configuration or usage.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use webhookd::cli::{Cli, Command, SendArgs};
use webhookd::config::{ConfigError, Env, GitHubCredential, Settings};
use webhookd::webhook::headers::EventName;
use webhookd::{Application, LogHandler, lifecycle, send, telemetry};

const EXIT_RUNTIME: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match Env::load(cli.env_file.as_deref()) {
        Ok(env) => env,
        Err(e) => return config_error(&e),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&env),
        Command::Check => check(&env),
        Command::Send(args) => send(&env, &args),
    }
}

fn load(env: &Env) -> Result<Settings, ExitCode> {
    Settings::from_env(env).map_err(|errors| {
        eprintln!("webhookd: invalid configuration:");
        for e in &errors.0 {
            eprintln!("  {e}");
        }
        ExitCode::from(EXIT_CONFIG)
    })
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("webhookd: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| {
        eprintln!("webhookd: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_RUNTIME)
    })
}

fn serve(env: &Env) -> ExitCode {
    let settings = match load(env) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Err(e) = telemetry::init(settings.log_format, &settings.log_filter) {
        return config_error(&e);
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let result = rt.block_on(async {
        let app = Application::build(&settings, Arc::new(LogHandler)).await?;
        app.run_until_stopped(lifecycle::wait_for_stop_signal()).await
    });
    match result {
        Ok(report) => {
            tracing::info!(exit_code = report.exit_code(), "webhookd stopped");
            ExitCode::from(report.exit_code())
        }
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "webhookd failed");
            eprintln!("webhookd: {e:#}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn check(env: &Env) -> ExitCode {
    let s = match load(env) {
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
    let settings = match load(env) {
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
