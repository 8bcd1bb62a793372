//! `/api/projects/...`

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{CreateProjectRequest, Project, ProjectList, UpdateProjectRequest};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery};
use crate::error::ApiError;
use crate::services::{Caller, Services};

/// Query of the project list.
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
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ProjectList>, ApiError> {
    Ok(Json(s.list_projects(q.search, q.offset, q.limit).await?))
}

pub async fn create(
    State(s): State<Services>,
    _caller: Caller,
    ApiJson(req): ApiJson<CreateProjectRequest>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.create_project(req).await?)))
}

pub async fn get(
    State(s): State<Services>,
    _caller: Caller,
    Path(project): Path<String>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(s.get_project(&project).await?))
}

pub async fn update(
    State(s): State<Services>,
    _caller: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<UpdateProjectRequest>,
) -> Result<Json<Project>, ApiError> {
    Ok(Json(s.update_project(&project, req).await?))
}

pub async fn delete(
    State(s): State<Services>,
    _caller: Caller,
    Path(project): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.delete_project(&project).await?;
    Ok(StatusCode::NO_CONTENT)
}
