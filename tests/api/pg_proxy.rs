//! A TCP proxy between webhookd and PostgreSQL that the test can cut: the
//! connections it carries are closed, and new ones are accepted but held
//! unanswered (a network partition, where nothing even refuses) until the
//! link is restored; the held ones are then closed too.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct CutProxy {
    pub address: SocketAddr,
    links: Arc<Mutex<Links>>,
    accepting: JoinHandle<()>,
}

#[derive(Default)]
struct Links {
    cut: bool,
    /// Connections carried to the server.
    carried: Vec<JoinHandle<()>>,
    /// Connections accepted while cut, never answered.
    held: Vec<TcpStream>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let links = Arc::new(Mutex::new(Links::default()));
        let shared = links.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut links = shared.lock().expect("links");
                if links.cut {
                    links.held.push(client);
                    continue;
                }
                links.carried.retain(|link| !link.is_finished());
                links.carried.push(tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        });
        Self { address, links, accepting }
    }

    /// Closes every carried connection (both ends) and holds new ones;
    /// returns once the closed sockets are gone.
    pub async fn cut(&self) {
        let carried = {
            let mut links = self.links.lock().expect("links");
            links.cut = true;
            std::mem::take(&mut links.carried)
        };
        for link in carried {
            link.abort();
            // Resolves once the task, and the sockets it owned, are dropped.
            let _ = link.await;
        }
    }

    /// Carries new connections again; the held ones are closed.
    pub fn restore(&self) {
        let mut links = self.links.lock().expect("links");
        links.cut = false;
        links.held.clear();
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accepting.abort();
        for link in &self.links.lock().expect("links").carried {
            link.abort();
        }
    }
}
