//! TLS trust an operator controls: a GitHub (Enterprise Server) and a
//! `forward` receiver behind a private CA. The test makes its own CA and a
//! server certificate for 127.0.0.1, and serves HTTPS on loopback.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use webhookd::config::{Env, GitHubSettings, Settings};
use webhookd::github::{GitHub, GitHubError, Reply};
use webhookd::telemetry::metrics::Metrics;

use crate::helpers::WAIT;
use crate::process::run_webhookd;

/// A CA (its PEM) and a server configuration with a certificate it signed for 127.0.0.1.
fn private_ca() -> (String, ServerConfig) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "webhookd test CA");
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("CA certificate");
    let server_key = rcgen::KeyPair::generate().expect("server key");
    let server =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("server params");
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).expect("server certificate");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(server_cert.der().to_vec())], key)
        .expect("server config");
    (ca_cert.pem(), config)
}

/// An HTTPS server on loopback answering every request `200 []`; reports
/// each request line it served.
async fn https_server(config: ServerConfig) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (served, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(socket).await else { return };
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
                let _ = served.send(text);
            });
        }
    });
    (format!("https://127.0.0.1:{}", address.port()), rx)
}

fn settings_with(env: &[(&str, &str)]) -> Settings {
    let mut all = Env::from_pairs([("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_TOKEN", "ghp_test")]);
    for (k, v) in env {
        all.set(*k, *v);
    }
    Settings::from_env(&all).expect("valid settings")
}

fn client(github: GitHubSettings) -> GitHub {
    GitHub::new(&github, Arc::new(Metrics::new())).expect("client")
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_through_webhookd_github_ca_file_and_failures_say_tls() {
    let (ca_pem, config) = private_ca();
    let (url, mut served) = https_server(config).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("ca.pem"), &ca_pem).expect("write CA");

    // Without the CA: the handshake fails, and the error says so and names the host.
    let mut plain = settings_with(&[("WEBHOOKD_GITHUB_API_URL", &url)]).github;
    plain.retry.base = Duration::from_millis(1);
    let untrusting = client(plain);
    let error = untrusting.for_installation(None).get("/repos/o/r/issues").await.expect_err("untrusted");
    let message = error.to_string();
    assert!(matches!(error, GitHubError::Tls(_)), "{message}");
    assert!(message.starts_with("TLS handshake with 127.0.0.1 failed: "), "{message}");
    assert!(message.contains("certificate") && message.contains("WEBHOOKD_GITHUB_CA_FILE"), "{message}");
    let hook = format!("{url}/hook");
    let forward = untrusting.for_installation(None).forward(&hook, &[], Bytes::from_static(b"{}")).await;
    let message = forward.expect_err("untrusted").to_string();
    assert!(message.contains("TLS handshake with 127.0.0.1 failed"), "{message}");
    assert!(served.try_recv().is_err(), "nothing was served without trust");

    // With it (a relative name found in $CREDENTIALS_DIRECTORY): GitHub calls and forward succeed.
    let credentials = dir.path().display().to_string();
    let trusting = client(
        settings_with(&[
            ("WEBHOOKD_GITHUB_API_URL", &url),
            ("WEBHOOKD_GITHUB_CA_FILE", "ca.pem"),
            ("CREDENTIALS_DIRECTORY", &credentials),
        ])
        .github,
    );
    let api = trusting.for_installation(None);
    let reply = api.get("/repos/o/r/issues").await.expect("trusted through the CA file");
    assert!(matches!(reply, Reply::Sent(ref r) if r.body.as_ref() == b"[]"), "{reply:?}");
    let line = tokio::time::timeout(WAIT, served.recv()).await.expect("in time").expect("served");
    assert!(line.starts_with("GET /repos/o/r/issues HTTP/1.1"), "{line}");
    let headers = [("X-GitHub-Delivery".to_owned(), "d-1".to_owned())];
    api.forward(&format!("{url}/hook"), &headers, Bytes::from_static(b"{}")).await.expect("forward trusted too");
    let line = tokio::time::timeout(WAIT, served.recv()).await.expect("in time").expect("served");
    assert!(line.starts_with("POST /hook HTTP/1.1"), "{line}");
    assert!(line.to_ascii_lowercase().contains("x-github-delivery: d-1"), "forward carries the delivery id: {line}");
}

#[tokio::test]
async fn a_bad_ca_file_exits_2_naming_the_variable_and_the_file() {
    let dir = tempfile::tempdir().expect("dir");
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let missing = dir.path().join("missing.pem");
    for file in [&not_pem, &missing] {
        let file = file.display().to_string();
        let (code, out) = run_webhookd(
            &["check"],
            &[("WEBHOOKD_SECRET", "s"), ("WEBHOOKD_GITHUB_TOKEN", "t"), ("WEBHOOKD_GITHUB_CA_FILE", &file)],
        )
        .await;
        assert_eq!(code, 2, "{out}");
        assert!(out.contains("WEBHOOKD_GITHUB_CA_FILE") && out.contains(&file), "{out}");
    }
}
