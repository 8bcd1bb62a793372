//! The browser side of the viewer WebSocket: one [`Connection`] type reads, writes and
//! classifies how a connection ended; [`connect`] keeps a session's transcript live with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::channel::mpsc;
use futures::stream::{Fuse, SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt, select};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use leptos::prelude::*;
use model::protocol::{
    BrowserToServer, Frame, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS, ServerToBrowser, close,
};

use super::ConnState;
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

/// Why a connection ended.
enum Ended {
    /// Retry.
    Dropped,
    /// The server says the cursor is past its log: start over from the beginning.
    Reset,
    /// The session is gone: stop.
    Gone,
}

impl Ended {
    /// What a close code means for this client.
    fn from_close(code: u16) -> Ended {
        match code {
            close::NOT_FOUND | close::GONE => Ended::Gone,
            close::CURSOR_AHEAD => Ended::Reset,
            _ => Ended::Dropped,
        }
    }
}

/// A viewer WebSocket.
struct Connection {
    write: SplitSink<WebSocket, Message>,
    read: Fuse<SplitStream<WebSocket>>,
}

impl Connection {
    fn open(url: &str) -> Result<Connection, Ended> {
        let (write, read) = WebSocket::open(url).map_err(|_| Ended::Dropped)?.split();
        Ok(Connection {
            write,
            read: read.fuse(),
        })
    }

    /// The next message from the server; frames this client cannot decode are skipped.
    async fn read_frame(&mut self) -> Result<ServerToBrowser, Ended> {
        loop {
            match self.read.next().await {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(msg) = ServerToBrowser::decode(&text) {
                        return Ok(msg);
                    }
                }
                Some(Ok(Message::Bytes(_))) => {}
                Some(Err(WebSocketError::ConnectionClose(ev))) => {
                    return Err(Ended::from_close(ev.code));
                }
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    async fn write_frame(&mut self, msg: &BrowserToServer) -> Result<(), Ended> {
        self.write
            .send(Message::Text(msg.encode()))
            .await
            .map_err(|_| Ended::Dropped)
    }

    async fn close(mut self) {
        let _ = self.write.close().await;
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
    let view = SessionView {
        transcript,
        status,
        refusal,
    };
    leptos::task::spawn_local(run(project, session, view, rx, stopped));
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

/// The signals the connection keeps up to date.
#[derive(Clone, Copy)]
struct SessionView {
    transcript: RwSignal<Transcript>,
    status: RwSignal<ConnState>,
    refusal: RwSignal<Option<String>>,
}

async fn run(
    project: String,
    session: String,
    view: SessionView,
    mut commands: mpsc::UnboundedReceiver<BrowserToServer>,
    stopped: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(250);
    while !stopped.load(Ordering::Relaxed) {
        let after = view.transcript.with_untracked(|t| t.last_seq);
        let ended = match Connection::open(&ws_url(&project, &session, after)) {
            Ok(conn) => follow(conn, view, &mut commands, &stopped, &mut backoff).await,
            Err(ended) => ended,
        };
        match ended {
            Ended::Gone => {
                view.status.set(ConnState::Gone);
                return;
            }
            Ended::Reset => view.transcript.set(Transcript::default()),
            Ended::Dropped => {}
        }
        if stopped.load(Ordering::Relaxed) {
            return;
        }
        view.status.set(ConnState::Reconnecting);
        gloo_timers::future::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Applies what the server sends and sends the page's requests, until the connection ends.
async fn follow(
    mut conn: Connection,
    view: SessionView,
    commands: &mut mpsc::UnboundedReceiver<BrowserToServer>,
    stopped: &AtomicBool,
    backoff: &mut Duration,
) -> Ended {
    let mut silent_ticks = 0u64;
    loop {
        if stopped.load(Ordering::Relaxed) {
            conn.close().await;
            return Ended::Dropped;
        }
        let mut tick =
            gloo_timers::future::sleep(Duration::from_secs(HEARTBEAT_INTERVAL_SECS)).fuse();
        // Decide inside `select!`, act after it: the socket is free again by then.
        enum Step {
            Received(Result<ServerToBrowser, Ended>),
            Command(Option<BrowserToServer>),
            Tick,
        }
        let next = select! {
            msg = conn.read_frame().fuse() => Step::Received(msg),
            cmd = commands.next() => Step::Command(cmd),
            _ = tick => Step::Tick,
        };
        let step = match next {
            Step::Received(msg) => msg.map(|msg| {
                silent_ticks = 0;
                match msg {
                    ServerToBrowser::Event(e) => view.transcript.update(|t| {
                        t.apply(e);
                    }),
                    ServerToBrowser::Live(_) => {
                        view.status.set(ConnState::Live);
                        *backoff = Duration::from_millis(250);
                    }
                    ServerToBrowser::Error(r) => view.refusal.set(Some(r.message)),
                    ServerToBrowser::Pong => {}
                }
            }),
            Step::Command(Some(cmd)) => conn.write_frame(&cmd).await,
            Step::Command(None) => Ok(()),
            Step::Tick => {
                silent_ticks += 1;
                if silent_ticks * HEARTBEAT_INTERVAL_SECS >= HEARTBEAT_TIMEOUT_SECS {
                    Err(Ended::Dropped)
                } else {
                    conn.write_frame(&BrowserToServer::Ping).await
                }
            }
        };
        if let Err(ended) = step {
            return ended;
        }
    }
}
