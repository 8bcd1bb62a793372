//! The viewer endpoint: `GET /api/projects/{p}/agentic-sessions/{s}/ws?after=<seq>`.
//!
//! Subscribes to the live broadcast first, then replays the stored log after the viewer's
//! cursor, then forwards live frames, skipping what the replay already sent: every event
//! exactly once, in order. A viewer that falls behind the broadcast ring, or that sees a gap,
//! catches up from the store and carries on.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::SinkExt;
use model::protocol::{
    BrowserToServer, DecodeError, Frame as _, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS,
    Live, MAX_BROWSER_FRAME, Refusal, ServerToBrowser, close,
};
use serde::Deserialize;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{Instant, MissedTickBehavior};

use crate::auth::{self, AuthError};
use crate::services::{Caller, Services};
use crate::store::StoreError;

/// Events read from the store per replay query.
const REPLAY_PAGE: usize = 512;
/// A viewer that cannot take a frame for this long is disconnected (it can resume).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Most live frames written before one flush.
const MAX_BATCH: usize = 64;

/// Query of the viewer endpoint.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ViewerQuery {
    /// Last sequence the viewer has (0 or absent for none).
    #[serde(default)]
    pub after: u64,
}

/// Upgrades to the viewer WebSocket (see `model::protocol`).
#[utoipa::path(get, path = "/api/projects/{project}/agentic-sessions/{session}/ws", tag = "realtime",
    params(("project" = String, Path), ("session" = String, Path), ViewerQuery),
    responses((status = 101, description = "Switching to the viewer protocol (ServerToBrowser / BrowserToServer frames)")))]
pub async fn viewer_ws(
    State(services): State<Services>,
    Path((project, name)): Path<(String, String)>,
    Query(query): Query<ViewerQuery>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let caller = auth::caller(&services, &headers).await;
    ws.max_message_size(MAX_BROWSER_FRAME + 1024)
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .on_upgrade(move |socket| async move {
            let mut viewer = Viewer {
                socket,
                services,
                project,
                name,
                cursor: query.after,
            };
            let end = match caller {
                Ok(caller) => viewer.serve(&caller).await,
                Err(AuthError::RunnerToken) => End::Close(
                    close::FORBIDDEN,
                    "runner tokens are not accepted on the viewer endpoint".into(),
                ),
                Err(AuthError::Invalid(why)) => End::Close(close::UNAUTHORIZED, why),
            };
            viewer.finish(end).await;
        })
}

/// How a viewer connection ends.
enum End {
    /// The peer went away.
    Gone,
    /// Close with a code and reason.
    Close(u16, String),
}

struct Viewer {
    socket: WebSocket,
    services: Services,
    project: String,
    name: String,
    cursor: u64,
}

impl Viewer {
    async fn serve(&mut self, caller: &Caller) -> End {
        let row = match self
            .services
            .store
            .session_row(&self.project, &self.name)
            .await
        {
            Ok(row) => row,
            Err(StoreError::NotFound(what)) => {
                return End::Close(close::NOT_FOUND, format!("{what} not found"));
            }
            Err(e) => return internal(e),
        };
        if self.cursor > row.last_seq {
            return End::Close(
                close::BAD_FRAME,
                format!(
                    "cursor {} is past the end of the log ({})",
                    self.cursor, row.last_seq
                ),
            );
        }
        let mut live = self.services.store.fanout().subscribe(row.id);
        if let Err(end) = self.catch_up(row.id).await {
            return end;
        }
        if let Err(end) = self
            .send(
                ServerToBrowser::Live(Live { seq: self.cursor })
                    .encode()
                    .into(),
            )
            .await
        {
            return end;
        }
        let mut shutdown = self.services.shutdown.clone();
        let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        loop {
            tokio::select! {
                frame = live.recv() => match frame {
                    Ok(first) => {
                        // Take what else is ready and write it all with one flush.
                        let mut ready = vec![first];
                        let mut behind = false;
                        while ready.len() < MAX_BATCH {
                            match live.try_recv() {
                                Ok(f) => ready.push(f),
                                Err(TryRecvError::Empty) => break,
                                Err(TryRecvError::Lagged(_)) => {
                                    behind = true;
                                    break;
                                }
                                Err(TryRecvError::Closed) => break,
                            }
                        }
                        let mut texts = Vec::with_capacity(ready.len());
                        for f in ready {
                            if f.seq <= self.cursor {
                                continue;
                            }
                            if f.seq != self.cursor + 1 {
                                // A gap: the store has what is missing.
                                behind = true;
                                break;
                            }
                            self.cursor = f.seq;
                            texts.push(f.text);
                        }
                        if let Err(end) = self.write_frames(texts).await {
                            return end;
                        }
                        if behind && let Err(end) = self.catch_up(row.id).await {
                            return end;
                        }
                    }
                    // The ring overran this viewer: the store has everything.
                    Err(RecvError::Lagged(_)) => {
                        if let Err(end) = self.catch_up(row.id).await {
                            return end;
                        }
                    }
                    Err(RecvError::Closed) => return End::Close(close::GONE, "the session was deleted".into()),
                },
                msg = self.socket.recv() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(reply) = command(&self.services, &self.project, &self.name, &text, caller).await
                                && let Err(end) = self.send(reply.encode().into()).await
                            {
                                return end;
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            return End::Close(close::BAD_FRAME, "binary frames are not part of the protocol".into())
                        }
                        Some(Ok(Message::Close(_))) | None => return End::Gone,
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return too_large_or_gone(&e),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > Duration::from_secs(HEARTBEAT_TIMEOUT_SECS) {
                        return End::Close(close::HEARTBEAT_TIMEOUT, "no message or ping from the viewer".into());
                    }
                }
                _ = shutdown.changed() => return End::Close(close::GOING_AWAY, "the server is restarting; reconnect".into()),
            }
        }
    }

    /// Sends every stored event after the cursor.
    async fn catch_up(&mut self, session_id: i64) -> Result<(), End> {
        loop {
            let page = self
                .services
                .store
                .events_after(session_id, self.cursor, REPLAY_PAGE)
                .await
                .map_err(internal)?;
            let full = page.len() == REPLAY_PAGE;
            if let Some(last) = page.last() {
                self.cursor = last.seq;
            }
            self.write_frames(page.iter().map(|row| row.frame().text).collect())
                .await?;
            if !full {
                return Ok(());
            }
        }
    }

    /// Writes frames and flushes once; a viewer that cannot take them in time is dropped
    /// (it resumes from its cursor).
    async fn write_frames(&mut self, texts: Vec<Utf8Bytes>) -> Result<(), End> {
        if texts.is_empty() {
            return Ok(());
        }
        let socket = &mut self.socket;
        let write = async move {
            for t in texts {
                socket.feed(Message::Text(t)).await?;
            }
            socket.flush().await
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                close::TOO_SLOW,
                "the viewer did not read its frames; reconnect".into(),
            )),
        }
    }

    async fn send(&mut self, text: Utf8Bytes) -> Result<(), End> {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(Message::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Gone),
            Err(_) => Err(End::Close(
                close::TOO_SLOW,
                "the viewer did not read its frames; reconnect".into(),
            )),
        }
    }

    async fn finish(mut self, end: End) {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                self.socket.send(Message::Close(Some(frame))),
            )
            .await;
        }
    }
}

/// Handles a viewer's request; returns the answer to send, if any.
async fn command(
    services: &Services,
    p: &str,
    n: &str,
    text: &str,
    caller: &Caller,
) -> Option<ServerToBrowser> {
    let outcome = match BrowserToServer::decode(text) {
        Ok(BrowserToServer::Ping) => return Some(ServerToBrowser::Pong),
        Ok(BrowserToServer::SendMessage(m)) => services
            .send_message(p, n, m.text, caller)
            .await
            .map(|_| ()),
        Ok(BrowserToServer::Interrupt) => services.interrupt(p, n, caller).await,
        Ok(BrowserToServer::Stop) => services.stop(p, n, caller).await.map(|_| ()),
        Err(DecodeError::TooLarge { len, max }) => {
            return Some(refusal(
                "too_large",
                format!("frame of {len} bytes exceeds {max}"),
            ));
        }
        Err(DecodeError::Malformed(why)) => {
            return Some(refusal("bad_request", format!("malformed message: {why}")));
        }
    };
    outcome.err().map(|e| refusal(e.kind(), e.to_string()))
}

fn refusal(error: &str, message: String) -> ServerToBrowser {
    ServerToBrowser::Error(Refusal {
        error: error.to_owned(),
        message,
    })
}

fn internal(e: StoreError) -> End {
    tracing::error!(error = %e, "viewer: store failure");
    End::Close(close::INTERNAL, "internal error; reconnect".into())
}

fn too_large_or_gone(e: &axum::Error) -> End {
    let text = e.to_string();
    if text.contains("too long") || text.contains("Space limit exceeded") || text.contains("size") {
        End::Close(close::TOO_LARGE, format!("frame too large: {text}"))
    } else {
        End::Gone
    }
}
