//! The daemon's settings, read once at start from the environment (see the
//! contract's configuration table) and validated as a whole: every problem is
//! reported, each naming its variable, so `webhookd check` can list them all.

mod env;
mod github;
mod parse;
mod recovery;
mod secrets;
mod store;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use env::{DEFAULT_ENV_FILE, Env};
pub use github::{
    ClientRetry, DEFAULT_GITHUB_CACHE_BYTES, GitHubCredential, GitHubSettings, GitHubTrust, MAX_GITHUB_CACHE_BYTES,
    anchors_from_pem,
};
pub use parse::webhook_secrets;
use parse::{
    default_workers, duration_in, parse_in_range, parse_listen, parse_log_filter, parse_log_format, parse_rules,
    parse_store, seconds_in,
};
pub use recovery::{HookSpec, MAX_RECOVERY_HOOKS, RecoverySettings};
pub use store::PostgresUrl;

/// How long a PostgreSQL claim lasts without renewal (`WEBHOOKD_LEASE`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// GitHub's own cap on a webhook payload: 25 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// Deliveries waiting for a worker with the in-memory queue.
pub const DEFAULT_MEMORY_QUEUE_CAPACITY: usize = 1024;
/// Deliveries waiting for a worker with the durable store.
pub const DEFAULT_STORE_QUEUE_CAPACITY: usize = 100_000;
/// Where the durable store lives unless `WEBHOOKD_STORE` says otherwise.
pub const DEFAULT_STORE: &str = "sqlite:./data/webhookd.db";
/// GitHub's documented ceiling on concurrent requests per credential.
pub const MAX_GITHUB_CONCURRENCY: usize = 100;
/// Largest `WEBHOOKD_MAX_BODY`: four times GitHub's cap. A body is held in
/// memory whole while it is verified.
pub const MAX_BODY_LIMIT_BYTES: usize = 100 * 1024 * 1024;
/// Largest `WEBHOOKD_WORKERS`: each worker is a task holding one delivery.
pub const MAX_WORKERS: usize = 1024;
/// Largest `WEBHOOKD_QUEUE_CAPACITY` with the in-memory queue: every waiting
/// delivery's body is in RAM (a million typical 10 KB payloads is 10 GB).
pub const MAX_MEMORY_QUEUE_CAPACITY: usize = 1_000_000;
/// Largest `WEBHOOKD_QUEUE_CAPACITY` with the durable store: rows on disk
/// (ten million typical payloads is 100 GB), far past any real backlog.
pub const MAX_STORE_QUEUE_CAPACITY: usize = 10_000_000;
/// Largest `WEBHOOKD_MAX_ATTEMPTS`: past this a delivery is not going to succeed.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// Most webhook secrets accepted: each is tried on every refused body.
pub const MAX_SECRETS: usize = 10;
/// Time a sender gets to deliver a request's body once its headers arrived:
/// GitHub's own delivery timeout.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Open HTTP connections at most, idle keep-alive ones included. Beyond it
/// connections wait in the kernel's backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Largest `WEBHOOKD_MAX_CONNECTIONS` (each is a file descriptor).
pub const MAX_CONNECTIONS_LIMIT: usize = 65_536;
/// Memory all request bodies being received may take together: ten
/// GitHub-sized bodies at once, far more than GitHub sends in parallel.
pub const DEFAULT_BODY_MEMORY_BYTES: usize = 256 * 1024 * 1024;
/// Largest `WEBHOOKD_BODY_MEMORY`.
pub const MAX_BODY_MEMORY_BYTES: usize = 16 * 1024 * 1024 * 1024;

/// The allowed ranges of durations: a wait is never zero where zero would
/// spin or refuse everything, and never so long that adding it to a clock
/// reading could overflow.
mod ranges {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);
    const HOUR: Duration = Duration::from_secs(3600);

    pub const BODY_TIMEOUT: RangeInclusive<Duration> = MS..=Duration::from_secs(5 * 60);
    pub const GITHUB_TIMEOUT: RangeInclusive<Duration> = MS..=HOUR;
    pub const WRITE_INTERVAL: RangeInclusive<Duration> = Duration::ZERO..=HOUR;
    /// Ten years.
    pub const RETENTION: RangeInclusive<Duration> = Duration::ZERO..=Duration::from_secs(3650 * 24 * 3600);
    pub const RETRY_BACKOFF: RangeInclusive<Duration> = MS..=HOUR;
    pub const SHUTDOWN_TIMEOUT: RangeInclusive<Duration> = MS..=HOUR;
    pub const STALL_TIMEOUT: RangeInclusive<Duration> = SECOND..=Duration::from_secs(24 * 3600);
    /// Renewed every third of it, so at least two seconds; an hour would
    /// leave a dead instance's work waiting that long.
    pub const LEASE: RangeInclusive<Duration> = Duration::from_secs(2)..=HOUR;
    /// A pass costs a few GitHub requests per hook: not more often than a minute.
    pub const RECOVERY_INTERVAL: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(24 * 3600);
    /// GitHub redelivers attempts of the past three days only.
    pub const RECOVERY_WINDOW: RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(3 * 24 * 3600);
}

/// One problem with the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{var}: {reason}")]
    Invalid { var: String, reason: String },
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
}

impl ConfigError {
    pub fn invalid(var: &str, reason: impl Into<String>) -> Self {
        Self::Invalid { var: var.to_owned(), reason: reason.into() }
    }
}

/// Every problem found, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// Volatile: lost with the process.
    Memory,
    /// Durable: an SQLite database at this path.
    Sqlite(PathBuf),
    /// Durable and shared by several instances: a PostgreSQL database.
    Postgres(PostgresUrl),
}

#[derive(Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub secrets: Vec<SecretString>,
    pub github: GitHubSettings,
    pub workers: usize,
    pub queue_capacity: usize,
    pub store: StoreKind,
    /// How long delivery ids are remembered for deduplication.
    pub retention: Duration,
    pub max_attempts: u32,
    /// Wait after a first failed attempt; doubles with each further one.
    pub retry_backoff: Duration,
    pub max_body: usize,
    /// Total time to receive a request's body once its headers arrived.
    pub body_timeout: Duration,
    /// Open HTTP connections at most.
    pub max_connections: usize,
    /// Bytes all request bodies being received may hold together.
    pub body_memory: usize,
    pub shutdown_timeout: Duration,
    /// How long one delivery may hold a worker before the worker counts as
    /// stuck (for the systemd watchdog).
    pub stall_timeout: Duration,
    /// How long a claimed delivery stays with its instance without a renewal
    /// (PostgreSQL store): past it, another instance takes it over.
    pub lease: Duration,
    pub recovery: RecoverySettings,
    pub rules: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_filter: String,
}

impl Settings {
    /// Reads and validates every variable; returns all problems at once.
    pub fn from_env(env: &Env) -> Result<Self, ConfigErrors> {
        let mut errors = Vec::new();
        let e = &mut errors;

        let listen = keep(e, parse_listen(env));
        let secrets = keep(e, webhook_secrets(env));
        let github = github::github_settings(env, e);
        let workers =
            keep(e, parse_in_range(env, "WEBHOOKD_WORKERS", default_workers().min(MAX_WORKERS), 1..=MAX_WORKERS));
        let store = keep(e, parse_store(env));
        let (default_capacity, max_capacity) = match &store {
            Some(StoreKind::Memory) => (DEFAULT_MEMORY_QUEUE_CAPACITY, MAX_MEMORY_QUEUE_CAPACITY),
            _ => (DEFAULT_STORE_QUEUE_CAPACITY, MAX_STORE_QUEUE_CAPACITY),
        };
        let queue_capacity =
            keep(e, parse_in_range(env, "WEBHOOKD_QUEUE_CAPACITY", default_capacity, 1..=max_capacity));
        let retention = keep(e, parse_retention(env));
        let max_attempts = keep(e, parse_in_range(env, "WEBHOOKD_MAX_ATTEMPTS", 8_u32, 1..=MAX_ATTEMPTS_LIMIT));
        let retry_backoff =
            keep(e, duration_in(env, "WEBHOOKD_RETRY_BACKOFF", Duration::from_secs(10), ranges::RETRY_BACKOFF));
        let max_body =
            keep(e, parse_in_range(env, "WEBHOOKD_MAX_BODY", DEFAULT_MAX_BODY_BYTES, 1..=MAX_BODY_LIMIT_BYTES));
        let body_timeout =
            keep(e, duration_in(env, "WEBHOOKD_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT, ranges::BODY_TIMEOUT));
        let max_connections = keep(
            e,
            parse_in_range(env, "WEBHOOKD_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS, 1..=MAX_CONNECTIONS_LIMIT),
        );
        let body_memory = keep(e, parse_body_memory(env, max_body));
        let shutdown_timeout =
            keep(e, seconds_in(env, "WEBHOOKD_SHUTDOWN_TIMEOUT", Duration::from_secs(30), ranges::SHUTDOWN_TIMEOUT));
        let stall_timeout =
            keep(e, duration_in(env, "WEBHOOKD_STALL_TIMEOUT", Duration::from_secs(15 * 60), ranges::STALL_TIMEOUT));
        let lease = keep(e, duration_in(env, "WEBHOOKD_LEASE", DEFAULT_LEASE, ranges::LEASE));
        let recovery = recovery::recovery_settings(env, e);
        let rules = keep(e, parse_rules(env));
        let log_format = keep(e, parse_log_format(env));
        let log_filter = keep(e, parse_log_filter(env));

        // Each part is `None` exactly when its problem is in `errors`.
        let settings = (|| {
            Some(Self {
                listen: listen?,
                secrets: secrets?,
                github: github?,
                workers: workers?,
                queue_capacity: queue_capacity?,
                store: store?,
                retention: retention?,
                max_attempts: max_attempts?,
                retry_backoff: retry_backoff?,
                max_body: max_body?,
                body_timeout: body_timeout?,
                max_connections: max_connections?,
                body_memory: body_memory?,
                shutdown_timeout: shutdown_timeout?,
                stall_timeout: stall_timeout?,
                lease: lease?,
                recovery: recovery?,
                rules: rules?,
                log_format: log_format?,
                log_filter: log_filter?,
            })
        })();
        settings.filter(|_| errors.is_empty()).ok_or(ConfigErrors(errors))
    }
}

/// `WEBHOOKD_BODY_MEMORY`: at least one largest body must fit.
fn parse_body_memory(env: &Env, max_body: Option<usize>) -> Result<usize, ConfigError> {
    let bytes = parse_in_range(env, "WEBHOOKD_BODY_MEMORY", DEFAULT_BODY_MEMORY_BYTES, 1..=MAX_BODY_MEMORY_BYTES)?;
    match max_body {
        Some(max_body) if bytes < max_body => Err(ConfigError::invalid(
            "WEBHOOKD_BODY_MEMORY",
            format!("must be at least WEBHOOKD_MAX_BODY ({max_body}), or no body that large fits; got {bytes}"),
        )),
        _ => Ok(bytes),
    }
}

/// `WEBHOOKD_RETENTION`: how long finished deliveries are remembered.
fn parse_retention(env: &Env) -> Result<Duration, ConfigError> {
    duration_in(env, "WEBHOOKD_RETENTION", Duration::from_secs(7 * 24 * 3600), ranges::RETENTION)
}

/// The value of `result`, or `None` with its error added to `errors`.
fn keep<T>(errors: &mut Vec<ConfigError>, result: Result<T, ConfigError>) -> Option<T> {
    result.map_err(|e| errors.push(e)).ok()
}

/// The first line of the secret file `path` (for the rules' `forward`).
pub fn read_secret_file(env: &Env, var: &str, path: &str) -> Result<SecretString, ConfigError> {
    let text = secrets::read_file(env, var, path)?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.map(|l| SecretString::from(l.to_owned()))
        .ok_or_else(|| ConfigError::invalid(var, format!("{path} holds no secret")))
}

/// Only the store and the retention, for commands that work on the store
/// (`webhookd deliveries`) and need nothing else.
pub fn store_from_env(env: &Env) -> Result<(StoreKind, Duration), ConfigErrors> {
    let store = parse_store(env);
    let retention = parse_retention(env);
    match (store, retention) {
        (Ok(store), Ok(retention)) => Ok((store, retention)),
        (store, retention) => Err(ConfigErrors(store.err().into_iter().chain(retention.err()).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn defaults_apply_with_only_a_secret() {
        let s = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s")])).expect("valid");
        assert_eq!(s.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(s.store, StoreKind::Sqlite(PathBuf::from("./data/webhookd.db")));
        assert_eq!(s.queue_capacity, 100_000);
        assert_eq!(s.retry_backoff, Duration::from_secs(10));
        assert_eq!(s.max_body, 26_214_400);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(s.github.api_url.as_str(), "https://api.github.com/");
        assert_eq!(s.github.concurrency, 10);
        assert_eq!(s.github.write_interval, Duration::from_secs(1));
        assert_eq!(s.max_attempts, 8);
        assert!(s.github.credential.is_none());
        assert!(s.workers >= 1);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.github.cache_bytes, 64 * 1024 * 1024);
        assert!(s.github.trust.ca_file.is_none() && s.github.trust.extra_anchors.is_empty());
    }

    #[test]
    fn the_github_cache_bound_is_a_setting_from_off_to_one_gib() {
        let cache = |v: &str| Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_CACHE_BYTES", v)]));
        assert_eq!(cache("0").expect("off").github.cache_bytes, 0);
        assert_eq!(cache("1073741824").expect("1 GiB").github.cache_bytes, 1 << 30);
        for bad in ["1073741825", "-1", "lots"] {
            let errors = cache(bad).expect_err("refused").to_string();
            assert!(errors.contains("WEBHOOKD_GITHUB_CACHE_BYTES"), "{errors}");
        }
    }

    #[test]
    fn memory_store_has_its_own_capacity_default() {
        let s = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", "memory")])).expect("valid");
        assert_eq!(s.store, StoreKind::Memory);
        assert_eq!(s.queue_capacity, 1024);
        let s = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", "sqlite:/var/lib/w.db")]))
            .expect("valid");
        assert_eq!(s.store, StoreKind::Sqlite(PathBuf::from("/var/lib/w.db")));
        for bad in ["sqlite:", "postgres://db?sslmode=sometimes", "mem"] {
            let err = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", bad)])).expect_err(bad);
            assert!(err.to_string().starts_with("WEBHOOKD_STORE:"), "{err}");
        }
    }

    #[test]
    fn a_postgres_store_is_accepted_with_its_lease_and_never_printed_with_its_password() {
        let url = "postgres://app:hunter2@db.internal:5432/hooks?sslmode=require&password=s3cr3t";
        let s = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", url)])).expect("valid");
        let StoreKind::Postgres(parsed) = &s.store else { panic!("not postgres: {:?}", s.store) };
        assert_eq!((parsed.expose(), parsed.host()), (url, "db.internal:5432"));
        assert_eq!(s.queue_capacity, DEFAULT_STORE_QUEUE_CAPACITY);
        assert_eq!(s.lease, DEFAULT_LEASE);
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("s3cr3t"), "{debug}");

        let lease = |v: &str| {
            Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", url), ("WEBHOOKD_LEASE", v)]))
        };
        assert_eq!(lease("2s").expect("lower bound").lease, Duration::from_secs(2));
        assert_eq!(lease("1h").expect("upper bound").lease, Duration::from_secs(3600));
        for bad in ["1s", "61m", "soon"] {
            let err = lease(bad).expect_err(bad).to_string();
            assert!(err.starts_with("WEBHOOKD_LEASE:"), "{err}");
        }
    }

    #[test]
    fn a_bad_store_url_is_named_without_its_password() {
        let err = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_STORE", "postgres://app:hunter2@db/x?sslmode=sometimes&password=s3cr3t"),
        ]))
        .expect_err("bad sslmode")
        .to_string();
        assert!(err.starts_with("WEBHOOKD_STORE:") && err.contains("db/x"), "{err}");
        assert!(!err.contains("hunter2") && !err.contains("s3cr3t"), "{err}");
        // Not even recognised as PostgreSQL: still shown without credentials.
        let err = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_STORE", "pgsql://app:hunter2@db/x")]))
            .expect_err("unknown scheme")
            .to_string();
        assert!(err.starts_with("WEBHOOKD_STORE: expected") && err.contains("postgres://"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_store_can_come_from_a_file_also_under_the_credentials_directory() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("store-url"), "\n  postgres://app:hunter2@db.internal/hooks  \nignored\n")
            .expect("write");
        let credentials = dir.path().to_str().expect("utf8");
        let from_file = |name: &str| {
            Settings::from_env(&env(&[
                ("WEBHOOKD_SECRET", "s"),
                ("WEBHOOKD_STORE_FILE", name),
                ("CREDENTIALS_DIRECTORY", credentials),
            ]))
        };
        let s = from_file("store-url").expect("relative name, credentials directory");
        let StoreKind::Postgres(url) = &s.store else { panic!("not postgres: {:?}", s.store) };
        assert_eq!(url.expose(), "postgres://app:hunter2@db.internal/hooks");
        let absolute = dir.path().join("store-url");
        assert!(from_file(absolute.to_str().expect("utf8")).is_ok());
        // `deliveries` reads it too.
        let (store, _) =
            store_from_env(&env(&[("WEBHOOKD_STORE_FILE", absolute.to_str().expect("utf8"))])).expect("store only");
        assert_eq!(store, s.store);

        let err = from_file("missing").expect_err("no such file").to_string();
        assert!(err.starts_with("WEBHOOKD_STORE_FILE: cannot read") && err.contains("missing"), "{err}");
        std::fs::write(dir.path().join("empty"), "\n \n").expect("write");
        let err = from_file("empty").expect_err("empty").to_string();
        assert!(err.starts_with("WEBHOOKD_STORE_FILE:") && err.contains("empty"), "{err}");
        // A file holding something else (a bare password, say) is not quoted.
        std::fs::write(dir.path().join("password"), "hunter2\n").expect("write");
        let err = from_file("password").expect_err("not a store").to_string();
        assert!(err.starts_with("WEBHOOKD_STORE_FILE:") && !err.contains("hunter2"), "{err}");
        std::fs::write(dir.path().join("bad-url"), "postgres://app:hunter2@db/x?sslmode=never\n").expect("write");
        let err = from_file("bad-url").expect_err("bad URL").to_string();
        assert!(
            err.starts_with("WEBHOOKD_STORE_FILE:") && err.contains("bad-url") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn the_store_and_its_file_together_are_refused_naming_both() {
        let both = env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_STORE", "memory"),
            ("WEBHOOKD_STORE_FILE", "/run/credentials/webhookd/store-url"),
        ]);
        let err = Settings::from_env(&both).expect_err("both").to_string();
        assert!(err.contains("WEBHOOKD_STORE:") && err.contains("WEBHOOKD_STORE_FILE"), "{err}");
        let err = store_from_env(&both).expect_err("both, deliveries").to_string();
        assert!(err.contains("WEBHOOKD_STORE_FILE"), "{err}");
    }

    #[test]
    fn missing_secret_is_named() {
        let err = Settings::from_env(&env(&[])).expect_err("invalid").to_string();
        assert!(err.contains("WEBHOOKD_SECRET"), "{err}");
    }

    #[test]
    fn every_bad_variable_is_reported_by_name() {
        let err = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_LISTEN", "nowhere"),
            ("WEBHOOKD_WORKERS", "0"),
            ("WEBHOOKD_QUEUE_CAPACITY", "lots"),
            ("WEBHOOKD_GITHUB_API_URL", "ftp://x"),
            ("WEBHOOKD_GITHUB_CONCURRENCY", "101"),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "soon"),
            ("WEBHOOKD_RETENTION", "forever"),
            ("WEBHOOKD_MAX_BODY", "-1"),
            ("WEBHOOKD_SHUTDOWN_TIMEOUT", "x"),
            ("WEBHOOKD_LOG_FORMAT", "xml"),
            ("WEBHOOKD_STORE", "postgres://db:99999/x"),
            ("WEBHOOKD_RETRY_BACKOFF", "later"),
            ("WEBHOOKD_GITHUB_TIMEOUT", "never"),
            ("WEBHOOKD_STALL_TIMEOUT", "soon"),
            ("RUST_LOG", "info,[[["),
        ]))
        .expect_err("invalid")
        .to_string();
        for var in [
            "WEBHOOKD_LISTEN",
            "WEBHOOKD_WORKERS",
            "WEBHOOKD_QUEUE_CAPACITY",
            "WEBHOOKD_GITHUB_API_URL",
            "WEBHOOKD_GITHUB_CONCURRENCY",
            "WEBHOOKD_GITHUB_WRITE_INTERVAL",
            "WEBHOOKD_RETENTION",
            "WEBHOOKD_MAX_BODY",
            "WEBHOOKD_SHUTDOWN_TIMEOUT",
            "WEBHOOKD_LOG_FORMAT",
            "WEBHOOKD_STORE",
            "WEBHOOKD_RETRY_BACKOFF",
            "WEBHOOKD_GITHUB_TIMEOUT",
            "WEBHOOKD_STALL_TIMEOUT",
            "RUST_LOG",
        ] {
            assert!(err.lines().any(|l| l.starts_with(&format!("{var}:"))), "{var} missing from:\n{err}");
        }
    }

    #[test]
    fn values_out_of_range_are_refused_and_the_bounds_accepted() {
        let with = |pairs: &[(&str, &str)]| {
            let mut all = vec![("WEBHOOKD_SECRET", "s")];
            all.extend_from_slice(pairs);
            Settings::from_env(&env(&all))
        };
        for (var, bad) in [
            ("WEBHOOKD_MAX_BODY", "104857601"),
            ("WEBHOOKD_WORKERS", "1025"),
            ("WEBHOOKD_QUEUE_CAPACITY", "10000001"),
            ("WEBHOOKD_MAX_ATTEMPTS", "0"),
            ("WEBHOOKD_MAX_ATTEMPTS", "101"),
            ("WEBHOOKD_GITHUB_TIMEOUT", "0s"),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "400000000000y"),
            ("WEBHOOKD_RETENTION", "3651d"),
            ("WEBHOOKD_RETRY_BACKOFF", "0s"),
            ("WEBHOOKD_SHUTDOWN_TIMEOUT", "0"),
            ("WEBHOOKD_SHUTDOWN_TIMEOUT", "3601"),
            ("WEBHOOKD_STALL_TIMEOUT", "25h"),
            ("WEBHOOKD_BODY_TIMEOUT", "0s"),
            ("WEBHOOKD_BODY_TIMEOUT", "301s"),
            ("WEBHOOKD_MAX_CONNECTIONS", "65537"),
        ] {
            let err = with(&[(var, bad)]).expect_err(bad).to_string();
            assert!(err.starts_with(&format!("{var}: must be from ")), "{var}={bad}: {err}");
        }
        let err = with(&[("WEBHOOKD_STORE", "memory"), ("WEBHOOKD_QUEUE_CAPACITY", "1000001")]).expect_err("memory");
        assert!(err.to_string().contains("1000000"), "{err}");
        let s = with(&[
            ("WEBHOOKD_MAX_BODY", "104857600"),
            ("WEBHOOKD_QUEUE_CAPACITY", "10000000"),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "0s"),
            ("WEBHOOKD_BODY_TIMEOUT", "5m"),
            ("WEBHOOKD_MAX_CONNECTIONS", "1"),
        ])
        .expect("bounds are allowed");
        assert_eq!((s.max_body, s.body_timeout, s.max_connections), (104_857_600, Duration::from_secs(300), 1));
        let s = with(&[]).expect("defaults");
        assert_eq!((s.body_timeout, s.max_connections), (DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_CONNECTIONS));
    }

    #[test]
    fn at_most_ten_secrets() {
        let ten = (0..10).map(|i| format!("s{i}")).collect::<Vec<_>>().join(",");
        assert_eq!(Settings::from_env(&env(&[("WEBHOOKD_SECRET", &ten)])).expect("ten").secrets.len(), 10);
        let eleven = format!("{ten},s10");
        let err = Settings::from_env(&env(&[("WEBHOOKD_SECRET", &eleven)])).expect_err("eleven").to_string();
        assert!(err.starts_with("WEBHOOKD_SECRET: at most 10 secrets") && !err.contains("s10"), "{err}");
    }

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        let s = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_SHUTDOWN_TIMEOUT", "5"),
            ("WEBHOOKD_RETENTION", "2d"),
            ("WEBHOOKD_GITHUB_WRITE_INTERVAL", "250ms"),
        ]))
        .expect("valid");
        assert_eq!(s.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(s.retention, Duration::from_secs(2 * 86_400));
        assert_eq!(s.github.write_interval, Duration::from_millis(250));
    }

    #[test]
    fn app_settings_are_checked_and_a_bad_key_file_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("app.pem");
        std::fs::write(&key, "-----BEGIN RSA PRIVATE KEY-----\nnot a key\n-----END RSA PRIVATE KEY-----\n")
            .expect("write");
        let key = key.to_str().expect("utf8");
        let err = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_GITHUB_APP_ID", "42"),
            ("WEBHOOKD_GITHUB_APP_KEY_FILE", key),
        ]))
        .expect_err("bad key")
        .to_string();
        assert!(err.starts_with("WEBHOOKD_GITHUB_APP_KEY_FILE:") && err.contains(key), "{err}");

        let err = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_APP_ID", "42")]))
            .expect_err("no key")
            .to_string();
        assert!(err.starts_with("WEBHOOKD_GITHUB_APP_KEY_FILE:"), "{err}");
        let err = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_GITHUB_APP_ID", "forty-two"),
            ("WEBHOOKD_GITHUB_APP_KEY_FILE", key),
        ]))
        .expect_err("bad id")
        .to_string();
        assert!(err.starts_with("WEBHOOKD_GITHUB_APP_ID:"), "{err}");
    }

    #[test]
    fn token_is_read_and_never_printed() {
        let s =
            Settings::from_env(&env(&[("WEBHOOKD_SECRET", "hook-secret"), ("WEBHOOKD_GITHUB_TOKEN", "ghp_topsecret")]))
                .expect("valid");
        assert!(matches!(s.github.credential, Some(GitHubCredential::Token(_))));
        let debug = format!("{s:?}");
        assert!(!debug.contains("ghp_topsecret") && !debug.contains("hook-secret"), "{debug}");
    }

    #[test]
    fn body_memory_must_hold_at_least_one_largest_body() {
        let s = Settings::from_env(&env(&[("WEBHOOKD_SECRET", "s")])).expect("valid");
        assert_eq!(s.body_memory, DEFAULT_BODY_MEMORY_BYTES);
        let err = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_MAX_BODY", "1000"),
            ("WEBHOOKD_BODY_MEMORY", "999"),
        ]))
        .expect_err("smaller than one body")
        .to_string();
        assert!(err.starts_with("WEBHOOKD_BODY_MEMORY:") && err.contains("WEBHOOKD_MAX_BODY"), "{err}");
        let s = Settings::from_env(&env(&[
            ("WEBHOOKD_SECRET", "s"),
            ("WEBHOOKD_MAX_BODY", "1000"),
            ("WEBHOOKD_BODY_MEMORY", "1000"),
        ]))
        .expect("equal is enough");
        assert_eq!(s.body_memory, 1000);
    }
}
