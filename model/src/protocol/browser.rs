//! Messages between a browser (or any viewer) and the server, on the session endpoint.
//!
//! A viewer connects with `?after=<seq>`, the last sequence it has (0 for none). The server
//! sends every event after it, then [`ServerToBrowser::Live`], then new events as they are
//! persisted: each event exactly once, in order.

use serde::{Deserialize, Serialize};

use super::event::StoredEvent;

/// Browser → server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BrowserToServer {
    /// A follow-up message for the agent.
    SendMessage(SendMessage),
    /// Stop the agent's current turn.
    Interrupt,
    /// Stop the session.
    Stop,
    /// Heartbeat; the server answers [`ServerToBrowser::Pong`].
    Ping,
}

/// A follow-up message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SendMessage {
    /// The text.
    pub text: String,
}

/// Server → browser.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToBrowser {
    /// An event of the session's log.
    Event(StoredEvent),
    /// Every persisted event up to `seq` has been sent; what follows is live.
    Live(Live),
    /// A request from this viewer was refused; the connection stays open.
    Error(Refusal),
    /// Answer to [`BrowserToServer::Ping`].
    Pong,
}

/// The replay is complete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Live {
    /// Last sequence sent.
    pub seq: u64,
}

/// Why a viewer's request was refused.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// Machine-readable kind (`bad_request`, `conflict`, `too_large` ...).
    pub error: String,
    /// Human-readable explanation.
    pub message: String,
}
