//! Messages between a runner and the server, on the runner endpoint.
//!
//! Delivery is reliable in both directions. Upwards, every event carries the runner's own
//! sequence number `rseq` (1-based, per runner generation); the server persists, then
//! acknowledges, and drops anything at or below what it already has. The runner keeps
//! unacknowledged events and re-sends them after reconnecting. Downwards, user messages and
//! controls carry their session `seq`; the runner reports the highest it has handled in
//! [`RunnerHello::handled_through`], and the server re-sends anything after it.

use serde::{Deserialize, Serialize};

use super::event::SessionEvent;

/// Runner → server.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RunnerToServer {
    /// First frame of every connection.
    Hello(RunnerHello),
    /// An event for the session's log.
    Event(RunnerEvent),
    /// The agent finished its turn and has nothing queued; the server answers with
    /// [`ServerToRunner::Finish`] or with more work.
    Idle(RunnerIdle),
    /// An answer about the workspace (see [`super::files`]); not kept in any log: lost with
    /// the connection, like the request it answers.
    Files(super::files::FilesReply),
    /// Heartbeat; the server answers [`ServerToRunner::Pong`].
    Ping,
    /// Answer to [`ServerToRunner::Ping`].
    Pong,
}

/// Identifies the runner instance and how far it got.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerHello {
    /// Protocol version the runner speaks ([`super::PROTOCOL_VERSION`]).
    pub protocol: u32,
    /// Which start of the session this runner is (from its environment); events of an older
    /// generation are refused.
    pub generation: u64,
    /// Highest session `seq` of a user message or control the runner has handled.
    pub handled_through: u64,
}

/// An event produced by the runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerEvent {
    /// The runner's sequence number (1-based, gap-free within a generation).
    pub rseq: u64,
    /// When it happened, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// What happened.
    pub event: SessionEvent,
}

/// The agent is idle.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerIdle {
    /// Highest session `seq` of a user message the runner has handled.
    pub handled_through: u64,
}

/// Server → runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerToRunner {
    /// Answer to [`RunnerToServer::Hello`]: resume sending after `acked_rseq`.
    Welcome(Welcome),
    /// Every event up to `rseq` is persisted.
    Ack(Ack),
    /// A message for the agent.
    UserMessage(RunnerUserMessage),
    /// Stop the current turn; the session goes on.
    Interrupt(RunnerControl),
    /// End the session: stop the agent, deliver the work, exit.
    Stop(RunnerControl),
    /// Switch the agent's model (the CLI's `set_model`): its next request uses it.
    SetModel(RunnerModel),
    /// A person's answer to the agent's ask (sent again after a reconnect; a runner with no
    /// such ask open ignores it).
    Answer(crate::protocol::Answer),
    /// Nothing more to do: deliver the work and exit.
    Finish,
    /// A question about the workspace, or an upload into it (see [`super::files`]).
    Files(super::files::FilesRequest),
    /// Heartbeat; the runner answers [`RunnerToServer::Pong`].
    Ping,
    /// Answer to [`RunnerToServer::Ping`].
    Pong,
}

/// Where the runner's event stream resumes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Welcome {
    /// Highest `rseq` of this generation already persisted (0 for none).
    pub acked_rseq: u64,
}

/// Acknowledgement of persisted events.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    /// Every event with `rseq` up to this one is persisted.
    pub rseq: u64,
}

/// A user message delivered to the runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerUserMessage {
    /// Session `seq` of the message's event.
    pub seq: u64,
    /// The text.
    pub text: String,
    /// Who sent it.
    pub sender: String,
}

/// A model switch delivered to the runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerModel {
    /// Session `seq` of the switch's event.
    pub seq: u64,
    /// The model.
    pub model: String,
}

/// An interrupt or stop delivered to the runner.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RunnerControl {
    /// Session `seq` of the control's event.
    pub seq: u64,
    /// Who asked.
    pub sender: String,
}
