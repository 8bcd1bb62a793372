//! The OpenAPI document: paths and body schemas from the handlers (utoipa), and the
//! `AgenticSession` schema from the CRD's own (schemars), so it cannot drift from the type.

use kube::CustomResourceExt;
use utoipa::OpenApi;

/// Error answers every operation may give, documented once.
pub const ERRORS: &str = "Errors are `{\"error\": kind, \"message\": text}` with status 400 (invalid), \
401, 403, 404 (unknown), 409 (wrong state), 413 (too large), 415 (not JSON).";

#[derive(OpenApi)]
#[openapi(
    info(title = "Ambient Code Platform API", description = "Local mode of the Ambient Code Platform. Every route but /health needs an access key (`Authorization: Bearer <key>`) or a browser session. Errors are `{\"error\", \"message\"}` JSON with a 4xx status for client mistakes."),
    components(schemas(model::api::ApiError)),
    tags(
        (name = "projects", description = "Projects (namespaces) and their settings"),
        (name = "sessions", description = "Agentic sessions"),
        (name = "control", description = "Steering running sessions"),
        (name = "realtime", description = "WebSocket endpoints"),
        (name = "keys", description = "Access keys (`Authorization: Bearer <key>`)"),
        (name = "meta", description = "Server information"),
    )
)]
struct ApiDoc;

/// The document before routes are added.
pub fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The served document: routes added, and the `AgenticSession` schema taken from the CRD.
pub fn finish(openapi: utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut doc = serde_json::to_value(&openapi).unwrap_or_default();
    let crd = model::AgenticSession::crd();
    let schema = crd
        .spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_else(|| serde_json::json!({"type": "object"}));
    doc["components"]["schemas"]["AgenticSession"] = schema;
    doc
}
