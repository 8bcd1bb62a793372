//! The runner's connection to the server: events up, work down, nothing lost.
//!
//! Every event gets the next runner sequence number and stays in the outbox until the
//! server acknowledges it. After any drop the link reconnects with backoff, says hello with
//! how far the agent got, and re-sends what is unacknowledged; the server drops duplicates.
//! Events produced while the server is unreachable wait in the outbox.

use std::collections::VecDeque;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use model::protocol::{
    Frame, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS, PROTOCOL_VERSION, RunnerEvent,
    RunnerHello, RunnerIdle, RunnerToServer, ServerToRunner, SessionEvent, close,
};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Work and controls from the server, for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Down {
    /// A user message.
    User {
        /// Its session sequence number.
        seq: u64,
        /// The text.
        text: String,
        /// Who sent it.
        sender: String,
    },
    /// Stop the current turn.
    Interrupt,
    /// Stop the session.
    Stop,
    /// Nothing more to do: finish.
    Finish,
    /// The server refuses this runner for good (another one replaced it, the session was
    /// deleted, the token is no longer valid): stop at once.
    Fatal(String),
}

enum Up {
    Event(SessionEvent),
    Handled(u64),
    Idle(bool),
    Flush(oneshot::Sender<bool>),
}

/// Where and who to connect as.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// URL of the runner endpoint.
    pub url: String,
    /// Runner token.
    pub token: String,
    /// Generation.
    pub generation: u64,
    /// Highest user message handled at start.
    pub handled_through: u64,
    /// Give up after the server has been unreachable this long.
    pub give_up_after: Duration,
}

/// Handle to the link; cheap to clone.
#[derive(Clone)]
pub struct Link {
    up: mpsc::UnboundedSender<Up>,
}

impl Link {
    /// Starts the link task. Returns the handle and the stream of work from the server.
    pub fn start(config: LinkConfig) -> (Link, mpsc::UnboundedReceiver<Down>) {
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        tokio::spawn(LinkTask::new(config, up_rx, down_tx).run());
        (Link { up: up_tx }, down_rx)
    }

    /// Queues an event for the session's log.
    pub fn emit(&self, event: SessionEvent) {
        let _ = self.up.send(Up::Event(event));
    }

    /// Records that the agent was given user messages up to `seq`.
    pub fn handled(&self, seq: u64) {
        let _ = self.up.send(Up::Handled(seq));
    }

    /// Tells the server whether the agent is idle (waiting for work).
    pub fn idle(&self, idle: bool) {
        let _ = self.up.send(Up::Idle(idle));
    }

    /// Waits until every queued event is acknowledged, at most `timeout`. Returns whether
    /// everything was delivered.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.up.send(Up::Flush(tx)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)))
    }
}

struct LinkTask {
    config: LinkConfig,
    up: mpsc::UnboundedReceiver<Up>,
    down: mpsc::UnboundedSender<Down>,
    outbox: VecDeque<RunnerEvent>,
    next_rseq: u64,
    handled: u64,
    idle: bool,
    flushes: Vec<oneshot::Sender<bool>>,
    closed: bool,
}

/// How a connection ended.
enum Ended {
    /// Reconnect.
    Retry(String),
    /// Stop for good.
    Fatal(String),
    /// The runner dropped its handles: it is exiting.
    Done,
}

impl LinkTask {
    fn new(
        config: LinkConfig,
        up: mpsc::UnboundedReceiver<Up>,
        down: mpsc::UnboundedSender<Down>,
    ) -> Self {
        let handled = config.handled_through;
        LinkTask {
            config,
            up,
            down,
            outbox: VecDeque::new(),
            next_rseq: 1,
            handled,
            idle: false,
            flushes: Vec::new(),
            closed: false,
        }
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let ended = match self.connect().await {
                Ok(socket) => {
                    let ended = self.session(socket, &mut backoff).await;
                    unreachable_since = None;
                    ended
                }
                Err(e) => Ended::Retry(e),
            };
            match ended {
                Ended::Done => return,
                Ended::Fatal(why) => {
                    tracing::error!(reason = %why, "the server refused this runner");
                    let _ = self.down.send(Down::Fatal(why));
                    self.resolve_flushes(false);
                    return;
                }
                Ended::Retry(why) => {
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.config.give_up_after {
                        let _ = self.down.send(Down::Fatal(format!(
                            "the server has been unreachable for {} s: {why}",
                            since.elapsed().as_secs()
                        )));
                        self.resolve_flushes(false);
                        return;
                    }
                    tracing::warn!(reason = %why, retry_in_ms = backoff.as_millis() as u64, "connection to the server lost");
                    // Keep taking events while waiting, so the agent never blocks on us.
                    let deadline = Instant::now() + jitter(backoff);
                    while Instant::now() < deadline {
                        match tokio::time::timeout_at(deadline, self.up.recv()).await {
                            Ok(Some(up)) => self.take(up),
                            Ok(None) => self.closed = true,
                            Err(_) => {}
                        }
                        if self.closed {
                            break;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Applies a message from the runner while disconnected.
    fn take(&mut self, up: Up) {
        match up {
            Up::Event(event) => {
                self.push(event);
            }
            Up::Handled(seq) => self.handled = self.handled.max(seq),
            Up::Idle(idle) => self.idle = idle,
            Up::Flush(tx) if self.outbox.is_empty() => {
                let _ = tx.send(true);
            }
            Up::Flush(tx) => self.flushes.push(tx),
        }
    }

    fn push(&mut self, event: SessionEvent) -> RunnerEvent {
        let e = RunnerEvent {
            rseq: self.next_rseq,
            ts: now_ms(),
            event,
        };
        self.next_rseq += 1;
        self.outbox.push_back(e.clone());
        e
    }

    fn resolve_flushes(&mut self, delivered: bool) {
        for tx in self.flushes.drain(..) {
            let _ = tx.send(delivered);
        }
    }

    async fn connect(&self) -> Result<Socket, String> {
        let mut request = self
            .config
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| e.to_string())?;
        let auth = format!("Bearer {}", self.config.token)
            .parse()
            .map_err(|_| "the runner token is not valid in a header".to_owned())?;
        request.headers_mut().insert("authorization", auth);
        // No Nagle delay for small event frames; a small read buffer, because tungstenite
        // zero-fills it up to its size on every read.
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok((socket, _))) => Ok(socket),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("connecting timed out".into()),
        }
    }

    async fn send(socket: &mut Socket, msg: &RunnerToServer) -> Result<(), Ended> {
        socket
            .send(Message::Text(msg.encode().into()))
            .await
            .map_err(|e| Ended::Retry(e.to_string()))
    }

    /// One connection: hello, welcome, re-send, then live until it drops.
    async fn session(&mut self, mut socket: Socket, backoff: &mut Duration) -> Ended {
        let hello = RunnerToServer::Hello(RunnerHello {
            protocol: PROTOCOL_VERSION,
            generation: self.config.generation,
            handled_through: self.handled,
        });
        if let Err(e) = Self::send(&mut socket, &hello).await {
            return e;
        }
        let acked = match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => match ServerToRunner::decode(&text) {
                Ok(ServerToRunner::Welcome(w)) => w.acked_rseq,
                other => return Ended::Retry(format!("expected welcome, got {other:?}")),
            },
            Ok(Some(Ok(Message::Close(frame)))) => return closed(frame),
            Ok(Some(Err(e))) => return Ended::Retry(e.to_string()),
            Ok(_) => return Ended::Retry("the server closed the connection".into()),
            Err(_) => return Ended::Retry("no welcome within 10 s".into()),
        };
        *backoff = Duration::from_millis(100);
        self.ack(acked);
        for e in self.outbox.clone() {
            if let Err(e) = Self::send(&mut socket, &RunnerToServer::Event(e)).await {
                return e;
            }
        }
        if self.idle
            && let Err(e) = Self::send(
                &mut socket,
                &RunnerToServer::Idle(RunnerIdle {
                    handled_through: self.handled,
                }),
            )
            .await
        {
            return e;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        let mut last_heard = Instant::now();
        loop {
            if self.closed && self.outbox.is_empty() {
                let _ = socket
                    .close(Some(CloseFrame {
                        code: 1000.into(),
                        reason: "runner done".into(),
                    }))
                    .await;
                return Ended::Done;
            }
            tokio::select! {
                up = self.up.recv(), if !self.closed => match up {
                    Some(Up::Event(event)) => {
                        let e = self.push(event);
                        if let Err(e) = Self::send(&mut socket, &RunnerToServer::Event(e)).await {
                            return e;
                        }
                    }
                    Some(Up::Idle(idle)) => {
                        self.idle = idle;
                        if idle
                            && let Err(e) = Self::send(&mut socket, &RunnerToServer::Idle(RunnerIdle { handled_through: self.handled })).await
                        {
                            return e;
                        }
                    }
                    Some(other) => self.take(other),
                    None => self.closed = true,
                },
                frame = socket.next() => {
                    last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => match ServerToRunner::decode(&text) {
                            Ok(msg) => {
                                if let Err(e) = self.handle(&mut socket, msg).await {
                                    return e;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "ignoring a frame from the server"),
                        },
                        Some(Ok(Message::Close(frame))) => return closed(frame),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Ended::Retry(e.to_string()),
                        None => return Ended::Retry("the server closed the connection".into()),
                    }
                }
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > Duration::from_secs(HEARTBEAT_TIMEOUT_SECS) {
                        return Ended::Retry("no frame from the server for 45 s".into());
                    }
                    if let Err(e) = Self::send(&mut socket, &RunnerToServer::Ping).await {
                        return e;
                    }
                }
            }
        }
    }

    async fn handle(&mut self, socket: &mut Socket, msg: ServerToRunner) -> Result<(), Ended> {
        let down = match msg {
            ServerToRunner::Ack(a) => {
                self.ack(a.rseq);
                return Ok(());
            }
            ServerToRunner::Ping => return Self::send(socket, &RunnerToServer::Pong).await,
            ServerToRunner::Pong | ServerToRunner::Welcome(_) => return Ok(()),
            ServerToRunner::UserMessage(m) => Down::User {
                seq: m.seq,
                text: m.text,
                sender: m.sender,
            },
            ServerToRunner::Interrupt(_) => Down::Interrupt,
            ServerToRunner::Stop(_) => Down::Stop,
            ServerToRunner::Finish => Down::Finish,
        };
        let _ = self.down.send(down);
        Ok(())
    }

    fn ack(&mut self, rseq: u64) {
        while self.outbox.front().is_some_and(|e| e.rseq <= rseq) {
            self.outbox.pop_front();
        }
        if self.outbox.is_empty() {
            self.resolve_flushes(true);
        }
    }
}

fn closed(frame: Option<CloseFrame>) -> Ended {
    let Some(frame) = frame else {
        return Ended::Retry("the server closed the connection".into());
    };
    let code = u16::from(frame.code);
    let reason = format!("{} (close code {code})", frame.reason);
    match code {
        close::UNAUTHORIZED
        | close::FORBIDDEN
        | close::NOT_FOUND
        | close::SUPERSEDED
        | close::GONE
        | close::BAD_FRAME => Ended::Fatal(reason),
        _ => Ended::Retry(reason),
    }
}

fn jitter(d: Duration) -> Duration {
    use rand::Rng;
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
