//! The App installation of each organisation or repository whose webhook
//! webhookd reads (`hooks`): looked up once with the App's JWT, then kept
//! for `TTL`, at most `MAX_ENTRIES` of them. An installation can change (the
//! App reinstalled, a repository transferred): the entry expires, and the
//! caller forgets it sooner when its installation no longer answers.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Accounts and repositories remembered at most (a deployment watches a few).
const MAX_ENTRIES: usize = 1024;
/// How long a lookup is trusted.
const TTL: Duration = Duration::from_secs(3600);

#[derive(Default)]
pub(crate) struct InstallationIds {
    /// By `org:LOGIN` or `repo:OWNER/NAME`, lowercased: the installation and
    /// when it was looked up.
    entries: Mutex<HashMap<String, (u64, Instant)>>,
}

impl InstallationIds {
    pub(crate) fn get(&self, key: &str) -> Option<u64> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &str, now: Instant) -> Option<u64> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(key).filter(|(_, at)| now.saturating_duration_since(*at) < TTL).map(|(id, _)| *id)
    }

    pub(crate) fn put(&self, key: String, installation: u64) {
        self.put_at(key, installation, Instant::now());
    }

    /// Remembers `installation`; when full, the expired entries go first,
    /// then the oldest.
    fn put_at(&self, key: String, installation: u64, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < TTL);
            if entries.len() >= MAX_ENTRIES {
                let oldest = entries.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (installation, now));
    }

    pub(crate) fn forget(&self, key: &str) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_stay_bounded_the_oldest_going_first() {
        let ids = InstallationIds::default();
        let start = Instant::now();
        ids.put_at("org:acme".into(), 7, start);
        assert_eq!(ids.get_at("org:acme", start + TTL / 2), Some(7));
        assert_eq!(ids.get_at("org:acme", start + TTL), None, "a lookup is trusted for TTL only");
        ids.forget("org:acme");
        assert_eq!(ids.get_at("org:acme", start), None);

        for n in 0..MAX_ENTRIES as u64 + 10 {
            ids.put_at(format!("repo:o/r{n}"), n, start + Duration::from_millis(n));
        }
        assert_eq!(ids.len(), MAX_ENTRIES);
        assert_eq!(ids.get_at("repo:o/r0", start), None, "the oldest went first");
        let last = format!("repo:o/r{}", MAX_ENTRIES + 9);
        assert_eq!(ids.get_at(&last, start), Some(MAX_ENTRIES as u64 + 9));
    }
}
