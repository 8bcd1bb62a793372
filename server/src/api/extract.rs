//! Extractors that answer malformed input with the API's error body and the right status.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};

use crate::error::ApiError;

/// A JSON body; bad input gets 400, a wrong content type 415, an oversized body 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query parameters; bad input gets 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
                "the body must be JSON (Content-Type: application/json)".into(),
            ),
            JsonRejection::BytesRejection(b)
                if b.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ApiError::TooLarge(format!("the body is larger than {} bytes", super::MAX_BODY))
            }
            JsonRejection::JsonSyntaxError(e) => {
                ApiError::Invalid(format!("the body is not valid JSON: {}", e.body_text()))
            }
            JsonRejection::JsonDataError(e) => ApiError::Invalid(e.body_text()),
            other => ApiError::Invalid(other.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::Invalid(r.body_text())
    }
}
