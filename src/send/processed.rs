//! How many deliveries a webhookd daemon has finished, read from its
//! `/metrics`: the sum of `webhookd_deliveries_processed_total` over the
//! final outcomes (`ok`, `dead`, `failed`). Retries and deferrals are not
//! finished: the same delivery counts again when it ends.

use std::time::{Duration, Instant};

use anyhow::Context;

/// How often the count is read while waiting for it.
/// (Each read costs the daemon a count of its store: not more often.)
const POLL: Duration = Duration::from_millis(250);
/// Largest `/metrics` answer read (a daemon's is a few tens of KiB).
const MAX_METRICS_BYTES: usize = 8 * 1024 * 1024;
const FINAL_OUTCOMES: [&str; 3] = ["ok", "dead", "failed"];

/// The `/metrics` URL beside a webhook URL: same scheme, host and port.
pub fn metrics_url_beside(webhook_url: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(webhook_url).with_context(|| format!("--url {webhook_url:?} is not a URL"))?;
    url.set_path("/metrics");
    url.set_query(None);
    Ok(url.into())
}

/// Finished deliveries in a Prometheus text exposition.
pub fn finished_in(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("webhookd_deliveries_processed_total{"))
        .filter_map(|rest| rest.split_once('}'))
        .filter(|(labels, _)| FINAL_OUTCOMES.iter().any(|o| labels.contains(&format!("outcome=\"{o}\""))))
        // Counters print as integers; a float form (1e3) is read too.
        .filter_map(|(_, value)| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// Deliveries waiting in a Prometheus text exposition (`webhookd_queue_depth`).
pub fn waiting_in(exposition: &str) -> u64 {
    exposition
        .lines()
        .filter_map(|line| line.strip_prefix("webhookd_queue_depth "))
        .filter_map(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
        .sum()
}

/// The daemon's `/metrics` text.
async fn exposition(client: &reqwest::Client, metrics_url: &str) -> anyhow::Result<String> {
    let response = client.get(metrics_url).send().await.with_context(|| format!("cannot read {metrics_url}"))?;
    if !response.status().is_success() {
        anyhow::bail!("{metrics_url} answered HTTP {}", response.status().as_u16());
    }
    if response.content_length().is_some_and(|n| n > MAX_METRICS_BYTES as u64) {
        anyhow::bail!("{metrics_url} is larger than {MAX_METRICS_BYTES} bytes");
    }
    response.text().await.with_context(|| format!("reading {metrics_url}"))
}

/// Reads the daemon's finished count now.
pub async fn finished(client: &reqwest::Client, metrics_url: &str) -> anyhow::Result<u64> {
    Ok(finished_in(&exposition(client, metrics_url).await?))
}

/// Reads the daemon's finished count, after checking that nothing waits:
/// work already queued would finish during the run and be counted as ours.
pub async fn idle_baseline(client: &reqwest::Client, metrics_url: &str) -> anyhow::Result<u64> {
    let text = exposition(client, metrics_url).await?;
    match waiting_in(&text) {
        0 => Ok(finished_in(&text)),
        waiting => anyhow::bail!(
            "the daemon has {waiting} deliveries waiting: a sustained measurement counts what it finishes, so it \
             needs an idle daemon (let it drain first)"
        ),
    }
}

/// Waits until the daemon has finished at least `target` deliveries, for at
/// most `limit`; `Ok(None)` when the limit passed first.
pub async fn wait_for(
    client: &reqwest::Client,
    metrics_url: &str,
    target: u64,
    limit: Duration,
) -> anyhow::Result<Option<Instant>> {
    let give_up = Instant::now() + limit;
    loop {
        if finished(client, metrics_url).await? >= target {
            return Ok(Some(Instant::now()));
        }
        if Instant::now() >= give_up {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_outcomes_count() {
        let text = "# HELP webhookd_deliveries_processed_total Processing attempts.\n\
            # TYPE webhookd_deliveries_processed_total counter\n\
            webhookd_deliveries_processed_total{event=\"push\",outcome=\"ok\"} 120\n\
            webhookd_deliveries_processed_total{event=\"issues\",outcome=\"ok\"} 3\n\
            webhookd_deliveries_processed_total{event=\"push\",outcome=\"retry\"} 40\n\
            webhookd_deliveries_processed_total{event=\"push\",outcome=\"deferred\"} 7\n\
            webhookd_deliveries_processed_total{event=\"push\",outcome=\"dead\"} 2\n\
            webhookd_deliveries_processed_total{event=\"push\",outcome=\"failed\"} 1\n\
            webhookd_deliveries_received_total{event=\"push\"} 999\n";
        assert_eq!(finished_in(text), 126);
        assert_eq!(finished_in(""), 0);
        assert_eq!(waiting_in("# TYPE webhookd_queue_depth gauge\nwebhookd_queue_depth 17\n"), 17);
        assert_eq!(waiting_in(text), 0);
    }

    #[test]
    fn the_metrics_url_is_beside_the_webhook_url() {
        assert_eq!(metrics_url_beside("http://127.0.0.1:8080/webhook").expect("url"), "http://127.0.0.1:8080/metrics");
        assert_eq!(
            metrics_url_beside("https://hooks.example/gh/webhook?x=1").expect("url"),
            "https://hooks.example/metrics"
        );
        assert!(metrics_url_beside("not a url").is_err());
    }
}
