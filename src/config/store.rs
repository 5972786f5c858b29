//! Where deliveries are stored: `memory`, `sqlite:PATH` (the embedded
//! default) or a PostgreSQL URL shared by several instances.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use crate::redact;

/// A PostgreSQL store's connection URL. The URL may carry a password: it is
/// only ever shown redacted (`shown`), never through `Debug`.
#[derive(Clone)]
pub struct PostgresUrl {
    url: SecretString,
    shown: String,
    host: String,
}

impl PostgresUrl {
    /// Checks a `postgres://` or `postgresql://` URL; the error says what
    /// is wrong without repeating what it held.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let shown = redact::url_str(raw);
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e}): {shown}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!("expected postgres:// or postgresql://, got {shown}"));
        }
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => format!("{host}:5432"),
            // libpq takes a socket folder from `?host=`; the default is the local socket.
            (None, _) => parsed
                .query_pairs()
                .find(|(k, _)| k == "host")
                .map_or_else(|| "the local socket".to_owned(), |(_, v)| v.into_owned()),
        };
        Ok(Self { url: SecretString::from(raw.to_owned()), shown, host })
    }

    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// The URL without its password or parameters, for logs and `check`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `host:port`, for messages about reaching the server.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PartialEq for PostgresUrl {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for PostgresUrl {}
