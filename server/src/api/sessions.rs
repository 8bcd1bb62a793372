//! `/api/projects/{project}/agentic-sessions[/{session}]`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::AgenticSession;
use model::api::{
    ApiError as ErrorBody, CloneSessionRequest, CreateSessionRequest, CreateSessionResponse,
    DisplayNameRequest, ForkSessionRequest, SessionList, SessionTurn, UpdateSessionRequest,
};

use super::extract::{ApiJson, ApiQuery};
use model::session::SessionKey;
use platform::{ApiError, Caller, Services};
use serde::Deserialize;

/// Paging and search of the session list, or the sessions waiting for a person.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionListQuery {
    /// Case-insensitive text to look for.
    pub search: Option<String>,
    /// Items to skip. Default 0.
    pub offset: Option<u64>,
    /// Page size, 1–100. Default 20.
    pub limit: Option<u64>,
    /// Only the running sessions whose agent waits for a person (it answered every message,
    /// or asked something), the one waiting longest first.
    pub waiting: Option<bool>,
}

/// Lists a project's sessions, newest first; `search` looks in name, display name and
/// prompt. With `waiting=true`, the sessions waiting for a person instead.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions", tag = "sessions",
    params(("project" = String, Path), SessionListQuery),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiQuery(q): ApiQuery<SessionListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    if q.waiting == Some(true) {
        return Ok(Json(
            s.waiting_sessions(&c, &project, q.search, q.offset, q.limit)
                .await?,
        ));
    }
    Ok(Json(
        s.list_sessions(&c, &project, q.search, q.offset, q.limit)
            .await?,
    ))
}

/// Creates a session (`session-<uuid>`) and starts it.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions", tag = "sessions",
    params(("project" = String, Path)), request_body = CreateSessionRequest,
    responses((status = 201, body = CreateSessionResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<Services>,
    caller: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_session(&caller, &project, req).await?),
    ))
}

/// A session.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = inline(Object), description = "An AgenticSession (see components.schemas.AgenticSession)"),
        (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<AgenticSession>, ApiError> {
    Ok(Json(
        s.get_session(&c, &SessionKey::new(project, name)).await?,
    ))
}

/// Changes a session's prompt, display name, model or timeouts; 409 while it runs.
#[utoipa::path(put, path = "/api/projects/{project}/agentic-sessions/{session}", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)), request_body = UpdateSessionRequest,
    responses((status = 200, body = inline(Object), description = "The updated AgenticSession"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateSessionRequest>,
) -> Result<Json<AgenticSession>, ApiError> {
    Ok(Json(
        s.update_session(&c, &SessionKey::new(project, name), req)
            .await?,
    ))
}

/// Deletes a session: its runner and every process it started are killed, its workspace
/// removed.
#[utoipa::path(delete, path = "/api/projects/{project}/agentic-sessions/{session}", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_session(&c, &SessionKey::new(project, name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Renames a session.
#[utoipa::path(put, path = "/api/projects/{project}/agentic-sessions/{session}/displayname", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)), request_body = DisplayNameRequest,
    responses((status = 200, body = inline(Object), description = "The updated AgenticSession"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn display_name(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<DisplayNameRequest>,
) -> Result<Json<AgenticSession>, ApiError> {
    Ok(Json(
        s.set_display_name(&c, &SessionKey::new(project, name), req.display_name)
            .await?,
    ))
}

/// Copies a session's spec into a new session, in this project or another.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/clone", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)), request_body = CloneSessionRequest,
    responses((status = 201, body = CreateSessionResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn clone(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<CloneSessionRequest>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            s.clone_session(&caller, &SessionKey::new(project, name), req)
                .await?,
        ),
    ))
}

/// The session's finished turns, oldest first: the start of each answer, whether it
/// failed, and whether a fork can continue after it (`POST …/fork` with its `turn`).
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/turns", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = Vec<SessionTurn>), (status = 404, body = ErrorBody)))]
pub async fn turns(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<Vec<SessionTurn>>, ApiError> {
    Ok(Json(
        s.session_turns(&c, &SessionKey::new(project, name)).await?,
    ))
}

/// Forks a session after one of its turns (default: its last): a new session in the same
/// project that starts from a copy of its workspace and continues its conversation as it
/// stood after that turn, with `prompt` as its first message. Its repositories, model,
/// workflow and settings are the source's; the source may be running. Edit role.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/fork", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)), request_body = ForkSessionRequest,
    responses((status = 201, body = CreateSessionResponse), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn fork(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<ForkSessionRequest>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            s.fork_session(&caller, &SessionKey::new(project, name), req)
                .await?,
        ),
    ))
}

/// The session's MCP servers as its agent last reported them: each server's state
/// (`connected`, `failed`, `needs-auth`, `pending`) and the tools it brought. Empty before
/// a run with MCP servers reported any.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/mcp/status", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = model::protocol::McpStatus), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn mcp_status(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<model::protocol::McpStatus>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(s.mcp_status(&c, &key).await?.unwrap_or_default()))
}
