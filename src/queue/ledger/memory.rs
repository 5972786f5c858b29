//! The ledger of the in-memory queue: plain maps, lost with the process
//! like the deliveries themselves.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;

use super::{LeaderGuard, MAX_LEARNED_HOOKS, RecoveryLedger, Requested};
use crate::queue::StoreError;

/// Requests remembered at most (GitHub keeps 3 days of deliveries; a pass
/// requests a handful).
pub const MAX_REMEMBERED_REQUESTS: usize = 10_000;

/// Whether the queue holds a delivery id.
type Holds = Box<dyn Fn(&str) -> bool + Send + Sync>;

pub(crate) struct MemoryLedger {
    holds: Holds,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    checkpoints: HashMap<String, i64>,
    requests: HashMap<String, Requested>,
    /// Spec to when last seen.
    hooks: HashMap<String, i64>,
}

impl MemoryLedger {
    /// A ledger answering `holds` with the queue's own deduplication.
    pub(crate) fn new(holds: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        Self { holds: Box::new(holds), state: Mutex::new(State::default()) }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a single map operation: nothing is left half done.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Keeps at most `max` entries, dropping those seen least recently (by
/// `at`) but never `keep`, the one just written.
fn bound<V>(map: &mut HashMap<String, V>, max: usize, keep: &str, at: impl Fn(&V) -> i64) {
    while map.len() > max {
        let oldest = map.iter().filter(|(k, _)| k.as_str() != keep).min_by_key(|(_, v)| at(v)).map(|(k, _)| k.clone());
        match oldest {
            Some(oldest) => map.remove(&oldest),
            None => break,
        };
    }
}

#[async_trait]
impl RecoveryLedger for MemoryLedger {
    async fn holds(&self, delivery_id: &str) -> Result<bool, StoreError> {
        Ok((self.holds)(delivery_id))
    }

    async fn checkpoint(&self, hook: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.state().checkpoints.get(hook).copied())
    }

    async fn set_checkpoint(&self, hook: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        let at = state.checkpoints.entry(hook.to_owned()).or_insert(at_ms);
        *at = (*at).max(at_ms);
        Ok(())
    }

    async fn requested(&self, delivery_id: &str) -> Result<Option<Requested>, StoreError> {
        Ok(self.state().requests.get(delivery_id).copied())
    }

    async fn record_request(&self, _hook: &str, delivery_id: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        let requested =
            state.requests.entry(delivery_id.to_owned()).or_insert(Requested { count: 0, last_at_ms: at_ms });
        requested.count = requested.count.saturating_add(1);
        requested.last_at_ms = requested.last_at_ms.max(at_ms);
        bound(&mut state.requests, MAX_REMEMBERED_REQUESTS, delivery_id, |r| r.last_at_ms);
        Ok(())
    }

    async fn learned_hooks(&self) -> Result<Vec<String>, StoreError> {
        let state = self.state();
        let mut hooks: Vec<(&String, &i64)> = state.hooks.iter().collect();
        hooks.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        Ok(hooks.into_iter().map(|(spec, _)| spec.clone()).collect())
    }

    async fn learn_hook(&self, spec: &str, at_ms: i64) -> Result<(), StoreError> {
        let mut state = self.state();
        let seen = state.hooks.entry(spec.to_owned()).or_insert(at_ms);
        *seen = (*seen).max(at_ms);
        bound(&mut state.hooks, MAX_LEARNED_HOOKS, spec, |at| *at);
        Ok(())
    }

    async fn forget_requests_before(&self, before_ms: i64) -> Result<usize, StoreError> {
        let mut state = self.state();
        let before = state.requests.len();
        state.requests.retain(|_, r| r.last_at_ms >= before_ms);
        Ok(before - state.requests.len())
    }

    async fn try_lead(&self) -> Result<Option<LeaderGuard>, StoreError> {
        // One process: nobody else to lead.
        Ok(Some(LeaderGuard::local()))
    }
}
