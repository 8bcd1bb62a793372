//! `/api/projects[/{project}]`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{
    ApiError as ErrorBody, CreateProjectRequest, Project, ProjectList, UpdateProjectRequest,
};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use platform::{ApiError, Caller, Services};

/// Paging and search of a list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Case-insensitive text to look for.
    pub search: Option<String>,
    /// Items to skip. Default 0.
    pub offset: Option<u64>,
    /// Page size, 1–100. Default 20.
    pub limit: Option<u64>,
}

/// Lists projects by name.
#[utoipa::path(get, path = "/api/projects", tag = "projects", params(ListQuery),
    responses((status = 200, body = ProjectList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<Services>,
    c: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProjectList>, ApiError> {
    Ok(Json(
        s.list_projects(&c, q.search, q.offset, q.limit).await?,
    ))
}

/// Creates a project; its name must be a DNS-1123 label.
#[utoipa::path(post, path = "/api/projects", tag = "projects", request_body = CreateProjectRequest,
    responses((status = 201, body = Project), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<Services>,
    c: Caller,
    ApiJson(req): ApiJson<CreateProjectRequest>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.create_project(&c, req).await?)))
}

/// A project.
#[utoipa::path(get, path = "/api/projects/{project}", tag = "projects", params(("project" = String, Path)),
    responses((status = 200, body = Project), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(s.get_project(&c, &project).await?))
}

/// Changes a project's display name or description.
#[utoipa::path(put, path = "/api/projects/{project}", tag = "projects", params(("project" = String, Path)),
    request_body = UpdateProjectRequest,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<UpdateProjectRequest>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(s.update_project(&c, &project, req).await?))
}

/// Deletes a project: its sessions are stopped and removed with their workspaces.
#[utoipa::path(delete, path = "/api/projects/{project}", tag = "projects", params(("project" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_project(&c, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}
