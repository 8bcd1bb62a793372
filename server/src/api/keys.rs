//! `/api/keys[/{id}]`: access keys.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use model::api::{AccessKey, ApiError as ErrorBody, CreateAccessKeyRequest, CreatedAccessKey};
use platform::{ApiError, Caller, Services};

use super::extract::ApiJson;

/// Lists the access keys (never their values).
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, body = Vec<AccessKey>), (status = 401, body = ErrorBody)))]
pub async fn list(State(s): State<Services>, c: Caller) -> Result<Json<Vec<AccessKey>>, ApiError> {
    Ok(Json(s.access_keys(&c).await?))
}

/// Makes an access key; the answer holds the key, shown this once.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = CreateAccessKeyRequest,
    responses((status = 201, body = CreatedAccessKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 415, body = ErrorBody)))]
pub async fn create(
    State(s): State<Services>,
    c: Caller,
    ApiJson(req): ApiJson<CreateAccessKeyRequest>,
) -> Result<(StatusCode, Json<CreatedAccessKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.create_access_key(&c, req).await?),
    ))
}

/// Revokes an access key: it is refused from the next request on.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = i64, Path)),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn revoke(
    State(s): State<Services>,
    c: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::NotFound(format!("access key {id}")))?;
    s.revoke_access_key(&c, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
