//! Which credential a request runs under: rate limits, pacing, the content
//! budget and the ETag cache are kept per credential.

use std::fmt;

/// The credential a request runs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialKey {
    Token,
    Installation(u64),
    /// The GitHub App itself, with its JWT (its own webhook's deliveries,
    /// finding an installation). GitHub limits these calls apart from any
    /// installation's. No delivery runs under it, so the queue never sees it.
    App,
}

impl CredentialKey {
    /// Back from the `Display` form (`token`, `installation:ID`, `app`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None if text == "token" => Some(Self::Token),
            None if text == "app" => Some(Self::App),
            Some(("installation", id)) => id.parse().ok().map(Self::Installation),
            _ => None,
        }
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token => f.write_str("token"),
            Self::Installation(id) => write!(f, "installation:{id}"),
            Self::App => f.write_str("app"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_parses_back_from_its_display_form() {
        for key in [CredentialKey::Token, CredentialKey::Installation(7), CredentialKey::App] {
            assert_eq!(CredentialKey::parse(&key.to_string()), Some(key));
        }
        for bad in ["", "apps", "app:1", "installation:", "installation:x", "Token"] {
            assert_eq!(CredentialKey::parse(bad), None, "{bad}");
        }
    }
}
