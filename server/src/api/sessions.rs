//! `/api/projects/{project}/agentic-sessions/...`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use model::AgenticSession;
use model::api::{CreateSessionRequest, CreateSessionResponse, SessionList};
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, ApiQuery};
use crate::error::ApiError;
use crate::services::{Caller, Services};

/// Query of the session list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    search: Option<String>,
    offset: Option<u64>,
    limit: Option<u64>,
}

pub async fn list(
    State(s): State<Services>,
    _caller: Caller,
    Path(project): Path<String>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<SessionList>, ApiError> {
    Ok(Json(
        s.list_sessions(&project, q.search, q.offset, q.limit)
            .await?,
    ))
}

pub async fn create(
    State(s): State<Services>,
    caller: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_session(&project, req, &caller).await?),
    ))
}

pub async fn get(
    State(s): State<Services>,
    _caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<AgenticSession>, ApiError> {
    Ok(Json(s.get_session(&project, &name).await?))
}

pub async fn delete(
    State(s): State<Services>,
    _caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.delete_session(&project, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn start(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.start(&project, &name, &caller).await?),
    ))
}

pub async fn stop(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<(StatusCode, Json<AgenticSession>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(s.stop(&project, &name, &caller).await?),
    ))
}

pub async fn interrupt(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.interrupt(&project, &name, &caller).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Body of `POST .../messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    text: String,
}

/// Answer to `POST .../messages`.
#[derive(Debug, Serialize)]
pub struct MessageAccepted {
    seq: u64,
}

pub async fn send_message(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<MessageBody>,
) -> Result<(StatusCode, Json<MessageAccepted>), ApiError> {
    let seq = s.send_message(&project, &name, body.text, &caller).await?;
    Ok((StatusCode::ACCEPTED, Json(MessageAccepted { seq })))
}

pub async fn export(
    State(s): State<Services>,
    _caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let session = s.get_session(&project, &name).await?;
    let events = s.events(&project, &name).await?;
    Ok(Json(serde_json::json!({
        "sessionId": name,
        "projectName": project,
        "exportDate": k8s_openapi::jiff::Timestamp::now().to_string(),
        "session": session,
        "events": events,
    })))
}
