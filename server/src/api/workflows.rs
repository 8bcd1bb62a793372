//! Workflows: a session's workflow (its commands; a switch) and the catalogue the
//! new-session form offers.

use axum::Json;
use axum::extract::{Path, State};
use model::AgenticSession;
use model::api::ApiError as ErrorBody;
use model::session::{ActiveWorkflow, SessionKey};
use model::workflow::{Catalogue, WorkflowState};

use super::extract::ApiJson;
use platform::{ApiError, Caller, Services};

/// The session's workflow as its runner last found it: its name, description and slash
/// commands. Empty (no `gitUrl`) when the session has no workflow, or before a run of the
/// current one read it.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/workflow/metadata", tag = "workflows",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = WorkflowState), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn metadata(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<WorkflowState>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(
        s.workflow_metadata(&c, &key).await?.unwrap_or_default(),
    ))
}

/// Switches the session's workflow. A session that runs restarts in it at once, its
/// conversation kept (409 while its agent is in a turn or waits for an answer); a finished
/// one uses it when it continues. The transcript says who switched to what.
#[utoipa::path(post, path = "/api/projects/{project}/agentic-sessions/{session}/workflow", tag = "workflows",
    params(("project" = String, Path), ("session" = String, Path)), request_body = ActiveWorkflow,
    responses((status = 200, body = inline(Object), description = "The session (an AgenticSession)"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn set(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiJson(wf): ApiJson<ActiveWorkflow>,
) -> Result<Json<AgenticSession>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(s.set_workflow(&c, &key, Some(wf)).await?))
}

/// Leaves the session's workflow: as a switch, to none.
#[utoipa::path(delete, path = "/api/projects/{project}/agentic-sessions/{session}/workflow", tag = "workflows",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = inline(Object), description = "The session (an AgenticSession)"),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn clear(
    State(s): State<Services>,
    c: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<AgenticSession>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(s.set_workflow(&c, &key, None).await?))
}

/// The workflows of the catalogue (`AMBIENT_WORKFLOW_CATALOGUE`): each folder of its
/// `workflows/` with an `.ambient/ambient.json`. Read again every five minutes; `problem`
/// says why it could not be read.
#[utoipa::path(get, path = "/api/workflows/ootb", tag = "workflows",
    responses((status = 200, body = Catalogue), (status = 401, body = ErrorBody)))]
pub async fn catalogue(State(s): State<Services>, c: Caller) -> Json<Catalogue> {
    Json(s.workflow_catalogue(&c).await)
}
