//! Micro-benchmarks of the receive path: signature verification and the
//! routing parse, on a small (`security_advisory`, 1.3 KB), a typical (`push`,
//! 7.3 KB) and a 1 MB payload; the full `serde_json::Value` parse for comparison.
//!
//! `cargo bench --bench receive`

use bytes::Bytes;
use divan::counter::BytesCount;
use divan::{Bencher, black_box};
use secrecy::SecretString;
use webhookd::delivery::Routing;
use webhookd::webhook::signature::{SignatureVerifier, sign};

fn main() {
    divan::main();
}

const SIZES: [&str; 3] = ["small", "typical", "1MB"];

fn payload(size: &str) -> Bytes {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github-payloads");
    let read = |path: &str| std::fs::read(format!("{fixtures}/{path}")).expect("fixture");
    match size {
        "small" => Bytes::from(read("security_advisory/updated.payload.json")),
        "typical" => Bytes::from(read("push/payload.json")),
        _ => {
            // A push with enough commits to weigh 1 MB.
            let mut push: serde_json::Value =
                serde_json::from_slice(&read("push/with-new-branch.payload.json")).expect("json");
            let commit = serde_json::json!({
                "id": "6113728f27ae82c7b1a177c8d03f9e96e0adf246", "message": "Update README.md with a longer message",
                "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
                "added": [], "removed": [], "modified": ["README.md", "src/lib.rs", "src/main.rs"]
            });
            let one = serde_json::to_vec(&commit).expect("json").len();
            push["commits"] = serde_json::Value::Array(vec![commit; 1_048_576 / one]);
            Bytes::from(serde_json::to_vec(&push).expect("json"))
        }
    }
}

#[divan::bench(args = SIZES)]
fn verify_signature(bencher: Bencher<'_, '_>, size: &str) {
    let body = payload(size);
    let secret = SecretString::from("bench-secret");
    let verifier = SignatureVerifier::new(std::slice::from_ref(&secret));
    let header = sign(&secret, &body);
    bencher
        .counter(BytesCount::new(body.len()))
        .bench(|| verifier.verify(Some(black_box(header.as_bytes())), false, black_box(&body)));
}

#[divan::bench(args = SIZES)]
fn parse_routing_fields(bencher: Bencher<'_, '_>, size: &str) {
    let body = payload(size);
    bencher.counter(BytesCount::new(body.len())).bench(|| Routing::parse(black_box(&body)));
}

#[divan::bench(args = SIZES)]
fn parse_whole_value(bencher: Bencher<'_, '_>, size: &str) {
    let body = payload(size);
    bencher
        .counter(BytesCount::new(body.len()))
        .bench(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)));
}
