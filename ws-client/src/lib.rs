//! A client WebSocket speaking one direction of the protocol: the runner's link uses it, and
//! so do the simulated peers of the tests and the load generator. One place opens, reads,
//! writes, keeps the heartbeat, closes, and says how a connection ended.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use model::protocol::{DecodeError, Frame, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS, close};
use tokio::net::TcpStream;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Time to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The socket under a connection.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The server closed it with this code and reason.
    Code(u16, String),
    /// It could not be opened, or dropped without a close frame.
    Dropped(String),
}

impl Closed {
    /// Whether a runner should connect again (a drop, a restarting server) rather than give
    /// up (see [`close::runner_may_retry`]).
    pub fn may_retry(&self) -> bool {
        match self {
            Closed::Code(code, _) => close::runner_may_retry(*code),
            Closed::Dropped(_) => true,
        }
    }
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Code(code, reason) => write!(f, "{reason} (close code {code})"),
            Closed::Dropped(why) => f.write_str(why),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// The connection ended.
    Closed(Closed),
    /// A text frame that is not a message of this direction.
    Undecodable(DecodeError),
}

/// What the server sent, or a heartbeat tick.
#[derive(Debug)]
pub enum Incoming<F> {
    /// A message.
    Frame(F),
    /// Time to ping: the heartbeat interval passed and the server is not silent for too long.
    Beat,
}

/// A client WebSocket.
pub struct Connection {
    socket: Socket,
    last_heard: Instant,
    heartbeat: Interval,
}

impl Connection {
    /// Opens `url`, with `Authorization: Bearer <bearer>` when given. `read_buffer` is the
    /// socket's read buffer (tungstenite zero-fills it up to its size on every read: small
    /// peers want it small).
    pub async fn open(
        url: &str,
        bearer: Option<&str>,
        read_buffer: usize,
    ) -> Result<Connection, Closed> {
        let auth = bearer.map(|token| ("authorization", format!("Bearer {token}")));
        Self::open_with(url, auth.as_slice(), read_buffer).await
    }

    /// Opens `url` with these extra request headers (a browser's `Cookie` and `Origin`, in
    /// tests).
    pub async fn open_with(
        url: &str,
        headers: &[(&'static str, String)],
        read_buffer: usize,
    ) -> Result<Connection, Closed> {
        let mut request = url
            .into_client_request()
            .map_err(|e| Closed::Dropped(e.to_string()))?;
        for (name, value) in headers {
            let value = value
                .parse()
                .map_err(|_| Closed::Dropped(format!("the {name} header is not valid")))?;
            request.headers_mut().insert(*name, value);
        }
        let config = WebSocketConfig::default().read_buffer_size(read_buffer);
        // No Nagle delay: small frames leave at once.
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (socket, _) = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => return Err(Closed::Dropped(e.to_string())),
            Err(_) => return Err(Closed::Dropped("connecting timed out".into())),
        };
        let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(Connection {
            socket,
            last_heard: Instant::now(),
            heartbeat,
        })
    }

    /// The next message from the server. Cancel-safe.
    pub async fn read_frame<F: Frame>(&mut self) -> Result<F, ReadError> {
        recv(&mut self.socket, &mut self.last_heard).await
    }

    /// The next message, or a heartbeat tick; fails when the server has been silent for
    /// too long. Cancel-safe.
    pub async fn next<F: Frame>(&mut self) -> Result<Incoming<F>, ReadError> {
        tokio::select! {
            frame = recv(&mut self.socket, &mut self.last_heard) => frame.map(Incoming::Frame),
            _ = self.heartbeat.tick() => {
                if self.last_heard.elapsed() > Duration::from_secs(HEARTBEAT_TIMEOUT_SECS) {
                    return Err(ReadError::Closed(Closed::Dropped(format!(
                        "no frame from the server for {HEARTBEAT_TIMEOUT_SECS} s"
                    ))));
                }
                Ok(Incoming::Beat)
            }
        }
    }

    /// Sends one message.
    pub async fn write_frame<F: Frame>(&mut self, msg: &F) -> Result<(), Closed> {
        self.write_text(msg.encode()).await
    }

    /// Sends one text frame as it is (tests send what the protocol forbids with it).
    pub async fn write_text(&mut self, text: String) -> Result<(), Closed> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|e| Closed::Dropped(e.to_string()))
    }

    /// Sends text frames with one flush.
    pub async fn write_texts(&mut self, texts: Vec<String>) -> Result<(), Closed> {
        for text in texts {
            self.socket
                .feed(Message::Text(text.into()))
                .await
                .map_err(|e| Closed::Dropped(e.to_string()))?;
        }
        self.socket
            .flush()
            .await
            .map_err(|e| Closed::Dropped(e.to_string()))
    }

    /// The socket itself, for a peer that drives it by hand (the load generator reads and
    /// writes it from two tasks).
    pub fn into_socket(self) -> Socket {
        self.socket
    }

    /// Closes with `code` and `reason`.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        let _ = self.socket.close(Some(frame)).await;
    }
}

async fn recv<F: Frame>(socket: &mut Socket, last_heard: &mut Instant) -> Result<F, ReadError> {
    loop {
        let msg = socket.next().await;
        *last_heard = Instant::now();
        match msg {
            Some(Ok(Message::Text(text))) => {
                return F::decode(&text).map_err(ReadError::Undecodable);
            }
            Some(Ok(Message::Close(Some(frame)))) => {
                return Err(ReadError::Closed(Closed::Code(
                    frame.code.into(),
                    frame.reason.to_string(),
                )));
            }
            Some(Ok(Message::Close(None))) | None => {
                return Err(ReadError::Closed(Closed::Dropped(
                    "the server closed the connection".into(),
                )));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(ReadError::Closed(Closed::Dropped(e.to_string()))),
        }
    }
}
