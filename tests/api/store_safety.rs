//! The store fails closed and visibly: `/readyz` answers 503 while the store
//! cannot write and 200 again by itself once it can; a failed write leaves
//! no file behind; store files are private whatever the umask; the read-only
//! `deliveries` commands work on a store they cannot write and change nothing.
//!
//! A full disk is played by the real binary under RLIMIT_FSIZE, set on the
//! running daemon with `prlimit` (util-linux): a write past the limit fails
//! in the kernel with EFBIG and takes the same paths in webhookd as ENOSPC.
//! The daemon handles SIGXFSZ itself (the signal's default action would kill
//! it at the first such write); the shell here leaves the default in place,
//! so the test also proves that.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::helpers::*;
use crate::process::*;

/// `name` on the usual system paths, or `None` with a line saying the test
/// is skipped.
fn system_tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists());
    if found.is_none() {
        println!("SKIPPED: `{name}` (util-linux) is not installed");
    }
    found
}

/// Starts `webhookd serve` through `sh -c SCRIPT` (the script ends in `exec "$0" serve`).
async fn start_through_shell(workdir: Arc<tempfile::TempDir>, script: &str) -> Daemon {
    let bin = webhookd_bin();
    let args = ["-c", script, bin.to_str().expect("utf-8 path")];
    Daemon::start_command(workdir, Path::new("/bin/sh"), &args, &[("WEBHOOKD_SECRET", TEST_SECRET)]).await
}

/// Sets the daemon's file size limit (soft; the hard one stays unlimited).
async fn limit_file_size(prlimit: &Path, daemon: &Daemon, soft: &str) {
    let status = tokio::process::Command::new(prlimit)
        .arg(format!("--pid={}", daemon.pid()))
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .await
        .expect("prlimit runs");
    assert!(status.success(), "prlimit --fsize={soft} failed");
}

async fn post(daemon: &Daemon) -> u16 {
    let id = uuid::Uuid::new_v4().to_string();
    let body = fixture("issues/opened.payload.json");
    let request = signed_delivery(&reqwest::Client::new(), &daemon.address, TEST_SECRET, "issues", &id, body);
    request.send().await.expect("sent").status().as_u16()
}

async fn get(daemon: &Daemon, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}{path}", daemon.address)).await.expect("sent");
    (response.status().as_u16(), response.text().await.expect("body"))
}

async fn readyz(daemon: &Daemon) -> (u16, Value) {
    let (status, body) = get(daemon, "/readyz").await;
    (status, serde_json::from_str(&body).expect("readyz answers JSON"))
}

/// The files in `dir` with their sizes (none if it does not exist), but the
/// scratch file of the store's write probe, which comes and goes.
fn files_in(dir: &Path) -> BTreeMap<String, u64> {
    let Ok(entries) = std::fs::read_dir(dir) else { return BTreeMap::new() };
    entries
        .map(|e| e.expect("entry"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e))
        .filter(|(name, _)| name != "write-probe.tmp")
        .map(|(name, e)| (name, e.metadata().expect("metadata").len()))
        .collect()
}

#[tokio::test]
async fn readiness_is_503_while_the_store_cannot_write_and_turns_200_by_itself_and_no_file_is_left() {
    let Some(prlimit) = system_tool("prlimit") else { return };
    let workdir = Arc::new(tempfile::tempdir().expect("workdir"));
    let mut daemon = start_through_shell(workdir.clone(), "trap - XFSZ; exec \"$0\" serve").await;
    let db = workdir.path().join("data/webhookd.db");
    let bodies = workdir.path().join("data/webhookd.db.bodies");
    let (status, ready) = readyz(&daemon).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");
    assert!(files_in(&bodies).is_empty(), "a segment is created by its first write: {:?}", files_in(&bodies));

    // The disk is full before any body was written: each refused delivery
    // would have left a new, empty segment.
    limit_file_size(&prlimit, &daemon, "0").await;
    for _ in 0..5 {
        assert_eq!(post(&daemon).await, 503, "{}", daemon.output());
    }
    let (status, unready) = readyz(&daemon).await;
    assert_eq!((status, unready["status"].as_str()), (503, Some("store_unwritable")), "{unready}");
    let error = unready["error"].as_str().expect("an error");
    assert!(error.contains(&db.display().to_string()) && error.contains("File too large"), "{error}");
    let metrics = get(&daemon, "/metrics").await.1;
    assert!(metrics.contains("webhookd_store_writable 0") && metrics.contains("webhookd_ready 0"), "{metrics}");
    assert!(files_in(&bodies).is_empty(), "failed writes left files: {:?}", files_in(&bodies));
    daemon.wait_for_line("the store cannot write").await;

    // Space again, and no delivery comes (the load balancer sends none to an
    // unready daemon): the store's own probe finds out.
    limit_file_size(&prlimit, &daemon, "unlimited").await;
    daemon.wait_for_line("the store writes again").await;
    let (status, ready) = readyz(&daemon).await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")), "{ready}");
    let metrics = get(&daemon, "/metrics").await.1;
    assert!(metrics.contains("webhookd_store_writable 1") && metrics.contains("webhookd_ready 1"), "{metrics}");
    assert!(files_in(&bodies).is_empty(), "{:?}", files_in(&bodies));
    assert!(!bodies.join("write-probe.tmp").exists(), "the probe removes its scratch file");
    assert_eq!(post(&daemon).await, 202);
    let written = files_in(&bodies);
    assert_eq!(written.len(), 1, "{written:?}");

    // Full again, with bodies in the segment: it is cut back, not replaced.
    limit_file_size(&prlimit, &daemon, "0").await;
    for _ in 0..5 {
        assert_eq!(post(&daemon).await, 503);
    }
    assert_eq!(readyz(&daemon).await.0, 503);
    assert_eq!(files_in(&bodies), written, "failed writes changed the body log");
    // A delivery that is stored makes the daemon ready at once.
    limit_file_size(&prlimit, &daemon, "unlimited").await;
    assert_eq!(post(&daemon).await, 202);
    assert_eq!(readyz(&daemon).await.0, 200);

    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
    let store = format!("sqlite:{}", db.display());
    let (code, out) = run_webhookd(&["deliveries", "list", "--json"], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(rows.len(), 2, "only the deliveries answered 202 are stored: {out}");
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// The store's folders and files, each with the mode it must have.
fn expected_modes(data: &Path) -> Vec<(PathBuf, u32)> {
    let bodies = data.join("webhookd.db.bodies");
    let mut expected = vec![(bodies.clone(), 0o700)];
    for file in ["webhookd.db", "webhookd.db-wal", "webhookd.db-shm", "webhookd.db.lock"] {
        expected.push((data.join(file), 0o600));
    }
    let segments = files_in(&bodies);
    assert!(!segments.is_empty(), "a delivery was stored");
    expected.extend(segments.keys().map(|name| (bodies.join(name), 0o600)));
    expected
}

fn assert_modes(expected: &[(PathBuf, u32)]) {
    for (path, want) in expected {
        assert_eq!(mode(path), *want, "{} is {:o}", path.display(), mode(path));
    }
}

#[tokio::test]
async fn store_files_are_0600_and_folders_0700_under_umask_022_and_loose_ones_are_tightened() {
    let workdir = Arc::new(tempfile::tempdir().expect("workdir"));
    let data = workdir.path().join("data");
    let script = "umask 022; exec \"$0\" serve";
    let mut daemon = start_through_shell(workdir.clone(), script).await;
    assert_eq!(post(&daemon).await, 202);
    // While it runs: the -wal and -shm exist now.
    assert_eq!(mode(&data), 0o700, "the folder it created");
    let expected = expected_modes(&data);
    assert_modes(&expected);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());

    // A store from before: what others could read is tightened at the next start.
    let mut loosened = 0;
    for (path, want) in expected.iter().filter(|(path, _)| path.exists()) {
        let loose = if *want == 0o700 { 0o755 } else { 0o644 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(loose)).expect("chmod");
        loosened += 1;
    }
    let mut daemon = start_through_shell(workdir.clone(), script).await;
    let output = daemon.output(); // logged before it listens
    let warnings: Vec<&str> = output.lines().filter(|l| l.contains("readable by other users")).collect();
    assert_eq!(warnings.len(), loosened, "one warning per file: {output}");
    assert_eq!(post(&daemon).await, 202);
    assert_modes(&expected_modes(&data));
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());
}

/// Every file under `dir`: its size, a hash of its bytes, its modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (usize, u64, i64, i64)> {
    let mut files = BTreeMap::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            let meta = std::fs::metadata(&path).expect("metadata");
            if meta.is_dir() {
                folders.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                let mut hasher = DefaultHasher::new();
                bytes.hash(&mut hasher);
                files.insert(path, (bytes.len(), hasher.finish(), meta.mtime(), meta.mtime_nsec()));
            }
        }
    }
    files
}

/// Runs `webhookd ARGS` as the user `nobody`; returns the exit code and output.
async fn run_as_nobody(setpriv: &Path, bin: &Path, cwd: &Path, args: &[&str], store: &str) -> (i32, String) {
    let out = tokio::process::Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(bin)
        .args(args)
        .env_clear()
        .env("WEBHOOKD_STORE", store)
        .current_dir(cwd)
        .output()
        .await
        .expect("setpriv runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn list_and_show_read_a_store_they_cannot_write_and_change_nothing_while_replay_says_why_it_cannot() {
    // /proc/self belongs to the effective user.
    if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
        println!("SKIPPED: running commands as another user (to make the store read-only) needs root");
        return;
    }
    let Some(setpriv) = system_tool("setpriv") else { return };
    let workdir = Arc::new(tempfile::tempdir().expect("workdir"));
    let mut daemon = Daemon::start_in(workdir.clone(), &webhookd_bin(), &[("WEBHOOKD_SECRET", TEST_SECRET)]).await;
    for _ in 0..2 {
        assert_eq!(post(&daemon).await, 202);
    }
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait().await.code(), Some(0), "{}", daemon.output());

    // Readable by everyone, writable by root only; the binary too.
    let data = workdir.path().join("data");
    let db = data.join("webhookd.db");
    let store = format!("sqlite:{}", db.display());
    let bin = workdir.path().join("webhookd");
    std::fs::copy(webhookd_bin(), &bin).expect("copy the binary");
    let mut folders = vec![workdir.path().to_path_buf()];
    while let Some(folder) = folders.pop() {
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        for entry in std::fs::read_dir(&folder).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                folders.push(path);
            } else if path != bin {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            }
        }
    }
    let before = snapshot(&data);

    // Root reads too without creating the -wal and -shm SQLite would leave.
    let (code, out) = run_webhookd(&["deliveries", "list"], &[("WEBHOOKD_STORE", &store)]).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(snapshot(&data), before, "`deliveries list` as root changed the store");

    let (code, out) = run_as_nobody(&setpriv, &bin, workdir.path(), &["deliveries", "list", "--json"], &store).await;
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Value> = serde_json::from_str(&out).expect("json");
    assert_eq!(rows.len(), 2, "{out}");
    let id = rows[0]["delivery_id"].as_str().expect("id");
    let (code, out) =
        run_as_nobody(&setpriv, &bin, workdir.path(), &["deliveries", "show", id, "--json"], &store).await;
    assert_eq!(code, 0, "{out}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["payload"]["action"], "opened", "the body reads back: {out}");
    assert_eq!(snapshot(&data), before, "a read-only command changed the store");

    for args in [&["deliveries", "replay", id][..], &["deliveries", "prune"]] {
        let (code, out) = run_as_nobody(&setpriv, &bin, workdir.path(), args, &store).await;
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(&db.display().to_string()) && out.contains("read-only for this user"), "{out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    assert_eq!(snapshot(&data), before, "a refused write changed the store");
}
