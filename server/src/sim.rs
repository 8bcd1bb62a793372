//! Simulated peers for the hub's tests and the load generator: sessions seeded with runner
//! tokens, a runner that speaks the protocol by hand, and a viewer client. They use real
//! WebSockets on loopback; only the agent behind the runner is missing.

use futures::{SinkExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use model::protocol::{
    BrowserToServer, Frame, PROTOCOL_VERSION, RunnerEvent, RunnerHello, RunnerToServer,
    ServerToBrowser, ServerToRunner, SessionEvent,
};
use model::session::{AgenticSessionSpec, AgenticSessionStatus};
use model::{AgenticSession, Phase};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::store::{Store, StoreError};

/// A client WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A session prepared for a simulated runner.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Project.
    pub project: String,
    /// Session name.
    pub name: String,
    /// Current runner generation.
    pub generation: u64,
    /// Its runner token.
    pub token: String,
}

/// Creates `n` sessions in `project` already `Running`, each with a runner generation and
/// token, without any runner process (run the server without the local driver).
pub async fn seed_running(
    store: &Store,
    project: &str,
    n: usize,
) -> Result<Vec<Seeded>, StoreError> {
    store.ensure_project(project, project).await?;
    let mut out = Vec::with_capacity(n);
    let mut batch = Vec::new();
    for i in 0..n {
        let name = format!("session-sim-{i:06}");
        let mut s = AgenticSession::new(
            &name,
            AgenticSessionSpec {
                initial_prompt: Some(format!("simulated {i}")),
                ..Default::default()
            },
        );
        s.metadata = ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(project.to_owned()),
            creation_timestamp: Some(Time(Timestamp::now())),
            generation: Some(1),
            ..Default::default()
        };
        s.status = Some(AgenticSessionStatus {
            phase: Phase::Running,
            ..Default::default()
        });
        let store = store.clone();
        let project = project.to_owned();
        batch.push(tokio::spawn(async move {
            store.create_session(s, "sim".into()).await?;
            let (generation, token, _, _) = store.begin_run(&project, &name, false).await?;
            Ok::<_, StoreError>(Seeded {
                project,
                name,
                generation,
                token,
            })
        }));
        if batch.len() == 256 || i + 1 == n {
            for b in batch.drain(..) {
                out.push(b.await.map_err(|e| StoreError::Io(e.to_string()))??);
            }
        }
    }
    Ok(out)
}

/// Why a simulated peer's connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server closed with this code and reason.
    Code(u16, String),
    /// The connection dropped without a close frame.
    Dropped(String),
}

/// Reads the next text frame, or how the connection closed.
pub async fn next_text(ws: &mut Socket) -> Result<String, Closed> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.to_string()),
            Some(Ok(Message::Close(Some(f)))) => {
                return Err(Closed::Code(f.code.into(), f.reason.to_string()));
            }
            Some(Ok(Message::Close(None))) | None => return Err(Closed::Dropped("closed".into())),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(Closed::Dropped(e.to_string())),
        }
    }
}

/// Opens a WebSocket, optionally with a bearer token.
pub async fn open(url: &str, bearer: Option<&str>) -> Result<Socket, Closed> {
    let mut req = url
        .into_client_request()
        .map_err(|e| Closed::Dropped(e.to_string()))?;
    if let Some(token) = bearer {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Closed::Dropped("bad token".into()))?;
        req.headers_mut().insert("authorization", value);
    }
    // No Nagle delay; a small read buffer (tungstenite zero-fills it up to its size on
    // every read).
    let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(req, Some(config), true)
        .await
        .map_err(|e| Closed::Dropped(e.to_string()))?;
    Ok(ws)
}

/// A runner speaking the protocol by hand.
pub struct FakeRunner {
    /// The socket.
    pub ws: Socket,
    /// Next runner sequence number.
    pub next_rseq: u64,
    /// What the server acknowledged in its welcome.
    pub welcomed_at: u64,
}

impl FakeRunner {
    /// The runner endpoint of a session.
    pub fn url(addr: &str, project: &str, name: &str) -> String {
        format!("ws://{addr}/api/projects/{project}/agentic-sessions/{name}/runner/ws")
    }

    /// Connects, says hello, waits for the welcome.
    pub async fn connect(
        addr: &str,
        s: &Seeded,
        handled_through: u64,
    ) -> Result<FakeRunner, Closed> {
        let mut ws = open(&Self::url(addr, &s.project, &s.name), Some(&s.token)).await?;
        let hello = RunnerToServer::Hello(RunnerHello {
            protocol: PROTOCOL_VERSION,
            generation: s.generation,
            handled_through,
        });
        ws.send(Message::Text(hello.encode().into()))
            .await
            .map_err(|e| Closed::Dropped(e.to_string()))?;
        loop {
            match ServerToRunner::decode(&next_text(&mut ws).await?) {
                Ok(ServerToRunner::Welcome(w)) => {
                    return Ok(FakeRunner {
                        ws,
                        next_rseq: w.acked_rseq + 1,
                        welcomed_at: w.acked_rseq,
                    });
                }
                Ok(_) => continue,
                Err(e) => return Err(Closed::Dropped(e.to_string())),
            }
        }
    }

    /// The frame of an event with the next runner sequence number.
    pub fn frame(&mut self, event: SessionEvent) -> String {
        let e = RunnerEvent {
            rseq: self.next_rseq,
            ts: crate::store::now_ms(),
            event,
        };
        self.next_rseq += 1;
        RunnerToServer::Event(e).encode()
    }

    /// Sends an event.
    pub async fn send(&mut self, event: SessionEvent) -> Result<(), Closed> {
        let frame = self.frame(event);
        self.ws
            .send(Message::Text(frame.into()))
            .await
            .map_err(|e| Closed::Dropped(e.to_string()))
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<ServerToRunner, Closed> {
        let text = next_text(&mut self.ws).await?;
        ServerToRunner::decode(&text).map_err(|e| Closed::Dropped(e.to_string()))
    }

    /// Reads until every event up to `rseq` is acknowledged; returns other messages seen.
    pub async fn wait_ack(&mut self, rseq: u64) -> Result<Vec<ServerToRunner>, Closed> {
        let mut other = Vec::new();
        loop {
            match self.recv().await? {
                ServerToRunner::Ack(a) if a.rseq >= rseq => return Ok(other),
                ServerToRunner::Ack(_) => {}
                m => other.push(m),
            }
        }
    }
}

/// A viewer client.
pub struct ViewerClient {
    /// The socket.
    pub ws: Socket,
}

impl ViewerClient {
    /// Connects to a session from a cursor.
    pub async fn connect(
        addr: &str,
        project: &str,
        name: &str,
        after: u64,
    ) -> Result<ViewerClient, Closed> {
        let url =
            format!("ws://{addr}/api/projects/{project}/agentic-sessions/{name}/ws?after={after}");
        Ok(ViewerClient {
            ws: open(&url, None).await?,
        })
    }

    /// The next message from the server.
    pub async fn recv(&mut self) -> Result<ServerToBrowser, Closed> {
        let text = next_text(&mut self.ws).await?;
        ServerToBrowser::decode(&text).map_err(|e| Closed::Dropped(e.to_string()))
    }

    /// Sends a request.
    pub async fn send(&mut self, msg: &BrowserToServer) -> Result<(), Closed> {
        self.ws
            .send(Message::Text(msg.encode().into()))
            .await
            .map_err(|e| Closed::Dropped(e.to_string()))
    }
}
