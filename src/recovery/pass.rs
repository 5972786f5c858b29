//! One recovery pass over one hook: page back through GitHub's list of its
//! delivery attempts (newest first) to where the last pass stopped, group the
//! attempts by event, and ask GitHub to redeliver each event that no attempt
//! delivered and webhookd does not hold.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::hooks::HookSpec;
use super::judge::{Attempt, Verdict, judge};
use crate::github::GitHub;
use crate::queue::RecoveryLedger;

/// Pages of 100 attempts read per hook and pass at most (10,000 attempts):
/// a hook busier than that between two passes is read that far back only.
pub const MAX_PAGES: usize = 100;
/// A pass reads this far behind the last one's newest attempt, so that the
/// outcome of a redelivery it asked for is seen.
const OVERLAP: Duration = Duration::from_secs(3600);
/// GitHub redelivers attempts of the past three days only.
pub const MAX_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);

/// How a pass runs.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// How far back a hook with no checkpoint is read.
    pub window: Duration,
    /// Read this far back whatever the checkpoint (`webhookd recover --since`).
    pub since: Option<Duration>,
    /// Say what would be asked; ask nothing, record nothing.
    pub dry_run: bool,
}

/// What a pass found on one hook.
#[derive(Debug, Default, Serialize)]
pub struct HookReport {
    pub hook: String,
    /// Events (distinct `X-GitHub-Delivery`) seen.
    pub events: usize,
    /// Events no attempt delivered.
    pub failed: usize,
    /// Of those, the ones webhookd holds anyway.
    pub held: usize,
    /// Redeliveries asked for (or, in a dry run, that would be).
    pub requested: usize,
    /// Asked before; GitHub has not tried again yet.
    pub pending: usize,
    /// Asked the most times already, failed each time.
    pub gave_up: usize,
    pub pages: usize,
    /// The pass stopped at `MAX_PAGES` before reaching where the last one stopped.
    pub truncated: bool,
    /// Why GitHub (or the store) could not be read: the pass did not complete.
    pub error: Option<String>,
}

pub(super) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(super) fn unix_ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

use unix_ms_of as ms;

/// One pass over `hook`.
pub async fn run(github: &GitHub, ledger: &dyn RecoveryLedger, hook: &HookSpec, options: &PassOptions) -> HookReport {
    let mut report = HookReport { hook: hook.to_string(), ..HookReport::default() };
    if let Err(error) = examine(github, ledger, hook, options, &mut report).await {
        report.error = Some(error);
    }
    report
}

async fn examine(
    github: &GitHub,
    ledger: &dyn RecoveryLedger,
    hook: &HookSpec,
    options: &PassOptions,
    report: &mut HookReport,
) -> Result<(), String> {
    let now_ms = unix_ms(SystemTime::now());
    let spec = hook.to_string();
    let oldest_allowed = now_ms - ms(options.window.min(MAX_WINDOW));
    let floor = match options.since {
        Some(since) => now_ms - ms(since.min(MAX_WINDOW)),
        None => match ledger.checkpoint(&spec).await.map_err(|e| format!("reading the checkpoint: {e}"))? {
            Some(checkpoint) => (checkpoint - ms(OVERLAP)).max(oldest_allowed),
            None => oldest_allowed,
        },
    };
    let mut events: BTreeMap<String, Vec<Attempt>> = BTreeMap::new();
    let mut newest = None::<i64>;
    let mut next: Option<String> = None;
    loop {
        let page = github.hook_deliveries(hook, next.as_deref()).await.map_err(|e| e.to_string())?;
        report.pages += 1;
        let mut reached_floor = false;
        for item in page.items {
            let Some(at) = item.delivered_at().map(unix_ms) else { continue };
            if at < floor {
                reached_floor = true;
                continue;
            }
            newest = Some(newest.map_or(at, |n| n.max(at)));
            let succeeded = item.succeeded();
            events.entry(item.guid).or_default().push(Attempt { id: item.id, delivered_at_ms: at, succeeded });
        }
        next = page.next;
        if reached_floor || next.is_none() {
            break;
        }
        if report.pages >= MAX_PAGES {
            report.truncated = true;
            break;
        }
    }
    report.events = events.len();
    for (guid, attempts) in &events {
        if attempts.iter().any(|a| a.succeeded) {
            continue;
        }
        report.failed += 1;
        let held = ledger.holds(guid).await.map_err(|e| format!("reading the store: {e}"))?;
        let requested = if held { None } else { ledger.requested(guid).await.map_err(|e| e.to_string())? };
        match judge(attempts, held, requested, now_ms) {
            Verdict::Delivered => {}
            Verdict::Held => report.held += 1,
            Verdict::Pending => report.pending += 1,
            Verdict::GaveUp => report.gave_up += 1,
            Verdict::Redeliver { attempt } if options.dry_run => {
                tracing::info!(hook = %spec, delivery.id = %guid, attempt, "dry run: would ask GitHub to redeliver");
                report.requested += 1;
            }
            Verdict::Redeliver { attempt } => match github.redeliver(hook, attempt).await {
                Ok(()) => {
                    // Recorded once GitHub accepted it: a request that failed is asked again next pass.
                    ledger.record_request(&spec, guid, now_ms).await.map_err(|e| e.to_string())?;
                    tracing::info!(hook = %spec, delivery.id = %guid, attempt, "asked GitHub to redeliver a delivery it failed to make");
                    report.requested += 1;
                }
                Err(e) => {
                    tracing::warn!(hook = %spec, delivery.id = %guid, attempt, error = %e, "GitHub refused a redelivery request; asking again next pass");
                }
            },
        }
    }
    if !options.dry_run {
        if let Some(newest) = newest {
            ledger.set_checkpoint(&spec, newest).await.map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}
