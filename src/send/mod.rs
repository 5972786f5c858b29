//! `webhookd send`: posts a payload file as a GitHub delivery, signed with the
//! configured secret and with a fresh delivery id, for testing a running
//! daemon (or any webhook receiver) locally.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use crate::webhook::headers::EventName;
use crate::webhook::signature;

mod load;
mod processed;

pub use load::{LoadPlan, LoadReport, Percentiles, Sustained, SustainedPlan, load};
pub use processed::metrics_url_beside;

/// How long `send` waits for an answer.
pub(crate) const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// The answer to one sent delivery.
#[derive(Debug)]
pub struct Sent {
    pub delivery_id: String,
    pub status: u16,
    pub body: String,
}

/// The default target: `http://$WEBHOOKD_LISTEN/webhook`, with a wildcard
/// address replaced by loopback.
pub fn default_url(listen: SocketAddr) -> String {
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    format!("http://{addr}/webhook")
}

/// Reads `file`, signs it and posts it to `url` as event `event`.
pub async fn send_file(secret: &SecretString, file: &Path, event: &EventName, url: &str) -> anyhow::Result<Sent> {
    let body = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let delivery_id = uuid::Uuid::new_v4().to_string();
    let client = reqwest::Client::builder().timeout(SEND_TIMEOUT).build().context("building the HTTP client")?;
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("webhookd-send/", env!("CARGO_PKG_VERSION")))
        .header("X-GitHub-Event", event.as_str())
        .header("X-GitHub-Delivery", &delivery_id)
        .header("X-Hub-Signature-256", signature::sign(secret, &body))
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot POST to {url}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Sent { delivery_id, status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_targets_loopback_for_wildcard_listeners() {
        assert_eq!(default_url("0.0.0.0:9000".parse().expect("addr")), "http://127.0.0.1:9000/webhook");
        assert_eq!(default_url("127.0.0.1:8080".parse().expect("addr")), "http://127.0.0.1:8080/webhook");
        assert_eq!(default_url("[::]:80".parse().expect("addr")), "http://[::1]:80/webhook");
    }
}
