//! Steering: `start` (continue), `stop`, `interrupt`, `messages`, and `export`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::AgenticSession;
use model::api::{ApiError as ErrorBody, MessageAccepted, SendMessageRequest};

use super::extract::ApiJson;
use model::session::SessionKey;
use platform::{ApiError, Caller, Services};

/// Starts a finished session again; the agent continues its conversation.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/start", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202, body = inline(Object), description = "The AgenticSession, start requested"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.start(&caller, &SessionKey::new(project, name)).await?),
    ))
}

/// Stops a session: the runner is told, then terminated with everything it started.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/stop", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202, body = inline(Object), description = "The AgenticSession, stop requested"),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.stop(&caller, &SessionKey::new(project, name)).await?),
    ))
}

/// Interrupts the agent's current turn; the session goes on.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/interrupt", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 202), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn interrupt(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.interrupt(&caller, &SessionKey::new(project, name))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// Sends a follow-up message; a finished session is continued with it.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/messages", tag = "control",
    params(("project" = String, Path), ("session" = String, Path)), request_body = SendMessageRequest,
    responses((status = 202, body = MessageAccepted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn send_message(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(req): ApiJson<SendMessageRequest>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let seq = s
        .send_message(&caller, &SessionKey::new(project, name), req.text)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAccepted { seq })))
}

/// The session and its whole event log.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/export", tag = "sessions",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = inline(Object), description = "{sessionId, projectName, exportDate, session, events}"),
        (status = 404, body = ErrorBody)))]
pub async fn export(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let key = SessionKey::new(&project, &name);
    let session = s.get_session(&c, &key).await?;
    let events = s.events(&c, &key).await?;
    Ok(Json(serde_json::json!({
        "sessionId": name,
        "projectName": project,
        "exportDate": k8s_openapi::jiff::Timestamp::now().to_string(),
        "session": session,
        "events": events,
    })))
}
