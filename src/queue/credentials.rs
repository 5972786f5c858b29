//! Which GitHub credential each delivery will run under, and which
//! credentials are paused for a rate limit. The queue schedules by it: a
//! paused credential's deliveries are not handed out before the pause ends
//! (so they never hold a worker), and under a backlog workers take turns
//! between credentials (round-robin), so one busy installation cannot delay
//! the others.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use crate::config::GitHubCredential;
use crate::delivery::Delivery;
use crate::github::CredentialKey;

/// Longest jitter added to a deferred delivery's due time, so that a
/// credential's deliveries do not all come back at the same instant.
const MAX_DEFER_JITTER: Duration = Duration::from_secs(1);
/// Share of the wait added as jitter at most, for short waits.
const DEFER_JITTER_SHARE: f64 = 0.1;
/// Longest pause the queue honours (GitHub's rate-limit window is an hour;
/// a later time is a broken header or handler, and would strand deliveries).
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// `until`, but no later than `MAX_PAUSE` from `now`.
fn bounded(until: SystemTime, now: SystemTime) -> SystemTime {
    until.min(now + MAX_PAUSE)
}

/// How a delivery's credential follows from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialScheme {
    /// No credential: nothing is sent, nothing is ever paused.
    DryRun,
    /// One token: every delivery shares it.
    Token,
    /// GitHub App: each installation has its own token and rate limit.
    App,
}

/// The scheduling group of a delivery: its credential, `None` when it has
/// none (dry run, or an App delivery that names no installation).
pub type Lane = Option<CredentialKey>;

impl CredentialScheme {
    pub fn from_credential(credential: Option<&GitHubCredential>) -> Self {
        match credential {
            None => Self::DryRun,
            Some(GitHubCredential::Token(_)) => Self::Token,
            Some(GitHubCredential::App { .. }) => Self::App,
        }
    }

    /// The credential a delivery naming `installation` will run under.
    pub fn key_for(self, installation: Option<u64>) -> Lane {
        match self {
            Self::DryRun => None,
            Self::Token => Some(CredentialKey::Token),
            Self::App => installation.map(CredentialKey::Installation),
        }
    }

    pub fn lane_of(self, delivery: &Delivery) -> Lane {
        self.key_for(delivery.routing.installation_id)
    }
}

/// Credentials paused for a rate limit, and until when. Behind this small
/// type so that a backend shared by several instances can keep it shared.
#[derive(Debug, Default)]
pub struct Pauses {
    until: Mutex<HashMap<CredentialKey, SystemTime>>,
}

impl Pauses {
    /// Records that `credential` may not be used before `until` (a later
    /// pause already known wins).
    pub fn pause(&self, credential: CredentialKey, until: SystemTime) {
        let until = bounded(until, SystemTime::now());
        let mut paused = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = paused.entry(credential).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Whether the lane's credential is paused now.
    pub fn is_paused(&self, lane: &Lane, now: SystemTime) -> bool {
        let Some(credential) = lane else { return false };
        self.until.lock().unwrap_or_else(PoisonError::into_inner).get(credential).is_some_and(|until| *until > now)
    }

    /// The credentials paused now (forgetting pauses that ended).
    pub fn paused_now(&self, now: SystemTime) -> Vec<CredentialKey> {
        let mut paused = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        paused.retain(|_, until| *until > now);
        paused.keys().cloned().collect()
    }

    /// When the earliest pause in force ends.
    pub fn next_end(&self, now: SystemTime) -> Option<SystemTime> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner).values().copied().filter(|u| *u > now).min()
    }
}

/// When a delivery deferred until `until` is due again: then (at most
/// `MAX_PAUSE` away), plus up to a second (or a tenth of the wait, if
/// shorter) of jitter.
pub fn deferred_due(until: SystemTime, now: SystemTime) -> SystemTime {
    let until = bounded(until, now);
    let wait = until.duration_since(now).unwrap_or_default();
    let jitter = wait.mul_f64(DEFER_JITTER_SHARE).min(MAX_DEFER_JITTER).mul_f64(fastrand::f64());
    until.max(now) + jitter
}

/// Items queued per lane, handed out in turns: one from each lane that has
/// some and is not paused, round-robin, oldest first within a lane.
#[derive(Debug)]
pub struct Lanes<T> {
    queues: HashMap<Lane, VecDeque<T>>,
    /// Lanes with items, in the order of their next turn.
    turns: VecDeque<Lane>,
    len: usize,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self { queues: HashMap::new(), turns: VecDeque::new(), len: 0 }
    }
}

impl<T> Lanes<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, lane: Lane, item: T) {
        let queue = self.queues.entry(lane.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(lane);
        }
        queue.push_back(item);
        self.len += 1;
    }

    /// The oldest item of the next lane in turn that `paused` does not
    /// exclude; that lane's next turn comes after every other lane's.
    pub fn pop(&mut self, paused: impl Fn(&Lane) -> bool) -> Option<T> {
        for _ in 0..self.turns.len() {
            let lane = self.turns.pop_front()?;
            if paused(&lane) {
                self.turns.push_back(lane);
                continue;
            }
            let queue = self.queues.get_mut(&lane)?;
            let item = queue.pop_front();
            if queue.is_empty() {
                self.queues.remove(&lane);
            } else {
                self.turns.push_back(lane);
            }
            if item.is_some() {
                self.len -= 1;
            }
            return item;
        }
        None
    }

    /// Takes every item out.
    pub fn drain(&mut self) -> impl Iterator<Item = T> + '_ {
        self.turns.clear();
        self.len = 0;
        self.queues.drain().flat_map(|(_, queue)| queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(id: u64) -> Lane {
        Some(CredentialKey::Installation(id))
    }

    #[test]
    fn lanes_take_turns_and_skip_paused_ones() {
        let mut lanes = Lanes::default();
        for n in 0..3 {
            lanes.push(lane(1), ("a", n));
        }
        lanes.push(lane(2), ("b", 0));
        lanes.push(None, ("none", 0));
        let order: Vec<_> = std::iter::from_fn(|| lanes.pop(|_| false)).collect();
        assert_eq!(order, [("a", 0), ("b", 0), ("none", 0), ("a", 1), ("a", 2)]);

        lanes.push(lane(1), ("a", 3));
        lanes.push(lane(2), ("b", 1));
        assert_eq!(lanes.pop(|l| *l == lane(1)), Some(("b", 1)));
        assert_eq!(lanes.pop(|l| *l == lane(1)), None, "only the paused lane has items");
        assert_eq!(lanes.len(), 1);
        assert_eq!(lanes.pop(|_| false), Some(("a", 3)));
        assert!(lanes.is_empty());
    }

    #[test]
    fn pauses_end_on_time_and_the_later_one_wins() {
        let pauses = Pauses::default();
        let now = SystemTime::now();
        let key = CredentialKey::Installation(7);
        pauses.pause(key.clone(), now + Duration::from_secs(10));
        pauses.pause(key.clone(), now + Duration::from_secs(5));
        assert!(pauses.is_paused(&Some(key.clone()), now + Duration::from_secs(9)));
        assert!(!pauses.is_paused(&Some(key.clone()), now + Duration::from_secs(10)));
        assert!(!pauses.is_paused(&None, now));
        assert_eq!(pauses.next_end(now), Some(now + Duration::from_secs(10)));
        assert!(pauses.paused_now(now + Duration::from_secs(11)).is_empty());
    }

    #[test]
    fn deferred_due_time_is_at_the_end_plus_bounded_jitter() {
        let now = SystemTime::now();
        for wait in [Duration::from_millis(500), Duration::from_secs(60)] {
            let due = deferred_due(now + wait, now);
            let jitter = due.duration_since(now + wait).expect("not before the end");
            assert!(jitter <= wait.mul_f64(0.1).min(Duration::from_secs(1)), "{wait:?}: {jitter:?}");
        }
        let far = deferred_due(now + Duration::from_secs(1_000_000), now);
        assert!(far <= now + MAX_PAUSE + Duration::from_secs(1), "a pause past an hour is cut to an hour");
    }

    #[test]
    fn the_scheme_names_each_delivery_credential() {
        assert_eq!(CredentialScheme::App.key_for(Some(3)), lane(3));
        assert_eq!(CredentialScheme::App.key_for(None), None);
        assert_eq!(CredentialScheme::Token.key_for(Some(3)), Some(CredentialKey::Token));
        assert_eq!(CredentialScheme::DryRun.key_for(Some(3)), None);
    }
}
