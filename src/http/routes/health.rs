//! Liveness and readiness. `/healthz` answers while the process serves;
//! `/readyz` turns 503 while draining, while the store cannot write (a full
//! disk, say: it names the store and the error) or while the queue is full,
//! so a load balancer stops sending before deliveries are refused. It turns
//! 200 again by itself once the store writes again (the store probes).
//! It is also 503 `github_credentials` while GitHub refuses the App's own
//! credentials (wrong App id or key): no delivery needing GitHub can succeed.
//! `/metrics` exports the same answer as `webhookd_ready`, so an alert sees
//! what the load balancer sees.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::HttpState;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<HttpState>) -> HttpResponse {
    match unready(&state) {
        None => HttpResponse::Ok().json(json!({ "status": "ready", "queue_depth": state.queue.depth() })),
        Some((status, error)) => HttpResponse::build(StatusCode::SERVICE_UNAVAILABLE)
            .json(json!({ "status": status, "error": error, "queue_depth": state.queue.depth() })),
    }
}

/// Why the daemon is not ready (a status word and the error in words), or
/// `None` when it is: the one answer `/readyz` and `webhookd_ready` give.
pub fn unready(state: &HttpState) -> Option<(&'static str, String)> {
    if state.readiness.is_draining() {
        Some(("draining", "webhookd is shutting down".to_owned()))
    } else if let Some(error) = state.queue.write_error() {
        Some(("store_unwritable", error))
    } else if let Some(problem) = state.github_alarm.problem() {
        Some(("github_credentials", problem))
    } else if !state.queue.has_room() {
        Some(("queue_full", "the delivery queue is full".to_owned()))
    } else {
        None
    }
}
