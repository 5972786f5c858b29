//! The one shared GitHub client: N deliveries never open N connections, and
//! stopping the app closes every pooled connection while the process lives on.

use wiremock::matchers::{header, method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::helpers::*;

#[tokio::test]
async fn two_hundred_deliveries_on_four_workers_use_at_most_four_connections_all_closed_at_stop() {
    let github = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/[^/]+/[^/]+/issues/\d+/labels$"))
        .and(header("authorization", format!("Bearer {TEST_TOKEN}").as_str()))
        .and(header("x-github-api-version", "2022-11-28"))
        .and(header("accept", "application/vnd.github+json"))
        .respond_with(ResponseTemplate::new(200))
        .expect(200)
        .mount(&github)
        .await;
    let counter = ConnectionCounter::start(*github.address()).await;
    let (handler, mut processed_rx) = LabellingHandler::new();
    let app = spawn_app(
        &[
            ("WEBHOOKD_WORKERS", "4"),
            ("WEBHOOKD_GITHUB_TOKEN", TEST_TOKEN),
            ("WEBHOOKD_GITHUB_API_URL", &counter.url()),
            ("WEBHOOKD_QUEUE_CAPACITY", "1000"),
        ],
        handler,
    )
    .await;

    let payload = fixture("issues/opened.payload.json");
    for _ in 0..200 {
        let response = app.post_webhook("issues", payload.clone()).await;
        assert_eq!(response.status().as_u16(), 202);
    }
    receive_n(&mut processed_rx, 200).await;

    let accepted = counter.accepted();
    assert!((1..=4).contains(&accepted), "200 deliveries on 4 workers opened {accepted} connections");
    assert!(counter.open() > 0, "pooled connections stay open while the app runs");

    let report = app.stop().await;
    assert!(report.abandoned.is_empty());
    // The test process (and its runtime) is still alive: only dropping the
    // client can have closed these connections.
    counter.wait_all_closed().await.unwrap_or_else(|open| panic!("{open} connections still open after stop"));
    github.verify().await;
}

#[tokio::test]
async fn without_a_credential_calls_are_dry_run_and_nothing_reaches_github() {
    let github = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(201)).expect(0).mount(&github).await;
    let counter = ConnectionCounter::start(*github.address()).await;
    let (handler, mut processed) = CommentingHandler::new();
    let app = spawn_app(&[("WEBHOOKD_GITHUB_API_URL", &counter.url())], handler).await;

    for _ in 0..3 {
        assert_eq!(app.post_webhook("issues", fixture("issues/opened.payload.json")).await.status().as_u16(), 202);
    }
    // The handler completes (the dry-run call succeeded) for every delivery...
    receive_n(&mut processed, 3).await;
    app.stop().await;
    // ...and not one connection was made.
    assert_eq!(counter.accepted(), 0);
    github.verify().await;
}
