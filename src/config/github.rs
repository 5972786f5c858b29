//! The GitHub client's settings: the API URL, the credential (a token or a
//! GitHub App), request spacing and limits, the answer cache, and whom it
//! trusts (`WEBHOOKD_GITHUB_*`, `SSL_CERT_FILE`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use secrecy::SecretString;
use url::Url;

use super::parse::{duration_in, parse_api_url, parse_in_range, read_credential};
use super::{ConfigError, Env, MAX_GITHUB_CONCURRENCY, keep, ranges, secrets};

/// How GitHub API calls are authenticated.
pub enum GitHubCredential {
    /// A personal access token or any bearer token.
    Token(SecretString),
    /// A GitHub App: JWTs signed with its private key, exchanged for
    /// installation tokens.
    App { app_id: u64, key: jsonwebtoken::EncodingKey },
}

impl fmt::Debug for GitHubCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Token(_) => f.write_str("Token([REDACTED])"),
            Self::App { app_id, .. } => write!(f, "App {{ app_id: {app_id}, key: [REDACTED] }}"),
        }
    }
}

/// Default `WEBHOOKD_GITHUB_CACHE_BYTES`: 64 MiB of cached GET answers.
pub const DEFAULT_GITHUB_CACHE_BYTES: usize = 64 * 1024 * 1024;
/// Largest `WEBHOOKD_GITHUB_CACHE_BYTES`: 1 GiB.
pub const MAX_GITHUB_CACHE_BYTES: usize = 1024 * 1024 * 1024;

/// Whom the GitHub client (and `forward`) trusts besides the bundled web PKI roots.
#[derive(Debug, Clone, Default)]
pub struct GitHubTrust {
    /// `SSL_CERT_FILE`, the system bundle other tools honour; unset: the
    /// distribution's usual bundle file.
    pub ssl_cert_file: Option<String>,
    /// `WEBHOOKD_GITHUB_CA_FILE`, resolved, and its certificates.
    pub ca_file: Option<PathBuf>,
    pub extra_anchors: Vec<reqwest::Certificate>,
}

#[derive(Debug)]
pub struct GitHubSettings {
    pub api_url: Url,
    /// `None` means dry run: calls are logged, not sent.
    pub credential: Option<GitHubCredential>,
    pub concurrency: usize,
    pub write_interval: Duration,
    /// How long one request may take, answer included.
    pub request_timeout: Duration,
    pub retry: ClientRetry,
    /// Bytes of cached GET answers kept at most (`WEBHOOKD_GITHUB_CACHE_BYTES`; 0 disables the cache).
    pub cache_bytes: usize,
    pub trust: GitHubTrust,
}

impl Default for GitHubSettings {
    /// The defaults of every setting, dry run (for tests and tools).
    fn default() -> Self {
        Self {
            api_url: Url::parse("https://api.github.com").unwrap_or_else(|_| unreachable!("a valid literal URL")),
            credential: None,
            concurrency: 10,
            write_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            retry: ClientRetry::default(),
            cache_bytes: DEFAULT_GITHUB_CACHE_BYTES,
            trust: GitHubTrust::default(),
        }
    }
}

/// How the client retries one request before the delivery's own retry takes over.
#[derive(Debug, Clone, Copy)]
pub struct ClientRetry {
    /// Tries of one request, the first included.
    pub attempts: u32,
    /// Backoff step of the first retry; doubles each time, full jitter.
    pub base: Duration,
    /// Time one request may spend retrying and waiting on rate limits, in all.
    pub budget: Duration,
}

impl Default for ClientRetry {
    fn default() -> Self {
        Self { attempts: 4, base: Duration::from_millis(500), budget: Duration::from_secs(30) }
    }
}

/// `WEBHOOKD_GITHUB_CA_FILE` (a PEM bundle added to the trust; a relative
/// name is also looked up in `$CREDENTIALS_DIRECTORY`) and `SSL_CERT_FILE`.
fn parse_trust(env: &Env) -> Result<GitHubTrust, ConfigError> {
    const VAR: &str = "WEBHOOKD_GITHUB_CA_FILE";
    let (ca_file, extra_anchors) = match env.get(VAR) {
        None => (None, Vec::new()),
        Some(name) => {
            let path = secrets::resolve(env, std::path::Path::new(name));
            let pem = std::fs::read(&path)
                .map_err(|e| ConfigError::invalid(VAR, format!("cannot read {}: {e}", path.display())))?;
            let anchors = anchors_from_pem(&pem).map_err(|reason| {
                ConfigError::invalid(VAR, format!("{} is not a usable CA bundle: {reason}", path.display()))
            })?;
            (Some(path), anchors)
        }
    };
    Ok(GitHubTrust { ssl_cert_file: env.get("SSL_CERT_FILE").map(str::to_owned), ca_file, extra_anchors })
}

/// Every `WEBHOOKD_GITHUB_*` setting; each problem is added to `errors`,
/// naming its variable.
pub(super) fn github_settings(env: &Env, errors: &mut Vec<ConfigError>) -> Option<GitHubSettings> {
    let e = errors;
    let api_url = keep(e, parse_api_url(env));
    let credential = keep(e, read_credential(env));
    let concurrency = keep(e, parse_in_range(env, "WEBHOOKD_GITHUB_CONCURRENCY", 10_usize, 1..=MAX_GITHUB_CONCURRENCY));
    let write_interval =
        keep(e, duration_in(env, "WEBHOOKD_GITHUB_WRITE_INTERVAL", Duration::from_secs(1), ranges::WRITE_INTERVAL));
    let request_timeout =
        keep(e, duration_in(env, "WEBHOOKD_GITHUB_TIMEOUT", Duration::from_secs(30), ranges::GITHUB_TIMEOUT));
    let cache_bytes = keep(
        e,
        parse_in_range(env, "WEBHOOKD_GITHUB_CACHE_BYTES", DEFAULT_GITHUB_CACHE_BYTES, 0..=MAX_GITHUB_CACHE_BYTES),
    );
    let trust = keep(e, parse_trust(env));
    Some(GitHubSettings {
        api_url: api_url?,
        credential: credential?,
        concurrency: concurrency?,
        write_interval: write_interval?,
        request_timeout: request_timeout?,
        retry: ClientRetry::default(),
        cache_bytes: cache_bytes?,
        trust: trust?,
    })
}

/// The certificates of a PEM bundle that can serve as trust anchors; `Err`
/// when it holds none.
pub fn anchors_from_pem(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let mut anchors = Vec::new();
    let mut store = rustls::RootCertStore::empty();
    for der in CertificateDer::pem_slice_iter(pem) {
        let der = der.map_err(|e| format!("not a PEM bundle: {e}"))?;
        // Only what rustls accepts as an anchor: one odd certificate in a
        // system bundle must not stop the client from being built.
        if store.add(der.clone()).is_ok() {
            if let Ok(cert) = reqwest::Certificate::from_der(der.as_ref()) {
                anchors.push(cert);
            }
        }
    }
    if anchors.is_empty() {
        return Err("it holds no usable PEM certificate".into());
    }
    Ok(anchors)
}
