//! The HTTP server: `/webhook`, `/healthz`, `/readyz`, `/metrics`. Its state is
//! built once by `startup` and shared with every actix worker thread as
//! `web::Data`. It does not hold the GitHub client: receiving never calls
//! GitHub. actix's own signal handling is disabled; `startup` owns shutdown.
//!
//! Every connection is bounded in time (request head, body, idle keep-alive)
//! and their number is capped (`WEBHOOKD_MAX_CONNECTIONS`): past the cap,
//! connections wait in the kernel's backlog instead of costing descriptors.

mod body_budget;
mod errors;
mod refusal_log;
mod routes;
mod state;

use std::net::TcpListener;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{App, HttpServer, web};

pub use errors::WebhookError;
pub use state::{HttpLimits, HttpState, Readiness};

/// How long in-flight requests get to finish once the server is told to stop:
/// after the drain (only quick refusals and probes are then in flight), or,
/// with socket activation, before it (requests being stored finish at once).
/// Idle keep-alive connections would otherwise hold the stop this long.
const GRACEFUL_STOP: Duration = Duration::from_secs(1);
/// How long a connection may sit idle between requests.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a client has to send a request's head (line and headers).
const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long closing a connection may take once webhookd is done with it.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the server on `listener`; it runs once awaited or spawned.
pub fn server(listener: TcpListener, state: web::Data<HttpState>) -> std::io::Result<Server> {
    let (threads, per_thread) = connection_split(state.limits.max_connections, available_threads());
    Ok(HttpServer::new(move || App::new().app_data(state.clone()).configure(routes::register))
        .workers(threads)
        .max_connections(per_thread)
        .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
        .client_request_timeout(REQUEST_HEAD_TIMEOUT)
        .client_disconnect_timeout(DISCONNECT_TIMEOUT)
        .listen(listener)?
        .disable_signals()
        .shutdown_timeout(GRACEFUL_STOP.as_secs())
        .run())
}

/// actix's own default: one HTTP thread per CPU.
fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// HTTP threads and connections per thread for a total cap of
/// `max_connections`: actix counts connections per thread, so the cap is
/// divided (rounding down, so the total never exceeds it), with no more
/// threads than connections.
fn connection_split(max_connections: usize, cpus: usize) -> (usize, usize) {
    let threads = cpus.clamp(1, max_connections.max(1));
    (threads, (max_connections / threads).max(1))
}

#[cfg(test)]
mod tests {
    use super::connection_split;

    #[test]
    fn the_connection_cap_is_divided_across_threads_and_never_exceeded() {
        assert_eq!(connection_split(1024, 2), (2, 512));
        assert_eq!(connection_split(1025, 2), (2, 512));
        assert_eq!(connection_split(8, 16), (8, 1));
        assert_eq!(connection_split(1, 4), (1, 1));
        assert_eq!(connection_split(100, 0), (1, 100));
        for cap in 1..300 {
            for cpus in 1..20 {
                let (threads, per_thread) = connection_split(cap, cpus);
                assert!(threads * per_thread <= cap && threads * per_thread > cap / 2, "{cap} {cpus}");
            }
        }
    }
}
