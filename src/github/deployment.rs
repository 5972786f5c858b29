//! GitHub's limits belong to a credential, not to a process: when several
//! instances share a store, they must also share the rate-limit pauses and
//! the spacing of writes. A shared store provides this; alone, an instance
//! keeps both in its own memory (`limits`).

use std::time::Duration;

use async_trait::async_trait;

use super::credential::CredentialKey;

#[async_trait]
pub trait DeploymentLimits: Send + Sync {
    /// Takes the next write slot of `credential` across the deployment,
    /// `interval` after the previous one; returns how long to wait for it.
    async fn reserve_write(&self, credential: &CredentialKey, interval: Duration) -> Result<Duration, String>;

    /// Tells every instance that `credential` is paused for `length`.
    async fn publish_pause(&self, credential: &CredentialKey, length: Duration);

    /// Calls `on_pause` for every pause published (by any instance, this
    /// one included) from now on.
    fn on_pause(&self, on_pause: PauseListener);
}

/// Told of a credential paused somewhere in the deployment, and for how long.
pub type PauseListener = Box<dyn Fn(&CredentialKey, Duration) + Send + Sync>;
