//! The worker pool survives failing and panicking handlers.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;
use webhookd::{Delivery, GitHubApi, Handler, HandlerError};

use crate::helpers::*;

/// Panics on `issues` deliveries, fails on `push`, records everything else.
struct Unreliable {
    processed: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Handler for Unreliable {
    async fn handle(&self, delivery: &Delivery, _github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        match delivery.event().as_str() {
            "issues" => panic!("handler bug on purpose"),
            "push" => Err(HandlerError::Permanent(anyhow::anyhow!("failure on purpose"))),
            _ => {
                let _ = self.processed.send(delivery.id().to_string());
                Ok(())
            }
        }
    }
}

#[tokio::test]
async fn a_panicking_or_failing_handler_leaves_the_pool_processing_later_deliveries() {
    let (tx, mut processed) = mpsc::unbounded_channel();
    // One worker: if a panic killed it, nothing after it would be processed.
    let app = spawn_app(&[("WEBHOOKD_WORKERS", "1")], Arc::new(Unreliable { processed: tx })).await;

    for _ in 0..3 {
        assert_eq!(app.post_webhook("issues", fixture("issues/opened.payload.json")).await.status().as_u16(), 202);
        assert_eq!(app.post_webhook("push", fixture("push/payload.json")).await.status().as_u16(), 202);
    }
    let star = app.post_webhook("star", fixture("star/created.payload.json")).await;
    assert_eq!(star.status().as_u16(), 202);
    let body: serde_json::Value = star.json().await.expect("json");
    let star_id = body["delivery"].as_str().expect("delivery id").to_owned();

    assert_eq!(receive_n(&mut processed, 1).await, vec![star_id]);
    // Outcomes are recorded after the handler reports: read them after the drain.
    let registry = app.metrics.clone();
    assert!(app.stop().await.abandoned.is_empty());
    let metrics = registry.encode();
    assert!(metrics.contains("webhookd_handler_panics_total 3"), "{metrics}");
    assert!(metrics.contains(r#"webhookd_deliveries_processed_total{event="issues",outcome="failed"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"webhookd_deliveries_processed_total{event="push",outcome="failed"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"webhookd_deliveries_processed_total{event="star",outcome="ok"} 1"#), "{metrics}");
}
