//! Whom the shared client trusts, and how a TLS failure is told. Trust is
//! the bundled web PKI roots, the system store (the bundle `SSL_CERT_FILE`
//! names, or the distribution's usual bundle file) and the operator's
//! `WEBHOOKD_GITHUB_CA_FILE`; GitHub calls and `forward` share it. A failed
//! handshake reads "TLS handshake with HOST failed: REASON", not reqwest's
//! "error sending request".

use std::error::Error as StdError;

use crate::config::anchors_from_pem;

/// Where distributions keep the system trust bundle, in the order tried.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// The system store's anchors: `SSL_CERT_FILE`, else the first bundle file
/// found. A missing or unreadable store leaves the bundled roots alone.
pub fn system_anchors(ssl_cert_file: Option<&str>) -> Vec<reqwest::Certificate> {
    let candidates: Vec<&str> = match ssl_cert_file {
        Some(file) => vec![file],
        None => SYSTEM_BUNDLES.to_vec(),
    };
    for path in candidates {
        let Ok(pem) = std::fs::read(path) else { continue };
        match anchors_from_pem(&pem) {
            Ok(anchors) => {
                tracing::debug!(path, certificates = anchors.len(), "system trust store loaded");
                return anchors;
            }
            Err(reason) => tracing::warn!(path, reason, "system trust store not used"),
        }
    }
    Vec::new()
}

/// "TLS handshake with HOST failed: REASON" when `error` is a TLS failure.
pub fn describe_tls_failure(error: &reqwest::Error, host: &str) -> Option<String> {
    let reason = tls_reason(error)?;
    Some(format!("TLS handshake with {host} failed: {reason}"))
}

/// The rustls error somewhere in the source chain. `io::Error` hides its
/// inner error from `source()`, so it is looked into with `get_ref`.
fn tls_reason(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(error);
    for _ in 0..16 {
        let e = current?;
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(explain(tls));
        }
        if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(found) = tls_reason(inner) {
                return Some(found);
            }
        }
        current = e.source();
    }
    None
}

fn explain(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(_) => {
            format!("{error} (is the server's CA in the system trust store or in WEBHOOKD_GITHUB_CA_FILE?)")
        }
        _ => error.to_string(),
    }
}
