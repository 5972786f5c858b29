//! The whole daemon with a handler of your own: thanks the author of every
//! newly opened issue with a comment, through the daemon's shared GitHub
//! client. Configured exactly like `webhookd serve` (environment or `.env`):
//!
//! ```sh
//! WEBHOOKD_SECRET=… WEBHOOKD_GITHUB_TOKEN=… cargo run --example comment_on_issues
//! ```

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use serde_json::json;
use webhookd::{Delivery, GitHubApi, Handler, HandlerError};

struct CommentOnNewIssues;

#[async_trait]
impl Handler for CommentOnNewIssues {
    async fn handle(&self, delivery: &Delivery, github: &GitHubApi<'_>) -> Result<(), HandlerError> {
        if delivery.kind() != "issues.opened" {
            return Ok(());
        }
        let payload = delivery.payload()?;
        let repo = delivery.routing.repository.as_deref().context("issues delivery without a repository")?;
        let number = payload["issue"]["number"].as_u64().context("issues delivery without issue.number")?;
        let author = payload["issue"]["user"]["login"].as_str().unwrap_or("there");
        let body = json!({ "body": format!("Thanks for opening this issue, @{author}! We will take a look.") });
        github.post(&format!("/repos/{repo}/issues/{number}/comments"), &body).await?;
        tracing::info!(repo, number, "thanked the author");
        Ok(())
    }
}

fn main() -> ExitCode {
    webhookd::run::serve_from_env(None, Arc::new(CommentOnNewIssues))
}
