//! The metrics address (`AMBIENT_METRICS_ADDR`): `GET /metrics` in Prometheus's text format
//! (OpenMetrics), without sign-in and nothing else; and [`track`], which records every HTTP
//! answer of the other addresses by method, route template and status.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The content type of a scrape.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics address serves.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .layer(axum::middleware::map_response(crate::headers::add))
        .with_state(state)
}

/// One scrape: the states (runners connected, sessions by project and phase) are read now,
/// the counters are as they stand.
async fn scrape(State(state): State<AppState>) -> Response {
    let s = &state.services;
    s.metrics
        .runners
        .set(i64::try_from(s.runners.connected()).unwrap_or(i64::MAX));
    match s.records.phase_counts().await {
        Ok(counts) => s.metrics.set_sessions(counts),
        // The last counts stay; the scrape still answers with everything else.
        Err(e) => tracing::warn!(error = %e, "metrics: counting the sessions by phase"),
    }
    ([(header::CONTENT_TYPE, OPENMETRICS)], s.metrics.encode()).into_response()
}

/// Records an answer: its method (the standard ones, any other as `other`), the template
/// of the route it matched (never the path: a caller cannot make series), its status and
/// how long it took to its headers. Requests no route matched are not recorded.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let route = req.extensions().get::<MatchedPath>().cloned();
    let resp = next.run(req).await;
    if let Some(route) = route {
        state.services.metrics.http(
            method,
            route.as_str(),
            resp.status().as_u16(),
            started.elapsed().as_secs_f64(),
        );
    }
    resp
}
