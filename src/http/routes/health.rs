//! Liveness and readiness. `/healthz` answers while the process serves;
//! `/readyz` turns 503 while draining, while the store cannot write (a full
//! disk, say: it names the store and the error) or while the queue is full,
//! so a load balancer stops sending before deliveries are refused. It turns
//! 200 again by itself once the store writes again (the store probes).
//! It is also 503 `github_credentials` while GitHub refuses the App's own
//! credentials (wrong App id or key): no delivery needing GitHub can succeed.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::HttpState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    let (status, error) = if state.readiness.is_draining() {
        ("draining", "webhookd is shutting down".to_owned())
    } else if let Some(error) = state.queue.write_error() {
        ("store_unwritable", error)
    } else if let Some(problem) = state.github_alarm.problem() {
        ("github_credentials", problem)
    } else if !state.queue.has_room() {
        ("queue_full", "the delivery queue is full".to_owned())
    } else {
        return HttpResponse::Ok().json(json!({ "status": "ready", "queue_depth": state.queue.depth() }));
    };
    HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
        .json(json!({ "status": status, "error": error, "queue_depth": state.queue.depth() }))
}
