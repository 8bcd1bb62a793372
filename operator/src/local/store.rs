//! What the local driver needs from the server: the sessions to run, and a place to record
//! what it decided. The server implements it over its records and event log
//! (`platform::local`). A Kubernetes controller needs none of this: it reads and writes the
//! `AgenticSession` resources themselves.

use std::future::Future;

use model::AgenticSession;
use model::runner_env::Credentials;
use model::session::{McpServers, RunSummary, SessionKey};

use crate::lifecycle::Plan;
use k8s_openapi::jiff::Timestamp;

/// A session as the driver sees it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The session: `metadata.resourceVersion` set, its last activity in its status.
    pub session: AgenticSession,
    /// Current run generation (0 before the first start).
    pub generation: u64,
    /// Whether the current generation's runner is connected to the server.
    pub connected: bool,
    /// Totals from the current generation's final result event, if it sent one.
    pub summary: Option<RunSummary>,
    /// Whether user messages wait that no agent has handled.
    pub unhandled_messages: bool,
    /// The project's inactivity timeout, if it sets one.
    pub project_inactivity_timeout: Option<i64>,
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
    /// Model and git credentials for the runner's environment.
    pub credentials: Credentials,
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

/// The store operations the local driver uses. Futures are `Send` so the driver can run on
/// any thread.
pub trait SessionStore: Clone + Send + Sync + 'static {
    /// Sessions that may need the driver: not terminal, or with a desired phase set.
    fn unfinished(&self) -> impl Future<Output = Result<Vec<SessionKey>, StoreError>> + Send;

    /// The session and what the server knows of its run; `None` once it is deleted.
    fn load(
        &self,
        key: &SessionKey,
    ) -> impl Future<Output = Result<Option<Loaded>, StoreError>> + Send;

    /// Applies a plan's status, annotation clearing and phase event, if the session is still
    /// as it was loaded.
    fn save(
        &self,
        loaded: &Loaded,
        plan: &Plan,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Starts a new generation: a fresh runner token, and what the runner needs to start.
    fn begin_run(
        &self,
        loaded: &Loaded,
        resume: bool,
    ) -> impl Future<Output = Result<RunTicket, StoreError>> + Send;

    /// Makes a new files-runner token for the session (only its hash is stored, in
    /// `status.filesTokenHash`), replacing any earlier one.
    fn begin_files(
        &self,
        loaded: &Loaded,
    ) -> impl Future<Output = Result<String, StoreError>> + Send;

    /// The running sessions whose agent has answered every message and waits for a person,
    /// with the time it started waiting (what the server's hub knows of its runners).
    fn idle_agents(&self) -> Vec<(SessionKey, Timestamp)> {
        Vec::new()
    }
}
