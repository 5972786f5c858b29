//! A stand-in GitHub API for the end-to-end benchmark: answers 201 to every
//! request and counts requests and accepted TCP connections, reported at
//! `GET /_stats` as `{"requests": N, "connections": M}`.
//!
//! `cargo run --release --example bench_mock_github -- 127.0.0.1:18301`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18301".to_owned());
    let requests = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    let counted = connections.clone();
    HttpServer::new(move || {
        let (requests, connections) = (requests.clone(), connections.clone());
        App::new()
            .route(
                "/_stats",
                web::get().to({
                    let (requests, connections) = (requests.clone(), connections.clone());
                    move || {
                        let body = format!(
                            r#"{{"requests": {}, "connections": {}}}"#,
                            requests.load(Ordering::SeqCst),
                            connections.load(Ordering::SeqCst)
                        );
                        async move { HttpResponse::Ok().content_type("application/json").body(body) }
                    }
                }),
            )
            .default_service(web::to(move || {
                requests.fetch_add(1, Ordering::SeqCst);
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
