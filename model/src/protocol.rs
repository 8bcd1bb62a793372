//! The real-time protocol: JSON text frames over WebSocket, one typed enum per direction.
//!
//! - runner ↔ server on `/api/projects/{p}/agentic-sessions/{s}/runner/ws`, authenticated with
//!   the session's runner token: [`RunnerToServer`], [`ServerToRunner`];
//! - browser ↔ server on `/api/projects/{p}/agentic-sessions/{s}/ws?after=<seq>`:
//!   [`BrowserToServer`], [`ServerToBrowser`].
//!
//! [`Frame`] is the only place each direction is encoded and decoded. Every frame is a JSON
//! object with a `type` tag; field names are camelCase, tags snake_case.

mod browser;
mod event;
pub mod files;
mod runner;

pub use browser::{BrowserToServer, Live, Refusal, SendMessage, ServerToBrowser};
pub use event::{
    ASK_USER_QUESTION, AgentDelta, AgentMessage, AgentStarted, Answer, Ask, ControlEcho,
    ErrorEvent, GitPush, LogLevel, LogLine, MAX_CHANGES_DIFF, MAX_EVENT_TEXT,
    MAX_MCP_STATUS_SERVERS, MAX_MCP_STATUS_TOOLS, McpServerState, McpStatus, ModelChange,
    PhaseChange, PullRequest, RepoChanges, RunResult, SessionEvent, StoredEvent, Thinking,
    ToolResult, ToolUse, TurnResult, Usage, UserMessage, WorkflowChange, truncated,
};
pub use runner::{
    Ack, RunnerControl, RunnerEvent, RunnerHello, RunnerIdle, RunnerModel, RunnerToServer,
    RunnerUserMessage, ServerToRunner, Welcome,
};

use serde::{Serialize, de::DeserializeOwned};

/// Version of this protocol, sent by the runner in its hello.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame a browser may send (a follow-up message plus framing).
pub const MAX_BROWSER_FRAME: usize = 256 * 1024;
/// Largest frame a runner may send; the runner truncates tool output to fit.
pub const MAX_RUNNER_FRAME: usize = 4 * 1024 * 1024;
/// Longest text of a user message, initial prompt included.
pub const MAX_MESSAGE_TEXT: usize = 100 * 1024;

/// Both ends send a ping after this many seconds without sending anything.
pub const HEARTBEAT_INTERVAL_SECS: u64 = 15;
/// A peer silent for this long is considered gone and its connection is closed.
pub const HEARTBEAT_TIMEOUT_SECS: u64 = 45;

/// WebSocket close codes used by the server (4000–4999 are application codes).
pub mod close {
    /// The server is shutting down; reconnect with your cursor.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame was not a valid message of this protocol.
    pub const BAD_FRAME: u16 = 4400;
    /// Missing or invalid credentials.
    pub const UNAUTHORIZED: u16 = 4401;
    /// Valid credentials that do not give access to this session or endpoint.
    pub const FORBIDDEN: u16 = 4403;
    /// No such project or session.
    pub const NOT_FOUND: u16 = 4404;
    /// No frame from the peer within [`super::HEARTBEAT_TIMEOUT_SECS`].
    pub const HEARTBEAT_TIMEOUT: u16 = 4408;
    /// Another connection of the same runner replaced this one, or the runner's generation is
    /// no longer current.
    pub const SUPERSEDED: u16 = 4409;
    /// The session was deleted.
    pub const GONE: u16 = 4410;
    /// A frame exceeded the size limit.
    pub const TOO_LARGE: u16 = 4413;
    /// The viewer's cursor (`after`) is past the end of the log (the log was replaced, e.g.
    /// the session was deleted and created again): start over from the beginning.
    pub const CURSOR_AHEAD: u16 = 4416;
    /// The viewer could not keep up for too long.
    pub const TOO_SLOW: u16 = 4429;
    /// A connection of this run's runner is open already (a runner that lost its connection
    /// may try again once the server notices it is gone; an intruder with the token cannot
    /// take the place of the real runner).
    pub const ALREADY_CONNECTED: u16 = 4411;
    /// Unexpected server-side failure; reconnect.
    pub const INTERNAL: u16 = 4500;

    /// Whether a runner closed with `code` should connect again (the server restarts, a
    /// transient failure) rather than give up (refused, replaced, deleted, a protocol error).
    pub fn runner_may_retry(code: u16) -> bool {
        !matches!(
            code,
            UNAUTHORIZED | FORBIDDEN | NOT_FOUND | SUPERSEDED | GONE | BAD_FRAME
        )
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame is longer than the direction allows.
    TooLarge {
        /// Frame length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, or not a message of this direction.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the limit of {max} bytes")
            }
            DecodeError::Malformed(why) => write!(f, "malformed frame: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A message of one direction of the protocol.
pub trait Frame: Serialize + DeserializeOwned {
    /// Largest accepted encoded size.
    const MAX_LEN: usize;

    /// Encodes the message as one text frame.
    fn encode(&self) -> String {
        // Serialising these types cannot fail: no map has non-string keys, no custom
        // serialiser returns errors.
        serde_json::to_string(self).unwrap_or_else(|e| unreachable!("protocol encode: {e}"))
    }

    /// Decodes one text frame, refusing oversized or malformed input.
    fn decode(text: &str) -> Result<Self, DecodeError> {
        if text.len() > Self::MAX_LEN {
            return Err(DecodeError::TooLarge {
                len: text.len(),
                max: Self::MAX_LEN,
            });
        }
        serde_json::from_str(text).map_err(|e| DecodeError::Malformed(e.to_string()))
    }
}

impl Frame for RunnerToServer {
    const MAX_LEN: usize = MAX_RUNNER_FRAME;
}

impl Frame for ServerToRunner {
    const MAX_LEN: usize = MAX_RUNNER_FRAME;
}

impl Frame for BrowserToServer {
    const MAX_LEN: usize = MAX_BROWSER_FRAME;
}

impl Frame for ServerToBrowser {
    // Carries runner events, so it can be as large as those.
    const MAX_LEN: usize = MAX_RUNNER_FRAME + 1024;
}

/// Encodes an event frame for viewers from an event already encoded as JSON.
///
/// The hub encodes each event once and sends the same bytes to every viewer; this produces
/// exactly what `ServerToBrowser::Event(StoredEvent { seq, ts, event }).encode()` does.
pub fn encode_event_frame(seq: u64, ts: i64, event_json: &str) -> String {
    let mut out = String::with_capacity(event_json.len() + 48);
    out.push_str(r#"{"type":"event","seq":"#);
    out.push_str(&seq.to_string());
    out.push_str(r#","ts":"#);
    out.push_str(&ts.to_string());
    out.push_str(r#","event":"#);
    out.push_str(event_json);
    out.push('}');
    out
}

/// Encodes a session event on its own, as stored in the log.
pub fn encode_event(event: &SessionEvent) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| unreachable!("protocol encode: {e}"))
}

#[cfg(test)]
mod tests;
