//! The runner's connection to the server: events up, work down, nothing lost.
//!
//! Every event gets the next runner sequence number and stays in the outbox until the
//! server acknowledges it. After any drop the link reconnects with backoff, says hello with
//! how far the agent got, and re-sends what is unacknowledged; the server drops duplicates.
//! Events produced while the server is unreachable wait in the outbox.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use model::protocol::files::{
    FILES_WINDOW, FilesBody, FilesError, FilesOp, FilesReply, FilesRequest,
};
use model::protocol::{
    PROTOCOL_VERSION, RunnerEvent, RunnerHello, RunnerIdle, RunnerToServer, ServerToRunner,
    SessionEvent,
};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;

use crate::connection::{Closed, Connection, Incoming, ReadError};
use crate::files::{Files, Reply};

/// The socket's read buffer: the runner receives little.
const READ_BUFFER: usize = 16 * 1024;
/// Time the server has to welcome a runner.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Switch the agent's model.
    SetModel(String),
    /// A person's answer to an ask of the agent.
    Answer(model::protocol::Answer),
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
    Files(Arc<Files>),
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

    /// Serves the server's workspace requests from `files` (until then they are refused as
    /// busy: the workspace is being prepared).
    pub fn serve_files(&self, files: Arc<Files>) {
        let _ = self.up.send(Up::Files(files));
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
    /// The workspace, once prepared.
    files: Option<Arc<Files>>,
    /// Answers of workspace requests, sent as they come while connected (a request does not
    /// outlive its connection: the server forgets it when the runner drops).
    replies: mpsc::UnboundedReceiver<FilesReply>,
    replies_tx: mpsc::UnboundedSender<FilesReply>,
    /// Each open stream's credit: chunks the server may still take.
    credits: HashMap<u64, Arc<Semaphore>>,
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
        let (replies_tx, replies) = mpsc::unbounded_channel();
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
            files: None,
            replies,
            replies_tx,
            credits: HashMap::new(),
        }
    }

    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut unreachable_since: Option<Instant> = None;
        loop {
            let opened =
                Connection::open(&self.config.url, Some(&self.config.token), READ_BUFFER).await;
            let ended = match opened {
                Ok(conn) => {
                    let ended = self.session(conn, &mut backoff).await;
                    unreachable_since = None;
                    ended
                }
                Err(e) => Ended::Retry(e.to_string()),
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

    /// Applies every message the runner has queued, without waiting.
    fn take_queued(&mut self) {
        loop {
            match self.up.try_recv() {
                Ok(up) => self.take(up),
                Err(mpsc::error::TryRecvError::Empty) => return,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    self.closed = true;
                    return;
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
            Up::Files(files) => self.files = Some(files),
        }
    }

    fn push(&mut self, event: SessionEvent) -> RunnerEvent {
        let e = RunnerEvent {
            rseq: self.next_rseq,
            ts: now_ms(),
            // Cut to fit a frame: an event the server cannot take must not block the rest.
            event: event.bounded(),
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

    /// One connection: hello, welcome, re-send, then live until it drops.
    async fn session(&mut self, mut conn: Connection, backoff: &mut Duration) -> Ended {
        // What the runner queued before this connection (the workspace to serve, the turns
        // handled) is applied before anything of the connection: the server may send a
        // workspace request the moment it has registered this runner, and a files runner's
        // first request was answered "still being prepared" when its workspace, queued
        // before the connection opened, came after that request.
        self.take_queued();
        let hello = RunnerToServer::Hello(RunnerHello {
            protocol: PROTOCOL_VERSION,
            generation: self.config.generation,
            handled_through: self.handled,
        });
        if let Err(e) = conn.write_frame(&hello).await {
            return ended(e);
        }
        let acked = match tokio::time::timeout(WELCOME_TIMEOUT, conn.read_frame()).await {
            Ok(Ok(ServerToRunner::Welcome(w))) => w.acked_rseq,
            Ok(Ok(other)) => return Ended::Retry(format!("expected welcome, got {other:?}")),
            Ok(Err(ReadError::Closed(c))) => return ended(c),
            Ok(Err(ReadError::Undecodable(e))) => {
                return Ended::Retry(format!("expected welcome: {e}"));
            }
            Err(_) => return Ended::Retry("no welcome within 10 s".into()),
        };
        if acked >= self.next_rseq {
            // The server holds more of this run than this runner ever sent: another runner
            // of the same run (a pod that replaced a deleted one) wrote them. Going on would
            // number new events over them.
            return Ended::Fatal(format!(
                "the server already has {acked} events of run {} that this runner did not send \
                 (another runner of the same run, such as a replaced pod, sent them); \
                 stopping rather than overwrite them",
                self.config.generation
            ));
        }
        *backoff = Duration::from_millis(100);
        // Workspace requests of an earlier connection: the server forgot them.
        for (_, credit) in self.credits.drain() {
            credit.close();
        }
        if let Some(files) = self.files.clone() {
            files.abandon_all().await;
        }
        while self.replies.try_recv().is_ok() {}
        self.ack(acked);
        for e in self.outbox.clone() {
            if let Err(e) = conn.write_frame(&RunnerToServer::Event(e)).await {
                return ended(e);
            }
        }
        if self.idle
            && let Err(e) = conn.write_frame(&self.idle_message()).await
        {
            return ended(e);
        }
        loop {
            if self.closed && self.outbox.is_empty() {
                conn.close(1000, "runner done").await;
                return Ended::Done;
            }
            let sent = tokio::select! {
                up = self.up.recv(), if !self.closed => match up {
                    Some(Up::Event(event)) => {
                        let e = self.push(event);
                        conn.write_frame(&RunnerToServer::Event(e)).await
                    }
                    Some(Up::Idle(idle)) => {
                        self.idle = idle;
                        if idle {
                            conn.write_frame(&self.idle_message()).await
                        } else {
                            Ok(())
                        }
                    }
                    Some(other) => {
                        self.take(other);
                        Ok(())
                    }
                    None => {
                        self.closed = true;
                        Ok(())
                    }
                },
                Some(reply) = self.replies.recv() => {
                    if reply.body.is_final() {
                        self.credits.remove(&reply.id);
                    }
                    conn.write_frame(&RunnerToServer::Files(reply)).await
                }
                incoming = conn.next::<ServerToRunner>() => match incoming {
                    Ok(Incoming::Frame(msg)) => match self.handle(msg) {
                        Some(reply) => conn.write_frame(&reply).await,
                        None => Ok(()),
                    },
                    Ok(Incoming::Beat) => conn.write_frame(&RunnerToServer::Ping).await,
                    Err(ReadError::Closed(c)) => Err(c),
                    Err(ReadError::Undecodable(e)) => {
                        tracing::warn!(error = %e, "ignoring a frame from the server");
                        Ok(())
                    }
                },
            };
            if let Err(c) = sent {
                return ended(c);
            }
        }
    }

    fn idle_message(&self) -> RunnerToServer {
        RunnerToServer::Idle(RunnerIdle {
            handled_through: self.handled,
        })
    }

    /// Takes a message from the server; returns the answer to send, if any.
    fn handle(&mut self, msg: ServerToRunner) -> Option<RunnerToServer> {
        let down = match msg {
            ServerToRunner::Ack(a) => {
                self.ack(a.rseq);
                return None;
            }
            ServerToRunner::Ping => return Some(RunnerToServer::Pong),
            ServerToRunner::Pong | ServerToRunner::Welcome(_) => return None,
            ServerToRunner::UserMessage(m) => Down::User {
                seq: m.seq,
                text: m.text,
                sender: m.sender,
            },
            ServerToRunner::Interrupt(_) => Down::Interrupt,
            ServerToRunner::Stop(_) => Down::Stop,
            ServerToRunner::SetModel(m) => Down::SetModel(m.model),
            ServerToRunner::Answer(a) => Down::Answer(a),
            ServerToRunner::Finish => Down::Finish,
            ServerToRunner::Files(req) => return self.files(req),
        };
        let _ = self.down.send(down);
        None
    }

    /// Takes a workspace request: credit for a stream, or work for the file service.
    fn files(&mut self, req: FilesRequest) -> Option<RunnerToServer> {
        match req.op {
            FilesOp::More => {
                if let Some(credit) = self.credits.get(&req.id) {
                    credit.add_permits(1);
                }
                None
            }
            FilesOp::Cancel => {
                if let Some(credit) = self.credits.remove(&req.id) {
                    credit.close();
                }
                // An upload cut short leaves no partial file behind.
                if let Some(files) = self.files.clone() {
                    tokio::spawn(async move { files.abandon_blocking(req.id).await });
                }
                None
            }
            _ => {
                let Some(files) = self.files.clone() else {
                    return Some(RunnerToServer::Files(FilesReply {
                        id: req.id,
                        body: FilesBody::Error {
                            error: FilesError::Busy,
                            message: "the workspace is still being prepared".into(),
                        },
                    }));
                };
                let credit = Arc::new(Semaphore::new(FILES_WINDOW as usize));
                self.credits.insert(req.id, credit.clone());
                let reply = Reply {
                    id: req.id,
                    send: self.replies_tx.clone(),
                    credit,
                };
                tokio::spawn(files.serve(req, reply));
                None
            }
        }
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

/// What a connection that ended means for the link.
fn ended(closed: Closed) -> Ended {
    if closed.may_retry() {
        Ended::Retry(closed.to_string())
    } else {
        Ended::Fatal(closed.to_string())
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

#[cfg(test)]
mod tests {
    use futures::{SinkExt, StreamExt};
    use model::protocol::files::{FilesBody, FilesOp, FilesRequest};
    use model::protocol::{Frame, RunnerToServer, ServerToRunner, Welcome};
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::git::Confinement;
    use crate::sandbox::Isolation;

    /// A workspace handed to the link before it connects is served from the first request
    /// of the connection: a server that asks the moment the runner is welcomed (as it does
    /// for a files runner somebody waits for) is never told the workspace is being
    /// prepared. Without the queue applied first, the request and the workspace raced
    /// (about one connection in two lost); twenty connections leave no room for luck.
    #[tokio::test]
    async fn a_workspace_queued_before_connecting_serves_the_first_request() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("notes.md"), "hi").unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/runner/ws", listener.local_addr().unwrap());
        for attempt in 0..20 {
            let files = Arc::new(
                Files::new(
                    root.path().to_owned(),
                    Confinement {
                        isolation: Isolation::None(String::new()),
                        workspace: root.path().to_owned(),
                    },
                    Vec::new(),
                )
                .without_agent(),
            );
            let (link, _down) = Link::start(LinkConfig {
                url: url.clone(),
                token: "t".into(),
                generation: 1,
                handled_through: 0,
                give_up_after: Duration::from_secs(10),
            });
            link.serve_files(files);
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let _hello = ws.next().await.unwrap().unwrap();
            let welcome = ServerToRunner::Welcome(Welcome { acked_rseq: 0 });
            ws.send(Message::text(welcome.encode())).await.unwrap();
            let ask = ServerToRunner::Files(FilesRequest {
                id: 7,
                op: FilesOp::List {
                    path: String::new(),
                },
            });
            ws.send(Message::text(ask.encode())).await.unwrap();
            let reply = loop {
                let Message::Text(text) = ws.next().await.unwrap().unwrap() else {
                    continue;
                };
                if let Ok(RunnerToServer::Files(r)) = RunnerToServer::decode(&text) {
                    break r;
                }
            };
            assert_eq!(reply.id, 7);
            assert!(
                matches!(reply.body, FilesBody::Listing(_)),
                "connection {attempt}: {:?}",
                reply.body
            );
            drop(link);
        }
    }
}
