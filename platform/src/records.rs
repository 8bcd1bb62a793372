//! The records seam: where sessions, projects, project settings and credentials live. The
//! SQLite implementation ([`SqliteRecords`]) serves local mode; the Kubernetes one
//! ([`KubeRecords`]) maps the same operations to `AgenticSession` resources, namespaces,
//! `ProjectSettings` and the `ambient-runner-secrets` Secret. Event logs are not records: they stay in the
//! server's own store ([`crate::log`]) in both modes.
//!
//! Every method takes the [`Caller`], so an implementation can act with the caller's own
//! identity. Resource versions are opaque strings (`metadata.resourceVersion`); a write
//! that names one fails with [`RecordsError::Conflict`] when the record changed since.

pub mod cluster;
pub mod sqlite;

use model::AgenticSession;
use model::api::{GrantRequest, Permission, Project, ProjectList, SessionList, SubjectType};
use model::project_settings::ProjectSettingsSpec;
use model::runner_env::Credentials;
use model::session::SessionKey;

pub use cluster::KubeRecords;
pub use sqlite::SqliteRecords;

use crate::auth::Caller;
use crate::db::StoreError;
use crate::error::ApiError;

/// Failures of a records backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecordsError {
    /// No such project or session (the text names it).
    #[error("{0} not found")]
    NotFound(String),
    /// It exists already, or it changed since it was read.
    #[error("{0}")]
    Conflict(String),
    /// The caller's own identity may not read it (Kubernetes mode reads as the caller).
    #[error("{0}")]
    Forbidden(String),
    /// The backend found the request invalid (the text says why).
    #[error("{0}")]
    Invalid(String),
    /// The caller's own credentials are no longer accepted by the backend.
    #[error("{0}")]
    Unauthorized(String),
    /// This backend does not have it (the text says what to do instead): 404.
    #[error("{0}")]
    Unsupported(String),
    /// The backend failed (details for the log, not for users).
    #[error("{0}")]
    Backend(String),
}

/// The one mapping of the API server's answers (Kubernetes mode): not found, forbidden and
/// conflicts as such; the caller's own token no longer accepted (it reads with its own); a
/// request the API server finds invalid; anything else a failure.
impl From<kube::Error> for RecordsError {
    fn from(e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) if s.is_not_found() => RecordsError::NotFound(s.message),
            kube::Error::Api(s) if s.is_forbidden() => RecordsError::Forbidden(s.message),
            kube::Error::Api(s) if s.code == 409 => RecordsError::Conflict(s.message),
            kube::Error::Api(s) if s.code == 401 => RecordsError::Unauthorized(
                "the cluster no longer accepts your token: sign in again".into(),
            ),
            kube::Error::Api(s) if s.code == 422 => RecordsError::Invalid(s.message),
            other => RecordsError::Backend(other.to_string()),
        }
    }
}

/// The embedded store's failures (local mode).
impl From<StoreError> for RecordsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => RecordsError::NotFound(what),
            StoreError::Conflict(why) => RecordsError::Conflict(why),
            other => RecordsError::Backend(other.to_string()),
        }
    }
}

/// What the API answers for each.
impl From<RecordsError> for ApiError {
    fn from(e: RecordsError) -> Self {
        match e {
            RecordsError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            RecordsError::Conflict(why) => ApiError::Conflict(why),
            RecordsError::Forbidden(why) => ApiError::Forbidden(why),
            // What this mode does not have is no resource here.
            RecordsError::Unsupported(why) => ApiError::NotFound(why),
            RecordsError::Invalid(why) => ApiError::Invalid(why),
            RecordsError::Unauthorized(why) => ApiError::Unauthorized(why),
            RecordsError::Backend(why) => {
                tracing::error!(error = %why, "records failure");
                ApiError::Internal
            }
        }
    }
}

/// A session with the bookkeeping of its current run.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The session; `metadata.uid` keys its event log, `metadata.resourceVersion` is set.
    pub session: AgenticSession,
    /// Its current run.
    pub run: Run,
}

/// The current run of a session: which start it is, and the hash of its runner's token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Run {
    /// 0 before the first start, then 1, 2 ... one per start.
    pub generation: u64,
    /// SHA-256 of the current runner token (the token itself is never stored).
    pub token_hash: Option<Vec<u8>>,
}

/// A session removed with its project, or on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its name.
    pub name: String,
    /// Its uid (keys its event log).
    pub uid: String,
}

/// A page of a list: an optional search, an offset and a size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// Substring to look for (names, display names, prompts); blank means none.
    pub search: Option<String>,
    /// Items to skip.
    pub offset: u64,
    /// Most items.
    pub limit: u64,
}

/// A new project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProject {
    /// DNS-1123 name.
    pub name: String,
    /// Name shown in the UI.
    pub display_name: String,
    /// Free text.
    pub description: String,
}

/// Why local mode refuses to share with people.
pub const NO_PEOPLE: &str = "projects are shared with people and groups in Kubernetes mode; in local mode, give a project key with a role";

/// Result of the records operations.
pub type Result<T, E = RecordsError> = std::result::Result<T, E>;

/// Where sessions, projects, settings and credentials live.
#[async_trait::async_trait]
pub trait Records: Send + Sync + 'static {
    /// Creates a project; [`RecordsError::Conflict`] if the name is taken.
    async fn create_project(&self, caller: &Caller, project: NewProject) -> Result<Project>;

    /// Who the project is shared with: the cluster's users and groups and their roles
    /// (Kubernetes mode). Local mode has one owner and shares with project keys only.
    async fn permissions(&self, _caller: &Caller, _project: &str) -> Result<Vec<Permission>> {
        Err(RecordsError::Unsupported(NO_PEOPLE.into()))
    }
    /// Gives a user or group a role in the project, replacing the one given before.
    async fn grant(
        &self,
        _caller: &Caller,
        _project: &str,
        _grant: &GrantRequest,
    ) -> Result<Permission> {
        Err(RecordsError::Unsupported(NO_PEOPLE.into()))
    }
    /// Takes back what was given to a user or group in the project;
    /// [`RecordsError::NotFound`] if nothing was.
    async fn revoke(
        &self,
        _caller: &Caller,
        _project: &str,
        _subject_type: SubjectType,
        _subject_name: &str,
    ) -> Result<()> {
        Err(RecordsError::Unsupported(NO_PEOPLE.into()))
    }
    /// A project.
    async fn get_project(&self, caller: &Caller, name: &str) -> Result<Project>;
    /// A page of projects by name.
    async fn list_projects(&self, caller: &Caller, page: &Page) -> Result<ProjectList>;
    /// Changes a project's display name and description (`None` keeps a value).
    async fn update_project(
        &self,
        caller: &Caller,
        name: &str,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Project>;
    /// Deletes a project with its sessions, settings and credentials; returns the sessions.
    async fn delete_project(&self, caller: &Caller, name: &str) -> Result<Vec<Removed>>;

    /// A project's settings.
    async fn project_settings(&self, caller: &Caller, project: &str)
    -> Result<ProjectSettingsSpec>;
    /// Replaces a project's settings.
    async fn set_project_settings(
        &self,
        caller: &Caller,
        project: &str,
        settings: ProjectSettingsSpec,
    ) -> Result<()>;
    /// A project's own credentials (its runner secrets).
    async fn credentials(&self, caller: &Caller, project: &str) -> Result<Credentials>;
    /// Sets (`Some`) or removes (`None`) some of a project's credentials, atomically. Keys are
    /// among [`Credentials::KEYS`].
    async fn update_credentials(
        &self,
        caller: &Caller,
        project: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()>;

    /// Stores a new session (its `metadata.uid` set by the caller); [`RecordsError::Conflict`]
    /// if its name is taken in the project.
    async fn create_session(
        &self,
        caller: &Caller,
        session: AgenticSession,
    ) -> Result<SessionRecord>;
    /// A session.
    async fn get_session(&self, caller: &Caller, key: &SessionKey) -> Result<SessionRecord>;

    /// How many sessions each project has in each phase: `(project, phase, count)`, over
    /// the whole installation (the server's own view, for its metrics; no caller's).
    async fn phase_counts(&self) -> Result<Vec<(String, String, u64)>>;
    /// A page of a project's sessions, newest first.
    async fn list_sessions(
        &self,
        caller: &Caller,
        project: &str,
        page: &Page,
    ) -> Result<SessionList>;
    /// Writes a session's metadata and spec back (its status is left alone), if it is still
    /// at its `metadata.resourceVersion`. A changed spec bumps `metadata.generation`.
    async fn replace_session(
        &self,
        caller: &Caller,
        session: AgenticSession,
    ) -> Result<SessionRecord>;
    /// Deletes a session.
    async fn delete_session(&self, caller: &Caller, key: &SessionKey) -> Result<Removed>;
    /// Records the id of the agent's conversation (what a continued session resumes).
    async fn set_sdk_session_id(
        &self,
        caller: &Caller,
        key: &SessionKey,
        sdk_session_id: &str,
    ) -> Result<()>;
}

/// Changes a session with `f` and writes it back, reading again and retrying when it changed
/// concurrently. `f` may refuse with an error; it may run more than once.
pub async fn update_session<F, E>(
    records: &dyn Records,
    caller: &Caller,
    key: &SessionKey,
    mut f: F,
) -> std::result::Result<SessionRecord, E>
where
    F: FnMut(&mut AgenticSession) -> std::result::Result<(), E> + Send,
    E: From<RecordsError>,
{
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut session = records.get_session(caller, key).await?.session;
        f(&mut session)?;
        match records.replace_session(caller, session).await {
            Err(RecordsError::Conflict(_)) if attempt < ATTEMPTS => continue,
            other => return Ok(other?),
        }
    }
}
