//! SQLite plumbing: one writer thread with group commit, a small pool of readers.
//!
//! Every write is a closure run on the writer thread inside a transaction shared with the
//! other writes queued at the same moment, each in its own savepoint so one failure does not
//! undo the others. Writes may register hooks that run on the writer thread right after the
//! commit, in commit order: the event hub broadcasts from there, which makes "persisted
//! before broadcast, in sequence order" hold by construction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{StoreError, schema};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// Read connections kept open.
const READERS: usize = 4;

/// Hooks a write registers to run after its transaction commits.
#[derive(Default)]
pub struct AfterCommit(Vec<Box<dyn FnOnce() + Send>>);

impl AfterCommit {
    /// Runs `f` on the writer thread once the write is durable.
    pub fn push(&mut self, f: impl FnOnce() + Send + 'static) {
        self.0.push(Box::new(f));
    }
}

type Job = Box<dyn FnOnce(&Transaction<'_>) -> Pending + Send>;

/// A write that ran, waiting for the commit to decide its fate.
struct Pending {
    hooks: AfterCommit,
    finish: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`, migrates it and starts the writer.
    /// The file is readable by its owner only: it holds credentials.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))?;
        }
        create_private(path)?;
        let mut conn = open_conn(path, false)?;
        schema::migrate(&mut conn)?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Db {
            writer: tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path: Arc::new(path.to_owned()),
        })
    }

    /// Runs `f` in a write transaction; resolves once it is committed (or failed).
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>, &mut AfterCommit) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let mut hooks = AfterCommit::default();
            let outcome = run_in_savepoint(tx, |tx| f(tx, &mut hooks));
            let (hooks, value) = match outcome {
                Ok(v) => (hooks, Ok(v)),
                Err(e) => (AfterCommit::default(), Err(e)),
            };
            Pending {
                hooks,
                finish: Box::new(move |commit| {
                    let _ = done.send(commit.and(value));
                }),
            }
        });
        self.writer.send(job).map_err(|_| StoreError::Closed)?;
        result.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `f` on a read connection (a consistent snapshot) off the async threads.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().map_err(|_| StoreError::Closed)?.pop() {
                Some(c) => c,
                None => open_conn(&path, true)?,
            };
            let out = f(&conn);
            let mut pool = readers.lock().map_err(|_| StoreError::Closed)?;
            if pool.len() < READERS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Io(format!("reader task: {e}")))?
    }
}

fn run_in_savepoint<T>(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    tx.execute_batch("SAVEPOINT job")?;
    match f(tx) {
        Ok(v) => {
            tx.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            tx.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(e)
        }
    }
}

fn writer_loop(mut conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut pending = Vec::with_capacity(batch.len());
        let commit = match conn.transaction() {
            Ok(tx) => {
                for job in batch.drain(..) {
                    pending.push(job(&tx));
                }
                tx.commit().map_err(StoreError::from)
            }
            Err(e) => {
                // The jobs never ran; dropping them tells each caller the store failed.
                tracing::error!(error = %StoreError::from(e), "could not begin a write transaction");
                batch.clear();
                continue;
            }
        };
        for p in pending {
            if commit.is_ok() {
                for hook in p.hooks.0 {
                    hook();
                }
            }
            (p.finish)(commit.clone());
        }
    }
}

fn create_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    // An older file may have looser permissions.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?;
    Ok(())
}

fn open_conn(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")?;
    if !read_only {
        // WAL: readers never block the writer. NORMAL sync survives a crash of the process
        // (not of the machine), which is what a server restart needs, at a fraction of FULL's
        // cost per commit.
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")?;
    }
    Ok(conn)
}
