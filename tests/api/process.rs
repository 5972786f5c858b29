//! Runs the built binaries as a user would: a clean environment, a scratch
//! working directory (so no `.env` is picked up), port 0, JSON logs read line
//! by line so tests wait on what the daemon says instead of sleeping.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::helpers::WAIT;

/// The `webhookd` binary.
pub fn webhookd_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_webhookd"))
}

/// The `comment_on_issues` example: the daemon with a handler that calls
/// GitHub. `cargo test` builds examples before running tests.
pub fn example_bin() -> PathBuf {
    let path = webhookd_bin().parent().expect("target dir").join("examples/comment_on_issues");
    assert!(path.exists(), "{} is missing: run the whole suite with `cargo test --all-targets`", path.display());
    path
}

pub struct Daemon {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    output: Arc<Mutex<String>>,
    /// The tasks reading stdout and stderr, until the pipes close.
    readers: Vec<tokio::task::JoinHandle<()>>,
    pub address: String,
    /// The working directory; the default store lives in `data/` below it.
    pub workdir: Arc<tempfile::TempDir>,
}

impl Daemon {
    /// Starts `program serve` with `env` (plus JSON logs on port 0) and waits
    /// until it says it listens.
    pub async fn start(program: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_in(Arc::new(tempfile::tempdir().expect("workdir")), program, env).await
    }

    /// As `start`, in `workdir` (a restart on the same store).
    pub async fn start_in(workdir: Arc<tempfile::TempDir>, program: &Path, env: &[(&str, &str)]) -> Self {
        Self::start_command(workdir, program, &[], env).await
    }

    /// As `start_in`, running `program ARGS` (a shell that sets up systemd's
    /// socket passing, say).
    pub async fn start_command(
        workdir: Arc<tempfile::TempDir>,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(program);
        command
            .args(args)
            .env_clear()
            .env("WEBHOOKD_LISTEN", "127.0.0.1:0")
            .env("WEBHOOKD_LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .current_dir(workdir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("daemon starts");
        let (tx, lines) = mpsc::unbounded_channel();
        let output = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            forward_lines(child.stdout.take().expect("stdout"), tx.clone(), output.clone()),
            forward_lines(child.stderr.take().expect("stderr"), tx, output.clone()),
        ];
        let mut daemon = Self { child, lines, output, readers, address: String::new(), workdir };
        let started = daemon.wait_for_line("webhookd started").await;
        let line: serde_json::Value = serde_json::from_str(&started).expect("JSON log line");
        daemon.address = format!("http://{}", line["listen"].as_str().expect("listen field"));
        daemon
    }

    /// Waits for an output line containing `needle` and returns it.
    pub async fn wait_for_line(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!("no line containing {needle:?}; output so far:\n{}", self.output()),
        }
    }

    /// The process id (of `program`, or of what a shell `exec`ed).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("daemon is running")
    }

    pub fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("daemon is running");
        kill(Pid::from_raw(i32::try_from(pid).expect("pid fits")), signal).expect("signal sent");
    }

    /// Waits for the process to exit and for its last lines to be read
    /// (they may still sit in the pipes when it has exited).
    pub async fn wait(&mut self) -> ExitStatus {
        let status = tokio::time::timeout(WAIT, self.child.wait()).await.expect("daemon exits in time").expect("wait");
        for reader in std::mem::take(&mut self.readers) {
            tokio::time::timeout(WAIT, reader).await.expect("output read to its end").expect("reader");
        }
        status
    }

    /// Everything the daemon wrote so far, stdout and stderr.
    pub fn output(&self) -> String {
        self.output.lock().expect("output lock").clone()
    }
}

fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tx: mpsc::UnboundedSender<String>,
    output: Arc<Mutex<String>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            {
                let mut all = output.lock().expect("output lock");
                all.push_str(&line);
                all.push('\n');
            }
            let _ = tx.send(line);
        }
    })
}

/// Runs `webhookd ARGS` to completion with `env` only, in a fresh folder;
/// returns the exit code and the output.
pub async fn run_webhookd(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let workdir = tempfile::tempdir().expect("workdir");
    run_webhookd_in(workdir.path(), args, env).await
}

/// As `run_webhookd`, in `dir`.
pub async fn run_webhookd_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(webhookd_bin())
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .await
        .expect("webhookd runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}
