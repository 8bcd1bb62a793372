//! Errors: the crate's own [`Error`], and [`ApiError`], an Anthropic-style HTTP error reply.

use std::path::PathBuf;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// What can go wrong outside of answering a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A script file could not be read.
    #[error("cannot read script {path}: {source}")]
    ReadScript {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A script file is not a JSON array of replies.
    #[error("invalid script {path}: {source}")]
    ParseScript {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error answer: `{"type":"error","error":{"type":..,"message":..}}` with a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// An error with this status; codes outside 400–599 become 500.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status)
            .ok()
            .filter(|s| s.is_client_error() || s.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            message: message.into(),
        }
    }

    /// The Anthropic error `type` for the status.
    pub fn kind(&self) -> &'static str {
        match self.status.as_u16() {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400..=499 => "invalid_request_error",
            _ => "api_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "type": "error",
            "error": {"type": self.kind(), "message": self.message},
        });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_types_follow_the_status() {
        let kinds: Vec<(u16, &str)> = [400, 401, 404, 429, 500, 529, 200, 1000]
            .into_iter()
            .map(|status| {
                let error = ApiError::new(status, "x");
                (error.status.as_u16(), error.kind())
            })
            .collect();
        assert_eq!(
            kinds,
            [
                (400, "invalid_request_error"),
                (401, "authentication_error"),
                (404, "not_found_error"),
                (429, "rate_limit_error"),
                (500, "api_error"),
                (529, "overloaded_error"),
                (500, "api_error"),
                (500, "api_error"),
            ]
        );
    }
}
