//! `webhookd deliveries list|show|replay|prune`: the operator's view of the
//! durable store. Tables for people, `--json` for scripts.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cli::DeliveriesCommand;
use crate::config::{Env, StoreKind, store_from_env};
use crate::queue::StoreError;
use crate::queue::admin::{Access, ListFilter, StoreAdmin, Summary};
use crate::queue::postgres::admin::PostgresAdmin;
use crate::queue::sqlite::admin::SqliteAdmin;
use crate::run::{EXIT_CONFIG, EXIT_RUNTIME};

/// Longest error text shown in a table cell.
const MAX_ERROR_CELL: usize = 60;

pub fn deliveries(env: &Env, command: &DeliveriesCommand) -> ExitCode {
    let (store, retention) = match store_from_env(env) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("webhookd: invalid configuration:");
            for e in &errors.0 {
                eprintln!("  {e}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Reading needs no write access, and must not change the store.
    let access = match command {
        DeliveriesCommand::List { .. } | DeliveriesCommand::Show { .. } => Access::ReadOnly,
        DeliveriesCommand::Replay { .. } | DeliveriesCommand::Prune => Access::ReadWrite,
    };
    // One command, a few statements: a runtime on this thread is enough.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("webhookd: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    runtime.block_on(async {
        let admin = match open(&store, access).await {
            Ok(admin) => admin,
            Err(code) => return code,
        };
        match run(admin.as_ref(), command, retention).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("webhookd: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

/// The store's admin access; a store that cannot be opened exits 2, one
/// that cannot be reached (a PostgreSQL server down) exits 1.
async fn open(store: &StoreKind, access: Access) -> Result<Box<dyn StoreAdmin>, ExitCode> {
    let opened: Result<Box<dyn StoreAdmin>, StoreError> = match store {
        StoreKind::Memory => {
            eprintln!(
                "webhookd: WEBHOOKD_STORE: the deliveries commands need a durable store (sqlite:PATH or \
                 postgres://…), not memory"
            );
            return Err(ExitCode::from(EXIT_CONFIG));
        }
        StoreKind::Sqlite(path) => SqliteAdmin::open(path, access).map(|a| Box::new(a) as Box<dyn StoreAdmin>),
        StoreKind::Postgres(url) => {
            PostgresAdmin::connect(url, access).await.map(|a| Box::new(a) as Box<dyn StoreAdmin>)
        }
    };
    opened.map_err(|e| {
        eprintln!("webhookd: {e}");
        let code = if matches!(e, StoreError::Unreachable { .. }) { EXIT_RUNTIME } else { EXIT_CONFIG };
        ExitCode::from(code)
    })
}

async fn run(admin: &dyn StoreAdmin, command: &DeliveriesCommand, retention: Duration) -> Result<ExitCode, StoreError> {
    match command {
        DeliveriesCommand::List { status, event, limit, json } => {
            let filter = ListFilter { state: status.as_deref(), event: event.as_deref(), limit: *limit };
            let rows = admin.list(filter).await?;
            if *json {
                out!("{}", serde_json::to_string_pretty(&rows).unwrap_or_default());
            } else {
                print_table(&rows);
            }
        }
        DeliveriesCommand::Show { id, json } => {
            let Some(detail) = admin.show(id).await? else {
                eprintln!("webhookd: no delivery {id:?} in the store");
                return Ok(ExitCode::from(EXIT_RUNTIME));
            };
            let payload = match &detail.body {
                Ok(body) => payload_value(body, &detail.content_kind),
                Err(_) => Value::Null,
            };
            if *json {
                let mut value = serde_json::to_value(&detail).unwrap_or(Value::Null);
                value["payload"] = payload;
                out!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
            } else {
                let s = &detail.summary;
                out!("delivery      {}", s.delivery_id);
                out!("event         {}{}", s.event, s.action.as_deref().map(|a| format!(".{a}")).unwrap_or_default());
                out!("state         {}", s.state);
                if let Some(owner) = &detail.owner {
                    out!("held by       {owner}");
                }
                out!("attempts      {}", s.attempts);
                out!("received      {}", time(s.received_at));
                if s.state == "queued" {
                    out!("next attempt  {}", time(s.next_attempt_at));
                }
                if let Some(at) = detail.finished_at {
                    out!("finished      {}", time(at));
                }
                out!("last error    {}", s.last_error.as_deref().unwrap_or("-"));
                out!("hook id       {}", detail.hook_id.as_deref().unwrap_or("-"));
                out!(
                    "target        {} {}",
                    detail.target_type.as_deref().unwrap_or("-"),
                    detail.target_id.as_deref().unwrap_or("")
                );
                if let Ok(body) = &detail.body {
                    out!("content type  {} ({} bytes as received)", detail.content_kind, body.len());
                    out!("payload:\n{}", serde_json::to_string_pretty(&payload).unwrap_or_default());
                }
            }
            if let Err(reason) = &detail.body {
                eprintln!("webhookd: delivery {id:?}: {reason}");
                return Ok(ExitCode::from(EXIT_RUNTIME));
            }
        }
        DeliveriesCommand::Replay { ids, status } => {
            if let Some(state) = status {
                let n = admin.replay_state(state).await?;
                out!("{n} {state} deliveries queued again");
            } else {
                // An id given twice is replayed once.
                let mut unique: Vec<String> = Vec::with_capacity(ids.len());
                for id in ids {
                    if !unique.contains(id) {
                        unique.push(id.clone());
                    }
                }
                let replayed = admin.replay(&unique).await?;
                out!("{} deliveries queued again", replayed.queued);
                if !replayed.not_found.is_empty() {
                    eprintln!("webhookd: not in the store: {}", replayed.not_found.join(", "));
                }
                if !replayed.running.is_empty() {
                    eprintln!(
                        "webhookd: running now, left alone (replay once it has finished): {}",
                        replayed.running.join(", ")
                    );
                }
                if !(replayed.not_found.is_empty() && replayed.running.is_empty()) {
                    return Ok(ExitCode::from(EXIT_RUNTIME));
                }
            }
        }
        DeliveriesCommand::Prune => {
            let n = admin.prune(retention).await?;
            out!("{n} finished deliveries older than {} deleted", humantime::format_duration(retention));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Summary]) {
    out!("{:<38} {:<28} {:<8} {:>8}  {:<20} LAST ERROR", "DELIVERY", "EVENT", "STATE", "ATTEMPTS", "RECEIVED");
    for r in rows {
        let event = match &r.action {
            Some(action) => format!("{}.{action}", r.event),
            None => r.event.clone(),
        };
        let error: String = r.last_error.as_deref().unwrap_or("").chars().take(MAX_ERROR_CELL).collect();
        out!(
            "{:<38} {:<28} {:<8} {:>8}  {:<20} {error}",
            r.delivery_id,
            event,
            r.state,
            r.attempts,
            time(r.received_at)
        );
    }
}

/// The payload as JSON (decoding GitHub's form encoding), or the raw text.
fn payload_value(body: &[u8], content_kind: &str) -> Value {
    let raw = bytes::Bytes::copy_from_slice(body);
    let kind = crate::webhook::body::ContentKind::from_name(content_kind);
    crate::webhook::body::json_bytes(kind, &raw)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .unwrap_or_else(|| json!(String::from_utf8_lossy(body)))
}

fn time(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
