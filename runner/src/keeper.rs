//! The credentials keeper: whoever holds the model key and the git tokens, and does the
//! few things that need them (model calls, clones, pushes, pull requests).
//!
//! In local mode that is the runner itself ([`Keeper::Here`]): the agent runs in a sandbox
//! that sees none of the runner's processes, files or environment. In a Kubernetes pod the
//! agent runs in the runner's container, as its user; so the credentials are not in that
//! container at all. A second container of the pod, `credentials`, runs this module's
//! [`main`] (`runner keeper`): it holds them, shares no process namespace and no volume
//! with the agent but its own folder, and offers the runner a narrow interface on the
//! pod's loopback ([`Keeper::Apart`]):
//!
//! - the model proxy (the agent's model calls, with a per-run proxy token, as in local
//!   mode);
//! - `POST /v1/clone`: clones one of the session's own repositories (or its workflow) with
//!   the token and hands the runner a git bundle, which the runner clones from;
//! - `POST /v1/repos/{i}/delivery`: takes a bundle of the agent's commits (made by the runner
//!   in the agent's container), fetches it into the keeper's own repository and pushes the
//!   session's working branch from there;
//! - `POST /v1/repos/{i}/pull-request`: proposes a branch it pushed;
//! - `GET /v1/hold`: the runner holds it open while it runs; the keeper exits when it drops.
//!
//! Everything but the proxy takes the keeper token (the runner's, from the run's Secret).
//! Repositories are named by their index in the session's own list, branches by the
//! session: whoever reaches the interface can clone only what the session clones and push
//! only its working branch. A bundle is data: the keeper's git reads no configuration,
//! attribute or link the agent wrote.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use futures::StreamExt;
use model::protocol::SessionEvent;
use model::runner_env::{self as env, Credentials};
use model::session::{ActiveWorkflow, GitProvider, SessionRepo};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;

use crate::config::{Config, CredentialArgs, McpArgs, SourceArgs};
use crate::deliver::{self, Proposal, Target, error_event};
use crate::error::Error;
use crate::forge::Forges;
use crate::git::{self, Confinement, Credential, GitError};
use crate::proxy::ModelProxy;
use crate::workspace::{Repo, Workspace};

/// The port of the keeper's interface on the pod's loopback.
pub const KEEPER_PORT: u16 = 4142;
/// The largest bundle of the agent's commits the keeper takes.
const MAX_BUNDLE: u64 = 4 << 30;
/// How long the keeper waits for its runner to come before it gives up and exits.
const FIRST_HOLD: Duration = Duration::from_secs(120);
/// How long the runner waits for its keeper to answer at start.
const KEEPER_START: Duration = Duration::from_secs(120);
/// What a keeper answers when a thin bundle lacks commits it does not have.
const NEEDS_FULL: &str = "needs-full-bundle";

/// Where the keeper is and the token it takes.
#[derive(Debug, Clone)]
pub struct Address {
    /// `http://127.0.0.1:4142`.
    pub url: String,
    /// The keeper token.
    pub token: String,
}

/// The credentials and where each may go.
#[derive(Debug, Clone)]
pub struct Holdings {
    /// Model and git credentials.
    pub credentials: Credentials,
    /// The forges of the run (from its configured API URLs only).
    pub forges: Forges,
}

impl Holdings {
    /// The credential for a remote, if the run has a token for the forge it is on. A token
    /// goes only to its forge's own host (never to a host a repository URL merely names),
    /// only over https; a remote on plain http of a forge with a token is refused.
    pub fn credential_for(
        &self,
        url: &str,
        provider: Option<GitProvider>,
    ) -> Result<Option<Credential>, String> {
        let Some(forge) = self.forges.of(url, provider) else {
            return Ok(None);
        };
        let token = match forge.provider {
            GitProvider::Github => self.credentials.github_token.clone(),
            GitProvider::Gitlab => self.credentials.gitlab_token.clone(),
        };
        let Some(token) = token else {
            return Ok(None);
        };
        if let Some(rest) = url.strip_prefix("http://") {
            let host = rest.split('/').next().unwrap_or_default();
            return Err(format!(
                "refusing to send the {:?} token to {host} over plain http: use an https URL",
                forge.provider
            ));
        }
        // ssh and scp-like remotes use keys; local file remotes nothing.
        let Some(rest) = url.strip_prefix("https://") else {
            return Ok(None);
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let scope = format!("https://{authority}");
        Ok(Some(Credential::new(forge.provider, token, scope)))
    }

    /// Clones `url` into `dir` (a new directory) with the runner's own git and the
    /// credential of its forge.
    async fn clone_into(
        &self,
        url: &str,
        provider: Option<GitProvider>,
        branch: Option<&str>,
        dir: &Path,
        bare: bool,
    ) -> Result<(), GitError> {
        let credential = self.credential_for(url, provider).map_err(|why| GitError {
            command: "clone".into(),
            message: why,
        })?;
        let target = dir.display().to_string();
        let mut args = vec!["clone", "--quiet"];
        if bare {
            args.push("--bare");
        }
        if let Some(branch) = branch {
            args.extend(["--branch", branch]);
        }
        // `--`: neither the URL nor the path can be taken for an option.
        args.extend(["--", url, target.as_str()]);
        let parent = dir.parent().unwrap_or(Path::new("/"));
        git::git(parent, &args, credential.as_ref())
            .await
            .map(|_| ())
    }
}

/// A repository the session clones: one of its list, by index, or its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The session's repository at this index.
    Repo(usize),
    /// The active workflow.
    Workflow,
}

/// What the keeper tells its runner at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hello {
    /// The model proxy (`http://127.0.0.1:4141`).
    pub proxy_url: String,
    /// The token the proxy takes (the agent's API key).
    pub proxy_token: String,
    /// Whether the keeper has model credentials at all.
    pub model: bool,
}

/// Whoever holds the run's credentials.
pub enum Keeper {
    /// The runner itself.
    Here(Holdings),
    /// The keeper container of the runner's pod.
    Apart(Remote),
}

/// The runner's side of a keeper in another container.
pub struct Remote {
    address: Address,
    client: reqwest::Client,
    hello: Hello,
    hold: tokio::task::JoinHandle<()>,
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.hold.abort();
    }
}

impl Keeper {
    /// The run's keeper: the runner itself, or the keeper its configuration names (waited
    /// for, then held for the run's lifetime).
    pub async fn open(config: &Config) -> Result<Keeper, Error> {
        match &config.keeper {
            None => Ok(Keeper::Here(Holdings {
                credentials: config.credentials.clone(),
                forges: config.forges.clone(),
            })),
            Some(address) => Remote::connect(address.clone()).await.map(Keeper::Apart),
        }
    }

    /// Whether model calls can be made at all.
    pub fn has_model(&self) -> bool {
        match self {
            Keeper::Here(h) => h.credentials.has_model(),
            Keeper::Apart(r) => r.hello.model,
        }
    }

    /// The proxy a keeper in another container runs for the agent.
    pub fn remote_proxy(&self) -> Option<&Hello> {
        match self {
            Keeper::Here(_) => None,
            Keeper::Apart(r) => Some(&r.hello),
        }
    }

    /// Clones one of the session's repositories into `dir`, a new directory.
    pub async fn clone(
        &self,
        confinement: &Confinement,
        source: Source,
        url: &str,
        provider: Option<GitProvider>,
        branch: Option<&str>,
        dir: &Path,
    ) -> Result<(), GitError> {
        match self {
            Keeper::Here(h) => h.clone_into(url, provider, branch, dir, false).await,
            Keeper::Apart(r) => r.clone(confinement, source, url, branch, dir).await,
        }
    }

    /// Pushes and proposes the agent's commits of the repository at `index`; the steps as
    /// events.
    pub async fn deliver(
        &self,
        ws: &Workspace,
        index: usize,
        repo: &Repo,
        proposal: &Proposal<'_>,
    ) -> Vec<SessionEvent> {
        match self {
            Keeper::Here(h) => deliver::here(h, ws, repo, proposal).await,
            Keeper::Apart(r) => r.deliver(ws, index, repo, proposal).await,
        }
    }
}

fn keeper_error(what: &str, e: impl std::fmt::Display) -> GitError {
    GitError {
        command: what.to_owned(),
        message: format!("the credentials keeper: {e}"),
    }
}

impl Remote {
    /// Waits for the keeper, asks what it offers, and starts holding it.
    async fn connect(address: Address) -> Result<Remote, Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|e| Error::Keeper(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + KEEPER_START;
        let hello = loop {
            let answer = client
                .get(format!("{}/v1/hello", address.url))
                .bearer_auth(&address.token)
                .send()
                .await;
            match answer {
                Ok(r) if r.status().is_success() => {
                    break r.json::<Hello>().await.map_err(|e| {
                        Error::Keeper(format!("the credentials keeper's answer: {e}"))
                    })?;
                }
                Ok(r) => {
                    return Err(Error::Keeper(format!(
                        "the credentials keeper refused this runner ({})",
                        r.status()
                    )));
                }
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(Error::Keeper(format!(
                        "the credentials keeper at {} did not answer within {} s: {e}",
                        address.url,
                        KEEPER_START.as_secs()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        let held = client
            .get(format!("{}/v1/hold", address.url))
            .bearer_auth(&address.token)
            .send()
            .await
            .map_err(|e| Error::Keeper(format!("cannot hold the credentials keeper: {e}")))?;
        // Read until the keeper goes; the connection closes when this process ends, and
        // the keeper exits with it.
        let hold = tokio::spawn(async move {
            let mut body = held.bytes_stream();
            while body.next().await.is_some() {}
            tracing::warn!("the credentials keeper went away");
        });
        Ok(Remote {
            address,
            client,
            hello,
            hold,
        })
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.address.url))
            .bearer_auth(&self.address.token)
    }

    /// Asks the keeper to clone, and clones from the bundle it sends.
    async fn clone(
        &self,
        confinement: &Confinement,
        source: Source,
        url: &str,
        branch: Option<&str>,
        dir: &Path,
    ) -> Result<(), GitError> {
        let answer = self
            .post("/v1/clone")
            .json(&CloneRequest { source })
            .send()
            .await
            .map_err(|e| keeper_error("clone", e))?;
        if !answer.status().is_success() {
            let why = answer.text().await.unwrap_or_default();
            return Err(GitError {
                command: "clone".into(),
                message: why,
            });
        }
        let scratch = tempfile::tempdir().map_err(|e| keeper_error("clone", e))?;
        let bundle = scratch.path().join("clone.bundle");
        save(answer.bytes_stream(), &bundle, MAX_BUNDLE)
            .await
            .map_err(|e| keeper_error("clone", e))?;
        // A bundle is data the keeper made: the runner's own git clones from it into the
        // new directory, then the remote is the session's.
        let from = bundle.display().to_string();
        let target = dir.display().to_string();
        let mut args = vec!["clone", "--quiet"];
        if let Some(branch) = branch {
            args.extend(["--branch", branch]);
        }
        args.extend(["--", from.as_str(), target.as_str()]);
        let parent = dir.parent().unwrap_or(Path::new("/"));
        git::git(parent, &args, None).await?;
        git::confined(
            confinement,
            dir,
            &["remote", "set-url", "origin", "--", url],
        )
        .await
        .map(|_| ())
    }

    /// Bundles the agent's commits (in its confinement), hands them to the keeper, and has
    /// it propose what it pushed.
    async fn deliver(
        &self,
        ws: &Workspace,
        index: usize,
        repo: &Repo,
        proposal: &Proposal<'_>,
    ) -> Vec<SessionEvent> {
        let fail = |e: String| {
            vec![error_event(
                "push_rejected",
                format!("could not take the work of {} for delivery: {e}", repo.name),
            )]
        };
        let scratch = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => return fail(e.to_string()),
        };
        let bundle = scratch.path().join("work.bundle");
        let path = bundle.display().to_string();
        let tracked = format!("refs/remotes/origin/{}", repo.base);
        // Thin: only what the agent added over the base branch, when its repository still
        // knows that branch (the keeper fetches the base itself).
        let thin = git::confined(
            &ws.confinement,
            &repo.dir,
            &["rev-parse", "--verify", "--quiet", &tracked],
        )
        .await
        .is_ok();
        let exclude = format!("^{tracked}");
        let mut events = None;
        for full in [!thin, true] {
            let _ = std::fs::remove_file(&bundle);
            let mut args = vec!["bundle", "create", "--quiet", path.as_str(), "HEAD"];
            if !full {
                args.push(&exclude);
            }
            match git::confined(&ws.confinement, &repo.dir, &args).await {
                Ok(_) => {}
                Err(e) if e.message.contains("empty bundle") => {
                    return vec![SessionEvent::Log(model::protocol::LogLine {
                        level: model::protocol::LogLevel::Info,
                        message: format!("{}: no changes to push", repo.name),
                    })];
                }
                Err(e) => return fail(e.message),
            }
            let file = match tokio::fs::File::open(&bundle).await {
                Ok(f) => f,
                Err(e) => return fail(e.to_string()),
            };
            let answer = self
                .post(&format!("/v1/repos/{index}/delivery"))
                .query(&[("base", repo.base.as_str())])
                .body(reqwest::Body::wrap_stream(tokio_util_stream(file)))
                .send()
                .await;
            match answer {
                Ok(r) if r.status() == StatusCode::CONFLICT && !full => continue,
                Ok(r) if r.status().is_success() => {
                    events = Some(r.json::<Vec<SessionEvent>>().await.unwrap_or_default());
                    break;
                }
                Ok(r) => {
                    let status = r.status();
                    let why = r.text().await.unwrap_or_default();
                    return fail(format!("the credentials keeper answered {status}: {why}"));
                }
                Err(e) => return fail(format!("the credentials keeper: {e}")),
            }
        }
        let mut events = events.unwrap_or_default();
        if deliver::pushed(&events) {
            let answer = self
                .post(&format!("/v1/repos/{index}/pull-request"))
                .json(&ProposalRequest {
                    base: repo.base.clone(),
                    title: proposal.title.clone(),
                    body: proposal.body.clone(),
                })
                .send()
                .await;
            let event = match answer {
                Ok(r) if r.status().is_success() => r.json::<SessionEvent>().await.ok(),
                _ => None,
            };
            events.push(event.unwrap_or_else(|| {
                error_event(
                    "pr_failed",
                    format!(
                        "opening a pull request for {}: the credentials keeper did not answer",
                        repo.name
                    ),
                )
            }));
        }
        events
    }
}

/// A file as a stream of chunks (for a request body).
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    })
}

/// Writes a stream of chunks to `path`, refusing more than `limit` bytes.
async fn save<E: std::fmt::Display>(
    mut stream: impl futures::Stream<Item = Result<Bytes, E>> + Unpin,
    path: &Path,
    limit: u64,
) -> Result<(), String> {
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        written += chunk.len() as u64;
        if written > limit {
            return Err(format!("more than {limit} bytes"));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    file.flush().await.map_err(|e| e.to_string())
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CloneRequest {
    source: Source,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProposalRequest {
    base: String,
    title: String,
    body: String,
}

#[derive(Debug, Deserialize)]
struct DeliveryQuery {
    base: String,
}

/// The keeper's environment (`runner keeper`): the session's name, repositories and
/// credentials, its token and its own folder.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "runner keeper",
    about = "Holds a runner pod's credentials for its runner"
)]
pub struct KeeperConfig {
    /// Session name (its working branch is `ambient/<name>`).
    #[arg(long, env = env::SESSION_NAME, value_name = env::SESSION_NAME)]
    pub session_name: String,
    /// The session's repositories and workflow.
    #[command(flatten)]
    pub sources: SourceArgs,
    /// The credentials.
    #[command(flatten)]
    pub credentials: CredentialArgs,
    /// The MCP servers (the proxy relays to the HTTP ones, with their credentials).
    #[command(flatten)]
    pub mcp: McpArgs,
    /// The token the runner presents.
    #[arg(long, env = env::KEEPER_TOKEN, value_name = env::KEEPER_TOKEN, hide_env_values = true)]
    pub token: String,
    /// The keeper's own folder (its delivery repositories).
    #[arg(long, env = env::KEEPER_STATE, value_name = env::KEEPER_STATE)]
    pub state: PathBuf,
    /// The address of the interface (the runner's `AMBIENT_KEEPER_URL` names it).
    #[arg(long, env = env::KEEPER_LISTEN, value_name = env::KEEPER_LISTEN, default_value_t = SocketAddr::from(([127, 0, 0, 1], KEEPER_PORT)))]
    pub listen: SocketAddr,
    /// The address of the model proxy (any free port by default: the runner learns it from
    /// the keeper).
    #[arg(long, default_value_t = SocketAddr::from(([127, 0, 0, 1], 0)))]
    pub proxy: SocketAddr,
    /// The session's work is held (an attempt no one has kept): nothing is pushed, whoever
    /// asks (the agent shares its runner's container and could reach this interface).
    #[arg(long, env = env::HOLD_DELIVERY, value_name = env::HOLD_DELIVERY, default_value = "false", value_parser = crate::config::boolean, action = clap::ArgAction::Set)]
    pub hold_delivery: bool,
}

struct Kept {
    holdings: Holdings,
    token: String,
    session: String,
    /// Whether the session's work is held: no delivery.
    hold: bool,
    /// The session's repositories with their names (as the runner names them).
    repos: Vec<(String, SessionRepo)>,
    workflow: Option<ActiveWorkflow>,
    state: PathBuf,
    hello: Hello,
    /// Repositories whose branch this keeper pushed (only those are proposed).
    pushed: std::sync::Mutex<HashSet<usize>>,
    /// One git operation at a time.
    busy: tokio::sync::Mutex<()>,
    holds: AtomicUsize,
    held: tokio::sync::Notify,
    released: tokio::sync::Notify,
}

/// `runner keeper`: runs the keeper until its runner lets go; the exit code.
pub async fn main(args: impl IntoIterator<Item = String>) -> i32 {
    let config = match KeeperConfig::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "runner keeper: {}",
                e.to_string().lines().next().unwrap_or_default()
            );
            return env::exit::PREREQUISITE;
        }
    };
    match serve(config).await {
        Ok(()) => env::exit::OK,
        Err(e) => {
            eprintln!("runner keeper: {e}");
            env::exit::PREREQUISITE
        }
    }
}

/// Serves the interface and the model proxy; returns when the runner lets go (or never
/// came), or on SIGTERM.
pub async fn serve(config: KeeperConfig) -> Result<(), String> {
    let (repo_list, workflow) = config.sources.resolve();
    let (credentials, forges) = config.credentials.resolve();
    let (mcp, warnings) = crate::mcp::Routes::new(&config.mcp.servers(), &credentials);
    for w in warnings {
        eprintln!("runner keeper: {w}");
    }
    let mut repos: Vec<(String, SessionRepo)> = Vec::new();
    for spec in repo_list {
        let taken: Vec<String> = repos.iter().map(|(n, _)| n.clone()).collect();
        repos.push((crate::workspace::repo_name(&spec.url, &taken), spec));
    }
    let proxy_listener = tokio::net::TcpListener::bind(config.proxy)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.proxy))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    serve_on(
        (config.session_name, config.hold_delivery),
        config.token,
        config.state,
        (repos, workflow),
        (credentials, forges, mcp),
        listener,
        proxy_listener,
    )
    .await
}

/// [`serve`] on listeners bound already.
async fn serve_on(
    (session, held_work): (String, bool),
    token: String,
    state: PathBuf,
    (repos, workflow): (Vec<(String, SessionRepo)>, Option<ActiveWorkflow>),
    (credentials, forges, mcp): (Credentials, Forges, crate::mcp::Routes),
    listener: tokio::net::TcpListener,
    proxy_listener: tokio::net::TcpListener,
) -> Result<(), String> {
    std::fs::create_dir_all(&state)
        .map_err(|e| format!("cannot create {}: {e}", state.display()))?;
    let proxy =
        ModelProxy::start_on_tokio(&credentials, mcp, proxy_listener, crate::proxy::new_token())
            .map_err(|e| format!("cannot start the model proxy: {e}"))?;
    let listen = listener.local_addr().map_err(|e| e.to_string())?;
    let kept = Arc::new(Kept {
        hello: Hello {
            proxy_url: proxy.base_url.clone(),
            proxy_token: proxy.token.clone(),
            model: credentials.has_model(),
        },
        holdings: Holdings {
            credentials,
            forges,
        },
        token,
        session,
        hold: held_work,
        repos,
        workflow,
        state,
        pushed: Default::default(),
        busy: Default::default(),
        holds: AtomicUsize::new(0),
        held: Default::default(),
        released: Default::default(),
    });
    let app = axum::Router::new()
        .route("/v1/hello", axum::routing::get(hello))
        .route("/v1/hold", axum::routing::get(hold))
        .route("/v1/clone", axum::routing::post(clone))
        .route("/v1/repos/{index}/delivery", axum::routing::post(delivery))
        .route(
            "/v1/repos/{index}/pull-request",
            axum::routing::post(pull_request),
        )
        .layer(axum::middleware::from_fn_with_state(
            kept.clone(),
            authorise,
        ))
        .with_state(kept.clone());
    tracing::info!(%listen, proxy = %proxy.base_url, "credentials keeper ready");
    let server = axum::serve(listener, app);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    let lifetime = async {
        // Registered before the count is read: no release between them is missed.
        let first = kept.held.notified();
        if kept.holds.load(Ordering::SeqCst) == 0
            && tokio::time::timeout(FIRST_HOLD, first).await.is_err()
        {
            tracing::warn!("no runner came; exiting");
            return;
        }
        loop {
            let released = kept.released.notified();
            if kept.holds.load(Ordering::SeqCst) == 0 {
                tracing::info!("the runner let go; exiting");
                return;
            }
            released.await;
        }
    };
    tokio::select! {
        r = server => r.map_err(|e| format!("the interface stopped: {e}"))?,
        () = lifetime => {}
        _ = term.recv() => tracing::info!("asked to terminate"),
    }
    Ok(())
}

async fn authorise(State(kept): State<Arc<Kept>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(presented.as_bytes().ct_eq(kept.token.as_bytes())) {
        return (StatusCode::UNAUTHORIZED, "unknown keeper token").into_response();
    }
    next.run(req).await
}

async fn hello(State(kept): State<Arc<Kept>>) -> Json<Hello> {
    Json(kept.hello.clone())
}

/// Counts a hold while its response lives (hyper drops it when the connection closes).
struct Held(Arc<Kept>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.holds.fetch_sub(1, Ordering::SeqCst);
        self.0.released.notify_waiters();
    }
}

async fn hold(State(kept): State<Arc<Kept>>) -> Response {
    kept.holds.fetch_add(1, Ordering::SeqCst);
    kept.held.notify_waiters();
    let guard = Held(kept);
    let body = futures::stream::unfold(guard, |guard| async move {
        std::future::pending::<()>().await;
        drop(guard);
        None::<(Result<Bytes, Infallible>, Held)>
    });
    Body::from_stream(body).into_response()
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// Clones a repository of the session (bare, in the keeper's folder) and answers with a
/// bundle of all of it.
async fn clone(State(kept): State<Arc<Kept>>, Json(req): Json<CloneRequest>) -> Response {
    let (url, provider, branch) = match req.source {
        Source::Repo(i) => match kept.repos.get(i) {
            Some((_, spec)) => (spec.url.clone(), spec.provider, spec.branch.clone()),
            None => return refuse(StatusCode::NOT_FOUND, format!("no repository {i}")),
        },
        Source::Workflow => match &kept.workflow {
            Some(wf) => (
                wf.git_url.clone(),
                None,
                Some(wf.branch_or_default().to_owned()),
            ),
            None => return refuse(StatusCode::NOT_FOUND, "the session has no workflow"),
        },
    };
    let _busy = kept.busy.lock().await;
    let scratch = match tempfile::tempdir_in(&kept.state) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let dir = scratch.path().join("clone.git");
    if let Err(e) = kept
        .holdings
        .clone_into(&url, provider, branch.as_deref(), &dir, true)
        .await
    {
        return refuse(StatusCode::BAD_GATEWAY, e.message);
    }
    let bundle = scratch.path().join("clone.bundle");
    let path = bundle.display().to_string();
    if let Err(e) = git::git(
        &dir,
        &["bundle", "create", "--quiet", &path, "HEAD", "--all"],
        None,
    )
    .await
    {
        return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.message);
    }
    let file = match tokio::fs::File::open(&bundle).await {
        Ok(f) => f,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // The open file outlives the folder's removal.
    drop(scratch);
    Body::from_stream(tokio_util_stream(file)).into_response()
}

/// Takes a bundle of the agent's commits, fetches it into the keeper's own repository and
/// pushes the session's working branch from there.
async fn delivery(
    State(kept): State<Arc<Kept>>,
    UrlPath(index): UrlPath<usize>,
    Query(query): Query<DeliveryQuery>,
    body: Body,
) -> Response {
    let Some((name, spec)) = kept.repos.get(index) else {
        return refuse(StatusCode::NOT_FOUND, format!("no repository {index}"));
    };
    if !spec.auto_push() {
        return refuse(
            StatusCode::FORBIDDEN,
            format!("the work of {name} is not pushed in this session"),
        );
    }
    if kept.hold {
        return refuse(
            StatusCode::CONFLICT,
            format!("the work of {name} is held until a person keeps this attempt"),
        );
    }
    if let Err(e) = model::validate::branch_name("base", &query.base) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    let branch = model::api::auto_branch(&kept.session);
    let _busy = kept.busy.lock().await;
    let scratch = match tempfile::tempdir_in(&kept.state) {
        Ok(d) => d,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let bundle = scratch.path().join("work.bundle");
    if let Err(e) = save(body.into_data_stream(), &bundle, MAX_BUNDLE).await {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the bundle was not taken: {e}"),
        );
    }
    let target = Target {
        name,
        url: &spec.url,
        provider: spec.provider,
        base: &query.base,
    };
    let dir = kept.state.join("delivery").join(format!("{name}.git"));
    let delivery = match git::Delivery::open(dir, &spec.url).await {
        Ok(d) => d,
        Err(e) => return Json(vec![error_event("push_rejected", e.to_string())]).into_response(),
    };
    let credential = match kept.holdings.credential_for(&spec.url, spec.provider) {
        Ok(c) => c,
        Err(why) => {
            return Json(vec![error_event("push_rejected", format!("{name}: {why}"))])
                .into_response();
        }
    };
    // The base as the remote has it now (the commits a thin bundle leaves out).
    let base = format!("+refs/heads/{}:{}", query.base, git::DELIVERED_BASE);
    if git::git(
        &delivery.dir,
        &["fetch", "--quiet", "--no-tags", "origin", &base],
        credential.as_ref(),
    )
    .await
    .is_err()
    {
        let _ = git::git(
            &delivery.dir,
            &["update-ref", "-d", git::DELIVERED_BASE],
            None,
        )
        .await;
    }
    let from = bundle.display().to_string();
    let head = format!("+HEAD:{}", git::DELIVERED_HEAD);
    if let Err(e) = git::git(
        &delivery.dir,
        &[
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            "--",
            &from,
            &head,
        ],
        None,
    )
    .await
    {
        if e.message.contains("prerequisite") {
            return refuse(StatusCode::CONFLICT, NEEDS_FULL);
        }
        return Json(vec![error_event(
            "push_rejected",
            format!("the bundle of {name} was refused: {}", e.message),
        )])
        .into_response();
    }
    let events = deliver::push(&kept.holdings, &delivery, &target, &branch).await;
    if deliver::pushed(&events) {
        kept.pushed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(index);
    }
    Json(events).into_response()
}

/// Proposes the working branch of a repository this keeper pushed.
async fn pull_request(
    State(kept): State<Arc<Kept>>,
    UrlPath(index): UrlPath<usize>,
    Json(req): Json<ProposalRequest>,
) -> Response {
    let Some((name, spec)) = kept.repos.get(index) else {
        return refuse(StatusCode::NOT_FOUND, format!("no repository {index}"));
    };
    let pushed = kept
        .pushed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&index);
    if !pushed {
        return refuse(
            StatusCode::CONFLICT,
            format!("nothing of {name} was pushed by this keeper"),
        );
    }
    if let Err(e) = model::validate::branch_name("base", &req.base) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string());
    }
    let branch = model::api::auto_branch(&kept.session);
    let title: String = req.title.chars().take(256).collect();
    let body: String = req.body.chars().take(65_536).collect();
    let target = Target {
        name,
        url: &spec.url,
        provider: spec.provider,
        base: &req.base,
    };
    let proposal = Proposal {
        branch: &branch,
        title,
        body,
    };
    Json(deliver::propose(&kept.holdings, &target, &proposal).await).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interface, tried by someone without the token and by a runner asking for more
    /// than the session's: refused; the keeper exits once its runner lets go.
    #[tokio::test]
    async fn the_interface_takes_only_the_token_and_only_the_sessions_own() {
        let state = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repos = vec![(
            "lib".to_owned(),
            serde_json::from_value::<SessionRepo>(serde_json::json!({
                "url": "https://github.com/acme/lib.git", "autoPush": false,
            }))
            .unwrap(),
        )];
        let credentials = Credentials {
            anthropic_api_key: Some("sk-real".into()),
            github_token: Some("ghp_real".into()),
            ..Credentials::default()
        };
        let forges = Forges::new(&crate::forge::ApiUrls::default());
        let keeper = tokio::spawn(serve_on(
            ("s1".into(), false),
            "keeper-token".into(),
            state.path().to_owned(),
            (repos, None),
            (credentials, forges, crate::mcp::Routes::default()),
            listener,
            proxy,
        ));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        // No token, a wrong one: 401 everywhere.
        for token in [None, Some("guess")] {
            for (method, path) in [
                ("GET", "/v1/hello"),
                ("GET", "/v1/hold"),
                ("POST", "/v1/clone"),
                ("POST", "/v1/repos/0/delivery?base=main"),
                ("POST", "/v1/repos/0/pull-request"),
            ] {
                let mut req = http.request(method.parse().unwrap(), format!("{url}{path}"));
                if let Some(t) = token {
                    req = req.bearer_auth(t);
                }
                let status = req.send().await.unwrap().status();
                assert_eq!(status, 401, "{method} {path} with {token:?}");
            }
        }
        let ask = |method: &str, path: &str| {
            http.request(method.parse().unwrap(), format!("{url}{path}"))
                .bearer_auth("keeper-token")
        };
        let hello: Hello = ask("GET", "/v1/hello")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(hello.model && hello.proxy_token.starts_with("proxy-"));
        // Only the session's repositories, by index; no workflow when it has none.
        let r = ask("POST", "/v1/clone")
            .json(&serde_json::json!({"source": {"repo": 5}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = ask("POST", "/v1/clone")
            .json(&serde_json::json!({"source": "workflow"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let r = ask("POST", "/v1/clone")
            .json(&serde_json::json!({"url": "https://github.com/acme/secret.git"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
        // A repository whose work is not pushed takes no bundle; a bad base is refused.
        let r = ask("POST", "/v1/repos/0/delivery?base=main")
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        // Nothing pushed: no pull request.
        let r = ask("POST", "/v1/repos/0/pull-request")
            .json(&serde_json::json!({"base": "main", "title": "t", "body": "b"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        // Held, then let go: the keeper exits.
        let held = ask("GET", "/v1/hold").send().await.unwrap();
        assert_eq!(held.status(), 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!keeper.is_finished(), "the keeper left a runner holding it");
        drop(held);
        let ended = tokio::time::timeout(Duration::from_secs(10), keeper)
            .await
            .expect("the keeper exits when its runner lets go");
        assert_eq!(ended.unwrap(), Ok(()));
    }

    /// An attempt's keeper pushes nothing while its work is held, whoever asks with the
    /// token (the agent shares the runner's container).
    #[tokio::test]
    async fn a_held_attempts_keeper_takes_no_delivery() {
        let state = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let repos = vec![(
            "app".to_owned(),
            serde_json::from_value::<SessionRepo>(serde_json::json!({
                "url": "https://github.com/acme/app.git", "autoPush": true,
            }))
            .unwrap(),
        )];
        let forges = Forges::new(&crate::forge::ApiUrls::default());
        let keeper = tokio::spawn(serve_on(
            ("attempts-0a1b2c3d-1".into(), true),
            "keeper-token".into(),
            state.path().to_owned(),
            (repos, None),
            (
                Credentials::default(),
                forges,
                crate::mcp::Routes::default(),
            ),
            listener,
            proxy,
        ));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = http
            .post(format!("{url}/v1/repos/0/delivery?base=main"))
            .bearer_auth("keeper-token")
            .body("a bundle")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 409);
        assert!(r.text().await.unwrap().contains("held"));
        keeper.abort();
    }
}
