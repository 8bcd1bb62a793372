//! The browser's live connection to a session (hydrate only).
//!
//! Connects with the last sequence the transcript has, applies every event, and on any
//! drop reconnects with backoff from the new last sequence: nothing is missed, nothing
//! shown twice. Sends a ping every 15 s and treats 45 s of silence as a drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{FutureExt, SinkExt, StreamExt, select};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use leptos::prelude::*;
use model::protocol::{
    BrowserToServer, Frame, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS, ServerToBrowser, close,
};

use crate::pages::session::ConnState;
use crate::transcript::Transcript;

/// Handle to a live connection.
#[derive(Clone)]
pub struct Live {
    /// Connection state, for display.
    pub status: RwSignal<ConnState>,
    /// The last refusal the server sent for a request of this viewer.
    pub refusal: RwSignal<Option<String>>,
    commands: mpsc::UnboundedSender<BrowserToServer>,
}

impl Live {
    /// Sends a request (follow-up message, interrupt, stop) over the connection; it is
    /// queued while reconnecting.
    pub fn send(&self, msg: BrowserToServer) {
        let _ = self.commands.unbounded_send(msg);
    }
}

/// Opens the live connection of a session; it closes when the current reactive owner is
/// cleaned up (the page is left).
pub fn connect(project: String, session: String, transcript: RwSignal<Transcript>) -> Live {
    let status = RwSignal::new(ConnState::Connecting);
    let refusal = RwSignal::new(None);
    let (tx, rx) = mpsc::unbounded();
    let stopped = Arc::new(AtomicBool::new(false));
    let flag = stopped.clone();
    on_cleanup(move || flag.store(true, Ordering::Relaxed));
    leptos::task::spawn_local(run(
        project, session, transcript, status, refusal, rx, stopped,
    ));
    Live {
        status,
        refusal,
        commands: tx,
    }
}

fn ws_url(project: &str, session: &str, after: u64) -> String {
    let location = window().location();
    let scheme = if location.protocol().ok().as_deref() == Some("https:") {
        "wss"
    } else {
        "ws"
    };
    let host = location.host().unwrap_or_default();
    format!("{scheme}://{host}/api/projects/{project}/agentic-sessions/{session}/ws?after={after}")
}

/// Why a connection ended.
enum Ended {
    /// Retry.
    Dropped,
    /// The server says the cursor is past its log: start over from the beginning.
    Reset,
    /// The session is gone: stop.
    Gone,
}

async fn run(
    project: String,
    session: String,
    transcript: RwSignal<Transcript>,
    status: RwSignal<ConnState>,
    refusal: RwSignal<Option<String>>,
    mut commands: mpsc::UnboundedReceiver<BrowserToServer>,
    stopped: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(250);
    while !stopped.load(Ordering::Relaxed) {
        let after = transcript.with_untracked(|t| t.last_seq);
        let ended = match WebSocket::open(&ws_url(&project, &session, after)) {
            Ok(ws) => {
                session_loop(
                    ws,
                    transcript,
                    status,
                    refusal,
                    &mut commands,
                    &stopped,
                    &mut backoff,
                )
                .await
            }
            Err(_) => Ended::Dropped,
        };
        match ended {
            Ended::Gone => {
                status.set(ConnState::Gone);
                return;
            }
            Ended::Reset => transcript.set(Transcript::default()),
            Ended::Dropped => {}
        }
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        status.set(ConnState::Reconnecting);
        gloo_timers::future::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn session_loop(
    ws: WebSocket,
    transcript: RwSignal<Transcript>,
    status: RwSignal<ConnState>,
    refusal: RwSignal<Option<String>>,
    commands: &mut mpsc::UnboundedReceiver<BrowserToServer>,
    stopped: &AtomicBool,
    backoff: &mut Duration,
) -> Ended {
    let (mut write, read) = ws.split();
    let mut read = read.fuse();
    let mut silent_ticks = 0u64;
    loop {
        if stopped.load(Ordering::Relaxed) {
            let _ = write.close().await;
            return Ended::Dropped;
        }
        let mut tick =
            gloo_timers::future::sleep(Duration::from_secs(HEARTBEAT_INTERVAL_SECS)).fuse();
        select! {
            msg = read.next() => {
                silent_ticks = 0;
                match msg {
                    Some(Ok(Message::Text(text))) => match ServerToBrowser::decode(&text) {
                        Ok(ServerToBrowser::Event(e)) => transcript.update(|t| { t.apply(e); }),
                        Ok(ServerToBrowser::Live(_)) => {
                            status.set(ConnState::Live);
                            *backoff = Duration::from_millis(250);
                        }
                        Ok(ServerToBrowser::Error(r)) => refusal.set(Some(r.message)),
                        Ok(ServerToBrowser::Pong) | Err(_) => {}
                    },
                    Some(Ok(Message::Bytes(_))) => {}
                    Some(Err(WebSocketError::ConnectionClose(ev))) => {
                        return match ev.code {
                            close::NOT_FOUND | close::GONE => Ended::Gone,
                            close::BAD_FRAME if ev.reason.contains("cursor") => Ended::Reset,
                            _ => Ended::Dropped,
                        };
                    }
                    Some(Err(_)) | None => return Ended::Dropped,
                }
            }
            cmd = commands.next() => {
                if let Some(cmd) = cmd
                    && write.send(Message::Text(cmd.encode())).await.is_err()
                {
                    return Ended::Dropped;
                }
            }
            _ = tick => {
                silent_ticks += 1;
                if silent_ticks * HEARTBEAT_INTERVAL_SECS >= HEARTBEAT_TIMEOUT_SECS {
                    return Ended::Dropped;
                }
                if write.send(Message::Text(BrowserToServer::Ping.encode())).await.is_err() {
                    return Ended::Dropped;
                }
            }
        }
    }
}
