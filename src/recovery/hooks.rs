//! Which webhooks recovery watches: the GitHub App's own hook, organization
//! and repository hooks named in `WEBHOOKD_RECOVERY_HOOKS`, and those learned
//! from the deliveries received (every delivery names its hook in
//! `X-GitHub-Hook-ID` and its target in
//! `X-GitHub-Hook-Installation-Target-Type`).

use std::collections::BTreeSet;
use std::sync::{Mutex, PoisonError};

pub use crate::config::HookSpec;
use crate::delivery::Delivery;

/// Hooks learned and not yet written to the store, at most: a flood of
/// deliveries naming made-up hooks cannot grow memory.
const MAX_UNSAVED: usize = 100;

/// What recovery does with a hook named as `config::HookSpec` spells it.
impl HookSpec {
    /// The hook a delivery came from, if recovery can watch it.
    pub fn of_delivery(delivery: &Delivery) -> Option<Self> {
        let headers = &delivery.headers;
        let hook_id = headers.hook_id.as_deref()?.parse().ok()?;
        match headers.target_type.as_deref()? {
            "integration" => Some(Self::App),
            "repository" => Some(Self::Repo { repo: delivery.routing.repository.clone()?, hook_id })
                .filter(|spec| Self::parse(&spec.to_string()).is_ok()),
            "organization" => {
                let payload = delivery.payload().ok()?;
                let org = payload.get("organization")?.get("login")?.as_str()?;
                Self::parse(&format!("org:{org}:{hook_id}")).ok()
            }
            _ => None,
        }
    }
}

/// Hooks seen on deliveries since the last pass saved them.
#[derive(Debug, Default)]
pub struct HookRegistry {
    unsaved: Mutex<BTreeSet<HookSpec>>,
    known: Mutex<BTreeSet<HookSpec>>,
}

impl HookRegistry {
    /// Notes the hook of a verified delivery (cheap: a set lookup).
    pub fn saw(&self, delivery: &Delivery) {
        let Some(spec) = HookSpec::of_delivery(delivery) else { return };
        if self.known.lock().unwrap_or_else(PoisonError::into_inner).contains(&spec) {
            return;
        }
        let mut unsaved = self.unsaved.lock().unwrap_or_else(PoisonError::into_inner);
        if unsaved.len() < MAX_UNSAVED {
            unsaved.insert(spec);
        }
    }

    /// The hooks to write to the store now; they count as known after.
    pub fn take_unsaved(&self) -> Vec<HookSpec> {
        let taken = std::mem::take(&mut *self.unsaved.lock().unwrap_or_else(PoisonError::into_inner));
        self.known.lock().unwrap_or_else(PoisonError::into_inner).extend(taken.iter().cloned());
        taken.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(target: &str, body: &str) -> Delivery {
        let headers = crate::webhook::headers::GitHubHeaders {
            event: crate::webhook::headers::EventName::parse("issues").expect("event"),
            delivery_id: crate::delivery::DeliveryId::parse("d").expect("id"),
            hook_id: Some("42".into()),
            target_type: Some(target.into()),
            target_id: Some("1".into()),
        };
        Delivery::from_verified(headers, crate::webhook::body::ContentKind::Json, bytes::Bytes::from(body.to_owned()))
            .expect("valid")
    }

    #[test]
    fn a_delivery_names_the_hook_it_came_from() {
        let repo = delivery("repository", r#"{"repository":{"full_name":"octo/app"}}"#);
        assert_eq!(HookSpec::of_delivery(&repo), Some(HookSpec::Repo { repo: "octo/app".into(), hook_id: 42 }));
        let org = delivery("organization", r#"{"organization":{"login":"octo"}}"#);
        assert_eq!(HookSpec::of_delivery(&org), Some(HookSpec::Org { org: "octo".into(), hook_id: 42 }));
        assert_eq!(HookSpec::of_delivery(&delivery("integration", "{}")), Some(HookSpec::App));
        assert_eq!(HookSpec::of_delivery(&delivery("business", "{}")), None);
        // A name that could leave its path segment is not learned.
        let odd = delivery("organization", r#"{"organization":{"login":"../x"}}"#);
        assert_eq!(HookSpec::of_delivery(&odd), None);
        let registry = HookRegistry::default();
        registry.saw(&repo);
        registry.saw(&repo);
        assert_eq!(registry.take_unsaved().len(), 1);
        registry.saw(&repo);
        assert!(registry.take_unsaved().is_empty(), "known hooks are not written again");
    }
}
