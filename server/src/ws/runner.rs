//! The runner endpoint: `GET /api/projects/{p}/agentic-sessions/{s}/runner/ws` with
//! `Authorization: Bearer <runner token>`; and the files-runner endpoint
//! (`…/files-runner/ws`, its own token) through which `runner files` serves a stopped
//! session's workspace.
//!
//! Transport only: the rules (which token admits which run, what a runner may send, which
//! links it may report) are `platform::services::runner`'s. Events are appended in batches
//! (whatever arrived together) and acknowledged after commit; re-sent events are dropped by
//! their runner sequence number.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use model::protocol::{
    Ack, Frame as _, MAX_RUNNER_FRAME, PROTOCOL_VERSION, RunnerEvent, RunnerHello, RunnerToServer,
    ServerToRunner, Welcome, close,
};
use model::session::SessionKey;
use platform::auth::{AuthError, bearer};
use platform::log::LogId;
use platform::services::runner::{AdmittedRun, Refusal};
use platform::{ApiError, Services};
use tokio::sync::{Notify, mpsc};

use super::{Connection, End, Incoming, ReadError};

/// Time a runner has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Most events appended in one batch.
const MAX_BATCH: usize = 256;

/// Upgrades to the runner WebSocket (see `model::protocol`); `Authorization: Bearer <runner token>`.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/runner/ws", tag = "realtime",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 101, description = "Switching to the runner protocol (RunnerToServer / ServerToRunner frames)")))]
pub async fn runner_ws(
    State(services): State<Services>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = match bearer(&headers) {
        // Not a runner at all: refused before the upgrade, like every unauthenticated
        // request. (A runner with a wrong or stale token is told why in the close frame.)
        Ok(None) => {
            return ApiError::Unauthorized(
                "missing runner token (Authorization: Bearer ...)".into(),
            )
            .into_response();
        }
        other => other.map(|t| t.map(str::to_owned)),
    };
    sized(ws).on_upgrade(move |socket| async move {
        let mut endpoint = RunnerEndpoint::new(socket, services, project, name);
        let end = match token {
            Ok(Some(token)) => endpoint.serve(&token).await,
            Ok(None) => End::Close(
                close::UNAUTHORIZED,
                "missing runner token (Authorization: Bearer ...)".into(),
            ),
            Err(AuthError::Invalid(why)) => End::Close(close::UNAUTHORIZED, why),
            Err(AuthError::RunnerToken) => End::Close(close::UNAUTHORIZED, "invalid token".into()),
        };
        endpoint.conn.close(end).await;
    })
}

/// Upgrades to the files-runner WebSocket: a stopped session's workspace served by
/// `runner files` (the runner protocol's hello and workspace answers only; no events);
/// `Authorization: Bearer <files runner token>`.
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/files-runner/ws", tag = "realtime",
    params(("project" = String, Path), ("session" = String, Path)),
    responses((status = 101, description = "Switching to the runner protocol, workspace requests only (RunnerToServer / ServerToRunner frames)")))]
pub async fn files_runner_ws(
    State(services): State<Services>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = match bearer(&headers) {
        Ok(Some(token)) => token.to_owned(),
        Ok(None) | Err(AuthError::RunnerToken) => {
            return ApiError::Unauthorized(
                "missing files runner token (Authorization: Bearer ...)".into(),
            )
            .into_response();
        }
        Err(AuthError::Invalid(why)) => return ApiError::Unauthorized(why).into_response(),
    };
    sized(ws).on_upgrade(move |socket| async move {
        let mut endpoint = RunnerEndpoint::new(socket, services, project, name);
        let end = endpoint.serve_files(&token).await;
        endpoint.conn.close(end).await;
    })
}

/// A runner socket's limits: frames up to the protocol's largest, small buffers (a runner
/// receives little).
fn sized(ws: WebSocketUpgrade) -> WebSocketUpgrade {
    ws.max_message_size(MAX_RUNNER_FRAME + 1024)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(4 * 1024)
}

struct RunnerEndpoint {
    conn: Connection,
    services: Services,
    key: SessionKey,
}

/// The runner's registration with the hub, for the time it is connected.
struct Registered {
    log: LogId,
    generation: u64,
    conn: u64,
    out: mpsc::UnboundedSender<ServerToRunner>,
    superseded: Arc<Notify>,
    /// The run it was admitted for (what its events may name).
    run: AdmittedRun,
}

impl RunnerEndpoint {
    fn new(
        socket: axum::extract::ws::WebSocket,
        services: Services,
        project: String,
        name: String,
    ) -> RunnerEndpoint {
        RunnerEndpoint {
            conn: Connection::new(socket),
            services,
            key: SessionKey::new(project, name),
        }
    }

    async fn hello(&mut self) -> Result<RunnerHello, End> {
        match tokio::time::timeout(HELLO_TIMEOUT, self.conn.read_frame::<RunnerToServer>()).await {
            Ok(Ok(RunnerToServer::Hello(h))) if h.protocol == PROTOCOL_VERSION => Ok(h),
            Ok(Ok(RunnerToServer::Hello(h))) => Err(End::Close(
                close::BAD_FRAME,
                format!(
                    "protocol {} is not supported (server speaks {PROTOCOL_VERSION})",
                    h.protocol
                ),
            )),
            Ok(Ok(_)) => Err(End::Close(
                close::BAD_FRAME,
                "the first message must be hello".into(),
            )),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(End::Close(
                close::HEARTBEAT_TIMEOUT,
                "no hello within 10 s".into(),
            )),
        }
    }

    async fn serve(&mut self, token: &str) -> End {
        let live = match self.services.authenticate_runner(&self.key, token).await {
            Ok(live) => live,
            Err(refusal) => return refused(refusal),
        };
        let hello = match self.hello().await {
            Ok(h) => h,
            Err(end) => return end,
        };
        let admitted = match self.services.admit_runner(live, hello.generation).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refused(refusal),
        };
        let (log, current) = (admitted.live.log, admitted.generation());
        let (out, mut out_rx) = mpsc::unbounded_channel();
        // Welcome goes first: it is queued before the runner is registered, so nothing that
        // the registration lets others send (a workspace request waiting for a runner) can
        // come before it. A runner told more than it expects before its welcome reconnects.
        let acked = match self.services.log.counters(log).await {
            Ok(c) => c.runner_acked,
            Err(e) => return End::internal(e),
        };
        let _ = out.send(ServerToRunner::Welcome(Welcome { acked_rseq: acked }));
        let superseded = Arc::new(Notify::new());
        let Some(conn) = self.services.runners.register(
            self.key.clone(),
            log,
            current,
            out.clone(),
            superseded.clone(),
        ) else {
            return End::Close(
                close::ALREADY_CONNECTED,
                "this run's runner is connected already".into(),
            );
        };
        let reg = Registered {
            log,
            generation: current,
            conn,
            out,
            superseded,
            run: admitted,
        };
        let end = self.run(&reg, &hello, &mut out_rx).await;
        self.services.runners.unregister(reg.log, reg.conn);
        self.services.notify(&self.key);
        // Flush what is still queued (acknowledgements) before closing.
        let mut queued = Vec::new();
        while let Ok(msg) = out_rx.try_recv() {
            queued.push(msg.encode().into());
        }
        let _ = self.conn.write_texts(queued).await;
        end
    }

    /// A files runner: admitted by its own token while the session has no run; answers
    /// workspace requests until it goes, is told to finish, or the server shuts down.
    async fn serve_files(&mut self, token: &str) -> End {
        let live = match self
            .services
            .authenticate_files_runner(&self.key, token)
            .await
        {
            Ok(live) => live,
            Err(refusal) => return refused(refusal),
        };
        if let Err(end) = self.hello().await {
            return end;
        }
        let log = live.log;
        let (out, mut out_rx) = mpsc::unbounded_channel();
        // Welcome first, queued before the registration wakes the requests waiting for this
        // runner (see the run's endpoint).
        let _ = out.send(ServerToRunner::Welcome(Welcome { acked_rseq: 0 }));
        let superseded = Arc::new(Notify::new());
        let Some(conn) = self.services.runners.register_files(
            self.key.clone(),
            log,
            operator::token::token_hash_hex(token),
            out.clone(),
            superseded.clone(),
        ) else {
            return End::Close(
                close::ALREADY_CONNECTED,
                "a runner of this session is connected already".into(),
            );
        };
        let mut shutdown = self.services.shutdown.clone();
        let end = loop {
            let step = tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(msg) => self.conn.write_frame(&msg).await,
                    None => Err(End::Gone),
                },
                incoming = self.conn.next::<RunnerToServer>() => match incoming {
                    Ok(Incoming::Frame(RunnerToServer::Files(reply))) => {
                        self.services.runners.files_reply(log, conn, reply);
                        Ok(())
                    }
                    Ok(Incoming::Frame(RunnerToServer::Ping)) => {
                        let _ = out.send(ServerToRunner::Pong);
                        Ok(())
                    }
                    Ok(Incoming::Frame(RunnerToServer::Pong)) => Ok(()),
                    Ok(Incoming::Frame(other)) => Err(End::Close(
                        close::BAD_FRAME,
                        match other {
                            RunnerToServer::Hello(_) => "hello was already received",
                            _ => "a files runner sends workspace answers only",
                        }
                        .into(),
                    )),
                    Ok(Incoming::Beat) => {
                        let _ = out.send(ServerToRunner::Ping);
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                },
                _ = superseded.notified() => Err(End::Close(
                    close::SUPERSEDED,
                    "another connection replaced this one".into(),
                )),
                _ = shutdown.changed() => Err(End::Close(
                    close::GOING_AWAY,
                    "the server is restarting; reconnect".into(),
                )),
            };
            if let Err(end) = step {
                break end;
            }
        };
        self.services.runners.unregister(log, conn);
        let mut queued = Vec::new();
        while let Ok(msg) = out_rx.try_recv() {
            queued.push(msg.encode().into());
        }
        let _ = self.conn.write_texts(queued).await;
        end
    }

    async fn run(
        &mut self,
        reg: &Registered,
        hello: &RunnerHello,
        out_rx: &mut mpsc::UnboundedReceiver<ServerToRunner>,
    ) -> End {
        if let Err(e) = self
            .services
            .deliver_pending(reg.log, reg.generation, hello.handled_through)
            .await
        {
            return End::internal(e);
        }
        self.services.notify(&self.key);
        let mut shutdown = self.services.shutdown.clone();
        let mut carried: Option<RunnerToServer> = None;
        loop {
            if let Some(msg) = carried.take() {
                match self.handle(msg, reg).await {
                    Ok(next) => carried = next,
                    Err(end) => return end,
                }
                continue;
            }
            let step = tokio::select! {
                msg = out_rx.recv() => match msg {
                    Some(msg) => self.conn.write_frame(&msg).await.map(|()| None),
                    None => Err(End::Gone),
                },
                incoming = self.conn.next::<RunnerToServer>() => match incoming {
                    Ok(Incoming::Frame(msg)) => self.handle(msg, reg).await,
                    Ok(Incoming::Beat) => {
                        let _ = reg.out.send(ServerToRunner::Ping);
                        Ok(None)
                    }
                    Err(e) => Err(e.into()),
                },
                _ = reg.superseded.notified() => Err(End::Close(
                    close::SUPERSEDED,
                    "another connection of this runner replaced this one".into(),
                )),
                _ = shutdown.changed() => Err(End::Close(
                    close::GOING_AWAY,
                    "the server is restarting; reconnect".into(),
                )),
            };
            match step {
                Ok(next) => carried = next,
                Err(end) => return end,
            }
        }
    }

    /// Handles one message; returns a message read meanwhile that must be handled next.
    async fn handle(
        &mut self,
        msg: RunnerToServer,
        reg: &Registered,
    ) -> Result<Option<RunnerToServer>, End> {
        match msg {
            RunnerToServer::Event(first) => {
                let (batch, next) = self.batch(first)?;
                self.append(batch, reg).await?;
                Ok(next)
            }
            RunnerToServer::Idle(idle) => {
                let batch = reg.run.live.record.session.spec.stop_on_run_finished == Some(true);
                self.services
                    .runner_idle(
                        reg.log,
                        reg.generation,
                        reg.conn,
                        idle.handled_through,
                        batch,
                    )
                    .await
                    .map_err(End::internal)?;
                Ok(None)
            }
            RunnerToServer::Ping => {
                let _ = reg.out.send(ServerToRunner::Pong);
                Ok(None)
            }
            RunnerToServer::Pong => Ok(None),
            RunnerToServer::Files(reply) => {
                self.services.runners.files_reply(reg.log, reg.conn, reply);
                Ok(None)
            }
            RunnerToServer::Hello(_) => Err(End::Close(
                close::BAD_FRAME,
                "hello was already received".into(),
            )),
        }
    }

    /// Persists a batch (as the platform takes it); the runner's acknowledgement goes out
    /// once it is committed.
    async fn append(&mut self, batch: Vec<RunnerEvent>, reg: &Registered) -> Result<(), End> {
        let ack = reg.out.clone();
        let on_commit = move |rseq| {
            let _ = ack.send(ServerToRunner::Ack(Ack { rseq }));
        };
        self.services
            .take_runner_events(&self.key, &reg.run, reg.log, batch, on_commit)
            .await
            .map_err(refused)
    }

    /// The first event and the events already waiting behind it, in order; a non-event
    /// message met on the way is returned to be handled after the batch.
    fn batch(
        &mut self,
        first: RunnerEvent,
    ) -> Result<(Vec<RunnerEvent>, Option<RunnerToServer>), End> {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match self.conn.try_read_frame::<RunnerToServer>() {
                None | Some(Err(ReadError::End(End::Gone))) => break,
                Some(Ok(RunnerToServer::Event(e))) => batch.push(e),
                Some(Ok(other)) => return Ok((batch, Some(other))),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok((batch, None))
    }
}

/// How the socket ends for a refusal of the platform.
fn refused(refusal: Refusal) -> End {
    match refusal {
        Refusal::Unauthorized(why) => End::Close(close::UNAUTHORIZED, why),
        Refusal::NotCurrent(why) => End::Close(close::SUPERSEDED, why),
        Refusal::BadEvent(why) => End::Close(close::BAD_FRAME, why),
        Refusal::Gone => End::Close(close::GONE, "the session was deleted".into()),
        Refusal::Failed(e) => End::refused(e),
    }
}
