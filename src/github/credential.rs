//! Which credential a request runs under: rate limits, pacing, the content
//! budget and the ETag cache are kept per credential.

use std::fmt;

/// The credential a request runs under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CredentialKey {
    Token,
    Installation(u64),
}

impl CredentialKey {
    /// Back from the `Display` form (`token`, `installation:ID`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.split_once(':') {
            None if text == "token" => Some(Self::Token),
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
        }
    }
}
