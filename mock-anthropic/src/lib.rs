//! A scriptable mock of the Anthropic Messages API, so the real `claude` CLI runs offline in
//! tests: point `ANTHROPIC_BASE_URL` at [`MockHandle::url`].
//!
//! Layout:
//! - [`reply`]: the scriptable [`Reply`] and the concrete message [`reply::Plan`] it becomes;
//! - [`script`]: reply selection — model probe, scripted queue, then keyword rules;
//! - [`conversation`]: reading prompts, tool calls and the cwd out of a request body;
//! - [`sse`]: encoding a plan as an SSE stream or a JSON message;
//! - [`record`]: the request log ([`RecordedRequest`]);
//! - [`server`]: the axum router, its handlers and shared state;
//! - [`error`]: the crate's error types.
//!
//! Keyword rules (used when no scripted reply is queued), on the last `role:"user"` message:
//! tool results with no new prompt → `Done: <tool> finished.` (or another `echo loop` call
//! when the prompt was `loop`, or a slow stream when the prompt said `slowly`); otherwise, on its last typed text: `create <file>` → Write,
//! `run: <cmd>` → Bash, `slow [N]` → slow stream, `think` → thinking block, `fail <status>`
//! → HTTP error, `loop` → Bash `echo loop`, `recall` → earlier prompts, `ask: Q | A | B` →
//! an `AskUserQuestion` call (its result comes back as `Got your answer. <result>`),
//! `propose: <plan>` → an `ExitPlanMode` call with the plan, `call: <tool> <json>` → a call
//! of any tool with that input (an MCP server's `mcp__<server>__<tool>`, whose result comes
//! back as `Done: <tool> said: <result>`), else
//! `You said: <text>`.

pub mod conversation;
pub mod error;
pub mod record;
pub mod reply;
pub mod script;
pub mod server;
pub mod sse;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::{ApiError, Error, Result};
pub use record::RecordedRequest;
pub use reply::Reply;
pub use server::{MockState, router};

/// How long open streams may run on after shutdown is requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How the mock starts.
#[derive(Debug, Clone, Default)]
pub struct MockConfig {
    /// Replies served, in order, before the keyword rules apply.
    pub script: Vec<Reply>,
}

impl MockConfig {
    /// A config whose script is read from a JSON file holding an array of [`Reply`].
    pub fn from_script_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadScript {
            path: path.to_owned(),
            source,
        })?;
        let script = serde_json::from_str(&text).map_err(|source| Error::ParseScript {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self { script })
    }
}

/// Serves the mock on `listener` until `shutdown` completes, then lets open responses
/// finish for a short grace period.
pub async fn run(
    listener: TcpListener,
    config: MockConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve(listener, MockState::new(config.script), shutdown).await
}

async fn serve(
    listener: TcpListener,
    state: MockState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (fired_tx, fired_rx) = oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let grace_over = async move {
        match fired_rx.await {
            Ok(()) => tokio::time::sleep(SHUTDOWN_GRACE).await,
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        result = server => result,
        () = grace_over => Ok(()),
    }
}

/// Starts the mock on `127.0.0.1:0` in a background task.
pub async fn start(config: MockConfig) -> std::io::Result<MockHandle> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let state = MockState::new(config.script);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Ok(MockHandle {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    })
}

/// A running mock. Dropping it stops the server.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    state: MockState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockHandle {
    /// The base URL, `http://127.0.0.1:PORT`, for `ANTHROPIC_BASE_URL`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far (except `/_mock/` calls), in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests()
    }

    /// Queues a reply after those already scripted.
    pub fn push_reply(&self, reply: Reply) {
        self.state.push_replies([reply]);
    }

    /// Stops accepting connections and waits (briefly) for open responses to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Ok(Err(err)) = task.await
        {
            tracing::warn!(%err, "mock-anthropic server failed");
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
