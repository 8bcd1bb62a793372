//! The error of server functions: the same `{error, message}` the REST API answers.

use crate::rpc::TextJson;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// An error shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppError {
    /// Machine-readable kind (`invalid`, `not_found`, `conflict`, `network` ...).
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}

impl AppError {
    /// An error of `kind`.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        AppError {
            error: kind.to_owned(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for AppError {}

impl FromServerFnError for AppError {
    type Encoder = TextJson;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Request(e) => {
                AppError::new("network", format!("could not reach the server: {e}"))
            }
            other => AppError::new("internal", other.to_string()),
        }
    }
}

impl From<model::api::ApiError> for AppError {
    fn from(e: model::api::ApiError) -> Self {
        AppError {
            error: e.error,
            message: e.message,
        }
    }
}
