//! Recovery of deliveries GitHub failed to make. GitHub does not redeliver a
//! failed webhook delivery by itself (webhookd down, unreachable, or
//! answering 503 under backpressure): the event is lost unless someone asks.
//! Every `WEBHOOKD_RECOVERY_INTERVAL`, and once at start, this asks for each
//! event that no attempt delivered and webhookd does not hold, once per
//! event (again only if that redelivery failed too, up to
//! `judge::MAX_REQUESTS` times), through the shared GitHub client and its
//! pacing. Checkpoints, requests and learned hooks live in the store, so
//! they survive restarts and are shared by instances, one of which runs
//! recovery at a time.
//!
//! `hooks` says which hooks are watched, `judge` what to do about one event,
//! `pass` reads one hook; this module runs passes and reports them.

pub mod hooks;
pub mod judge;
pub mod pass;

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

use crate::config::RecoverySettings;
use crate::github::GitHub;
use crate::queue::RecoveryLedger;
use crate::telemetry::metrics::Metrics;
pub use hooks::{HookRegistry, HookSpec};
pub use pass::{HookReport, PassOptions};

/// A hook recovery watches, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Watched {
    pub hook: String,
    /// `app auth`, `configured` or `learned`.
    pub source: &'static str,
    #[serde(skip)]
    pub spec: HookSpec,
}

/// Runs recovery passes.
pub struct Recovery {
    github: Arc<GitHub>,
    ledger: Arc<dyn RecoveryLedger>,
    settings: RecoverySettings,
    registry: Arc<HookRegistry>,
    metrics: Arc<Metrics>,
}

impl Recovery {
    pub fn new(
        github: Arc<GitHub>,
        ledger: Arc<dyn RecoveryLedger>,
        settings: RecoverySettings,
        registry: Arc<HookRegistry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { github, ledger, settings, registry, metrics }
    }

    /// The hooks a pass reads: the App's own (under App auth), those
    /// configured, and those learned from deliveries, that this credential
    /// can read.
    pub async fn watched(&self) -> Vec<Watched> {
        for spec in self.registry.take_unsaved() {
            let now = pass::unix_ms(SystemTime::now());
            if let Err(e) = self.ledger.learn_hook(&spec.to_string(), now).await {
                tracing::warn!(hook = %spec, error = %e, "could not remember a webhook learned from a delivery");
            }
        }
        let mut watched: Vec<Watched> = Vec::new();
        let mut add = |spec: HookSpec, source| {
            if self.github.can_read(&spec) && !watched.iter().any(|w| w.spec == spec) {
                watched.push(Watched { hook: spec.to_string(), source, spec });
            }
        };
        add(HookSpec::App, "app auth");
        for spec in &self.settings.hooks {
            add(spec.clone(), "configured");
        }
        match self.ledger.learned_hooks().await {
            Ok(learned) => learned.iter().filter_map(|s| HookSpec::parse(s).ok()).for_each(|s| add(s, "learned")),
            Err(e) => tracing::warn!(error = %e, "could not read the webhooks learned from deliveries"),
        }
        watched
    }

    /// One pass over `hooks` (every watched hook when `None`).
    pub async fn pass(&self, hooks: Option<Vec<HookSpec>>, options: &PassOptions) -> Vec<HookReport> {
        let hooks = match hooks {
            Some(hooks) => hooks,
            None => self.watched().await.into_iter().map(|w| w.spec).collect(),
        };
        let mut reports = Vec::with_capacity(hooks.len());
        for hook in &hooks {
            let report = pass::run(&self.github, self.ledger.as_ref(), hook, options).await;
            self.record(&report, options.dry_run);
            reports.push(report);
        }
        if !options.dry_run {
            let before = pass::unix_ms(SystemTime::now()) - 2 * pass::unix_ms_of(pass::MAX_WINDOW);
            if let Err(e) = self.ledger.forget_requests_before(before).await {
                tracing::debug!(error = %e, "could not forget old redelivery requests");
            }
        }
        reports
    }

    fn record(&self, report: &HookReport, dry_run: bool) {
        let outcome = if report.error.is_some() { "error" } else { "ok" };
        self.metrics.recovery_runs.with_label_values(&[outcome]).inc();
        let missing = report.failed - report.held;
        self.metrics.recovery_missing.inc_by(u64::try_from(missing).unwrap_or(0));
        if !dry_run {
            self.metrics
                .recovery_redeliveries
                .with_label_values(&[&report.hook])
                .inc_by(u64::try_from(report.requested).unwrap_or(0));
        }
        match &report.error {
            None => tracing::info!(
                hook = %report.hook,
                events = report.events,
                failed = report.failed,
                held = report.held,
                requested = report.requested,
                pending = report.pending,
                gave_up = report.gave_up,
                pages = report.pages,
                truncated = report.truncated,
                "recovery pass"
            ),
            Some(error) => {
                tracing::warn!(hook = %report.hook, error = %error, "recovery pass could not read this hook's deliveries")
            }
        }
    }

    /// Passes every `interval`, the first at once, on whichever instance
    /// holds the recovery lead at the time. Runs until aborted (the
    /// application's stop sequence).
    pub async fn run_periodically(self: Arc<Self>) {
        let watched = self.watched().await;
        tracing::info!(
            hooks = ?watched.iter().map(|w| format!("{} ({})", w.hook, w.source)).collect::<Vec<_>>(),
            every = %humantime::format_duration(self.settings.interval),
            "recovery of failed GitHub deliveries: watching"
        );
        let options = PassOptions { window: self.settings.window, since: None, dry_run: false };
        let mut tick = tokio::time::interval(self.settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match self.ledger.try_lead().await {
                Ok(Some(lead)) => {
                    self.pass(None, &options).await;
                    lead.release().await;
                }
                Ok(None) => {
                    self.metrics.recovery_runs.with_label_values(&["skipped"]).inc();
                    tracing::debug!("another instance runs recovery now");
                }
                Err(e) => {
                    self.metrics.recovery_runs.with_label_values(&["error"]).inc();
                    tracing::warn!(error = %e, "recovery pass skipped: the store cannot be read");
                }
            }
        }
    }
}

/// Whether recovery runs in `serve`, and if not, why.
pub fn disabled_because(settings: &RecoverySettings, github: &GitHub) -> Option<&'static str> {
    if !settings.enabled {
        return Some("WEBHOOKD_RECOVERY=off");
    }
    if github.is_dry_run() {
        return Some("no GitHub credential (dry run)");
    }
    None
}
