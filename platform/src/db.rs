//! The server's own SQLite database (`ambient.db`): one writer thread with group commit, a
//! small pool of readers. It holds the event logs in both modes, and the records in local
//! mode.
//!
//! Every write is a closure run on the writer thread inside a transaction shared with the
//! other writes queued at the same moment, each in its own savepoint so one failure does not
//! undo the others. Writes may register hooks that run on the writer thread right after the
//! commit, in commit order: the event log tells its listener (the hub) from there, which
//! makes "persisted before broadcast, in sequence order" hold by construction.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction};
use tokio::sync::oneshot;

use crate::schema;

/// Failures of the database.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// No such project or session (the text names it).
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

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Name of the database file in the data directory.
pub const DB_FILE: &str = "ambient.db";

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 1024;
/// A batch smaller than this waits up to [`GROUP_WINDOW`] for company: a commit costs about
/// the same for one write as for fifty, so under load this multiplies throughput for a
/// fraction of a millisecond of latency.
const GROUP_TARGET: usize = 16;
/// How long a small batch waits for more writes.
const GROUP_WINDOW: Duration = Duration::from_micros(300);
/// Read connections, at most: reads beyond wait for one (a burst of thousands of reads
/// would otherwise open as many connections and blocking threads, each with its own page
/// cache).
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
    writer: mpsc::Sender<Job>,
    /// Dropped with the last handle; the checkpoint thread watches it.
    _alive: Arc<()>,
    readers: Arc<Mutex<Vec<Connection>>>,
    /// One permit per read connection.
    reading: Arc<tokio::sync::Semaphore>,
    path: Arc<PathBuf>,
}

impl Db {
    /// Opens the database in `data_dir` (created, readable by its owner only).
    pub fn open_in(data_dir: &Path) -> Result<Db, StoreError> {
        create_private_dir(data_dir)?;
        Db::open(&data_dir.join(DB_FILE))
    }

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
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Io(e.to_string()))?;
        let checkpoints = open_conn(path, false)?;
        let alive = Arc::new(());
        let watch = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn({
                let wal = PathBuf::from(format!("{}-wal", path.display()));
                move || checkpoint_loop(checkpoints, watch, wal)
            })
            .map_err(|e| StoreError::Io(e.to_string()))?;
        Ok(Db {
            writer: tx,
            _alive: alive,
            readers: Arc::new(Mutex::new(Vec::new())),
            reading: Arc::new(tokio::sync::Semaphore::new(READERS)),
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
            // A panicking write is a bug; it fails alone (rolled back to its savepoint) and
            // the writer thread lives on for every other write.
            let outcome = run_in_savepoint(tx, |tx| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(tx, &mut hooks)))
                    .unwrap_or_else(|_| {
                        Err(StoreError::Io(
                            "a database write failed unexpectedly and was undone".into(),
                        ))
                    })
            });
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
        let permit = self
            .reading
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().map_err(|_| StoreError::Closed)?.pop() {
                Some(c) => c,
                None => open_conn(&path, true)?,
            };
            let out = f(&conn);
            readers.lock().map_err(|_| StoreError::Closed)?.push(conn);
            drop(permit);
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
    tx.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(tx) {
        Ok(v) => {
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Ok(v)
        }
        Err(e) => {
            tx.prepare_cached("ROLLBACK TO job")?.execute([])?;
            tx.prepare_cached("RELEASE job")?.execute([])?;
            Err(e)
        }
    }
}

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        let window = Instant::now() + GROUP_WINDOW;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::TryRecvError::Disconnected) => break,
                Err(mpsc::TryRecvError::Empty) if batch.len() >= GROUP_TARGET => break,
                Err(mpsc::TryRecvError::Empty) => {
                    let left = window.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(left) {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
            }
        }
        let mut jobs: std::collections::VecDeque<Job> = batch.drain(..).collect();
        while !jobs.is_empty() {
            commit_some(&mut conn, &mut jobs);
        }
    }
}

/// Runs jobs from the front of `jobs` in one transaction and commits it; tells each job run
/// how it ended. When SQLite rolls the whole transaction back under a job (it may, on a full
/// disk or an I/O error), the jobs run so far are not stored and are told so, and the rest
/// stay in `jobs` for a fresh transaction: none runs outside a transaction, stored yet
/// reported failed.
fn commit_some(conn: &mut Connection, jobs: &mut std::collections::VecDeque<Job>) {
    // IMMEDIATE: take the write lock at BEGIN, where the busy timeout waits out a
    // checkpoint; a deferred transaction would start with a read snapshot that a restart
    // checkpoint can make stale, and its first write would then fail at once.
    let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            // The jobs never ran; dropping them tells each caller the store failed.
            tracing::error!(error = %StoreError::from(e), "could not begin a write transaction");
            jobs.clear();
            return;
        }
    };
    let mut pending = Vec::with_capacity(jobs.len());
    let mut rolled_back = false;
    while let Some(job) = jobs.pop_front() {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&tx))) {
            Ok(p) => pending.push(p),
            Err(_) => tracing::error!("a database write panicked; its caller is told it failed"),
        }
        if tx.is_autocommit() {
            rolled_back = true;
            break;
        }
    }
    let commit = if rolled_back {
        drop(tx);
        Err(StoreError::Sqlite(
            "the database undid the transaction (is the disk full?)".into(),
        ))
    } else {
        tx.commit().map_err(StoreError::from)
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

/// Copies the write-ahead log into the database now and then, on its own thread: a
/// checkpoint (and its fsync) inside a commit would stall every event behind it.
///
/// A passive checkpoint copies the bulk while the writer goes on, but under continuous writes
/// it never copies *every* frame, which is what SQLite needs to rewind the log, so the WAL
/// would grow without end. When it has grown, a restart checkpoint follows at once: it holds
/// writers only while it copies the few frames written during the passive pass, and the
/// next write starts the log from the beginning. The thread ends with the store.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<()>, wal: PathBuf) {
    const EVERY: Duration = Duration::from_millis(500);
    /// WAL size above which the log is rewound.
    const REWIND_ABOVE: u64 = 32 * 1024 * 1024;
    while alive.upgrade().is_some() {
        std::thread::sleep(EVERY);
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
            continue;
        }
        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        if size > REWIND_ABOVE
            && let Err(e) = conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
        {
            tracing::warn!(error = %e, "WAL restart checkpoint failed");
        }
    }
}

/// Creates `dir` (and its missing parents) readable by its owner only. A directory that
/// exists already keeps its permissions: it may be shared (a temporary directory), and what
/// this platform keeps in it is private by itself (the database and secrets 0600, the
/// workspaces in a 0700 folder).
pub fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::Io(format!("{}: {e}", dir.display())))
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
        // cost per commit. Checkpoints run on their own thread (see `checkpoint_loop`).
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")?;
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When SQLite rolls a whole group-commit transaction back under one write (as it may on
    /// a full disk; simulated here by a write that ends the transaction), every write is
    /// told the truth: reported stored means stored, reported failed means not stored.
    /// Before, the writes after it ran in autocommit mode, were stored one by one, and were
    /// reported failed (a session answered 500 yet created).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rolled_back_batch_never_reports_stored_writes_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        db.write(|tx, _| {
            tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")?;
            Ok(())
        })
        .await
        .unwrap();
        for round in 0..20 {
            let writes = (0..64).map(|i| {
                let db = db.clone();
                let id = round * 1000 + i;
                tokio::spawn(async move {
                    let r = db
                        .write(move |tx, _| {
                            tx.execute("INSERT INTO t (id) VALUES (?1)", [id])?;
                            if i == 20 {
                                tx.execute_batch("ROLLBACK")?;
                            }
                            Ok(())
                        })
                        .await;
                    (id, r.is_ok())
                })
            });
            let outcomes: Vec<(i64, bool)> = futures_join(writes).await;
            let stored: std::collections::HashSet<i64> = db
                .read(|c| {
                    let mut st = c.prepare("SELECT id FROM t")?;
                    let ids = st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
                    Ok(ids)
                })
                .await
                .unwrap();
            for (id, ok) in outcomes {
                assert_eq!(stored.contains(&id), ok, "write {id} reported ok={ok}");
            }
        }
        // The writer still works.
        db.write(|tx, _| Ok(tx.execute("INSERT INTO t (id) VALUES (-1)", [])?))
            .await
            .unwrap();
    }

    async fn futures_join<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
        let mut out = Vec::new();
        for t in tasks.collect::<Vec<_>>() {
            out.push(t.await.unwrap());
        }
        out
    }

    /// An existing directory keeps its permissions (a shared temporary directory was made
    /// 0700); a new one is private.
    #[test]
    fn private_dirs_leave_existing_ones_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
        create_private_dir(&shared).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&shared), 0o1777);
        let new = shared.join("ambient");
        create_private_dir(&new).unwrap();
        assert_eq!(mode(&new), 0o700);
    }

    /// A write that panics fails alone; the writer thread survives for the next ones.
    #[tokio::test]
    async fn a_panicking_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db")).unwrap();
        let r: Result<(), StoreError> = db.write(|_, _| panic!("a bug")).await;
        assert!(r.is_err());
        db.write(|tx, _| {
            tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY)")?;
            Ok(())
        })
        .await
        .expect("the writer lives on");
    }

    /// Writes never fail because a checkpoint rewound the log under them (a deferred
    /// transaction's stale snapshot cannot become a write one; an immediate one waits).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_concurrent_restart_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path).unwrap();
        db.write(|tx, _| {
            tx.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")?;
            Ok(())
        })
        .await
        .unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let c = open_conn(&path, false).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = c.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()));
                }
            })
        };
        // One transaction each, reading before writing (as the event appends do).
        let mut failed = Vec::new();
        for i in 0..1500 {
            let outcome = db
                .write(move |tx, _| {
                    let _: i64 = tx.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?;
                    tx.execute("INSERT INTO t (v) VALUES (?1)", [format!("row {i}")])?;
                    Ok(())
                })
                .await;
            if let Err(e) = outcome {
                failed.push(e);
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        checkpointer.join().unwrap();
        assert!(
            failed.is_empty(),
            "{} writes failed, e.g. {:?}",
            failed.len(),
            failed.first()
        );
        let n: i64 = db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 1500);
    }
}
