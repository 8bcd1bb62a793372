//! The state shared by every route.

use axum::extract::FromRef;
use leptos::config::LeptosOptions;

use platform::Services;

/// Axum state: the Leptos options and the platform's operations.
#[derive(Clone, FromRef)]
pub struct AppState {
    /// Where the UI's assets are and how they are named.
    pub leptos_options: LeptosOptions,
    /// The platform's operations.
    pub services: Services,
    /// What the doors let in (see [`crate::guard`]).
    pub doors: std::sync::Arc<crate::guard::Doors>,
}
