//! The server side of the UI's server functions: a port the server implements and provides
//! through Leptos context, so this crate never depends on the server.

use std::sync::Arc;

use axum::http::HeaderMap;
use model::AgenticSession;
use model::api::{CreateSessionRequest, CreateSessionResponse, SessionList};
use model::protocol::StoredEvent;

use crate::error::AppError;

/// The operations the UI needs, each authorised with the request's headers.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A page of a project's sessions, newest first.
    async fn list_sessions(
        &self,
        headers: &HeaderMap,
        project: &str,
        search: Option<String>,
        offset: u64,
        limit: u64,
    ) -> Result<SessionList, AppError>;

    /// Creates a session.
    async fn create_session(
        &self,
        headers: &HeaderMap,
        project: &str,
        req: CreateSessionRequest,
    ) -> Result<CreateSessionResponse, AppError>;

    /// A session.
    async fn get_session(
        &self,
        headers: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<AgenticSession, AppError>;

    /// A session's event log.
    async fn events(
        &self,
        headers: &HeaderMap,
        project: &str,
        name: &str,
    ) -> Result<Vec<StoredEvent>, AppError>;
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
