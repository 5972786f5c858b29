//! The `webhookd` binary: parses the command line, loads the configuration and
//! runs one command. Exit codes: 0 clean stop, 1 runtime failure, 2 bad
//! configuration or usage.

use std::process::ExitCode;

use clap::Parser;
use webhookd::cli::{Cli, Command};
use webhookd::config::Env;
use webhookd::run::config_error;
use webhookd::{commands, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = match Env::load(cli.env_file.as_deref()) {
        Ok(env) => env,
        Err(e) => return config_error(&e),
    };
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => run::serve_default(&env),
        Command::Check => commands::check(&env),
        Command::Send(args) => commands::send(&env, &args),
        Command::Deliveries { command } => commands::deliveries(&env, &command),
        Command::Store { command } => commands::store(&env, &command),
        Command::Rules { command } => commands::rules(&env, &command),
        Command::Recover(args) => commands::recover(&env, &args),
    }
}
