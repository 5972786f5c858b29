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

/// How long `send` waits for an answer.
const SEND_TIMEOUT: Duration = Duration::from_secs(15);

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

/// How a load run is bounded.
#[derive(Debug, Clone, Copy)]
pub struct LoadPlan {
    /// Deliveries to send in all (with no duration).
    pub count: u64,
    /// Senders working at once, each over its own keep-alive connection.
    pub concurrency: usize,
    /// Send for this long instead of a count.
    pub duration: Option<Duration>,
}

/// What a load run measured.
#[derive(Debug, serde::Serialize)]
pub struct LoadReport {
    pub sent: u64,
    pub seconds: f64,
    pub deliveries_per_second: f64,
    pub latency_ms: Percentiles,
    /// Answers by HTTP status.
    pub status: std::collections::BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors, timeouts).
    pub errors: u64,
}

#[derive(Debug, serde::Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl LoadReport {
    pub fn all_accepted(&self) -> bool {
        self.errors == 0 && self.status.keys().all(|s| (200..300).contains(s))
    }
}

/// Sends `body` again and again as fresh deliveries (the signature depends only
/// on the body, so it is computed once) and measures the answers.
pub async fn load(
    secret: &SecretString,
    body: Vec<u8>,
    event: &EventName,
    url: &str,
    plan: LoadPlan,
) -> anyhow::Result<LoadReport> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let signature = signature::sign(secret, &body);
    let body = bytes::Bytes::from(body);
    let client = reqwest::Client::builder()
        .timeout(SEND_TIMEOUT)
        .pool_max_idle_per_host(plan.concurrency)
        .build()
        .context("building the HTTP client")?;
    let issued = Arc::new(AtomicU64::new(0));
    let started = std::time::Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut senders = tokio::task::JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (client, body, signature, issued) = (client.clone(), body.clone(), signature.clone(), issued.clone());
        let (url, event) = (url.to_owned(), event.as_str().to_owned());
        senders.spawn(async move {
            let mut latencies = Vec::new();
            let mut status = std::collections::BTreeMap::<u16, u64>::new();
            let mut errors = 0u64;
            loop {
                let more = match deadline {
                    Some(deadline) => std::time::Instant::now() < deadline,
                    None => issued.fetch_add(1, Ordering::Relaxed) < plan.count,
                };
                if !more {
                    break;
                }
                let sent_at = std::time::Instant::now();
                let answer = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .header("User-Agent", concat!("webhookd-send/", env!("CARGO_PKG_VERSION")))
                    .header("X-GitHub-Event", &event)
                    .header("X-GitHub-Delivery", uuid::Uuid::new_v4().to_string())
                    .header("X-Hub-Signature-256", &signature)
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(response) => {
                        let code = response.status().as_u16();
                        // Read the answer so the connection is reused.
                        let _ = response.bytes().await;
                        latencies.push(sent_at.elapsed());
                        *status.entry(code).or_default() += 1;
                    }
                    Err(_) => errors += 1,
                }
            }
            (latencies, status, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut status = std::collections::BTreeMap::new();
    let mut errors = 0;
    while let Some(joined) = senders.join_next().await {
        let (l, s, e) = joined.context("a sender failed")?;
        latencies.extend(l);
        for (code, n) in s {
            *status.entry(code).or_default() += n;
        }
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let sent = latencies.len() as u64 + errors;
    Ok(LoadReport {
        sent,
        seconds,
        deliveries_per_second: latencies.len() as f64 / seconds.max(f64::EPSILON),
        latency_ms: Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) },
        status,
        errors,
    })
}
