//! Conditional GETs: the last `ETag` and body of each GET path, per
//! credential, so a repeated GET sends `If-None-Match` and a `304` (which
//! costs no quota) is answered from here. Bounded: the oldest entries go first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use reqwest::header::HeaderValue;

use super::auth::CredentialKey;

/// Cached GET answers kept at most, across credentials.
pub const MAX_ENTRIES: usize = 2048;

#[derive(Default)]
pub(crate) struct EtagCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<(CredentialKey, String), (HeaderValue, Bytes)>,
    order: VecDeque<(CredentialKey, String)>,
}

impl EtagCache {
    pub(crate) fn get(&self, credential: &CredentialKey, path: &str) -> Option<(HeaderValue, Bytes)> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.get(&(credential.clone(), path.to_owned())).cloned()
    }

    pub(crate) fn put(&self, credential: &CredentialKey, path: &str, etag: HeaderValue, body: Bytes) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (credential.clone(), path.to_owned());
        if inner.entries.insert(key.clone(), (etag, body)).is_none() {
            inner.order.push_back(key);
        }
        while inner.order.len() > MAX_ENTRIES {
            if let Some(oldest) = inner.order.pop_front() {
                inner.entries.remove(&oldest);
            }
        }
    }
}
