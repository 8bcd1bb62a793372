//! `/api/projects/{project}/runner-secrets` and `/settings`.

use axum::Json;
use axum::extract::{Path, State};
use model::api::{ApiError as ErrorBody, ProjectSettingsBody, RunnerSecrets, UpdateRunnerSecrets};

use super::extract::ApiJson;
use platform::{ApiError, Caller, Services};

/// The project's credentials, masked.
#[utoipa::path(get, path = "/api/projects/{project}/runner-secrets", tag = "projects", params(("project" = String, Path)),
    responses((status = 200, body = RunnerSecrets), (status = 404, body = ErrorBody)))]
pub async fn get_secrets(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<RunnerSecrets>, ApiError> {
    Ok(Json(s.runner_secrets(&c, &project).await?))
}

/// Sets (a value) or removes (`null` or `""`) credentials; returns them masked.
#[utoipa::path(put, path = "/api/projects/{project}/runner-secrets", tag = "projects", params(("project" = String, Path)),
    request_body = UpdateRunnerSecrets,
    responses((status = 200, body = RunnerSecrets), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_secrets(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<UpdateRunnerSecrets>,
) -> Result<Json<RunnerSecrets>, ApiError> {
    Ok(Json(s.update_runner_secrets(&c, &project, req).await?))
}

/// The project's session defaults.
#[utoipa::path(get, path = "/api/projects/{project}/settings", tag = "projects", params(("project" = String, Path)),
    responses((status = 200, body = ProjectSettingsBody), (status = 404, body = ErrorBody)))]
pub async fn get_settings(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<ProjectSettingsBody>, ApiError> {
    Ok(Json(s.project_settings(&c, &project).await?))
}

/// Replaces the project's session defaults.
#[utoipa::path(put, path = "/api/projects/{project}/settings", tag = "projects", params(("project" = String, Path)),
    request_body = ProjectSettingsBody,
    responses((status = 200, body = ProjectSettingsBody), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn put_settings(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<ProjectSettingsBody>,
) -> Result<Json<ProjectSettingsBody>, ApiError> {
    Ok(Json(s.update_project_settings(&c, &project, body).await?))
}
