//! Parsers for single settings: each reads one variable (or a small group,
//! such as the GitHub credential) and says what is wrong with it by name.

use std::fmt::Display;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, DEFAULT_STORE, Env, GitHubCredential, LogFormat, MAX_SECRETS, StoreKind, secrets};

pub(super) fn default_workers() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(super) fn parse_listen(env: &Env) -> Result<SocketAddr, ConfigError> {
    let raw = env.get("WEBHOOKD_LISTEN").unwrap_or("127.0.0.1:8080");
    if let Ok(addr) = raw.parse() {
        return Ok(addr);
    }
    raw.to_socket_addrs().ok().and_then(|mut addrs| addrs.next()).ok_or_else(|| {
        ConfigError::invalid("WEBHOOKD_LISTEN", format!("expected address:port such as 127.0.0.1:8080, got {raw:?}"))
    })
}

pub(super) fn parse_api_url(env: &Env) -> Result<Url, ConfigError> {
    let raw = env.get("WEBHOOKD_GITHUB_API_URL").unwrap_or("https://api.github.com");
    // The URL may hold credentials (user:pass@, ?token=): errors show it without them.
    let shown = || crate::redact::url_str(raw);
    let url = Url::parse(raw)
        .map_err(|e| ConfigError::invalid("WEBHOOKD_GITHUB_API_URL", format!("not a URL ({e}): {:?}", shown())))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConfigError::invalid(
            "WEBHOOKD_GITHUB_API_URL",
            format!("expected an http(s) URL, got {:?}", shown()),
        ));
    }
    Ok(url)
}

pub(super) fn read_credential(env: &Env) -> Result<Option<GitHubCredential>, ConfigError> {
    let token = secrets::read_one(env, "WEBHOOKD_GITHUB_TOKEN", "WEBHOOKD_GITHUB_TOKEN_FILE")?;
    // It goes into an Authorization header: refuse now what a header cannot hold.
    if token.as_ref().is_some_and(|t| !secrecy::ExposeSecret::expose_secret(t).bytes().all(|b| b.is_ascii_graphic())) {
        return Err(ConfigError::invalid(
            "WEBHOOKD_GITHUB_TOKEN",
            "contains spaces or characters not allowed in an HTTP header (is the file's content only the token?)",
        ));
    }
    let app_id = env.get("WEBHOOKD_GITHUB_APP_ID");
    let key_file = env.get("WEBHOOKD_GITHUB_APP_KEY_FILE");
    match (token, app_id, key_file) {
        (token, None, None) => Ok(token.map(GitHubCredential::Token)),
        (Some(_), _, _) => Err(ConfigError::invalid(
            "WEBHOOKD_GITHUB_APP_ID",
            "set either a token (WEBHOOKD_GITHUB_TOKEN) or a GitHub App (WEBHOOKD_GITHUB_APP_ID and _KEY_FILE), not both",
        )),
        (None, Some(_), None) => Err(ConfigError::invalid(
            "WEBHOOKD_GITHUB_APP_KEY_FILE",
            "required with WEBHOOKD_GITHUB_APP_ID: the App's private key (PEM)",
        )),
        (None, None, Some(_)) => Err(ConfigError::invalid(
            "WEBHOOKD_GITHUB_APP_ID",
            "required with WEBHOOKD_GITHUB_APP_KEY_FILE: the App's numeric id",
        )),
        (None, Some(id), Some(path)) => {
            let app_id = id.trim().parse::<u64>().map_err(|_| {
                ConfigError::invalid("WEBHOOKD_GITHUB_APP_ID", format!("expected the App's numeric id, got {id:?}"))
            })?;
            let pem = secrets::read_file(env, "WEBHOOKD_GITHUB_APP_KEY_FILE", path)?;
            let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
                let shown = secrets::resolve(env, std::path::Path::new(path));
                ConfigError::invalid(
                    "WEBHOOKD_GITHUB_APP_KEY_FILE",
                    format!(
                        "{}: not an RSA private key in PEM form (download one from the App's settings)",
                        shown.display()
                    ),
                )
            })?;
            Ok(Some(GitHubCredential::App { app_id, key }))
        }
    }
}

/// `WEBHOOKD_STORE`, or the same value read from `WEBHOOKD_STORE_FILE`
/// (first non-empty line), so that a PostgreSQL password can live in a
/// credential file instead of the environment.
pub(super) fn parse_store(env: &Env) -> Result<StoreKind, ConfigError> {
    const VAR: &str = "WEBHOOKD_STORE";
    const VAR_FILE: &str = "WEBHOOKD_STORE_FILE";
    match (env.get(VAR), env.get(VAR_FILE)) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(VAR, format!("set either {VAR} or {VAR_FILE}, not both"))),
        (None, Some(name)) => {
            let text = secrets::read_file(env, VAR_FILE, name)?;
            let path = secrets::resolve(env, Path::new(name));
            let line = text.lines().map(str::trim).find(|l| !l.is_empty()).ok_or_else(|| {
                ConfigError::invalid(
                    VAR_FILE,
                    format!("{} is empty: expected a store such as {POSTGRES_FORM}", path.display()),
                )
            })?;
            // The file holds a secret: a value not even recognised is not echoed.
            store_kind(line, false)
                .map_err(|reason| ConfigError::invalid(VAR_FILE, format!("{}: {reason}", path.display())))
        }
        (raw, None) => {
            let raw = raw.unwrap_or(DEFAULT_STORE);
            store_kind(raw, true).map_err(|reason| ConfigError::invalid(VAR, reason))
        }
    }
}

/// How a PostgreSQL store is written, for messages.
const POSTGRES_FORM: &str = "postgres://USER@HOST:5432/DATABASE";

/// The store `raw` names; an unrecognised value is quoted (without
/// credentials) only when `quote` allows it.
fn store_kind(raw: &str, quote: bool) -> Result<StoreKind, String> {
    match raw.split_once(':') {
        _ if raw == "memory" => Ok(StoreKind::Memory),
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreKind::Sqlite(PathBuf::from(path))),
        Some(("postgres" | "postgresql", _)) => super::PostgresUrl::parse(raw).map(StoreKind::Postgres),
        _ => {
            let got = if quote {
                format!("{:?}", crate::redact::url_str(raw))
            } else {
                "something else (not shown)".to_owned()
            };
            Err(format!("expected sqlite:PATH (e.g. {DEFAULT_STORE}), memory or {POSTGRES_FORM}, got {got}"))
        }
    }
}

pub(super) fn parse_rules(env: &Env) -> Result<Option<PathBuf>, ConfigError> {
    match env.get("WEBHOOKD_RULES") {
        None => Ok(None),
        Some(path) if Path::new(path).is_file() => Ok(Some(PathBuf::from(path))),
        Some(path) => Err(ConfigError::invalid("WEBHOOKD_RULES", format!("no rules file at {path:?}"))),
    }
}

/// The webhook secrets (`WEBHOOKD_SECRET` or `_FILE`), read now: at start
/// and again on SIGHUP.
/// At most `MAX_SECRETS`: each one costs an HMAC over every refused body.
pub fn webhook_secrets(env: &Env) -> Result<Vec<SecretString>, ConfigError> {
    let secrets = secrets::read_list(env, "WEBHOOKD_SECRET", "WEBHOOKD_SECRET_FILE")?.ok_or_else(|| {
        ConfigError::invalid("WEBHOOKD_SECRET", "required: the webhook secret set on GitHub (or WEBHOOKD_SECRET_FILE)")
    })?;
    if secrets.len() > MAX_SECRETS {
        let var = if env.get("WEBHOOKD_SECRET").is_some() { "WEBHOOKD_SECRET" } else { "WEBHOOKD_SECRET_FILE" };
        return Err(ConfigError::invalid(
            var,
            format!("at most {MAX_SECRETS} secrets (each one is tried on every delivery), got {}", secrets.len()),
        ));
    }
    Ok(secrets)
}

pub(super) fn parse_log_filter(env: &Env) -> Result<String, ConfigError> {
    let filter = env.get("RUST_LOG").unwrap_or("info");
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| ConfigError::invalid("RUST_LOG", format!("invalid log filter {filter:?}: {e}")))?;
    Ok(filter.to_owned())
}

pub(super) fn parse_log_format(env: &Env) -> Result<LogFormat, ConfigError> {
    match env.get("WEBHOOKD_LOG_FORMAT").unwrap_or("text") {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => {
            Err(ConfigError::invalid("WEBHOOKD_LOG_FORMAT", format!("expected \"text\" or \"json\", got {other:?}")))
        }
    }
}

pub(super) fn parse_or<T: FromStr>(env: &Env, var: &str, default: T) -> Result<T, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => {
            raw.trim().parse().map_err(|_| ConfigError::invalid(var, format!("expected a whole number, got {raw:?}")))
        }
    }
}

/// A duration such as `1s`, `500ms`, `7d` or `2h 30m`.
pub(super) fn parse_duration(env: &Env, var: &str, default: Duration) -> Result<Duration, ConfigError> {
    match env.get(var) {
        None => Ok(default),
        Some(raw) => humantime::parse_duration(raw.trim()).map_err(|_| {
            ConfigError::invalid(var, format!("expected a duration such as 1s, 500ms or 7d, got {raw:?}"))
        }),
    }
}

/// Whole seconds (`30`), or a duration with a unit (`30s`, `2m`).
pub(super) fn parse_seconds(env: &Env, var: &str, default: Duration) -> Result<Duration, ConfigError> {
    match env.get(var).map(str::trim) {
        Some(raw) if raw.bytes().all(|b| b.is_ascii_digit()) => raw
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| ConfigError::invalid(var, format!("number of seconds out of range: {raw:?}"))),
        _ => parse_duration(env, var, default),
    }
}

/// A whole number within `range` (`default` when unset).
pub(super) fn parse_in_range<T: FromStr + PartialOrd + Display + Copy>(
    env: &Env,
    var: &str,
    default: T,
    range: RangeInclusive<T>,
) -> Result<T, ConfigError> {
    let value = parse_or(env, var, default)?;
    if !range.contains(&value) {
        return Err(ConfigError::invalid(
            var,
            format!("must be from {} to {}, got {value}", range.start(), range.end()),
        ));
    }
    Ok(value)
}

/// The duration `var` (default `default`), within `range`.
pub(super) fn duration_in(
    env: &Env,
    var: &str,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    in_duration_range(var, parse_duration(env, var, default), range)
}

/// As `duration_in`, also taking plain whole seconds (`30`).
pub(super) fn seconds_in(
    env: &Env,
    var: &str,
    default: Duration,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    in_duration_range(var, parse_seconds(env, var, default), range)
}

/// `duration` checked to lie within `range`, so that no time arithmetic
/// on it can overflow and no wait is zero where zero makes no sense.
pub(super) fn in_duration_range(
    var: &str,
    duration: Result<Duration, ConfigError>,
    range: RangeInclusive<Duration>,
) -> Result<Duration, ConfigError> {
    let value = duration?;
    if !range.contains(&value) {
        return Err(ConfigError::invalid(
            var,
            format!(
                "must be from {} to {}, got {}",
                humantime::format_duration(*range.start()),
                humantime::format_duration(*range.end()),
                humantime::format_duration(value)
            ),
        ));
    }
    Ok(value)
}
