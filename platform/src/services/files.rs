//! The session's workspace, through its runner: the runner has the files in both modes (a
//! local directory, a pod's volume), so the server asks it ([`crate::hub::FilesCall`]) and
//! never reads a workspace itself. A session without a run has its files served by a files
//! runner (`runner files`) that the driver starts on the same workspace when they are asked
//! for, and that exits once no one asks for a while. Reading needs the view role, uploading the edit role;
//! paths are checked here first and again by the runner, which opens them one component at
//! a time without following links.

use std::time::Duration;

use base64::Engine as _;
use futures::{Stream, StreamExt};
use model::protocol::files::{
    FILES_CHUNK, FilesBody, FilesError, FilesOp, Listing, MAX_UPLOAD, RepoState, path_components,
    upload_name,
};
use model::session::SessionKey;

use super::Services;
use crate::auth::{Caller, Role};
use crate::error::ApiError;
use crate::hub::FilesCall;

/// How long a runner has for each answer (a listing, a chunk, a written piece).
pub const FILES_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request for a stopped session's files waits for its files runner to connect
/// (a process in local mode, a pod in Kubernetes mode).
pub const FILES_RUNNER_START: Duration = Duration::from_secs(25);

/// A file or an archive coming from the runner: its first piece is here (so a refusal is
/// known before anything is sent), the rest arrive as [`Download::into_stream`] is read.
pub struct Download {
    /// The file's size, when the runner knows it (an archive's is not known ahead).
    pub size: Option<u64>,
    first: Vec<u8>,
    rest: Option<FilesCall>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// The bytes, piece by piece; ends with an error (so the response is cut, not taken for
    /// whole) when the runner goes away, stalls, or fails midway.
    pub fn into_stream(self) -> impl Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static {
        let first = futures::stream::once(async move { Ok(self.first) });
        let rest = futures::stream::unfold(self.rest, |call| async move {
            let mut call = call?;
            match chunk(&mut call).await {
                Ok((bytes, true)) => Some((Ok(bytes), None)),
                Ok((bytes, false)) => Some((Ok(bytes), Some(call))),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        });
        // Fused: a body may be polled again after its end (the compression of a response
        // does), and `unfold` panics when it is (found by the browser's tarball download).
        first.chain(rest).fuse()
    }
}

/// The next chunk of a stream and whether it is the last; the runner may send one more.
async fn chunk(call: &mut FilesCall) -> Result<(Vec<u8>, bool), ApiError> {
    match answer(call).await? {
        FilesBody::Chunk { data, last, .. } => {
            let bytes = decode(&data)?;
            if !last {
                call.more();
            }
            Ok((bytes, last))
        }
        other => Err(unexpected(&other)),
    }
}

/// The call's next answer within [`FILES_TIMEOUT`], its refusal as an error.
async fn answer(call: &mut FilesCall) -> Result<FilesBody, ApiError> {
    match tokio::time::timeout(FILES_TIMEOUT, call.next()).await {
        Err(_) => Err(ApiError::Unavailable(format!(
            "the session's runner did not answer within {} s",
            FILES_TIMEOUT.as_secs()
        ))),
        Ok(None) => Err(ApiError::Unavailable(
            "the session's runner went away before it answered; try again".into(),
        )),
        Ok(Some(FilesBody::Error { error, message })) => Err(refusal(error, message)),
        Ok(Some(body)) => Ok(body),
    }
}

/// The runner's refusal as the API's error.
fn refusal(error: FilesError, message: String) -> ApiError {
    match error {
        FilesError::NotFound => ApiError::NotFound(message),
        FilesError::Invalid => ApiError::Invalid(message),
        FilesError::Link => ApiError::Forbidden(message),
        FilesError::TooLarge => ApiError::TooLarge(message),
        FilesError::Busy => ApiError::Unavailable(message),
        FilesError::Failed => {
            tracing::warn!(%message, "a workspace request failed in the runner");
            ApiError::Internal
        }
    }
}

fn unexpected(body: &FilesBody) -> ApiError {
    tracing::warn!(?body, "a runner answered a workspace request out of turn");
    ApiError::Internal
}

fn decode(data: &str) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map_err(|e| {
            tracing::warn!(%e, "a runner sent a chunk that is not base64");
            ApiError::Internal
        })
}

/// Where an upload lands and how large it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Its path in the workspace.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

impl Services {
    /// Asks the session's runner `op` once the caller is found to hold `need`. A session
    /// without a run's runner has its files served by a files runner, which the driver
    /// starts on its workspace (the request waits for it, at most [`FILES_RUNNER_START`]).
    async fn workspace_call(
        &self,
        caller: &Caller,
        key: &SessionKey,
        need: Role,
        op: FilesOp,
    ) -> Result<FilesCall, ApiError> {
        self.require(caller, &key.project, need).await?;
        let live = self.live_session(caller, key).await?;
        if let Some(call) = self.runners.call_files(live.log, op.clone()) {
            return Ok(call);
        }
        if live.record.run.generation == 0 {
            return Err(ApiError::Conflict(
                "the session has not run yet: it has no files".into(),
            ));
        }
        if live.record.session.phase().is_active() {
            return Err(ApiError::Conflict(format!(
                "the session is {}: its files are served by its runner while it runs; try again in a moment",
                live.record.session.phase()
            )));
        }
        if !self.driver.serve_files(key.clone()) {
            return Err(ApiError::Conflict(
                "the session is not running, and this installation serves a workspace only while its session runs".into(),
            ));
        }
        let deadline = tokio::time::Instant::now() + FILES_RUNNER_START;
        loop {
            // Woken when a runner registers; a second at most, in case the wake-up came
            // between the look and the wait.
            self.runners.registration(Duration::from_secs(1)).await;
            if let Some(call) = self.runners.call_files(live.log, op.clone()) {
                return Ok(call);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ApiError::Unavailable(format!(
                    "the session's files could not be opened within {} s; try again",
                    FILES_RUNNER_START.as_secs()
                )));
            }
        }
    }

    /// One directory of the session's workspace (`""`: its root), directories first.
    pub async fn list_workspace(
        &self,
        caller: &Caller,
        key: &SessionKey,
        path: &str,
    ) -> Result<Listing, ApiError> {
        let path = checked(path)?;
        let mut call = self
            .workspace_call(caller, key, Role::View, FilesOp::List { path })
            .await?;
        match answer(&mut call).await? {
            FilesBody::Listing(listing) => Ok(listing),
            other => Err(unexpected(&other)),
        }
    }

    /// A file of the session's workspace, streamed.
    pub async fn read_workspace_file(
        &self,
        caller: &Caller,
        key: &SessionKey,
        path: &str,
    ) -> Result<Download, ApiError> {
        let path = checked(path)?;
        if path.is_empty() {
            return Err(ApiError::Invalid("name a file of the workspace".into()));
        }
        let call = self
            .workspace_call(caller, key, Role::View, FilesOp::Read { path })
            .await?;
        download(call).await
    }

    /// The whole workspace as a gzipped tar (links kept as links), streamed.
    pub async fn workspace_archive(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<Download, ApiError> {
        let call = self
            .workspace_call(caller, key, Role::View, FilesOp::Archive)
            .await?;
        download(call).await
    }

    /// Each repository's branch, changed files and diff.
    pub async fn workspace_repos(
        &self,
        caller: &Caller,
        key: &SessionKey,
    ) -> Result<Vec<RepoState>, ApiError> {
        let mut call = self
            .workspace_call(caller, key, Role::View, FilesOp::Repos)
            .await?;
        match answer(&mut call).await? {
            FilesBody::Repos { repos } => Ok(repos),
            other => Err(unexpected(&other)),
        }
    }

    /// Uploads `body` into the workspace's `file-uploads/` as `name` (sanitised: one plain
    /// component); the agent is told with the next message it gets. At most
    /// [`MAX_UPLOAD`] bytes (413 beyond, and nothing is left of it).
    pub async fn upload_to_workspace<S, E>(
        &self,
        caller: &Caller,
        key: &SessionKey,
        name: &str,
        body: S,
    ) -> Result<Uploaded, ApiError>
    where
        S: Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let Some(name) = upload_name(name) else {
            return Err(ApiError::Invalid(format!(
                "{name:?} is not a usable file name (letters, digits, '.', '-', '_')"
            )));
        };
        self.require(caller, &key.project, Role::Edit).await?;
        let mut body = body;
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0usize;
        let mut call: Option<FilesCall> = None;
        loop {
            let piece = body.next().await;
            let last = piece.is_none();
            if let Some(piece) = piece {
                let piece = piece
                    .map_err(|e| ApiError::Invalid(format!("the upload was cut short: {e}")))?;
                total += piece.len();
                if total > MAX_UPLOAD {
                    return Err(ApiError::TooLarge(format!(
                        "an upload may be at most {} MiB",
                        MAX_UPLOAD >> 20
                    )));
                }
                pending.extend_from_slice(&piece);
                if pending.len() < FILES_CHUNK {
                    continue;
                }
            }
            let op = FilesOp::Upload {
                name: name.clone(),
                data: base64::engine::general_purpose::STANDARD.encode(&pending),
                last,
                sender: caller.display_name.clone(),
            };
            pending.clear();
            let call = match &mut call {
                Some(call) => {
                    if !call.send(op) {
                        return Err(ApiError::Unavailable(
                            "the session's runner went away during the upload".into(),
                        ));
                    }
                    call
                }
                None => call.insert(self.workspace_call(caller, key, Role::Edit, op).await?),
            };
            match answer(call).await? {
                FilesBody::Written if !last => {}
                FilesBody::Uploaded { path, size } if last => {
                    return Ok(Uploaded { path, size });
                }
                other => return Err(unexpected(&other)),
            }
        }
    }
}

/// A path the runner may be asked about, as given (checked: relative, plain components).
fn checked(path: &str) -> Result<String, ApiError> {
    let parts = path_components(path).map_err(ApiError::Invalid)?;
    Ok(parts.join("/"))
}

/// Waits for a stream's first chunk (or its refusal).
async fn download(mut call: FilesCall) -> Result<Download, ApiError> {
    match answer(&mut call).await? {
        FilesBody::Chunk { data, last, size } => {
            let first = decode(&data)?;
            if !last {
                call.more();
            }
            Ok(Download {
                size,
                first,
                rest: (!last).then_some(call),
            })
        }
        other => Err(unexpected(&other)),
    }
}
