//! The runner endpoint: `GET /api/projects/{p}/agentic-sessions/{s}/runner/ws` with
//! `Authorization: Bearer <runner token>`.
//!
//! The token is valid for its session and current generation only. Events are appended in
//! batches (whatever arrived together) and acknowledged after commit; re-sent events are
//! dropped by their runner sequence number.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use model::protocol::{
    Ack, DecodeError, Frame as _, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS,
    MAX_RUNNER_FRAME, PROTOCOL_VERSION, RunnerEvent, RunnerHello, RunnerToServer, ServerToRunner,
    Welcome, close,
};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, MissedTickBehavior};

use crate::auth::{AuthError, bearer};
use crate::services::Services;
use crate::store::StoreError;
use crate::store::sessions::{SessionRow, token_hash};

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
    let token = bearer(&headers).map(|t| t.map(str::to_owned));
    ws.max_message_size(MAX_RUNNER_FRAME + 1024)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let mut conn = RunnerConn {
                sink,
                stream,
                services,
                project,
                name,
            };
            let end = match token {
                Ok(Some(token)) => conn.serve(&token).await,
                Ok(None) => Err((
                    close::UNAUTHORIZED,
                    "missing runner token (Authorization: Bearer ...)".into(),
                )),
                Err(AuthError::Invalid(why)) => Err((close::UNAUTHORIZED, why)),
                Err(AuthError::RunnerToken) => Err((close::UNAUTHORIZED, "invalid token".into())),
            };
            if let Err((code, reason)) = end {
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(
                    Duration::from_secs(2),
                    conn.sink.send(Message::Close(Some(frame))),
                )
                .await;
            }
        })
}

type Close = (u16, String);

struct RunnerConn {
    sink: SplitSink<WebSocket, Message>,
    stream: SplitStream<WebSocket>,
    services: Services,
    project: String,
    name: String,
}

impl RunnerConn {
    async fn authenticate(&self, token: &str) -> Result<SessionRow, Close> {
        let row = match self
            .services
            .store
            .session_row(&self.project, &self.name)
            .await
        {
            Ok(row) => row,
            Err(StoreError::NotFound(what)) => {
                return Err((close::NOT_FOUND, format!("{what} not found")));
            }
            Err(e) => return Err(internal(e)),
        };
        let presented = token_hash(token);
        match &row.token_hash {
            Some(expected) if bool::from(expected.as_slice().ct_eq(&presented)) => Ok(row),
            _ => Err((
                close::UNAUTHORIZED,
                "invalid runner token for this session".into(),
            )),
        }
    }

    async fn hello(&mut self) -> Result<RunnerHello, Close> {
        let first = tokio::time::timeout(HELLO_TIMEOUT, self.stream.next()).await;
        match first {
            Ok(Some(Ok(Message::Text(text)))) => match RunnerToServer::decode(&text) {
                Ok(RunnerToServer::Hello(h)) if h.protocol == PROTOCOL_VERSION => Ok(h),
                Ok(RunnerToServer::Hello(h)) => Err((
                    close::BAD_FRAME,
                    format!(
                        "protocol {} is not supported (server speaks {PROTOCOL_VERSION})",
                        h.protocol
                    ),
                )),
                Ok(_) => Err((close::BAD_FRAME, "the first message must be hello".into())),
                Err(e) => Err((close::BAD_FRAME, e.to_string())),
            },
            Ok(_) => Err((
                close::BAD_FRAME,
                "the first message must be a hello text frame".into(),
            )),
            Err(_) => Err((close::HEARTBEAT_TIMEOUT, "no hello within 10 s".into())),
        }
    }

    async fn serve(&mut self, token: &str) -> Result<(), Close> {
        let row = self.authenticate(token).await?;
        let hello = self.hello().await?;
        if hello.generation != row.run_generation {
            return Err((
                close::SUPERSEDED,
                format!(
                    "generation {} is not current (the session is at {})",
                    hello.generation, row.run_generation
                ),
            ));
        }
        let (out, mut out_rx) = mpsc::unbounded_channel();
        let superseded = Arc::new(Notify::new());
        let conn = self.services.runners.register(
            row.id,
            hello.generation,
            out.clone(),
            superseded.clone(),
        );
        // Welcome goes first: it is queued before anything else can be.
        let _ = out.send(ServerToRunner::Welcome(Welcome {
            acked_rseq: self.acked(row.id).await?,
        }));
        let result = self
            .run(&row, &hello, conn, out, &mut out_rx, &superseded)
            .await;
        self.services.runners.unregister(row.id, conn);
        self.services.notify(&self.project, &self.name);
        // Flush what is still queued (acknowledgements) before closing.
        while let Ok(msg) = out_rx.try_recv() {
            let _ = self.sink.send(Message::Text(msg.encode().into())).await;
        }
        result
    }

    async fn acked(&self, session_id: i64) -> Result<u64, Close> {
        self.services
            .store
            .runner_acked(session_id)
            .await
            .map_err(internal)
    }

    async fn run(
        &mut self,
        row: &SessionRow,
        hello: &RunnerHello,
        conn: u64,
        out: mpsc::UnboundedSender<ServerToRunner>,
        out_rx: &mut mpsc::UnboundedReceiver<ServerToRunner>,
        superseded: &Notify,
    ) -> Result<(), Close> {
        let (id, generation) = (row.id, hello.generation);
        self.services
            .deliver_pending(id, generation, hello.handled_through)
            .await
            .map_err(internal)?;
        self.services.notify(&self.project, &self.name);
        let mut shutdown = self.services.shutdown.clone();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut carried: Option<RunnerToServer> = None;
        loop {
            if let Some(msg) = carried.take() {
                carried = self.handle(msg, id, generation, conn, &out).await?;
                continue;
            }
            tokio::select! {
                msg = out_rx.recv() => {
                    let Some(msg) = msg else { return Ok(()) };
                    if self.sink.send(Message::Text(msg.encode().into())).await.is_err() {
                        return Ok(());
                    }
                }
                frame = self.stream.next() => {
                    last_heard = Instant::now();
                    let text = match frame {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(Message::Binary(_))) => {
                            return Err((close::BAD_FRAME, "binary frames are not part of the protocol".into()))
                        }
                        Some(Ok(_)) => continue,
                        Some(Err(e)) => return Err(read_failed(&e)),
                    };
                    carried = self.handle(decode(&text)?, id, generation, conn, &out).await?;
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > Duration::from_secs(HEARTBEAT_TIMEOUT_SECS) {
                        return Err((close::HEARTBEAT_TIMEOUT, "no message or ping from the runner".into()));
                    }
                    let _ = out.send(ServerToRunner::Ping);
                }
                _ = superseded.notified() => {
                    return Err((close::SUPERSEDED, "another connection of this runner replaced this one".into()));
                }
                _ = shutdown.changed() => return Err((close::GOING_AWAY, "the server is restarting; reconnect".into())),
            }
        }
    }

    /// Handles one message; returns a message read meanwhile that must be handled next.
    async fn handle(
        &mut self,
        msg: RunnerToServer,
        id: i64,
        generation: u64,
        conn: u64,
        out: &mpsc::UnboundedSender<ServerToRunner>,
    ) -> Result<Option<RunnerToServer>, Close> {
        match msg {
            RunnerToServer::Event(first) => {
                let (batch, next) = self.batch(first)?;
                let ack = out.clone();
                let on_commit = move |rseq| {
                    let _ = ack.send(ServerToRunner::Ack(Ack { rseq }));
                };
                match self
                    .services
                    .store
                    .append_runner_events(id, generation, batch, on_commit)
                    .await
                {
                    Ok(_) => Ok(next),
                    Err(StoreError::Conflict(why)) => Err((close::SUPERSEDED, why)),
                    Err(StoreError::NotFound(_)) => {
                        Err((close::GONE, "the session was deleted".into()))
                    }
                    Err(e) => Err(internal(e)),
                }
            }
            RunnerToServer::Idle(idle) => {
                self.services
                    .runner_idle(id, generation, conn, idle.handled_through)
                    .await
                    .map_err(internal)?;
                Ok(None)
            }
            RunnerToServer::Ping => {
                let _ = out.send(ServerToRunner::Pong);
                Ok(None)
            }
            RunnerToServer::Pong => Ok(None),
            RunnerToServer::Hello(_) => {
                Err((close::BAD_FRAME, "hello was already received".into()))
            }
        }
    }

    /// The first event and the events already waiting behind it, in order; a non-event
    /// message met on the way is returned to be handled after the batch.
    fn batch(
        &mut self,
        first: RunnerEvent,
    ) -> Result<(Vec<RunnerEvent>, Option<RunnerToServer>), Close> {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            let Some(Some(frame)) = self.stream.next().now_or_never() else {
                break;
            };
            match frame {
                Ok(Message::Text(text)) => match decode(&text)? {
                    RunnerToServer::Event(e) => batch.push(e),
                    other => return Ok((batch, Some(other))),
                },
                Ok(Message::Close(_)) => break,
                Ok(Message::Binary(_)) => {
                    return Err((
                        close::BAD_FRAME,
                        "binary frames are not part of the protocol".into(),
                    ));
                }
                Ok(_) => {}
                Err(e) => return Err(read_failed(&e)),
            }
        }
        Ok((batch, None))
    }
}

fn read_failed(e: &axum::Error) -> Close {
    (close::TOO_LARGE, format!("read failed: {e}"))
}

fn decode(text: &str) -> Result<RunnerToServer, Close> {
    RunnerToServer::decode(text).map_err(|e| match e {
        DecodeError::TooLarge { .. } => (close::TOO_LARGE, e.to_string()),
        DecodeError::Malformed(_) => (close::BAD_FRAME, e.to_string()),
    })
}

fn internal(e: StoreError) -> Close {
    tracing::error!(error = %e, "runner endpoint: store failure");
    (close::INTERNAL, "internal error; reconnect".into())
}
