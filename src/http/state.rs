//! What the HTTP handlers share: the signature verifier, the queue, metrics
//! and readiness. Built once, cloned into actix workers by reference count.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::queue::DeliveryQueue;
use crate::reload::SharedVerifier;
use crate::telemetry::metrics::Metrics;

pub struct HttpState {
    pub verifier: Arc<SharedVerifier>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
    pub max_body: usize,
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
