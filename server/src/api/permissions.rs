//! Sharing a project with the cluster's people and groups (Kubernetes mode):
//! `/api/projects/{project}/permissions[/{subjectType}/{subjectName}]`, as the original's
//! routes. Admins only; local mode answers 404 (it has no people to share with: it shares
//! with project keys).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{ApiError as ErrorBody, GrantRequest, Permission};
use platform::{ApiError, Caller, Services};

use super::extract::ApiJson;

/// Who the project is shared with: every user and group bound to a project role in its
/// namespace, with the role and where it comes from. Admin; Kubernetes mode.
#[utoipa::path(get, path = "/api/projects/{project}/permissions", tag = "sharing", params(("project" = String, Path)),
    responses((status = 200, body = Vec<Permission>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
) -> Result<Json<Vec<Permission>>, ApiError> {
    Ok(Json(s.permissions(&c, &project).await?))
}

/// Gives a user or group a role in the project (a RoleBinding to `ambient-project-<role>`),
/// replacing the role given to it here before. Admin; Kubernetes mode.
#[utoipa::path(post, path = "/api/projects/{project}/permissions", tag = "sharing", params(("project" = String, Path)),
    request_body = GrantRequest,
    responses((status = 201, body = Permission), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn grant(
    State(s): State<Services>,
    c: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<GrantRequest>,
) -> Result<(StatusCode, Json<Permission>), ApiError> {
    Ok((StatusCode::CREATED, Json(s.grant(&c, &project, req).await?)))
}

/// Takes back the role given to a user or group on the Sharing page (409 when its role
/// comes from elsewhere: the project's groupAccess, or a RoleBinding made outside). Admin;
/// Kubernetes mode.
#[utoipa::path(delete, path = "/api/projects/{project}/permissions/{subjectType}/{subjectName}", tag = "sharing",
    params(("project" = String, Path), ("subjectType" = String, Path, description = "user or group"),
        ("subjectName" = String, Path)),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<Services>,
    c: Caller,
    Path((project, subject_type, subject_name)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    s.revoke_permission(&c, &project, &subject_type, &subject_name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
