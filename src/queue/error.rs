//! Why a store operation failed: what was being done (`StoreError`) and
//! what failed underneath (`Cause`), kept typed — an SQLite or PostgreSQL
//! error, a file operation, or a check the store's data failed — and shown
//! in words an operator can act on, never with a connection password.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {cause}")]
    Open { path: PathBuf, cause: Cause },
    #[error("{path}: in use by another webhookd process (lock file {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("store write failed: {0}")]
    Write(Cause),
    #[error("store read failed: {0}")]
    Read(Cause),
    #[error("the store is shut down")]
    Stopped,
    /// The PostgreSQL server cannot be reached (at start: exit 1, not a
    /// configuration problem).
    #[error("cannot reach PostgreSQL at {host}: {cause}")]
    Unreachable { host: String, cause: Cause },
}

/// What failed underneath a store operation. Its words are the whole
/// message (no `source()` chain), so a log line says it once; `Debug` is
/// the same words, so no raw driver error (which could quote a connection
/// parameter) reaches a log by way of `{:?}`.
#[derive(thiserror::Error)]
pub enum Cause {
    #[error("{}", super::sqlite::describe(.0))]
    Sqlite(rusqlite::Error),
    #[error("{}", super::postgres::describe(.0))]
    Postgres(sqlx::Error),
    /// A file or folder of the store (lock file, body log, folder).
    #[error("{what}: {error}")]
    File { what: String, error: std::io::Error },
    /// One cause that failed several operations at once (a group commit).
    #[error("{0}")]
    Shared(std::sync::Arc<Cause>),
    /// `cause`, met while doing what `doing` says.
    #[error("{doing}: {cause}")]
    While { doing: String, cause: Box<Cause> },
    /// The store's data is not what this webhookd can use: a newer schema,
    /// not a webhookd database, a missing file, an unexpected answer.
    #[error("{0}")]
    Refused(String),
}

impl std::fmt::Debug for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cause({self})")
    }
}

impl Cause {
    pub fn file(what: impl Into<String>, error: std::io::Error) -> Self {
        Self::File { what: what.into(), error }
    }

    pub fn refused(reason: impl Into<String>) -> Self {
        Self::Refused(reason.into())
    }

    /// This cause, met while doing `doing`.
    pub fn context(self, doing: impl Into<String>) -> Self {
        Self::While { doing: doing.into(), cause: Box::new(self) }
    }
}

impl From<rusqlite::Error> for Cause {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

impl From<sqlx::Error> for Cause {
    fn from(e: sqlx::Error) -> Self {
        Self::Postgres(e)
    }
}
