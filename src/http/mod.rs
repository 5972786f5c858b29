//! The HTTP server: `/webhook`, `/healthz`, `/readyz`, `/metrics`. Its state is
//! built once by `startup` and shared with every actix worker thread as
//! `web::Data`. It does not hold the GitHub client: receiving never calls
//! GitHub. actix's own signal handling is disabled; `startup` owns shutdown.

mod errors;
mod routes;
mod state;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};

pub use errors::WebhookError;
pub use state::{HttpState, Readiness};

/// How long in-flight requests get to finish once the server is told to stop:
/// after the drain (only quick refusals and probes are then in flight), or,
/// with socket activation, before it (requests being stored finish at once).
/// Idle keep-alive connections would otherwise hold the stop this long.
const GRACEFUL_STOP: Duration = Duration::from_secs(1);

/// Builds the server on `listener`; it runs once awaited or spawned.
pub fn server(listener: TcpListener, state: web::Data<HttpState>) -> std::io::Result<Server> {
    Ok(HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::register))
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(GRACEFUL_STOP.as_secs())
        .run())
}
