//! What a driver needs from the session store. The server implements it over SQLite in local
//! mode; a Kubernetes implementation maps it to custom resources.

use std::future::Future;
use std::path::PathBuf;

use model::AgenticSession;
use model::session::{McpServers, RunSummary};

use crate::lifecycle::Plan;

/// Identifies a session: its project (namespace) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Project (namespace) name.
    pub project: String,
    /// Session name.
    pub name: String,
}

impl SessionKey {
    /// A key from its parts.
    pub fn new(project: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.project, self.name)
    }
}

/// A runner process as recorded when it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerProcess {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22), so that a reused
    /// pid is not mistaken for the runner.
    pub start_ticks: u64,
}

/// A session as the driver sees it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The session resource.
    pub session: AgenticSession,
    /// Version of the stored session; [`SessionStore::save`] fails with
    /// [`StoreError::Conflict`] when it changed since.
    pub resource_version: u64,
    /// Current runner generation (0 before the first start).
    pub generation: u64,
    /// Process recorded for the current generation, if any.
    pub runner: Option<RunnerProcess>,
    /// Whether the current generation's runner is connected to the server.
    pub connected: bool,
    /// Totals from the current generation's final result event, if it sent one.
    pub summary: Option<RunSummary>,
    /// The project's inactivity timeout, if it sets one.
    pub project_inactivity_timeout: Option<i64>,
    /// The session's workspace directory.
    pub workspace: PathBuf,
}

/// What a new run needs from the store.
#[derive(Debug, Clone)]
pub struct RunTicket {
    /// The new generation.
    pub generation: u64,
    /// The new runner token (only its hash is stored).
    pub token: String,
    /// Highest user-message `seq` handled before this run starts.
    pub handled_through: u64,
    /// Whether the run continues an earlier conversation: a resume is asked for, but a
    /// session whose agent never started has nothing to resume and runs fresh.
    pub resume: bool,
    /// Model and git credentials for the runner's environment.
    pub credentials: Vec<(String, String)>,
    /// The project's MCP servers.
    pub project_mcp_servers: Option<McpServers>,
}

/// Failures of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The session changed since it was loaded; plan again.
    #[error("the session changed concurrently")]
    Conflict,
    /// Anything else; retried later.
    #[error("store failure: {0}")]
    Other(String),
}

/// The store operations a driver uses. Futures are `Send` so drivers can run on any thread.
pub trait SessionStore: Clone + Send + Sync + 'static {
    /// Sessions that may need the driver: not terminal, or with a desired phase set.
    fn unfinished(&self) -> impl Future<Output = Result<Vec<SessionKey>, StoreError>> + Send;

    /// The session and its runner bookkeeping; `None` once it is deleted.
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// Applies a plan's status, annotation clearing and phase event atomically, if the
    /// session is still at `resource_version`.
    fn save(
        &self,
        key: &SessionKey,
        resource_version: u64,
        plan: &Plan,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts a new generation: a fresh runner token, and what the runner needs to start.
    fn begin_run(
        &self,
        key: &SessionKey,
        resume: bool,
    ) -> impl Future<Output = Result<RunTicket, StoreError>> + Send;

    /// Records the process started for `generation`.
    fn record_runner(
        &self,
        key: &SessionKey,
        generation: u64,
        process: RunnerProcess,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}
