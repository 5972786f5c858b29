//! Where deliveries are stored: `memory`, `sqlite:PATH` (the embedded
//! default) or a PostgreSQL URL shared by several instances.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::redact;

/// The connection parameters sqlx understands: libpq's names and sqlx's own
/// spellings (and `options[NAME]`). Anything else is refused: sqlx would
/// ignore it after logging its value, which may be a secret, and a misspelt
/// `sslmode` would connect without the TLS it asked for.
const KNOWN_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Parameters naming a file sqlx reads when it connects (unless the value
/// is inline PEM): checked now, so a wrong path is a configuration error.
const FILE_PARAMETERS: [&str; 7] =
    ["sslrootcert", "ssl-root-cert", "ssl-ca", "sslcert", "ssl-cert", "sslkey", "ssl-key"];

/// A PostgreSQL store's connection URL. The URL may carry a password: it is
/// only ever shown redacted (`shown`), never through `Debug`.
#[derive(Clone)]
pub struct PostgresUrl {
    url: SecretString,
    shown: String,
    host: String,
    details: String,
}

impl PostgresUrl {
    /// Checks a `postgres://` or `postgresql://` URL as the connection will
    /// read it (sqlx, libpq's parameters); the error says what is wrong
    /// without repeating what it held.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let shown = redact::url_str(raw);
        // A '/', '?' or '#' in a password ends the host part early: what
        // follows would be read (and shown) as a port, a path or a query.
        if delimiter_before_at(raw) {
            return Err(format!(
                "an '@' after the host in {shown}: percent-encode '/', '?', '#' and '@' in a password or user \
                 name (%2F, %3F, %23, %40)"
            ));
        }
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e}): {shown}"))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(format!("expected postgres:// or postgresql://, got {shown}"));
        }
        if parsed.fragment().is_some() {
            return Err(format!("a '#' in {shown}: percent-encode it in a password (%23)"));
        }
        for (key, value) in parsed.query_pairs() {
            let known = KNOWN_PARAMETERS.contains(&&*key) || (key.starts_with("options[") && key.ends_with(']'));
            if !known {
                return Err(format!(
                    "unknown parameter {:?} in {shown}: expected one of {}",
                    redact::echo(&key),
                    KNOWN_PARAMETERS.join(", ")
                ));
            }
            if FILE_PARAMETERS.contains(&&*key) && !value.trim_start().starts_with("-----BEGIN") {
                std::fs::metadata(&*value).map_err(|e| format!("{key}: cannot read {value}: {e}"))?;
            }
        }
        let options = PgConnectOptions::from_str(raw).map_err(|e| {
            // sqlx wraps its own configuration errors, each saying so.
            let text = e.to_string();
            let mut reason = text.as_str();
            while let Some(inner) = reason.strip_prefix("error with configuration: ") {
                reason = inner;
            }
            format!("not a usable PostgreSQL URL ({reason}): {shown}")
        })?;
        let host = target(&options);
        let user = options.get_username();
        let database = match options.get_database() {
            Some(database) => database.to_owned(),
            // As libpq: without a database name, the user's.
            None => format!("{user} (none given: the user name)"),
        };
        let details = format!("user {user}, database {database}, sslmode {}", ssl_mode(options.get_ssl_mode()));
        Ok(Self { url: SecretString::from(raw.to_owned()), shown, host, details })
    }

    /// The URL itself, to connect with.
    pub fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    /// The URL without its password or parameters, for logs and `check`.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// `host:port` (or the socket's path), for messages about reaching the server.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// User, database and TLS mode as the connection will use them (after
    /// defaults and parameters), for `check`.
    pub fn details(&self) -> &str {
        &self.details
    }
}

/// Whether an '@' follows a '/', '?' or '#' after the scheme: a password
/// holding one of them unencoded (or a name holding '@').
fn delimiter_before_at(raw: &str) -> bool {
    let rest = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    rest.rsplit_once('@').is_some_and(|(before, _)| before.contains(['/', '?', '#']))
}

/// Where the connection goes: a Unix socket (a host that is a folder) or `host:port`.
fn target(options: &PgConnectOptions) -> String {
    let port = options.get_port();
    match options.get_socket() {
        Some(folder) => format!("{}/.s.PGSQL.{port}", folder.display()),
        None if options.get_host().starts_with('/') => format!("{}/.s.PGSQL.{port}", options.get_host()),
        None if options.get_host().contains(':') && !options.get_host().starts_with('[') => {
            format!("[{}]:{port}", options.get_host())
        }
        None => format!("{}:{port}", options.get_host()),
    }
}

fn ssl_mode(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
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

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: [&str; 2] = ["hunter2", "s3cr3t"];

    fn assert_hidden(text: &str) {
        for secret in SECRETS {
            assert!(!text.contains(secret), "{secret} shown in {text}");
        }
    }

    #[test]
    fn a_full_url_is_read_as_the_connection_will_read_it() {
        let url = PostgresUrl::parse("postgresql://app:hunter2@db.internal:6432/hooks?sslmode=require").expect("valid");
        assert_eq!(url.host(), "db.internal:6432");
        assert_eq!(url.shown(), "postgresql://db.internal:6432/hooks");
        assert_eq!(url.details(), "user app, database hooks, sslmode require");
        assert_eq!(url.expose(), "postgresql://app:hunter2@db.internal:6432/hooks?sslmode=require");
        assert_hidden(&format!("{url:?} {} {}", url.shown(), url.details()));
    }

    #[test]
    fn defaults_follow_libpq_and_are_shown() {
        // No port: 5432. No database: the user's name, said so.
        let url = PostgresUrl::parse("postgres://app@db.internal").expect("valid");
        assert_eq!(url.host(), "db.internal:5432");
        assert_eq!(url.details(), "user app, database app (none given: the user name), sslmode prefer");
        // Parameters in libpq's names win over the URL's parts.
        let url = PostgresUrl::parse("postgres://x@db/a?user=ops&dbname=hooks&port=7000&host=10.0.0.2").expect("valid");
        assert_eq!(url.host(), "10.0.0.2:7000");
        assert!(url.details().starts_with("user ops, database hooks,"), "{}", url.details());
        // A host that is a folder is a Unix socket.
        let url = PostgresUrl::parse("postgres://app@%2Frun%2Fpostgresql/hooks").expect("valid");
        assert_eq!(url.host(), "/run/postgresql/.s.PGSQL.5432");
        let url = PostgresUrl::parse("postgres:///hooks?host=/run/postgresql").expect("valid");
        assert_eq!(url.host(), "/run/postgresql/.s.PGSQL.5432");
        let url = PostgresUrl::parse("postgres://[::1]:5433/hooks").expect("valid");
        assert_eq!(url.host(), "[::1]:5433");
        let url = PostgresUrl::parse("postgres://db/hooks?hostaddr=::1").expect("valid");
        assert_eq!(url.host(), "[::1]:5432");
    }

    #[test]
    fn what_sqlx_would_refuse_or_ignore_is_refused_now() {
        for (raw, expected) in [
            ("postgres://app:hunter2@db:5432/x?sslmode=sometimes", "(unknown value \"sometimes\" for `ssl_mode`)"),
            ("postgres://app:hunter2@db/x?port=lots", "not a usable PostgreSQL URL"),
            ("postgres://app:hunter2@db/x?hostaddr=db.internal", "not a usable PostgreSQL URL"),
            ("postgres://app:hunter2@db/x?statement-cache-capacity=-1", "not a usable PostgreSQL URL"),
            ("postgres://app:hunter2@db:99999/x", "not a valid URL"),
            ("postgres://app:%FF@db/x", "not a usable PostgreSQL URL"),
            ("mysql://app:hunter2@db/x", "expected postgres://"),
            // sqlx would log the value and go on: a typo must not drop TLS.
            ("postgres://app@db/x?sslmod=require&passwd=s3cr3t", "unknown parameter \"sslmod\""),
        ] {
            let err = PostgresUrl::parse(raw).err().unwrap_or_else(|| panic!("{raw} accepted"));
            assert!(err.contains(expected), "{raw}: {err}");
            assert_hidden(&err);
        }
    }

    #[test]
    fn a_password_with_url_delimiters_is_refused_without_showing_it() {
        for raw in [
            "postgres://app:hunter2/s3cr3t@db:5432/x",
            "postgres://app:12/hunter2@db:5432/x",
            "postgres://app:12?hunter2@db:5432/x",
            "postgres://app:12#hunter2@db:5432/x",
            "postgres://app:hunter2#s3cr3t@db:5432/x",
        ] {
            let err = PostgresUrl::parse(raw).err().unwrap_or_else(|| panic!("{raw} accepted"));
            assert!(!err.contains("12"), "{raw}: {err}");
            assert_hidden(&err);
        }
        for raw in ["postgres://app:12/hunter2@db:5432/x", "postgres://app:hunter2/s3cr3t@db:5432/x"] {
            let err = PostgresUrl::parse(raw).expect_err("refused");
            assert!(err.contains("percent-encode") && err.contains("postgres://db:5432/x"), "{err}");
        }
        let err = PostgresUrl::parse("postgres://db:5432/x#frag").expect_err("fragment");
        assert!(err.contains("%23"), "{err}");
        // Encoded, the same password is fine.
        let url = PostgresUrl::parse("postgres://app:12%2Fhunter2@db:5432/x").expect("valid");
        assert_eq!(url.host(), "db:5432");
    }

    /// Whether any 6-character piece of `secret` is in `text`.
    fn shows_a_piece(text: &str, secret: &str) -> bool {
        let chars: Vec<char> = secret.chars().collect();
        chars.windows(6).any(|w| text.contains(&w.iter().collect::<String>()))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default() })]

        /// Any printable password, unencoded in the userinfo (so possibly
        /// breaking the URL) and encoded in a parameter, stays out of what
        /// is shown, whether the URL is accepted or refused.
        #[test]
        fn no_piece_of_a_password_is_ever_shown(
            scheme in "(postgres://|postgresql://|pgsql://|)",
            password in "[!-~]{8,24}",
            parameter in "[!-~]{8,24}",
            in_parameter in proptest::bool::ANY,
        ) {
            let mut raw = format!("{scheme}app:{password}@db.example:5432/hooks");
            if in_parameter {
                let encoded: String = url::form_urlencoded::byte_serialize(parameter.as_bytes()).collect();
                raw.push_str(&format!("?sslmode=require&password={encoded}"));
            }
            let env = crate::config::Env::from_pairs([("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", raw.as_str())]);
            let text = match crate::config::Settings::from_env(&env) {
                Ok(settings) => match &settings.store {
                    crate::config::StoreKind::Postgres(url) => {
                        format!("{} {} {} {:?} {settings:?}", url.shown(), url.host(), url.details(), url)
                    }
                    other => format!("{other:?}"),
                },
                Err(e) => e.to_string(),
            };
            proptest::prop_assert!(!shows_a_piece(&text, &password), "{raw} -> {text}");
            proptest::prop_assert!(!in_parameter || !shows_a_piece(&text, &parameter), "{raw} -> {text}");
        }
    }

    #[test]
    fn tls_files_are_checked_now_and_inline_pem_is_left_alone() {
        let dir = tempfile::tempdir().expect("dir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").expect("write");
        let ok = format!("postgres://db/x?sslmode=verify-full&sslrootcert={}", ca.display());
        let url = PostgresUrl::parse(&ok).expect("readable file");
        assert!(url.details().ends_with("sslmode verify-full"), "{}", url.details());
        let missing = dir.path().join("nope.pem");
        let err =
            PostgresUrl::parse(&format!("postgres://db/x?sslrootcert={}", missing.display())).expect_err("missing");
        assert!(err.starts_with("sslrootcert: cannot read") && err.contains("nope.pem"), "{err}");
        PostgresUrl::parse("postgres://db/x?sslrootcert=-----BEGIN%20CERTIFICATE-----x-----END%20CERTIFICATE-----")
            .expect("inline PEM is not a path");
    }
}
