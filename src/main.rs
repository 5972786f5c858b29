//! The `webhookd` binary: parses the command line, loads the configuration and
//! runs one command. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
//! configuration or usage.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use webhookd::cli::{Cli, Command};
use webhookd::config::Env;
use webhookd::run::config_error;
use webhookd::{LogHandler, commands, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match Env::load(cli.env_file.as_deref()) {
        Ok(env) => env,
        Err(e) => return config_error(&e),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run::serve(&env, Arc::new(LogHandler)),
        Command::Check => commands::check(&env),
        Command::Send(args) => commands::send(&env, &args),
        Command::Deliveries { command } => commands::deliveries(&env, &command),
    }
}
