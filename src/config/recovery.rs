//! Recovery of deliveries GitHub failed to make (`WEBHOOKD_RECOVERY*`),
//! and how a watched hook is written.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use super::parse::duration_in;
use super::{ConfigError, Env, keep, ranges};

/// Recovery of deliveries GitHub failed to make (`WEBHOOKD_RECOVERY*`).
#[derive(Debug, Clone)]
pub struct RecoverySettings {
    pub enabled: bool,
    pub interval: Duration,
    /// How far back a hook is read the first time.
    pub window: Duration,
    /// Hooks named in `WEBHOOKD_RECOVERY_HOOKS`, besides the App's own and
    /// those learned from deliveries.
    pub hooks: Vec<HookSpec>,
}

/// Most hooks `WEBHOOKD_RECOVERY_HOOKS` may name: each costs requests every pass.
pub const MAX_RECOVERY_HOOKS: usize = 100;

/// `WEBHOOKD_RECOVERY` (on/off), `_INTERVAL`, `_WINDOW` and `_HOOKS`; each
/// problem is added to `errors`, naming its variable.
pub(super) fn recovery_settings(env: &Env, errors: &mut Vec<ConfigError>) -> Option<RecoverySettings> {
    let enabled = keep(
        errors,
        match env.get("WEBHOOKD_RECOVERY") {
            None | Some("on") => Ok(true),
            Some("off") => Ok(false),
            Some(other) => Err(ConfigError::invalid("WEBHOOKD_RECOVERY", format!("expected on or off, got {other:?}"))),
        },
    );
    let interval = keep(
        errors,
        duration_in(env, "WEBHOOKD_RECOVERY_INTERVAL", Duration::from_secs(300), ranges::RECOVERY_INTERVAL),
    );
    let window = keep(
        errors,
        duration_in(env, "WEBHOOKD_RECOVERY_WINDOW", *ranges::RECOVERY_WINDOW.end(), ranges::RECOVERY_WINDOW),
    );
    let hooks = keep(
        errors,
        parse_list(env.get("WEBHOOKD_RECOVERY_HOOKS").unwrap_or_default())
            .and_then(|hooks| {
                if hooks.len() > MAX_RECOVERY_HOOKS {
                    Err(format!("names {} hooks; at most {MAX_RECOVERY_HOOKS}", hooks.len()))
                } else {
                    Ok(hooks)
                }
            })
            .map_err(|e| ConfigError::invalid("WEBHOOKD_RECOVERY_HOOKS", e)),
    );
    Some(RecoverySettings { enabled: enabled?, interval: interval?, window: window?, hooks: hooks? })
}

/// A watched hook, as written in `WEBHOOKD_RECOVERY_HOOKS` and in the store:
/// `app`, `org:NAME:HOOK_ID` or `repo:OWNER/NAME:HOOK_ID`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookSpec {
    App,
    Org { org: String, hook_id: u64 },
    Repo { repo: String, hook_id: u64 },
}

impl HookSpec {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("{text:?}: expected app, org:NAME:HOOK_ID or repo:OWNER/NAME:HOOK_ID");
        if text == "app" {
            return Ok(Self::App);
        }
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        let (name, id) = rest.rsplit_once(':').ok_or_else(bad)?;
        let hook_id: u64 = id.parse().map_err(|_| bad())?;
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        match kind {
            "org" if word(name) => Ok(Self::Org { org: name.to_owned(), hook_id }),
            "repo" => match name.split_once('/') {
                Some((owner, repo)) if word(owner) && word(repo) => Ok(Self::Repo { repo: name.to_owned(), hook_id }),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for HookSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::App => f.write_str("app"),
            Self::Org { org, hook_id } => write!(f, "org:{org}:{hook_id}"),
            Self::Repo { repo, hook_id } => write!(f, "repo:{repo}:{hook_id}"),
        }
    }
}

/// Parses `WEBHOOKD_RECOVERY_HOOKS`: specs separated by commas or spaces.
pub fn parse_list(text: &str) -> Result<Vec<HookSpec>, String> {
    let mut specs = BTreeSet::new();
    for part in text.split([',', ' ']).filter(|p| !p.trim().is_empty()) {
        specs.insert(HookSpec::parse(part)?);
    }
    Ok(specs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print_back() {
        for text in ["app", "org:acme:12", "repo:octo-org/hello.world:34"] {
            assert_eq!(HookSpec::parse(text).expect(text).to_string(), text);
        }
        for bad in ["", "apps", "org:acme", "org:acme:x", "repo:acme:1", "repo:a/b/c:1", "org:a b:1", "user:x:1"] {
            assert!(HookSpec::parse(bad).is_err(), "{bad:?} accepted");
        }
        let list = parse_list("app, repo:o/r:1 org:o:2,app").expect("list");
        assert_eq!(list.len(), 3, "{list:?}");
    }
}
