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
    /// Work with the rules file (WEBHOOKD_RULES).
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Find deliveries GitHub failed to make and ask for their redelivery, once, now.
    Recover(RecoverArgs),
    /// Inspect and re-queue stored deliveries (SQLite or PostgreSQL store; works while daemons run).
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Back up and verify a SQLite store (works while the daemon runs; see docs/backup.md).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy the store of WEBHOOKD_STORE (its database, then its bodies) into DEST and DEST.bodies/.
    Backup {
        /// The backup's database file; must not exist.
        dest: PathBuf,
    },
    /// Check that a store or backup opens and every delivery's body reads back; exit 1 if not.
    Verify {
        /// The database file (a backup, or a live store: it is only read).
        path: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct RecoverArgs {
    /// Read this far back (at most 3 days), whatever the last pass saw: 6h, 2d.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<std::time::Duration>,
    /// Only this hook: app, org:NAME:HOOK_ID or repo:OWNER/NAME:HOOK_ID (repeatable).
    #[arg(long)]
    pub hook: Vec<String>,
    /// Print what would be asked; ask and record nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON for scripts.
    #[arg(long)]
    pub json: bool,
}

fn parse_since(text: &str) -> Result<std::time::Duration, String> {
    let since = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 6h, 2d)"))?;
    if since > crate::recovery::pass::MAX_WINDOW {
        return Err("GitHub redelivers at most 3 days back".into());
    }
    Ok(since)
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print the GitHub calls the rules would make for a payload file; sends nothing.
    Test {
        /// The event name (X-GitHub-Event), such as pull_request.
        #[arg(long)]
        event: String,
        /// A payload, e.g. one GitHub showed under Recent Deliveries.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeliveriesCommand {
    /// The newest deliveries first.
    List {
        /// Only deliveries in this state.
        #[arg(long, value_parser = ["queued", "running", "done", "dead"])]
        status: Option<String>,
        /// Only deliveries of this event.
        #[arg(long)]
        event: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One delivery: headers, payload, attempts, last error.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue deliveries again with their attempts reset (not running ones); daemons pick them up within a second.
    Replay {
        /// Delivery ids.
        #[arg(required_unless_present = "status", conflicts_with = "status")]
        ids: Vec<String>,
        /// Every delivery in this state instead.
        #[arg(long, value_parser = ["dead", "done"])]
        status: Option<String>,
    },
    /// Delete finished deliveries older than WEBHOOKD_RETENTION now.
    Prune,
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
    /// Load mode: send this many deliveries (each with a fresh id) and print figures.
    #[arg(long)]
    pub count: Option<u64>,
    /// Load mode: senders at once, each over a keep-alive connection.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Load mode: send for this long (e.g. 10s) instead of a count.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "count")]
    pub duration: Option<std::time::Duration>,
    /// Load mode: also wait until the daemon has processed what it accepted
    /// (read from its /metrics, beside --url) and print the sustained rate:
    /// deliveries accepted and processed per second.
    #[arg(long)]
    pub sustained: bool,
    /// With --sustained: the longest wait, after the last answer, for the
    /// accepted deliveries to be processed.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m", requires = "sustained")]
    pub drain_limit: std::time::Duration,
    /// Print the load figures as JSON.
    #[arg(long)]
    pub json: bool,
}
