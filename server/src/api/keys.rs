//! Access keys: the owner's (`/api/keys[/{id}]`, every project) and each project's
//! (`/api/projects/{project}/keys[/{id}]`, one role in it); and what the caller may do in a
//! project (`/api/projects/{project}/access`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{
    AccessKey, ApiError as ErrorBody, CreateAccessKeyRequest, CreatedAccessKey, ProjectAccess,
};
use platform::{ApiError, Caller, Services};

use super::extract::ApiJson;

/// A key id from the path; anything but a positive integer is no key.
fn key_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("access key {id}")))
}

/// Lists the owner's access keys (never their values). Owner only.
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, body = Vec<AccessKey>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(State(s): State<Services>, c: Caller) -> Result<Json<Vec<AccessKey>>, ApiError> {
    Ok(Json(s.access_keys(&c, None).await?))
}

/// Makes an owner's access key (every project, every role); the answer holds the key, shown
/// this once. Owner only.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = CreateAccessKeyRequest,
    responses((status = 201, body = CreatedAccessKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<Services>,
    c: Caller,
    ApiJson(req): ApiJson<CreateAccessKeyRequest>,
) -> Result<(StatusCode, Json<CreatedAccessKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_access_key(&c, None, req).await?),
    ))
}

/// Revokes an owner's access key: it is refused from the next request on, and browsers
/// signed in with it are signed out. Owner only.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<Services>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.revoke_access_key(&c, None, key_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists a project's access keys, with their roles, expiry and last use. Admin.
#[utoipa::path(get, path = "/api/projects/{project}/keys", tag = "keys", params(("project" = String, Path)),
    responses((status = 200, body = Vec<AccessKey>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn list_project(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<Vec<AccessKey>>, ApiError> {
    Ok(Json(s.access_keys(&c, Some(&project)).await?))
}

/// Makes a key that opens this project with a role (default `edit`), optionally expiring;
/// the answer holds the key, shown this once. Admin.
#[utoipa::path(post, path = "/api/projects/{project}/keys", tag = "keys", params(("project" = String, Path)),
    request_body = CreateAccessKeyRequest,
    responses((status = 201, body = CreatedAccessKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn create_project(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<CreateAccessKeyRequest>,
) -> Result<(StatusCode, Json<CreatedAccessKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_access_key(&c, Some(&project), req).await?),
    ))
}

/// Revokes a project's access key: refused from the next request on. Admin.
#[utoipa::path(delete, path = "/api/projects/{project}/keys/{id}", tag = "keys",
    params(("project" = String, Path), ("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke_project(
    State(s): State<Services>,
    c: Caller,
    Path((project, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    s.revoke_access_key(&c, Some(&project), key_id(&id)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What the caller may do in a project: its role, or why it has none (the UI hides what
/// the role does not allow).
#[utoipa::path(get, path = "/api/projects/{project}/access", tag = "keys", params(("project" = String, Path)),
    responses((status = 200, body = ProjectAccess), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn access(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<ProjectAccess>, ApiError> {
    Ok(Json(s.project_access(&c, &project).await?))
}
