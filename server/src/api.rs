//! The REST API, on the original platform's paths under `/api`.
//!
//! Layout: [`extract`] (JSON and query extractors that answer bad input with our error
//! body), [`projects`], [`sessions`].

pub mod extract;
mod projects;
mod sessions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::hub::{runner::runner_ws, viewer::viewer_ws};
use crate::state::AppState;

/// Largest request body accepted by the API.
pub const MAX_BODY: usize = 1024 * 1024;

/// The API routes.
pub fn routes() -> Router<AppState> {
    let session = "/api/projects/{project}/agentic-sessions/{session}";
    Router::new()
        .route("/health", get(health))
        .route("/api/version", get(version))
        .route("/api/projects", get(projects::list).post(projects::create))
        .route(
            "/api/projects/{project}",
            get(projects::get)
                .put(projects::update)
                .delete(projects::delete),
        )
        .route(
            "/api/projects/{project}/agentic-sessions",
            get(sessions::list).post(sessions::create),
        )
        .route(session, get(sessions::get).delete(sessions::delete))
        .route(&format!("{session}/start"), post(sessions::start))
        .route(&format!("{session}/stop"), post(sessions::stop))
        .route(&format!("{session}/interrupt"), post(sessions::interrupt))
        .route(&format!("{session}/messages"), post(sessions::send_message))
        .route(&format!("{session}/export"), get(sessions::export))
        .route(&format!("{session}/ws"), get(viewer_ws))
        .route(&format!("{session}/runner/ws"), get(runner_ws))
        .layer(DefaultBodyLimit::max(MAX_BODY))
}

async fn health() -> &'static str {
    "ok"
}

async fn version() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}
