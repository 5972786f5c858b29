//! `webhookd store backup DEST` and `webhookd store verify PATH`: a copy of
//! the SQLite store taken while the daemon runs, and a check that a copy (or
//! a store) would serve a daemon. See docs/backup.md.

use std::path::Path;
use std::process::ExitCode;

use crate::cli::StoreCommand;
use crate::config::{Env, StoreKind, store_from_env};
use crate::queue::StateCounts;
use crate::queue::sqlite::backup::{self, BackupError};
use crate::queue::sqlite::verify;
use crate::run::{EXIT_CONFIG, EXIT_RUNTIME};

pub fn store(env: &Env, command: &StoreCommand) -> ExitCode {
    match command {
        StoreCommand::Backup { dest } => backup_store(env, dest),
        StoreCommand::Verify { path } => verify_store(path),
    }
}

fn backup_store(env: &Env, dest: &Path) -> ExitCode {
    let source = match store_from_env(env) {
        Ok((StoreKind::Sqlite(path), _)) => path,
        Ok((StoreKind::Memory, _)) => {
            eprintln!("webhookd: WEBHOOKD_STORE: memory holds nothing to back up; backups are of a sqlite:PATH store");
            return ExitCode::from(EXIT_CONFIG);
        }
        Ok((StoreKind::Postgres(_), _)) => {
            eprintln!(
                "webhookd: WEBHOOKD_STORE: a PostgreSQL store is backed up with PostgreSQL's own tools (pg_dump); \
                 see docs/backup.md"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(errors) => {
            eprintln!("webhookd: invalid configuration:");
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match backup::backup(&source, dest) {
        Ok(report) => {
            let left_out = match report.left_out {
                0 => String::new(),
                n => format!("; {n} finished deliveries pruned while the backup ran were left out"),
            };
            out!(
                "backup written to {}: {}; database {} bytes, bodies {} bytes in {} segments{left_out}",
                dest.display(),
                deliveries(&report.counts),
                report.database_bytes,
                report.body_bytes,
                report.segments
            );
            ExitCode::SUCCESS
        }
        Err(BackupError::Usage(e)) => {
            eprintln!("webhookd: store backup: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(BackupError::Failed(e)) => {
            eprintln!("webhookd: store backup failed: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn verify_store(path: &Path) -> ExitCode {
    let report = match verify::verify(path) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("webhookd: store verify: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for problem in &report.problems {
        out!("{}: {}", problem.delivery_id.as_deref().unwrap_or("store"), problem.what);
    }
    let verdict = if report.sound() { "sound" } else { "NOT sound" };
    out!(
        "{}: {}; {} bodies read ({} bytes); {} problems: {verdict}",
        path.display(),
        deliveries(&report.counts),
        report.bodies,
        report.body_bytes,
        report.problems.len()
    );
    if report.sound() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_RUNTIME) }
}

fn deliveries(c: &StateCounts) -> String {
    let total = c.queued + c.running + c.done + c.dead;
    format!("{total} deliveries ({} queued, {} running, {} done, {} dead)", c.queued, c.running, c.done, c.dead)
}
