//! The REST API, on the original platform's paths under `/api`, described by the OpenAPI
//! document served at `/api/openapi.json` (generated from the handlers' annotations, so a
//! route cannot exist without its description).
//!
//! Layout: [`extract`] (extractors answering bad input with our error body), [`docs`]
//! (the document), [`projects`], [`settings`], [`sessions`], [`attempts`], [`control`], [`files`] (the
//! workspace), [`keys`], [`permissions`].

mod attempts;
mod control;
pub mod docs;
pub mod extract;
mod files;
mod keys;
mod permissions;
mod projects;
mod sessions;
mod settings;
mod workflows;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::any;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use platform::ApiError;

use crate::state::AppState;
use crate::ws::{runner, viewer};

pub use platform::error::MAX_BODY;

/// The API's routes and their OpenAPI document (`models`: the models sessions may choose).
pub fn routes(models: &[String]) -> (Router<AppState>, serde_json::Value) {
    let (router, openapi) = OpenApiRouter::with_openapi(docs::base())
        .routes(routes!(health))
        .routes(routes!(version))
        .routes(routes!(projects::list, projects::create))
        .routes(routes!(projects::get, projects::update, projects::delete))
        .routes(routes!(settings::get_secrets, settings::put_secrets))
        .routes(routes!(settings::get_settings, settings::put_settings))
        .routes(routes!(sessions::list, sessions::create))
        .routes(routes!(sessions::get, sessions::update, sessions::delete))
        .routes(routes!(sessions::display_name))
        .routes(routes!(sessions::clone))
        .routes(routes!(sessions::fork))
        .routes(routes!(sessions::turns))
        .routes(routes!(attempts::create))
        .routes(routes!(attempts::get))
        .routes(routes!(attempts::keep))
        .routes(routes!(sessions::mcp_status))
        .routes(routes!(workflows::metadata))
        .routes(routes!(workflows::set, workflows::clear))
        .routes(routes!(workflows::catalogue))
        .routes(routes!(control::start))
        .routes(routes!(control::stop))
        .routes(routes!(control::interrupt))
        .routes(routes!(control::set_model))
        .routes(routes!(control::asks))
        .routes(routes!(control::answer))
        .routes(routes!(control::send_message))
        .routes(routes!(control::export))
        .routes(routes!(files::list))
        .routes(routes!(files::read))
        .routes(routes!(files::read_upload, files::upload))
        .routes(routes!(files::archive))
        .routes(routes!(files::git_status))
        .routes(routes!(keys::list, keys::create))
        .routes(routes!(keys::revoke))
        .routes(routes!(keys::list_project, keys::create_project))
        .routes(routes!(keys::revoke_project))
        .routes(routes!(keys::access))
        .routes(routes!(permissions::list, permissions::grant))
        .routes(routes!(permissions::revoke))
        .routes(routes!(viewer::viewer_ws))
        .routes(routes!(runner::runner_ws))
        .routes(routes!(runner::files_runner_ws))
        .split_for_parts();
    let document = docs::finish(openapi, models);
    let served = document.clone();
    let router = router
        .route(
            "/api/openapi.json",
            axum::routing::get(move || async move { axum::Json(served) }),
        )
        .route("/api/{*rest}", any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY));
    (router, document)
}

/// What the runners' own address serves (`AMBIENT_RUNNER_ADDR`): the runner endpoint and
/// `/health`, nothing else: 404 for every other path, whatever it carries. The runner
/// endpoint checks its runner token itself, so nothing a proxy would add (a person's
/// identity headers) means anything here.
pub fn runner_routes() -> Router<AppState> {
    let (router, _) = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(runner::runner_ws))
        .routes(routes!(runner::files_runner_ws))
        .split_for_parts();
    router
        .fallback(not_found_here)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn not_found_here(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!(
        "{} is not served on the runners' address (only runners' connections are)",
        uri.path()
    ))
}

/// Liveness.
#[utoipa::path(get, path = "/health", tag = "meta", responses((status = 200, description = "The server is up", body = String)))]
async fn health() -> &'static str {
    "ok"
}

/// The server's version.
#[utoipa::path(get, path = "/api/version", tag = "meta", responses((status = 200, description = "Build version", body = Object)))]
async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::NotFound(format!("no API route {}", uri.path()))
}

async fn method_not_allowed(
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body = model::api::ApiError {
        error: "method_not_allowed".into(),
        message: format!("{method} is not allowed on {}", uri.path()),
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}
