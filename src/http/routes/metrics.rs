//! Prometheus scrape endpoint. Gauges mirroring state are refreshed here.

use actix_web::{HttpResponse, web};

use super::health;
use crate::http::HttpState;

pub async fn metrics(state: web::Data<HttpState>) -> HttpResponse {
    let counts = state.queue.counts().await;
    state.metrics.set_queue_state(state.queue.depth(), &counts.by_state());
    // Refreshed here too: only the SQLite store sets it as writes fail and
    // succeed; PostgreSQL's outage is known to `write_error` alone.
    state.metrics.store_writable.set(i64::from(state.queue.write_error().is_none()));
    state.metrics.ready.set(i64::from(health::unready(&state).is_none()));
    state.metrics.request_body_bytes.set(i64::try_from(state.bodies.used()).unwrap_or(i64::MAX));
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.encode())
}
