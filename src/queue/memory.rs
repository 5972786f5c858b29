//! A bounded in-memory queue: fast, and lost with the process (for tests,
//! benchmarks and `WEBHOOKD_STORE=memory`). It keeps the same rules as the
//! durable store: deduplication within a window, retries with backoff, dead
//! after the attempts are spent (logged, not kept), deferral while a
//! credential is paused, and turns between credentials.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::credentials::{CredentialScheme, Lanes, Pauses, deferred_due};
use super::ledger::{MemoryLedger, RecoveryLedger};
use super::{Abandoned, DedupWindow, DeliveryQueue, EnqueueError, Enqueued, Outcome, Settled, StateCounts};
use crate::delivery::{Delivery, DeliveryId};
use crate::retry::RetryPolicy;

/// How many delivery ids the in-memory dedup window holds at most.
pub const MAX_REMEMBERED_IDS: usize = 100_000;

pub struct MemoryQueue {
    capacity: usize,
    retry: RetryPolicy,
    credentials: CredentialScheme,
    pauses: Pauses,
    /// Shared with the ledger, which answers `holds` from `seen`.
    state: Arc<Mutex<State>>,
    notify: Notify,
    ledger: Arc<MemoryLedger>,
}

struct State {
    /// Due deliveries, per credential, handed out in turns.
    ready: Lanes<Delivery>,
    /// Failed deliveries waiting for their next attempt, with its time.
    delayed: Vec<(Instant, Delivery)>,
    seen: DedupWindow,
    running: u64,
    done: u64,
    dead: u64,
    closed: bool,
}

impl State {
    fn waiting(&self) -> usize {
        self.ready.len() + self.delayed.len()
    }

    /// Moves retries that fell due to the ready queue; returns the next due time.
    fn promote_due(&mut self, now: Instant, credentials: CredentialScheme) -> Option<Instant> {
        let mut next = None;
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, delivery) = self.delayed.swap_remove(i);
                self.ready.push(credentials.lane_of(&delivery), delivery);
            } else {
                next = Some(next.map_or(self.delayed[i].0, |n: Instant| n.min(self.delayed[i].0)));
                i += 1;
            }
        }
        next
    }
}

impl MemoryQueue {
    pub fn new(capacity: usize, retention: Duration, retry: RetryPolicy) -> Self {
        let state = State {
            ready: Lanes::default(),
            delayed: Vec::new(),
            seen: DedupWindow::new(retention, MAX_REMEMBERED_IDS),
            running: 0,
            done: 0,
            dead: 0,
            closed: false,
        };
        let state = Arc::new(Mutex::new(state));
        let known = state.clone();
        let ledger = MemoryLedger::new(move |id| {
            DeliveryId::parse(id).is_ok_and(|id| lock(&known).seen.contains(&id, Instant::now()))
        });
        Self {
            capacity: capacity.max(1),
            retry,
            credentials: CredentialScheme::DryRun,
            pauses: Pauses::default(),
            state,
            notify: Notify::new(),
            ledger: Arc::new(ledger),
        }
    }

    /// Schedules by the credential each delivery will run under (the
    /// default, dry run, has none: one lane, first come first served).
    pub fn with_credentials(mut self, credentials: CredentialScheme) -> Self {
        self.credentials = credentials;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // No code path leaves the state half-updated across a panic point.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl DeliveryQueue for MemoryQueue {
    async fn enqueue(&self, delivery: Delivery) -> Result<Enqueued, EnqueueError> {
        let mut state = self.state();
        if state.closed {
            return Err(EnqueueError::Closed);
        }
        if state.seen.contains(delivery.id(), Instant::now()) {
            return Ok(Enqueued::Duplicate);
        }
        if state.waiting() >= self.capacity {
            return Err(EnqueueError::Full);
        }
        state.seen.insert(delivery.id().clone(), Instant::now());
        state.ready.push(self.credentials.lane_of(&delivery), delivery);
        drop(state);
        self.notify.notify_one();
        Ok(Enqueued::Queued)
    }

    async fn next(&self) -> Option<Delivery> {
        let mut lingered = false;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut state = self.state();
                let mut next_due = state.promote_due(Instant::now(), self.credentials);
                let now = SystemTime::now();
                if let Some(mut delivery) = state.ready.pop(|lane| self.pauses.is_paused(lane, now)) {
                    state.running += 1;
                    delivery.attempt += 1;
                    // A deferred delivery gave its attempt back but may have run.
                    delivery.first_run = delivery.first_run && delivery.attempt == 1;
                    return Some(delivery);
                }
                // Deliveries of a paused credential still wait during a drain,
                // for as long as it lasts.
                if state.closed && state.ready.is_empty() {
                    return None;
                }
                if let Some(end) = self.pauses.next_end(now) {
                    let end = Instant::now() + end.duration_since(now).unwrap_or_default();
                    next_due = Some(next_due.map_or(end, |due| due.min(end)));
                }
                next_due
            };
            if !lingered {
                // Under load, wake once per batch rather than once per delivery.
                lingered = true;
                tokio::time::sleep(super::IDLE_LINGER).await;
                continue;
            }
            match next_due {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn finish(&self, delivery: &Delivery, outcome: Outcome) -> Settled {
        let mut state = self.state();
        state.running = state.running.saturating_sub(1);
        let settled = match outcome {
            Outcome::Ok => Settled::Done,
            Outcome::Deferred { credential, until } => {
                self.pauses.pause(credential, until);
                let now = SystemTime::now();
                let wait = deferred_due(until, now).duration_since(now).unwrap_or_default();
                let mut deferred = delivery.clone();
                deferred.attempt = deferred.attempt.saturating_sub(1);
                deferred.first_run = false;
                if state.closed {
                    // Retries were moved to the ready queue at close; the pause still holds it back.
                    state.ready.push(self.credentials.lane_of(&deferred), deferred);
                } else {
                    state.delayed.push((Instant::now() + wait, deferred));
                }
                Settled::Deferred(wait)
            }
            Outcome::Failed(_) => Settled::Failed,
            Outcome::Retry(_) => match self.retry.backoff(delivery.attempt) {
                Some(wait) => {
                    state.delayed.push((Instant::now() + wait, delivery.clone()));
                    Settled::Retrying(wait)
                }
                None => Settled::Dead,
            },
        };
        match settled {
            Settled::Done => state.done += 1,
            Settled::Dead | Settled::Failed => state.dead += 1,
            Settled::Retrying(_) | Settled::Deferred(_) => {}
        }
        drop(state);
        // A worker may be sleeping until a later retry: let it recompute.
        self.notify.notify_waiters();
        settled
    }

    fn depth(&self) -> usize {
        self.state().waiting()
    }

    fn has_room(&self) -> bool {
        let state = self.state();
        !state.closed && state.waiting() < self.capacity
    }

    fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        // Retries scheduled for later cannot wait for a process that is
        // exiting: they get their next attempt now, within the drain.
        let delayed: Vec<Delivery> = state.delayed.drain(..).map(|(_, d)| d).collect();
        for delivery in delayed {
            state.ready.push(self.credentials.lane_of(&delivery), delivery);
        }
        drop(state);
        self.notify.notify_waiters();
    }

    async fn abandon(&self, interrupted: &[DeliveryId]) -> Abandoned {
        let mut state = self.state();
        let mut lost: Vec<DeliveryId> = interrupted.to_vec();
        lost.extend(state.ready.drain().map(|d| d.id().clone()));
        lost.extend(state.delayed.drain(..).map(|(_, d)| d.id().clone()));
        lost.sort();
        Abandoned { lost, kept: 0 }
    }

    async fn counts(&self) -> StateCounts {
        let state = self.state();
        StateCounts { queued: state.waiting() as u64, running: state.running, done: state.done, dead: state.dead }
    }

    fn ledger(&self) -> Arc<dyn RecoveryLedger> {
        self.ledger.clone()
    }

    fn describe(&self) -> String {
        "memory".to_owned()
    }
}
