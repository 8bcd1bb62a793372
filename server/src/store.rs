//! The embedded store (local mode): projects, sessions, their event logs and credentials in
//! one SQLite file.
//!
//! Layout: [`db`] (writer thread, readers), [`schema`] (migrations), [`projects`],
//! [`sessions`], [`events`] (the persisted, sequenced logs, broadcast after commit).

mod db;
pub mod events;
pub mod projects;
mod schema;
pub mod sessions;

use std::path::{Path, PathBuf};

pub use db::{AfterCommit, Db};

use crate::hub::Fanout;

/// Failures of the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such project or session.
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already, or it changed concurrently.
    #[error("{0}")]
    Conflict(String),
    /// A SQLite failure.
    #[error("database error: {0}")]
    Sqlite(String),
    /// A filesystem or thread failure.
    #[error("{0}")]
    Io(String),
    /// Stored data could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The store: database, the fan-out that follows each commit, and where workspaces live.
#[derive(Clone)]
pub struct Store {
    db: Db,
    fanout: Fanout,
    data_dir: PathBuf,
}

impl Store {
    /// Opens the store in `data_dir` (`ambient.db`, `workspaces/`).
    pub fn open(data_dir: &Path, fanout: Fanout) -> Result<Store, StoreError> {
        create_private_dir(data_dir)?;
        let db = Db::open(&data_dir.join("ambient.db"))?;
        Ok(Store {
            db,
            fanout,
            data_dir: data_dir.to_owned(),
        })
    }

    /// The workspace directory of a session.
    pub fn workspace(&self, project: &str, session: &str) -> PathBuf {
        self.data_dir.join("workspaces").join(project).join(session)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The viewer fan-out.
    pub fn fanout(&self) -> &Fanout {
        &self.fanout
    }

    pub(crate) fn db(&self) -> &Db {
        &self.db
    }
}

fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
