//! Conditional GETs: the last `ETag` and body of each GET path, per
//! credential, so a repeated GET sends `If-None-Match` and a `304` (which
//! costs no quota) is answered from here, with the page's `rel="next"` link
//! (a `304` need not repeat `Link`). Bounded in entries and in bytes: the
//! oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use reqwest::header::HeaderValue;

use super::credential::CredentialKey;

/// Cached GET answers kept at most, across credentials.
pub const MAX_ENTRIES: usize = 2048;

/// Cached GETs and their bodies, at most `MAX_ENTRIES` and `max_bytes`
/// (`WEBHOOKD_GITHUB_CACHE_BYTES`; without a byte bound 2048 answers of up
/// to `MAX_ANSWER_BYTES` each could hold 32 GiB). `max_bytes` 0 disables it.
pub(crate) struct EtagCache {
    max_bytes: usize,
    inner: Mutex<Inner>,
}

/// A GET answer kept for its `ETag`.
#[derive(Debug, Clone)]
pub(crate) struct Cached {
    pub etag: HeaderValue,
    pub body: Bytes,
    /// The `rel="next"` page it linked to.
    pub next: Option<String>,
}

impl Cached {
    fn bytes(&self) -> usize {
        self.body.len() + self.next.as_ref().map_or(0, String::len)
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(CredentialKey, String), Cached>,
    order: VecDeque<(CredentialKey, String)>,
    bytes: usize,
}

impl EtagCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self { max_bytes, inner: Mutex::default() }
    }

    pub(crate) fn get(&self, credential: &CredentialKey, path: &str) -> Option<Cached> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.get(&(credential.clone(), path.to_owned())).cloned()
    }

    pub(crate) fn put(&self, credential: &CredentialKey, path: &str, answer: Cached) {
        let size = answer.bytes();
        if self.max_bytes == 0 || size > self.max_bytes {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (credential.clone(), path.to_owned());
        inner.bytes += size;
        match inner.entries.insert(key.clone(), answer) {
            Some(replaced) => inner.bytes -= replaced.bytes(),
            None => inner.order.push_back(key),
        }
        while inner.order.len() > MAX_ENTRIES || inner.bytes > self.max_bytes {
            let Some(oldest) = inner.order.pop_front() else { break };
            if let Some(removed) = inner.entries.remove(&oldest) {
                inner.bytes -= removed.bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(body: Vec<u8>) -> Cached {
        Cached { etag: HeaderValue::from_static("\"e\""), body: Bytes::from(body), next: None }
    }

    #[test]
    fn the_cache_stays_within_its_byte_budget() {
        const MAX_BYTES: usize = 64 * 1024;
        let cache = EtagCache::new(MAX_BYTES);
        let quarter = cached(vec![0u8; MAX_BYTES / 4]);
        for n in 0..6 {
            cache.put(&CredentialKey::Token, &format!("/p/{n}"), quarter.clone());
        }
        let inner = cache.inner.lock().expect("lock");
        assert!(inner.bytes <= MAX_BYTES && inner.entries.len() == 4, "{} bytes", inner.bytes);
        drop(inner);
        assert!(cache.get(&CredentialKey::Token, "/p/0").is_none(), "the oldest went first");
        assert!(cache.get(&CredentialKey::Token, "/p/5").is_some());
    }

    #[test]
    fn a_zero_budget_disables_the_cache() {
        let cache = EtagCache::new(0);
        cache.put(&CredentialKey::Token, "/p", cached(b"[]".to_vec()));
        assert!(cache.get(&CredentialKey::Token, "/p").is_none());
    }
}
