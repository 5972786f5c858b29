//! `webhookd send` in load mode with `--sustained`: it reports deliveries
//! accepted *and* processed per second, so it must wait for the daemon to
//! finish what it accepted, however long processing lags the answers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use webhookd::{Delivery, GitHubApi, Handler, HandlerError};

use crate::helpers::{TEST_SECRET, fixtures_dir, spawn_app};
use crate::process::run_webhookd;

/// Processing that takes `PER_DELIVERY` each, one worker: processing lags
/// far behind the answers.
struct SlowHandler;

const PER_DELIVERY: Duration = Duration::from_millis(40);
const COUNT: u64 = 50;

#[async_trait]
impl Handler for SlowHandler {
    async fn handle(&self, _delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        tokio::time::sleep(PER_DELIVERY).await;
        Ok(())
    }
}

async fn send_sustained(url: &str, extra: &[&str]) -> (i32, String) {
    let file = fixtures_dir().join("push/payload.json");
    let count = COUNT.to_string();
    let mut args = vec![
        "send",
        file.to_str().expect("utf-8 path"),
        "--event",
        "push",
        "--url",
        url,
        "--count",
        &count,
        "--concurrency",
        "4",
        "--sustained",
    ];
    args.extend_from_slice(extra);
    run_webhookd(&args, &[("WEBHOOKD_SECRET", TEST_SECRET)]).await
}

#[tokio::test]
async fn sustained_load_waits_until_everything_accepted_is_processed() {
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], Arc::new(SlowHandler)).await;
    let (code, out) = send_sustained(&format!("{}/webhook", app.address), &["--json"]).await;
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON report");
    let sustained = &report["sustained"];
    assert_eq!(sustained["accepted"], COUNT, "{report}");
    assert_eq!(sustained["refused_share"], 0.0, "{report}");
    // One worker at 40 ms a delivery cannot have finished 50 in under 2 s:
    // a report that did not wait for processing would be shorter.
    let seconds = sustained["seconds_until_processed"].as_f64().expect("all processed");
    let least = (PER_DELIVERY * COUNT as u32).as_secs_f64();
    assert!(seconds >= least, "reported {seconds} s; processing takes at least {least} s");
    assert!(report["seconds"].as_f64().expect("send time") < seconds, "answers come before processing ends: {report}");
    let rate = sustained["deliveries_per_second"].as_f64().expect("rate");
    assert!((rate - COUNT as f64 / seconds).abs() < 1e-6, "{report}");
    let finished = app.metrics.totals.ok.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(finished, COUNT, "the daemon processed each once");
    app.stop().await;
}

#[tokio::test]
async fn sustained_load_fails_when_processing_outlasts_the_drain_limit() {
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], Arc::new(SlowHandler)).await;
    let (code, out) = send_sustained(&format!("{}/webhook", app.address), &["--drain-limit", "100ms"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT all processed within --drain-limit 100ms"), "{out}");
    // About 2 s of processing is still queued: a new measurement would
    // count it as its own, so it is refused.
    let (code, out) = send_sustained(&format!("{}/webhook", app.address), &[]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("deliveries waiting") && out.contains("needs an idle daemon"), "{out}");
    let file = fixtures_dir().join("push/payload.json");
    let (code, out) = run_webhookd(
        &[
            "send",
            file.to_str().expect("utf-8"),
            "--event",
            "push",
            "--count",
            "1",
            "--sustained",
            "--url",
            "not a url",
        ],
        &[("WEBHOOKD_SECRET", TEST_SECRET)],
    )
    .await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--url \"not a url\" is not a URL"), "{out}");
    app.stop().await;
}
