//! The Ambient Code Platform server (local mode): the UI, the REST API, the WebSocket hub,
//! the embedded store, and the local operator running sessions as child processes.
//!
//! Layout:
//! - [`config`]: flags and environment, validated once;
//! - [`store`]: SQLite — projects, sessions, event logs, credentials;
//! - [`hub`]: live fan-out to viewers, connected runners, the two WebSocket endpoints;
//! - [`services`]: the operations, shared by REST, server functions and WebSockets;
//! - [`api`]: REST routes; [`backend`]: the UI's server functions' port;
//! - [`driver_store`]: the local driver's view of the store;
//! - [`sim`]: simulated runners and viewers (hub tests, the load generator);
//! - [`auth`], [`error`], [`state`].

pub mod api;
pub mod assets;
pub mod auth;
pub mod backend;
pub mod config;
pub mod driver_store;
pub mod error;
pub mod hub;
pub mod services;
pub mod sim;
pub mod state;
pub mod store;

use std::sync::Arc;

use anyhow::Context as _;
use app::backend::BackendRef;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use model::api::DEFAULT_PROJECT;
use operator::{LocalConfig, LocalDriver};
use tokio::net::TcpListener;

use crate::config::Resolved;
use crate::driver_store::DriverStore;
use crate::hub::{Fanout, Runners};
use crate::services::{Caller, Services, Settings};
use crate::state::AppState;
use crate::store::Store;

/// The whole HTTP surface: API, WebSockets, UI pages, server functions, static assets.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let backend: BackendRef = Arc::new(state.services.clone());
    let options = state.leptos_options.clone();
    let (api, _) = api::routes();
    api.leptos_routes_with_context(
        &state,
        routes,
        move || provide_context(backend.clone()),
        move || app::shell(options.clone()),
    )
    // The UI's assets, precompressed when `--precompress-assets` has run (see `assets`).
    .nest_service(
        &format!("/{}", state.leptos_options.site_pkg_dir),
        tower_http::services::ServeDir::new(pkg_dir(&state.leptos_options)).precompressed_gzip(),
    )
    // The home page is the projects list (a redirect, not a client-side route).
    .route(
        "/",
        axum::routing::get(|| async { axum::response::Redirect::to("/projects") }),
    )
    .fallback(leptos_axum::file_and_error_handler::<AppState, _>(
        app::shell,
    ))
    .layer(tower_http::compression::CompressionLayer::new())
    .with_state(state)
}

/// Where the UI's assets (JS, WASM, CSS) are.
pub fn pkg_dir(options: &LeptosOptions) -> std::path::PathBuf {
    std::path::Path::new(&*options.site_root).join(&*options.site_pkg_dir)
}

/// Serves until `shutdown` resolves. Runners keep running across a restart; the next server
/// adopts them.
pub async fn run(
    config: Resolved,
    leptos_options: LeptosOptions,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    let stale = assets::remove_stale(&pkg_dir(&leptos_options));
    if stale > 0 {
        tracing::info!(
            stale,
            "removed precompressed assets older than their source"
        );
    }
    let store = Store::open(&config.data_dir, Fanout::default())
        .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    store.ensure_project(DEFAULT_PROJECT, "Default").await?;
    let settings = Arc::new(Settings {
        default_model: config.default_model.clone(),
        models: config.models.clone(),
        default_credentials: config.credentials.clone(),
        local_user: Caller {
            user_id: config.user.clone(),
            display_name: config.user.clone(),
        },
    });
    let runners = Runners::default();
    let (driver, driver_task) = LocalDriver::new(
        DriverStore {
            store: store.clone(),
            runners: runners.clone(),
            settings: settings.clone(),
        },
        LocalConfig {
            runner_bin: config.runner_bin.clone(),
            backend_api_url: format!("http://{addr}/api"),
            claude_bin: config.claude_bin.clone(),
            default_model: config.default_model.clone(),
            default_inactivity_timeout: config.inactivity_timeout_secs,
            stop_grace: config.stop_grace,
        },
    );
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let services = Services {
        store,
        runners,
        driver,
        settings,
        shutdown: shutdown_rx.clone(),
    };
    let state = AppState {
        leptos_options,
        services,
    };

    // Without the local driver (an external operator runs sessions), the driver's queue has
    // no reader: notifications are dropped.
    let driver_handle = if config.local_driver {
        let mut driver_shutdown = shutdown_rx.clone();
        Some(tokio::spawn(driver_task.run(async move {
            let _ = driver_shutdown.changed().await;
        })))
    } else {
        drop(driver_task);
        None
    };
    let app = router(state);
    let mut serve_shutdown = shutdown_rx;
    let signal = async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    };
    tokio::spawn(signal);
    // Small frames must leave at once: without TCP_NODELAY, Nagle's algorithm and delayed
    // acknowledgements hold live events back by tens of milliseconds.
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = serve_shutdown.changed().await;
        })
        .await?;
    if let Some(handle) = driver_handle {
        let _ = handle.await;
    }
    Ok(())
}
