//! Process signals. SIGTERM and SIGINT both start the drain; the sequence
//! itself is `startup::Application::run_until_stopped`.

use tokio::signal::unix::{SignalKind, signal};

/// Resolves at the first SIGTERM or SIGINT.
pub async fn wait_for_stop_signal() {
    tokio::select! {
        () = wait_for(SignalKind::terminate(), "SIGTERM") => {}
        () = wait_for(SignalKind::interrupt(), "SIGINT") => {}
    }
}

async fn wait_for(kind: SignalKind, name: &'static str) {
    match signal(kind) {
        Ok(mut stream) => {
            stream.recv().await;
            tracing::info!(signal = name, "stop requested");
        }
        Err(e) => {
            tracing::error!(signal = name, error = %e, "cannot listen for this signal");
            std::future::pending::<()>().await;
        }
    }
}
