//! Extractors that answer malformed input with the API's error body and the right status.

use axum::extract::{FromRequest, FromRequestParts};

use platform::ApiError;

/// A JSON body; bad input gets 400, a wrong content type 415, an oversized body 413.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// Query parameters; bad input gets 400.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
