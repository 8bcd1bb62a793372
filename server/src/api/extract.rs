//! Extractors that answer malformed input with the API's error body and the right status.

use axum::extract::{FromRequest, FromRequestParts};

use platform::ApiError;

/// A JSON object body; bad input gets 400, a wrong content type 415, an oversized body 413.
/// Only an object is taken: serde would also read a struct from an array of its fields.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::Invalid("the body must be a JSON object".into()));
        }
        // The field at fault is named (`repos[0].url: invalid type ...`).
        serde_path_to_error::deserialize(value)
            .map(ApiJson)
            .map_err(|e| ApiError::Invalid(format!("{}: {}", e.path(), e.inner())))
    }
}

/// Query parameters; bad input gets 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
