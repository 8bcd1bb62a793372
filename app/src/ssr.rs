//! What every server function does first on the server: take the platform's services from
//! the request's context, identify the caller, and answer refusals with the REST API's
//! status (a refusal is a 4xx, as over REST, not a blanket 500).

use axum::http::StatusCode;
use platform::{ApiError, Caller, Services};

use crate::error::AppError;

/// The services and the caller of the current request.
pub async fn context() -> Result<(Services, Caller), AppError> {
    let services = leptos::prelude::use_context::<Services>()
        .ok_or_else(|| AppError::new("internal", "the server did not provide its services"))?;
    // The server's doors identified the caller (or refused the request) before any page
    // or server function ran.
    let caller: Caller = leptos_axum::extract().await.map_err(|_| {
        refusal(ApiError::Unauthorized(
            "sign in first: this request carries no session".into(),
        ))
    })?;
    Ok((services, caller))
}

/// A refusal of the platform, for the page, with its status on the response.
pub fn refusal(e: ApiError) -> AppError {
    respond_with(e.status());
    e.body().into()
}

fn respond_with(status: StatusCode) {
    if let Some(options) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
        options.set_status(status);
    }
}
