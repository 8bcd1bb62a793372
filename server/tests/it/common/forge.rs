//! Real git repositories on disk, and a mock of the GitHub and GitLab REST APIs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

/// Runs git, panicking with its output on failure. Any owner's repository is read (a
/// test's remote may belong to a pod's uid).
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "safe.directory=*"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare repository `<root>/<org>/<name>.git` with one commit on `main`; returns its
/// `file://` URL.
pub fn bare_repo(
    root: &Path,
    org: &str,
    name: &str,
    extra_file: Option<(&str, Vec<u8>)>,
) -> String {
    let bare = root.join(org).join(format!("{name}.git"));
    std::fs::create_dir_all(&bare).unwrap();
    git(
        &bare,
        &["init", "--quiet", "--bare", "--initial-branch=main"],
    );
    let work = root.join(format!("seed-{org}-{name}"));
    git(
        root,
        &[
            "clone",
            "--quiet",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    std::fs::write(work.join("README.md"), format!("# {name}\n")).unwrap();
    if let Some((file, bytes)) = extra_file {
        std::fs::write(work.join(file), bytes).unwrap();
    }
    commit_all(&work, "seed");
    git(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
    );
    format!("file://{}", bare.display())
}

/// Commits everything in the work tree `dir`, as a seed author.
pub fn commit_all(dir: &Path, message: &str) {
    git(dir, &["add", "--all"]);
    git(
        dir,
        &[
            "-c",
            "user.name=seed",
            "-c",
            "user.email=seed@example.com",
            "commit",
            "--quiet",
            "-m",
            message,
        ],
    );
}

/// The bare repository behind a `file://` URL.
pub fn bare_path(url: &str) -> PathBuf {
    PathBuf::from(url.trim_start_matches("file://"))
}

/// Branches of a bare repository.
pub fn branches(url: &str) -> Vec<String> {
    git(
        &bare_path(url),
        &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// A request the forge mock received.
#[derive(Debug, Clone)]
pub struct ForgeCall {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Clone, Default)]
struct ForgeState {
    /// Where the mock listens: its links are on its own host, as a forge's are.
    base: String,
    calls: Arc<Mutex<Vec<ForgeCall>>>,
    fail_with: Arc<Mutex<Option<u16>>>,
}

/// A mock of the pull-request endpoints of GitHub and GitLab.
pub struct ForgeMock {
    pub url: String,
    state: ForgeState,
}

impl ForgeMock {
    pub async fn start() -> ForgeMock {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = ForgeState {
            base: url.clone(),
            ..ForgeState::default()
        };
        let app = axum::Router::new()
            .route("/repos/{owner}/{repo}/pulls", post(github_pull))
            .route("/projects/{project}/merge_requests", post(gitlab_merge))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.ok() });
        ForgeMock { url, state }
    }

    /// Every later request is answered with this status.
    pub fn fail_with(&self, status: u16) {
        *self.state.fail_with.lock().unwrap() = Some(status);
    }

    pub fn calls(&self) -> Vec<ForgeCall> {
        self.state.calls.lock().unwrap().clone()
    }
}

fn record(
    state: &ForgeState,
    path: String,
    headers: HeaderMap,
    body: Value,
) -> Option<(StatusCode, Json<Value>)> {
    state.calls.lock().unwrap().push(ForgeCall {
        path,
        headers,
        body,
    });
    let fail = *state.fail_with.lock().unwrap();
    fail.map(|s| {
        (
            StatusCode::from_u16(s).unwrap(),
            Json(json!({"message": "the mock forge is having a bad day"})),
        )
    })
}

async fn github_pull(
    State(state): State<ForgeState>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(failure) = record(
        &state,
        format!("/repos/{owner}/{repo}/pulls"),
        headers,
        body,
    ) {
        return failure;
    }
    (
        StatusCode::CREATED,
        Json(json!({"number": 42, "html_url": format!("{}/{owner}/{repo}/pull/42", state.base)})),
    )
}

async fn gitlab_merge(
    State(state): State<ForgeState>,
    UrlPath(project): UrlPath<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if let Some(failure) = record(
        &state,
        format!("/projects/{project}/merge_requests"),
        headers,
        body,
    ) {
        return failure;
    }
    (
        StatusCode::CREATED,
        Json(json!({"iid": 7, "web_url": format!("{}/{project}/-/merge_requests/7", state.base)})),
    )
}
