//! A stand-in GitHub API for the end-to-end benchmark: answers 201 to every
//! request and counts requests, accepted TCP connections and the connections
//! that carried API requests (distinct client addresses: the `_stats` polls
//! open connections of their own), reported at `GET /_stats` as
//! `{"requests": N, "connections": M, "api_connections": K}`.
//!
//! `cargo run --release --example bench_mock_github -- 127.0.0.1:18301`

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18301".to_owned());
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let api_peers: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    let counted = connections.clone();
    HttpServer::new(move || {
        let (requests, connections, peers) = (requests.clone(), connections.clone(), api_peers.clone());
        App::new()
            .route(
                "/_stats",
                web::get().to({
                    let (requests, connections, peers) = (requests.clone(), connections.clone(), peers.clone());
                    move || {
                        let api_connections = peers.lock().map(|p| p.len()).unwrap_or(0);
                        let body = format!(
                            r#"{{"requests": {}, "connections": {}, "api_connections": {api_connections}}}"#,
                            requests.load(Ordering::SeqCst),
                            connections.load(Ordering::SeqCst)
                        );
                        async move { HttpResponse::Ok().content_type("application/json").body(body) }
                    }
                }),
            )
            .default_service(web::to(move |request: HttpRequest| {
                requests.fetch_add(1, Ordering::SeqCst);
                if let (Some(peer), Ok(mut seen)) = (request.peer_addr(), peers.lock()) {
                    seen.insert(peer);
                }
                async { HttpResponse::Created().content_type("application/json").body("{}") }
            }))
    })
    .on_connect(move |_, _| {
        counted.fetch_add(1, Ordering::SeqCst);
    })
    .bind(listen)?
    .run()
    .await
}
