//! The Ambient Code Platform server: the platform (see the `platform` crate) over HTTP — the
//! UI, the REST API, the two WebSocket endpoints — and, in local mode, the local driver
//! running sessions as child processes.
//!
//! Layout:
//! - [`config`]: flags and environment, validated once;
//! - [`api`]: REST routes and their OpenAPI document;
//! - [`ws`]: the viewer and runner WebSocket endpoints and their shared [`ws::Connection`];
//! - [`guard`]: the doors: served host names, same-origin changes, sign-in (access keys,
//!   login links, browser sessions), JSON-only server functions;
//! - [`headers`]: the security headers of every response (no framing, no sniffing, the
//!   Content Security Policy with the nonce of each page's inline scripts);
//! - [`metrics`]: `/metrics` on the metrics address, and every answer counted and timed;
//! - [`assets`]: the UI's precompressed assets; [`state`]: the axum state.
//!
//! Test scaffolding (simulated peers, the load generator) is the `testkit` crate's.

pub mod api;
pub mod assets;
pub mod config;
pub mod guard;
pub mod headers;
pub mod metrics;
pub mod state;
pub mod ws;

use anyhow::Context as _;
use axum::Router;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use model::api::DEFAULT_PROJECT;
use operator::LocalConfig;
use platform::records::{NewProject, RecordsError};
use platform::services::Settings;
use platform::{Caller, Services};
use tokio::net::TcpListener;

use crate::config::{Mode, Resolved};
use crate::state::AppState;

/// The whole HTTP surface: API, WebSockets, UI pages, server functions, static assets,
/// behind the doors of [`guard`].
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(app::App);
    let services = state.services.clone();
    let options = state.leptos_options.clone();
    let (api, _) = api::routes(&state.services.settings.models);
    let api = api
        .route(
            "/login",
            axum::routing::get(guard::login_link).post(guard::login_key),
        )
        .route("/logout", axum::routing::post(guard::logout));
    api.leptos_routes_with_context(
        &state,
        routes,
        move || {
            provide_context(services.clone());
            headers::page_policy();
        },
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
    // Every route's answers are counted and timed (see `metrics`).
    .route_layer(axum::middleware::from_fn_with_state(
        state.clone(),
        metrics::track,
    ))
    .fallback(leptos_axum::file_and_error_handler_with_context::<
        AppState,
        _,
    >(headers::page_policy, app::shell))
    .layer(axum::middleware::from_fn_with_state(
        state.clone(),
        guard::guard,
    ))
    .layer(tower_http::compression::CompressionLayer::new())
    // Outermost: every response has them, the doors' refusals and the login page included.
    .layer(axum::middleware::map_response(headers::add))
    .with_state(state)
}

/// What the runners' own address serves (`AMBIENT_RUNNER_ADDR`): the runner endpoint and
/// `/health` only, with the security headers.
pub fn runner_router(state: AppState) -> Router {
    api::runner_routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::map_response(headers::add))
        .with_state(state)
}

/// Small frames must leave at once: without TCP_NODELAY, Nagle's algorithm and delayed
/// acknowledgements hold live events back by tens of milliseconds.
fn nodelay(
    listener: TcpListener,
) -> impl axum::serve::Listener<
    Io = impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Addr = std::net::SocketAddr,
> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    })
}

/// The address a process on this machine reaches a listener bound to `addr` at: loopback
/// for a wildcard bind (`0.0.0.0`, `::`), which no one can connect to by that name.
pub fn reachable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
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
    let settings = Settings {
        default_model: config.default_model.clone(),
        models: config.models.clone(),
        default_credentials: config.credentials.clone(),
        local_user: Caller {
            user_id: config.user.clone(),
            display_name: config.user.clone(),
            access: platform::auth::Access::Owner,
            key: None,
        },
        access_recheck: config.access_cache,
        catalogue: std::sync::Arc::new(platform::catalogue::Catalogue::new(
            config.workflow_catalogue.clone(),
        )),
    };
    // Whether agents can be sandboxed here is found out once, now: when they can, every
    // runner is told the sandbox is required, so that a runner whose sandbox fails later
    // fails its run instead of starting the agent unconfined.
    let local = config.mode == Mode::Local;
    let mut require_sandbox = config.require_sandbox;
    if local && config.local_driver {
        match operator::local::probe_sandbox() {
            Ok(_) => require_sandbox = true,
            Err(why) if config.require_sandbox => anyhow::bail!(
                "AMBIENT_REQUIRE_SANDBOX is set, but the agents' sandbox cannot run: {why}"
            ),
            Err(why) => {
                tracing::warn!(
                    "agents will run WITHOUT a sandbox: {why} (install bubblewrap, or allow user namespaces)"
                );
                println!("warning: agents will run without a sandbox: {why}");
            }
        }
    }
    // Without the local driver (an external operator runs sessions) nothing is told.
    let driver = config.local_driver.then(|| LocalConfig {
        runner_bin: config.runner_bin.clone(),
        workspaces: config.data_dir.join("workspaces"),
        backend_api_url: format!("http://{}/api", reachable(addr)),
        claude_bin: config.claude_bin.clone(),
        default_model: config.default_model.clone(),
        default_inactivity_timeout: config.inactivity_timeout_secs,
        stop_grace: config.stop_grace,
        stop_runners_on_exit: config.stop_runners_on_exit,
        require_sandbox,
        max_running: config.max_running,
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let stopped = |rx: &tokio::sync::watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.changed().await;
        }
    };
    let (services, background) = match &config.mode {
        Mode::Local => {
            let (local, driver_task) =
                platform::local::open(&config.data_dir, settings, driver, shutdown_rx.clone())
                    .with_context(|| {
                        format!("opening the store in {}", config.data_dir.display())
                    })?;
            let services = local.services;
            ensure_default_project(&services).await?;
            let task = driver_task.map(|task| tokio::spawn(task.run(stopped(&shutdown_rx))));
            (services, task)
        }
        Mode::Kubernetes { kubeconfig } => {
            let cluster = operator::cluster::config(kubeconfig.as_deref())
                .await
                .map_err(anyhow::Error::msg)?;
            let client = kube::Client::try_from(cluster.clone())?;
            let identity = std::sync::Arc::new(platform::kube_identity::KubeIdentity::new(
                client.clone(),
                cluster,
                config.access_cache,
                config.trust_proxy_headers,
            ));
            let (services, follower) = platform::cluster::open(
                &config.data_dir,
                settings,
                client,
                identity,
                config.install_secret.as_deref(),
                shutdown_rx.clone(),
            )
            .with_context(|| format!("opening the event logs in {}", config.data_dir.display()))?;
            tracing::info!("Kubernetes mode: sessions are AgenticSession resources");
            (
                services,
                Some(tokio::spawn(follower.run(stopped(&shutdown_rx)))),
            )
        }
    };
    if config.print_login_link {
        let base = config
            .public_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{}", reachable(addr)));
        let token = services.identities.create_login_token().await?;
        println!("sign in: {base}/login?token={token}");
    }
    let state = AppState {
        leptos_options,
        services,
        doors: std::sync::Arc::new(guard::Doors::new(config.public_url.as_ref(), addr.port())),
    };
    let runners = match config.runner_addr {
        Some(at) => Some(
            serve_beside(
                at,
                runner_router(state.clone()),
                "runners' address: the runner endpoint only",
                &shutdown_rx,
            )
            .await?,
        ),
        None => None,
    };
    let metrics = match config.metrics_addr {
        Some(at) => Some(
            serve_beside(
                at,
                metrics::router(state.clone()),
                "metrics' address: GET /metrics only, without sign-in",
                &shutdown_rx,
            )
            .await?,
        ),
        None => None,
    };
    let app = router(state);
    let mut serve_shutdown = shutdown_rx;
    let signal = async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    };
    tokio::spawn(signal);
    axum::serve(nodelay(listener), app)
        .with_graceful_shutdown(async move {
            let _ = serve_shutdown.changed().await;
        })
        .await?;
    if let Some(handle) = runners {
        handle.await??;
    }
    if let Some(handle) = metrics {
        handle.await??;
    }
    if let Some(handle) = background {
        let _ = handle.await;
    }
    Ok(())
}

/// Serves `app` on a second address `at` (the runners', the metrics') until shutdown.
async fn serve_beside(
    at: std::net::SocketAddr,
    app: Router,
    what: &str,
    shutdown: &tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<std::io::Result<()>>> {
    let listener = TcpListener::bind(at)
        .await
        .with_context(|| format!("listening on {at} ({what})"))?;
    tracing::info!(addr = %listener.local_addr()?, "{what}");
    let mut stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        axum::serve(nodelay(listener), app)
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await
    }))
}

/// The project every installation starts with.
async fn ensure_default_project(services: &Services) -> anyhow::Result<()> {
    let project = NewProject {
        name: DEFAULT_PROJECT.to_owned(),
        display_name: "Default".to_owned(),
        description: String::new(),
    };
    match services
        .records
        .create_project(&Caller::system(), project)
        .await
    {
        Ok(_) | Err(RecordsError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::reachable;

    #[test]
    fn a_wildcard_address_is_never_handed_out() {
        for (bound, handed) in [
            ("0.0.0.0:3000", "127.0.0.1:3000"),
            ("[::]:3000", "[::1]:3000"),
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("10.1.2.3:3000", "10.1.2.3:3000"),
        ] {
            assert_eq!(
                reachable(bound.parse().unwrap()).to_string(),
                handed,
                "{bound}"
            );
        }
    }
}
