//! What the HTTP handlers share: the signature verifier, the queue, metrics,
//! readiness, the limits on what a client may cost, and the refusal log's
//! rate limiter. Built once, cloned into actix workers by reference count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::body_budget::BodyBudget;
use super::refusal_log::RefusalLog;
use crate::config::Settings;
use crate::github::CredentialAlarm;
use crate::queue::DeliveryQueue;
use crate::telemetry::metrics::Metrics;
use crate::webhook::signature::SharedVerifier;

pub struct HttpState {
    pub verifier: Arc<SharedVerifier>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub limits: HttpLimits,
    pub refusals: RefusalLog,
    /// The memory request bodies being received hold, all together.
    pub bodies: BodyBudget,
    /// Set by the GitHub client while GitHub refuses the App's credentials.
    pub github_alarm: CredentialAlarm,
}

impl HttpState {
    pub fn new(
        verifier: Arc<SharedVerifier>,
        queue: Arc<dyn DeliveryQueue>,
        metrics: Arc<Metrics>,
        readiness: Readiness,
        limits: HttpLimits,
    ) -> Self {
        let bodies = BodyBudget::new(limits.body_memory);
        let github_alarm = CredentialAlarm::default();
        Self { verifier, queue, metrics, readiness, limits, refusals: RefusalLog::default(), bodies, github_alarm }
    }

    /// Shares the GitHub client's credential alarm, so `/readyz` reports it.
    pub fn with_github_alarm(mut self, alarm: CredentialAlarm) -> Self {
        self.github_alarm = alarm;
        self
    }
}

/// What one client may cost: bytes, time and connections.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest body accepted (`WEBHOOKD_MAX_BODY`).
    pub max_body: usize,
    /// Total time to receive a body once the headers arrived (`WEBHOOKD_BODY_TIMEOUT`).
    pub body_timeout: Duration,
    /// Open connections at most, across every HTTP thread (`WEBHOOKD_MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Bytes all bodies being received may hold together (`WEBHOOKD_BODY_MEMORY`).
    pub body_memory: usize,
}

impl From<&Settings> for HttpLimits {
    fn from(settings: &Settings) -> Self {
        Self {
            max_body: settings.max_body,
            body_timeout: settings.body_timeout,
            max_connections: settings.max_connections,
            body_memory: settings.body_memory,
        }
    }
}

/// Whether the daemon is draining for shutdown (readiness off, deliveries refused).
#[derive(Clone, Default)]
pub struct Readiness {
    draining: Arc<AtomicBool>,
}

impl Readiness {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
