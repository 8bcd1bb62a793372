//! The server side of the UI's server functions: a port the server implements and provides
//! through Leptos context, so this crate never depends on the server.

use std::sync::Arc;

use axum::http::HeaderMap;
use model::api::{
    CreateProjectRequest, CreateSessionRequest, CreateSessionResponse, Project, ProjectList,
    ProjectSettingsBody, RunnerSecrets, SessionSummaries, SessionSummary, UpdateRunnerSecrets,
};
use model::protocol::StoredEvent;

use crate::error::AppError;
use crate::pages::Models;
use crate::pages::project::SessionAction;

/// The operations the UI needs, each authorised with the request's headers.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A page of projects by name.
    async fn list_projects(
        &self,
        h: &HeaderMap,
        search: Option<String>,
        offset: u64,
    ) -> Result<ProjectList, AppError>;
    /// Creates a project.
    async fn create_project(
        &self,
        h: &HeaderMap,
        req: CreateProjectRequest,
    ) -> Result<Project, AppError>;
    /// Deletes a project and its sessions.
    async fn delete_project(&self, h: &HeaderMap, name: &str) -> Result<(), AppError>;
    /// A page of a project's sessions, newest first.
    async fn list_sessions(
        &self,
        h: &HeaderMap,
        project: &str,
        search: Option<String>,
        offset: u64,
        limit: u64,
    ) -> Result<SessionSummaries, AppError>;
    /// Creates a session.
    async fn create_session(
        &self,
        h: &HeaderMap,
        project: &str,
        req: CreateSessionRequest,
    ) -> Result<CreateSessionResponse, AppError>;
    /// A session.
    async fn session(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<SessionSummary, AppError>;
    /// A session's event log.
    async fn events(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<Vec<StoredEvent>, AppError>;
    /// Stops, continues, deletes or clones a session; a clone's name is returned.
    async fn act(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
        action: SessionAction,
    ) -> Result<Option<String>, AppError>;
    /// Renames a session.
    async fn rename(
        &self,
        h: &HeaderMap,
        project: &str,
        name: &str,
        display_name: String,
    ) -> Result<(), AppError>;
    /// Models sessions may use.
    async fn models(&self, h: &HeaderMap) -> Result<Models, AppError>;
    /// A project's credentials (masked) and session defaults.
    async fn settings(
        &self,
        h: &HeaderMap,
        project: &str,
    ) -> Result<(RunnerSecrets, ProjectSettingsBody), AppError>;
    /// Sets or removes credentials of a project.
    async fn save_secrets(
        &self,
        h: &HeaderMap,
        project: &str,
        req: UpdateRunnerSecrets,
    ) -> Result<RunnerSecrets, AppError>;
    /// Replaces a project's session defaults.
    async fn save_settings(
        &self,
        h: &HeaderMap,
        project: &str,
        body: ProjectSettingsBody,
    ) -> Result<ProjectSettingsBody, AppError>;
}

/// How server functions find the backend.
pub type BackendRef = Arc<dyn Backend>;

/// The backend of the current request, and its headers.
pub async fn backend() -> Result<(BackendRef, HeaderMap), AppError> {
    let backend = leptos::prelude::use_context::<BackendRef>()
        .ok_or_else(|| AppError::new("internal", "the server did not provide its backend"))?;
    let headers: HeaderMap = leptos_axum::extract()
        .await
        .map_err(|e| AppError::new("internal", e.to_string()))?;
    Ok((backend, headers))
}
