//! The server's two WebSocket endpoints and the connection type they share.
//!
//! Layout: [`Connection`] (here: reading and writing frames, the heartbeat, closing, and the
//! one classification of what ends a connection), [`viewer`], [`runner`].

pub mod runner;
pub mod viewer;

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::SinkExt;
use model::protocol::{DecodeError, Frame, HEARTBEAT_INTERVAL_SECS, HEARTBEAT_TIMEOUT_SECS, close};
use platform::ApiError;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite;

/// A peer that cannot take a frame for this long is disconnected (it can resume).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Time a close frame gets to leave.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// How a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The peer went away (closed, or the connection broke): nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, String),
}

impl End {
    /// A failure on our side, logged; the peer is told to reconnect.
    pub fn internal(e: impl std::fmt::Display) -> End {
        tracing::error!(error = %e, "WebSocket endpoint: internal failure");
        End::Close(close::INTERNAL, "internal error; reconnect".into())
    }

    /// The end for a refusal of the platform (a missing session, a conflict ...).
    pub fn refused(e: ApiError) -> End {
        match e {
            ApiError::NotFound(what) => End::Close(close::NOT_FOUND, what),
            ApiError::Unauthorized(why) => End::Close(close::UNAUTHORIZED, why),
            ApiError::Forbidden(why) => End::Close(close::FORBIDDEN, why),
            ApiError::Conflict(why) => End::Close(close::SUPERSEDED, why),
            other => End::internal(other),
        }
    }
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The connection ends.
    End(End),
    /// A text frame that is not a message of this direction (the endpoint decides whether
    /// that ends the connection).
    Undecodable(DecodeError),
}

impl From<DecodeError> for End {
    fn from(e: DecodeError) -> End {
        match e {
            DecodeError::TooLarge { .. } => End::Close(close::TOO_LARGE, e.to_string()),
            DecodeError::Malformed(_) => End::Close(close::BAD_FRAME, e.to_string()),
        }
    }
}

impl From<ReadError> for End {
    fn from(e: ReadError) -> End {
        match e {
            ReadError::End(end) => end,
            ReadError::Undecodable(e) => e.into(),
        }
    }
}

/// A server-side WebSocket speaking one of the protocol's directions.
pub struct Connection {
    socket: WebSocket,
    last_heard: Instant,
    heartbeat: Interval,
}

impl Connection {
    /// Wraps an upgraded socket.
    pub fn new(socket: WebSocket) -> Self {
        let mut heartbeat = tokio::time::interval(Duration::from_secs(HEARTBEAT_INTERVAL_SECS));
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Connection {
            socket,
            last_heard: Instant::now(),
            heartbeat,
        }
    }

    /// The next message from the peer (control frames are answered by the socket itself).
    /// Cancel-safe: usable in `select!`.
    pub async fn read_frame<F: Frame>(&mut self) -> Result<F, ReadError> {
        recv(&mut self.socket, &mut self.last_heard).await
    }

    /// The next message, or a heartbeat tick (when the endpoint pings, if it does); fails
    /// when the peer has been silent for too long. Cancel-safe.
    pub async fn next<F: Frame>(&mut self) -> Result<Incoming<F>, ReadError> {
        tokio::select! {
            frame = recv(&mut self.socket, &mut self.last_heard) => frame.map(Incoming::Frame),
            _ = self.heartbeat.tick() => {
                if self.last_heard.elapsed() > Duration::from_secs(HEARTBEAT_TIMEOUT_SECS) {
                    return Err(ReadError::End(End::Close(
                        close::HEARTBEAT_TIMEOUT,
                        "no message or ping from the peer".into(),
                    )));
                }
                Ok(Incoming::Beat)
            }
        }
    }

    /// The next message if one is already here, without waiting.
    pub fn try_read_frame<F: Frame>(&mut self) -> Option<Result<F, ReadError>> {
        use futures::FutureExt;
        self.read_frame().now_or_never()
    }

    /// Sends one message.
    pub async fn write_frame<F: Frame>(&mut self, msg: &F) -> Result<(), End> {
        self.write_texts(vec![Utf8Bytes::from(msg.encode())]).await
    }

    /// Sends frames already encoded, with one flush; a peer that cannot take them in time is
    /// dropped (it can resume).
    pub async fn write_texts(&mut self, texts: Vec<Utf8Bytes>) -> Result<(), End> {
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
                "the peer did not read its frames; reconnect".into(),
            )),
        }
    }

    /// Ends the connection: with a close frame for [`End::Close`].
    pub async fn close(mut self, end: End) {
        if let End::Close(code, reason) = end {
            let frame = CloseFrame {
                code,
                reason: reason.into(),
            };
            let _ =
                tokio::time::timeout(CLOSE_TIMEOUT, self.socket.send(Message::Close(Some(frame))))
                    .await;
        }
    }
}

/// What the peer sent, or a heartbeat tick.
#[derive(Debug)]
pub enum Incoming<F> {
    /// A message.
    Frame(F),
    /// The heartbeat interval passed and the peer is not silent for too long.
    Beat,
}

async fn recv<F: Frame>(socket: &mut WebSocket, last_heard: &mut Instant) -> Result<F, ReadError> {
    loop {
        let msg = socket.recv().await;
        *last_heard = Instant::now();
        match msg {
            Some(Ok(Message::Text(text))) => {
                return F::decode(&text).map_err(ReadError::Undecodable);
            }
            Some(Ok(Message::Binary(_))) => {
                return Err(ReadError::End(End::Close(
                    close::BAD_FRAME,
                    "binary frames are not part of the protocol".into(),
                )));
            }
            Some(Ok(Message::Close(_))) | None => return Err(ReadError::End(End::Gone)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Err(e)) => return Err(ReadError::End(classify(e))),
        }
    }
}

/// What a read error means for the connection: an oversized frame is the peer's fault and
/// gets a close code; anything else is a broken connection.
fn classify(e: axum::Error) -> End {
    match e.into_inner().downcast::<tungstenite::Error>() {
        Ok(e) => match *e {
            tungstenite::Error::Capacity(c) => {
                End::Close(close::TOO_LARGE, format!("frame too large: {c}"))
            }
            tungstenite::Error::Protocol(p) => {
                End::Close(close::BAD_FRAME, format!("protocol error: {p}"))
            }
            _ => End::Gone,
        },
        Err(_) => End::Gone,
    }
}
