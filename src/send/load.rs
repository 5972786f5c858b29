//! `send --count N | --duration D`: many fresh deliveries from concurrent
//! senders, with the answers' figures; with `--sustained`, also how long the
//! daemon took to process what it accepted.

use std::time::Duration;

use anyhow::Context;
use secrecy::SecretString;

use super::{SEND_TIMEOUT, processed};
use crate::webhook::headers::EventName;
use crate::webhook::signature;

/// How a load run is bounded.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Deliveries to send in all (with no duration).
    pub count: u64,
    /// Senders working at once, each over its own keep-alive connection.
    pub concurrency: usize,
    /// Send for this long instead of a count.
    pub duration: Option<Duration>,
    /// Also measure how long the daemon takes to process what it accepted.
    pub sustained: Option<SustainedPlan>,
}

/// Where to read the daemon's progress, and how long to wait for it.
#[derive(Debug, Clone)]
pub struct SustainedPlan {
    pub metrics_url: String,
    /// Longest wait, after the last answer, for the rest to be processed.
    pub drain_limit: Duration,
}

/// The honest figure: deliveries accepted *and* processed per second.
#[derive(Debug, serde::Serialize)]
pub struct Sustained {
    /// Deliveries answered 2xx.
    pub accepted: u64,
    /// Share of the answers that were not 2xx (mostly 503 `queue_full`).
    pub refused_share: f64,
    /// Deliveries the daemon finished while the senders were sending.
    pub processed_while_sending: u64,
    /// From the first request until every accepted delivery was finished;
    /// `None` when the drain limit passed first.
    pub seconds_until_processed: Option<f64>,
    /// `accepted / seconds_until_processed`.
    pub deliveries_per_second: Option<f64>,
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
    /// With `--sustained`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sustained: Option<Sustained>,
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

    /// Answers with a 2xx status.
    pub fn accepted(&self) -> u64 {
        self.status.iter().filter(|(code, _)| (200..300).contains(*code)).map(|(_, n)| n).sum()
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
    let baseline = match &plan.sustained {
        Some(sustained) => Some(processed::idle_baseline(&client, &sustained.metrics_url).await?),
        None => None,
    };
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
    let finished_sending = match (&plan.sustained, baseline) {
        (Some(sustained), Some(_)) => Some(processed::finished(&client, &sustained.metrics_url).await?),
        _ => None,
    };
    latencies.sort_unstable();
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let sent = latencies.len() as u64 + errors;
    let mut report = LoadReport {
        sent,
        seconds,
        deliveries_per_second: latencies.len() as f64 / seconds.max(f64::EPSILON),
        latency_ms: Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99), max: at(1.0) },
        status,
        errors,
        sustained: None,
    };
    if let (Some(sustained), Some(baseline), Some(at_end)) = (&plan.sustained, baseline, finished_sending) {
        let accepted = report.accepted();
        let done = processed::wait_for(&client, &sustained.metrics_url, baseline + accepted, sustained.drain_limit)
            .await?
            .map(|at| at.duration_since(started).as_secs_f64());
        report.sustained = Some(Sustained {
            accepted,
            refused_share: 1.0 - accepted as f64 / sent.max(1) as f64,
            processed_while_sending: at_end.saturating_sub(baseline),
            seconds_until_processed: done,
            deliveries_per_second: done.map(|s| accepted as f64 / s.max(f64::EPSILON)),
        });
    }
    Ok(report)
}
