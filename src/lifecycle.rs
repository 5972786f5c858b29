//! Process signals. SIGTERM and SIGINT both start the drain; the sequence
//! itself is `shutdown`.
//!
//! Handlers are installed before the daemon announces itself: a signal that
//! arrives early must start a drain, not kill the process by default action.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGTERM and SIGINT, listened for from the moment this is built.
pub struct StopSignals {
    terminate: Option<Signal>,
    interrupt: Option<Signal>,
    /// Held, never read: with a handler installed, a write past a file-size
    /// limit (systemd `LimitFSIZE=`, `ulimit -f`) fails with EFBIG, which the
    /// store turns into 503s and an unready `/readyz`, instead of the
    /// default action killing the process.
    _file_size: Option<Signal>,
}

impl StopSignals {
    /// Installs the handlers now.
    pub fn install() -> Self {
        let listen = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::error!(signal = name, error = %e, "cannot listen for this signal");
                None
            }
        };
        Self {
            terminate: listen(SignalKind::terminate(), "SIGTERM"),
            interrupt: listen(SignalKind::interrupt(), "SIGINT"),
            _file_size: listen(SignalKind::from_raw(nix::libc::SIGXFSZ), "SIGXFSZ"),
        }
    }

    /// Resolves at the first SIGTERM or SIGINT.
    pub async fn wait(mut self) {
        tokio::select! {
            () = recv(self.terminate.as_mut()) => tracing::info!(signal = "SIGTERM", "stop requested"),
            () = recv(self.interrupt.as_mut()) => tracing::info!(signal = "SIGINT", "stop requested"),
        }
    }
}

async fn recv(stream: Option<&mut Signal>) {
    match stream {
        Some(stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
