//! `/api/projects/{project}/attempts[/{group}[/keep]]`: "run N", compared, one kept.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{
    ApiError as ErrorBody, AttemptGroup, AttemptsCreated, CreateAttemptsRequest, KeepAttemptRequest,
};
use platform::{ApiError, Caller, Services};

use super::extract::ApiJson;

/// Starts 2 to 5 sessions from one request ("run N") to compare their work and keep one.
/// Each is a batch session (it completes after answering) named `<group>-<n>`, whose work
/// is held (committed in its workspace and reported, not pushed) until a person keeps it.
/// Edit role.
#[utoipa::path(post, path = "/api/projects/{project}/attempts", tag = "sessions",
    params(("project" = String, Path)), request_body = CreateAttemptsRequest,
    responses((status = 201, body = AttemptsCreated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<Services>,
    caller: Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<CreateAttemptsRequest>,
) -> Result<(StatusCode, Json<AttemptsCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_attempts(&caller, &project, req).await?),
    ))
}

/// A group's attempts side by side: each one's phase, turns, cost, what it changed in
/// each repository (files, lines, the diff), its pull requests, and which one was kept.
/// View role.
#[utoipa::path(get, path = "/api/projects/{project}/attempts/{group}", tag = "sessions",
    params(("project" = String, Path), ("group" = String, Path)),
    responses((status = 200, body = AttemptGroup), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<Services>,
    caller: Caller,
    Path((project, group)): Path<(String, String)>,
) -> Result<Json<AttemptGroup>, ApiError> {
    Ok(Json(s.attempt_group(&caller, &project, &group).await?))
}

/// Keeps one finished attempt: it runs once more with nothing to do, and that run pushes
/// its branch and opens its pull request; the attempts still running are stopped. A group
/// keeps one attempt (409 after that, and for an attempt still running). Edit role.
#[utoipa::path(post, path = "/api/projects/{project}/attempts/{group}/keep", tag = "sessions",
    params(("project" = String, Path), ("group" = String, Path)), request_body = KeepAttemptRequest,
    responses((status = 200, body = AttemptGroup), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn keep(
    State(s): State<Services>,
    caller: Caller,
    Path((project, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<KeepAttemptRequest>,
) -> Result<Json<AttemptGroup>, ApiError> {
    Ok(Json(s.keep_attempt(&caller, &project, &group, req).await?))
}
