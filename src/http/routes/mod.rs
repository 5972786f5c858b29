//! The whole URL map in one place. Unknown paths and methods get JSON errors
//! too, like every other refusal (echoing at most `redact::ECHO_MAX_CHARS` of them).

mod health;
mod metrics;
mod webhook;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::errors::error_json;
use crate::redact;

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/webhook").route(web::post().to(webhook::receive)).default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/healthz").route(web::get().to(health::healthz)).default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/readyz").route(web::get().to(health::readyz)).default_service(web::to(method_not_allowed)))
    .service(
        web::resource("/metrics").route(web::get().to(metrics::metrics)).default_service(web::to(method_not_allowed)),
    )
    .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    error_json(
        StatusCode::NOT_FOUND,
        &format!(
            "no such endpoint {:?}: webhookd serves POST /webhook, GET /healthz, /readyz, /metrics",
            redact::echo(req.path())
        ),
    )
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    error_json(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("{} is not allowed on {}", redact::echo(req.method().as_str()), redact::echo(req.path())),
    )
}
