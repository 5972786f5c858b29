//! The HTTP floor the benchmark measures webhookd against: a bare actix-web
//! route that reads the body and answers 202, nothing else. Built the same
//! way (release, same actix) and run the same way (one core) as webhookd.
//!
//! `cargo run --release --example bench_floor -- 127.0.0.1:18300`

use actix_web::{App, HttpResponse, HttpServer, web};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18300".to_owned());
    HttpServer::new(|| {
        App::new()
            .app_data(web::PayloadConfig::new(26_214_400))
            .route("/webhook", web::post().to(|_body: web::Bytes| async { HttpResponse::Accepted().finish() }))
    })
    .bind(listen)?
    .run()
    .await
}
