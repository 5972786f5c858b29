//! The command line: the commands of the contract. Usage errors exit 2 (clap).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "webhookd", version, about = "GitHub webhook receiver and processing daemon")]
pub struct Cli {
    /// Load variables from this file (default: .env if present); real environment variables win.
    #[arg(long, global = true, value_name = "PATH")]
    pub env_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (the default).
    Serve,
    /// Validate the configuration and print what is wrong; starts nothing.
    Check,
    /// Sign FILE with the configured secret and POST it as a GitHub delivery.
    Send(SendArgs),
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The JSON payload to send.
    pub file: PathBuf,
    /// The event name (X-GitHub-Event), such as push or issues.
    #[arg(long)]
    pub event: String,
    /// Full endpoint URL [default: http://$WEBHOOKD_LISTEN/webhook].
    #[arg(long)]
    pub url: Option<String>,
}
