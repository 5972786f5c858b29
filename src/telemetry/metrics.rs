//! Prometheus metrics. The names and labels of the contract's metrics table are
//! part of the external interface; the rest may grow. Every label value comes
//! from a bounded set (event names only after the signature checked out,
//! outcomes, HTTP methods and status codes), never from raw paths or repository
//! names. Gauges that mirror state are refreshed when `/metrics` is scraped.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Upper bounds of the processing-duration buckets, in seconds.
const PROCESSING_BUCKETS_SECS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Upper bounds of the store-commit latency buckets, in seconds.
const COMMIT_BUCKETS_SECS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];
/// Upper bounds of the commit batch-size buckets, in operations.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Running totals for the one-line status systemd shows (not exported).
#[derive(Debug, Default)]
pub struct Totals {
    pub ok: std::sync::atomic::AtomicU64,
    pub retried: std::sync::atomic::AtomicU64,
    pub failed: std::sync::atomic::AtomicU64,
}

pub struct Metrics {
    registry: Registry,
    pub totals: Totals,
    /// Every verified delivery, duplicates included.
    pub deliveries_received: IntCounterVec,
    /// Processing outcomes: `ok`, `retry`, `failed`, `dead`, `deferred` (the
    /// credential was paused: back to the queue, no attempt spent).
    pub deliveries_processed: IntCounterVec,
    /// Verified deliveries answered `duplicate`.
    pub deliveries_duplicate: IntCounterVec,
    /// Deliveries refused before processing, by reason (signature, headers, body, full, draining, ...).
    pub deliveries_rejected: IntCounterVec,
    pub signature_failures: IntCounter,
    /// Deliveries waiting for a worker.
    pub queue_depth: IntGauge,
    pub processing_duration: HistogramVec,
    /// Handlers that panicked (the worker survives).
    pub handler_panics: IntCounter,
    pub github_requests: IntCounterVec,
    /// Deliveries being processed right now.
    pub deliveries_in_flight: IntGauge,
    /// Bytes of request bodies being received now (`WEBHOOKD_BODY_MEMORY`).
    pub request_body_bytes: IntGauge,
    /// GitHub requests by method, route template and status.
    pub github_requests_by_route: IntCounterVec,
    /// GitHub requests retried by the client, by reason.
    pub github_retries: IntCounterVec,
    /// Pauses of a credential for a rate limit, by reason (primary, secondary).
    pub github_pauses: IntCounterVec,
    /// Recovery passes over one hook, by outcome (ok, error, skipped: another instance leads).
    pub recovery_runs: IntCounterVec,
    /// Redeliveries recovery asked GitHub for, per hook.
    pub recovery_redeliveries: IntCounterVec,
    /// Events recovery found that no attempt delivered and webhookd did not hold.
    pub recovery_missing: IntCounter,
    /// Seconds of pause imposed by rate limits, by reason.
    pub github_pause_seconds: prometheus::CounterVec,
    /// Remaining GitHub quota per credential, as last reported.
    pub github_rate_limit_remaining: IntGaugeVec,
    /// Content-creating requests a credential may still send, per window (minute, hour).
    pub github_content_budget_remaining: IntGaugeVec,
    /// Requests ended with "paused until T" (the delivery is deferred), per credential.
    pub github_deferrals: IntCounterVec,
    /// Deliveries a rule matched, by rule.
    pub rule_matches: IntCounterVec,
    /// Rule actions run, by rule and outcome (ok, failed, deferred).
    pub rule_actions: IntCounterVec,
    /// Deliveries per store state (queued, running, done, dead), refreshed at scrape.
    pub deliveries_by_state: IntGaugeVec,
    /// Time one group commit of the durable store takes, fsync included.
    pub store_commit_seconds: Histogram,
    /// Operations applied per group commit.
    pub store_batch_size: Histogram,
    /// 1 while the store can write, 0 since a write failed (until one succeeds).
    pub store_writable: IntGauge,
    /// 1 while `/readyz` would answer 200, 0 while it would answer 503; set at scrape.
    pub ready: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).unwrap_or_else(|e| invalid(name, e));
            registry.register(Box::new(metric.clone())).unwrap_or_else(|e| invalid(name, e));
            metric
        };
        let deliveries_received = counter_vec(
            "webhookd_deliveries_received_total",
            "Verified deliveries received, duplicates included.",
            &["event"],
        );
        let deliveries_processed = counter_vec(
            "webhookd_deliveries_processed_total",
            "Deliveries processed, by outcome (ok, retry, failed, dead, deferred).",
            &["event", "outcome"],
        );
        let deliveries_duplicate =
            counter_vec("webhookd_deliveries_duplicate_total", "Redeliveries answered as duplicates.", &["event"]);
        let deliveries_rejected = counter_vec(
            "webhookd_deliveries_rejected_total",
            "Deliveries refused before queueing, by reason.",
            &["reason"],
        );
        let github_requests = counter_vec(
            "webhookd_github_requests_total",
            "GitHub API requests, by method and status.",
            &["method", "status"],
        );
        let github_requests_by_route = counter_vec(
            "webhookd_github_route_requests_total",
            "GitHub API requests, by method, route template and status.",
            &["method", "route", "status"],
        );
        let rule_matches = counter_vec("webhookd_rule_matches_total", "Deliveries a rule matched.", &["rule"]);
        let rule_actions = counter_vec(
            "webhookd_rule_actions_total",
            "Rule actions run, by outcome (ok, failed, deferred).",
            &["rule", "outcome"],
        );
        let github_retries = counter_vec(
            "webhookd_github_retries_total",
            "GitHub requests retried by the client, by reason.",
            &["reason"],
        );
        let github_pauses =
            counter_vec("webhookd_github_pauses_total", "Rate-limit pauses of a credential, by reason.", &["reason"]);
        let recovery_runs = counter_vec(
            "webhookd_recovery_runs_total",
            "Recovery passes over one hook, by outcome (ok, error; skipped: another instance runs recovery).",
            &["outcome"],
        );
        let recovery_redeliveries = counter_vec(
            "webhookd_recovery_redeliveries_total",
            "Redeliveries of failed deliveries that recovery asked GitHub for, per hook.",
            &["hook"],
        );
        let recovery_missing = IntCounter::new(
            "webhookd_recovery_missing_total",
            "Events found that GitHub failed to deliver and webhookd did not hold.",
        )
        .unwrap_or_else(|e| invalid("webhookd_recovery_missing_total", e));
        let github_pause_seconds = prometheus::CounterVec::new(
            Opts::new("webhookd_github_pause_seconds_total", "Seconds of rate-limit pause, by reason."),
            &["reason"],
        )
        .unwrap_or_else(|e| invalid("webhookd_github_pause_seconds_total", e));
        let github_deferrals = counter_vec(
            "webhookd_github_deferrals_total",
            "GitHub requests ended at once because their credential is paused or its content budget is spent.",
            &["credential"],
        );
        let github_content_budget_remaining = IntGaugeVec::new(
            Opts::new(
                "webhookd_github_content_budget_remaining",
                "Content-creating requests a credential may still send, per window (GitHub: 80/minute, 500/hour).",
            ),
            &["credential", "window"],
        )
        .unwrap_or_else(|e| invalid("webhookd_github_content_budget_remaining", e));
        let github_rate_limit_remaining = IntGaugeVec::new(
            Opts::new(
                "webhookd_github_rate_limit_remaining",
                "Remaining GitHub quota per credential, as last reported.",
            ),
            &["credential"],
        )
        .unwrap_or_else(|e| invalid("webhookd_github_rate_limit_remaining", e));

        let signature_failures =
            IntCounter::new("webhookd_signature_failures_total", "Deliveries whose signature did not verify.")
                .unwrap_or_else(|e| invalid("webhookd_signature_failures_total", e));
        let handler_panics =
            IntCounter::new("webhookd_handler_panics_total", "Handlers that panicked; the worker survives.")
                .unwrap_or_else(|e| invalid("webhookd_handler_panics_total", e));
        let queue_depth = IntGauge::new("webhookd_queue_depth", "Deliveries waiting for a worker.")
            .unwrap_or_else(|e| invalid("webhookd_queue_depth", e));
        let deliveries_in_flight = IntGauge::new("webhookd_deliveries_in_flight", "Deliveries being processed.")
            .unwrap_or_else(|e| invalid("webhookd_deliveries_in_flight", e));
        let request_body_bytes = IntGauge::new(
            "webhookd_request_body_bytes",
            "Bytes of request bodies being received now, against WEBHOOKD_BODY_MEMORY.",
        )
        .unwrap_or_else(|e| invalid("webhookd_request_body_bytes", e));
        let processing_duration = HistogramVec::new(
            HistogramOpts::new("webhookd_processing_duration_seconds", "Time spent processing one delivery.")
                .buckets(PROCESSING_BUCKETS_SECS.to_vec()),
            &["event"],
        )
        .unwrap_or_else(|e| invalid("webhookd_processing_duration_seconds", e));
        let deliveries_by_state =
            IntGaugeVec::new(Opts::new("webhookd_deliveries", "Deliveries per store state."), &["state"])
                .unwrap_or_else(|e| invalid("webhookd_deliveries", e));
        let store_commit_seconds = Histogram::with_opts(
            HistogramOpts::new("webhookd_store_commit_duration_seconds", "Time of one group commit, fsync included.")
                .buckets(COMMIT_BUCKETS_SECS.to_vec()),
        )
        .unwrap_or_else(|e| invalid("webhookd_store_commit_duration_seconds", e));
        let store_batch_size = Histogram::with_opts(
            HistogramOpts::new("webhookd_store_commit_batch_size", "Operations applied per group commit.")
                .buckets(BATCH_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| invalid("webhookd_store_commit_batch_size", e));
        let store_writable = IntGauge::new(
            "webhookd_store_writable",
            "1 while the store can write; 0 since a write failed, until one succeeds.",
        )
        .unwrap_or_else(|e| invalid("webhookd_store_writable", e));
        store_writable.set(1);
        // 0 until the first scrape asks: a daemon not yet asked is not known ready.
        let ready = IntGauge::new(
            "webhookd_ready",
            "1 while /readyz answers 200, 0 while it answers 503 (draining, store unwritable, GitHub refusing the App, queue full).",
        )
        .unwrap_or_else(|e| invalid("webhookd_ready", e));
        for metric in [
            Box::new(deliveries_by_state.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(github_pause_seconds.clone()),
            Box::new(github_rate_limit_remaining.clone()),
            Box::new(github_content_budget_remaining.clone()),
            Box::new(store_commit_seconds.clone()),
            Box::new(store_batch_size.clone()),
            Box::new(store_writable.clone()),
            Box::new(ready.clone()),
            Box::new(signature_failures.clone()),
            Box::new(recovery_missing.clone()),
            Box::new(handler_panics.clone()),
            Box::new(queue_depth.clone()),
            Box::new(deliveries_in_flight.clone()),
            Box::new(request_body_bytes.clone()),
            Box::new(processing_duration.clone()),
        ] {
            registry.register(metric).unwrap_or_else(|e| invalid("collector", e));
        }
        Self {
            registry,
            totals: Totals::default(),
            deliveries_received,
            deliveries_processed,
            deliveries_duplicate,
            deliveries_rejected,
            signature_failures,
            queue_depth,
            processing_duration,
            handler_panics,
            github_requests,
            github_requests_by_route,
            github_retries,
            github_pauses,
            recovery_runs,
            recovery_redeliveries,
            recovery_missing,
            github_pause_seconds,
            github_content_budget_remaining,
            github_deferrals,
            github_rate_limit_remaining,
            rule_matches,
            rule_actions,
            deliveries_in_flight,
            request_body_bytes,
            deliveries_by_state,
            store_commit_seconds,
            store_batch_size,
            store_writable,
            ready,
        }
    }

    /// Mirrors the queue's state into the gauges (at scrape time): its
    /// depth, and the deliveries stored per state name.
    pub fn set_queue_state(&self, depth: usize, by_state: &[(&str, u64)]) {
        self.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        for &(state, n) in by_state {
            self.deliveries_by_state.with_label_values(&[state]).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_processing(&self, event: &str, seconds: f64) {
        self.processing_duration.with_label_values(&[event]).observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Metric definitions are constants of this file; an invalid one is a bug here.
fn invalid(name: &str, err: prometheus::Error) -> ! {
    panic!("metric {name} is defined wrongly: {err}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_metric_names_are_exposed() {
        let m = Metrics::new();
        m.deliveries_received.with_label_values(&["push"]).inc();
        m.deliveries_processed.with_label_values(&["push", "ok"]).inc();
        m.github_requests.with_label_values(&["POST", "201"]).inc();
        m.observe_processing("push", 0.01);
        let text = m.encode();
        for needle in [
            "webhookd_deliveries_received_total{event=\"push\"} 1",
            "webhookd_deliveries_processed_total{event=\"push\",outcome=\"ok\"} 1",
            "webhookd_signature_failures_total 0",
            "webhookd_queue_depth 0",
            "webhookd_ready 0",
            "webhookd_processing_duration_seconds_bucket{event=\"push\"",
            "webhookd_github_requests_total{method=\"POST\",status=\"201\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from:\n{text}");
        }
    }
}
