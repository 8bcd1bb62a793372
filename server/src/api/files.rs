//! The session's workspace (`/workspace`, `/workspace/{*path}`,
//! `/workspace/file-uploads/{name}`, `/workspace.tar.gz`, `/git/status`), on the original's paths; served by the session's runner while it runs
//! (`platform::services` asks it). Downloads never render on this origin: they come as
//! attachments under a sandboxing policy, whatever the agent wrote into them.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use model::api::ApiError as ErrorBody;
use model::protocol::files::{Listing, RepoState, UPLOADS_DIR, image_type, upload_name};
use model::session::SessionKey;
use platform::services::Download;
use platform::{ApiError, Caller, Services};
use serde::{Deserialize, Serialize};

use super::extract::ApiQuery;

/// Which directory to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The directory, relative to the workspace (`repos/app/src`); none or empty: its root.
    pub path: Option<String>,
}

/// The repositories of a workspace.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RepoStates {
    /// One per repository under `repos/`.
    pub items: Vec<RepoState>,
}

/// Where an upload landed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadResult {
    /// Its path in the workspace (`file-uploads/<name>`, the name sanitised).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Lists one directory of the session's workspace (directories first, then by name;
/// symbolic links shown as links, never followed; the platform's own folders left out).
/// 409 when the session is not running.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/workspace", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path), ListQuery),
    responses((status = 200, body = Listing), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Listing>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(
        s.list_workspace(&caller, &key, q.path.as_deref().unwrap_or(""))
            .await?,
    ))
}

/// A file of the session's workspace, streamed as an attachment (images with their type, so
/// a page can show them). A path through a symbolic link is refused (403). 409 when the
/// session is not running.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/workspace/{*path}", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path),
        ("path" = String, Path, description = "The file, relative to the workspace (`artifacts/report.md`)")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn read(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name, path)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let key = SessionKey::new(project, name);
    let download = s.read_workspace_file(&caller, &key, &path).await?;
    let file_name = path.rsplit('/').next().unwrap_or_default();
    Ok(attachment(download, content_type(file_name), file_name))
}

/// The whole workspace as a gzipped tar archive, streamed (symbolic links kept as links;
/// the platform's own folders left out). 409 when the session is not running.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/workspace.tar.gz", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, description = "The archive", content_type = "application/gzip", body = Vec<u8>),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn archive(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let key = SessionKey::new(project, name.clone());
    let download = s.workspace_archive(&caller, &key).await?;
    Ok(attachment(
        download,
        "application/gzip",
        &format!("{name}-workspace.tar.gz"),
    ))
}

/// Each repository's branch, changed files (`git status --porcelain`) and diff against its
/// last commit (cut at 1 MiB). 409 when the session is not running.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/git/status", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 200, body = RepoStates), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn git_status(
    State(s): State<Services>,
    caller: Caller,
    Path((project, name)): Path<(String, String)>,
) -> Result<Json<RepoStates>, ApiError> {
    let key = SessionKey::new(project, name);
    Ok(Json(RepoStates {
        items: s.workspace_repos(&caller, &key).await?,
    }))
}

/// A file uploaded into `file-uploads/` (as [`read`]: the same file, on the upload's path).
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/workspace/file-uploads/{name}", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path),
        ("name" = String, Path, description = "The file's name in `file-uploads/`")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn read_upload(
    state: State<Services>,
    caller: Caller,
    Path((project, name, file)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    read(
        state,
        caller,
        Path((project, name, format!("{UPLOADS_DIR}/{file}"))),
    )
    .await
}

/// Uploads the body (any bytes, at most 10 MiB) to `file-uploads/<name>` in the session's
/// workspace, the only folder a person writes to (the name sanitised: letters, digits, `.`,
/// `-`, `_`); the agent is told with its next message. Needs the edit role; 409 when the
/// session is not running.
#[utoipa::path(put, path = "/api/projects/{project}/agentic-sessions/{session}/workspace/file-uploads/{name}", tag = "workspace",
    params(("project" = String, Path), ("session" = String, Path),
        ("name" = String, Path, description = "The file's name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes"),
    responses((status = 201, body = UploadResult), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn upload(
    State(s): State<Services>,
    caller: Caller,
    Path((project, session, name)): Path<(String, String, String)>,
    body: Body,
) -> Result<Response, ApiError> {
    let key = SessionKey::new(&project, &session);
    let stream = body.into_data_stream();
    let done = s.upload_to_workspace(&caller, &key, &name, stream).await?;
    let location = format!(
        "/api/projects/{project}/agentic-sessions/{session}/workspace/{}",
        done.path
    );
    let mut response = (
        StatusCode::CREATED,
        Json(UploadResult {
            path: done.path,
            size: done.size,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// A download's response: an attachment, never run or rendered on this origin (a sandboxing
/// policy and no sniffing), not cached (the agent changes files).
fn attachment(download: Download, content_type: &'static str, file_name: &str) -> Response {
    let name = upload_name(file_name).unwrap_or_else(|| "download".into());
    let body = Body::from_stream(download.into_stream().map(|r| r.map(Bytes::from)));
    (
        [
            (header::CONTENT_TYPE, content_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; sandbox".to_owned(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response()
}

/// The type a file is served as: images (which a page may show in an `<img>`, where nothing
/// in them runs) and plain text by their extension; anything else as bytes.
fn content_type(name: &str) -> &'static str {
    if let Some(image) = image_type(name) {
        return image;
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "md" | "log" | "csv" | "json" | "yaml" | "yml" | "toml" | "rs" | "py" | "go"
        | "js" | "ts" | "sh" | "c" | "h" | "java" | "diff" | "patch" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
