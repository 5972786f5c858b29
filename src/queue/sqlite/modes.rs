//! The store's files are the payloads GitHub sent: only webhookd's user may
//! read them. Everything the store creates is 0600 (files) or 0700 (folders)
//! whatever the umask, and a store from before, with looser modes, is
//! tightened when the daemon opens it (with a warning naming each file), so
//! an upgrade closes the hole without a manual step. SQLite creates `-wal`
//! and `-shm` with the database file's mode, so the database file is created
//! here, 0600, before SQLite opens it.
//!
//! Folders the store did not create (the database's own folder when it
//! exists already: it may be the working directory) are left alone.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file the store writes.
pub(super) const FILE_MODE: u32 = 0o600;
/// Mode of every folder the store creates.
pub(super) const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parents, 0700.
pub(super) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    // The umask may have taken owner bits too.
    fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
}

/// Gives a file the store just created exactly `mode`.
pub(super) fn make_private(file: &File, mode: u32) -> io::Result<()> {
    if file.metadata()?.permissions().mode() & 0o777 != mode {
        file.set_permissions(Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Opens `path` for writing, creating it 0600 if it is missing; an existing
/// file is tightened instead (see [`tighten`]).
pub(super) fn open_or_create_private(path: &Path) -> io::Result<File> {
    match OpenOptions::new().write(true).create_new(true).mode(FILE_MODE).open(path) {
        Ok(file) => {
            make_private(&file, FILE_MODE)?;
            Ok(file)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            tighten(path);
            OpenOptions::new().write(true).open(path)
        }
        Err(e) => Err(e),
    }
}

/// Takes away group and other access from a file or folder of the store,
/// if it has any, with a warning. A failure is a warning too: the store
/// still works, only less private.
pub(super) fn tighten(path: &Path) {
    let mode = match fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot check the mode of a store file");
            return;
        }
    };
    if mode & 0o077 == 0 {
        return;
    }
    let tightened = mode & !0o077;
    match fs::set_permissions(path, Permissions::from_mode(tightened)) {
        Ok(()) => tracing::warn!(
            path = %path.display(),
            was = format!("{mode:04o}"),
            now = format!("{tightened:04o}"),
            "a store file was readable by other users; access is now the owner's only"
        ),
        Err(e) => tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:04o}"),
            error = %e,
            "a store file is readable by other users and cannot be tightened; fix its mode"
        ),
    }
}

/// The files SQLite keeps beside the database: `PATH-wal` and `PATH-shm`.
pub(super) fn sqlite_side_files(db: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    })
}
