//! The events of a session's log: what viewers see and what is persisted.

use serde::{Deserialize, Serialize};

use crate::session::Phase;

/// One persisted event with its place in the session's log.
///
/// `seq` starts at 1 and grows by one per event of a session, with no gap: a viewer that has
/// seen `seq = n` has seen every event up to `n`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Position in the session's log (1-based, gap-free).
    pub seq: u64,
    /// When the event happened, in milliseconds since the Unix epoch.
    pub ts: i64,
    /// What happened.
    pub event: SessionEvent,
}

/// Something that happened in a session.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// A message from a person (the initial prompt or a follow-up).
    UserMessage(UserMessage),
    /// A complete block of text from the agent.
    AgentMessage(AgentMessage),
    /// A fragment of agent text still being written (partial messages).
    AgentDelta(AgentDelta),
    /// The agent's visible reasoning.
    Thinking(Thinking),
    /// The agent called a tool.
    ToolUse(ToolUse),
    /// The result of a tool call.
    ToolResult(ToolResult),
    /// A log line from the runner or the platform.
    Log(LogLine),
    /// The session's phase changed.
    Phase(PhaseChange),
    /// Something went wrong; the session may go on.
    Error(ErrorEvent),
    /// The agent's conversation started or resumed.
    AgentStarted(AgentStarted),
    /// One turn of the agent ended (a reply to one user message).
    TurnResult(TurnResult),
    /// The run ended: totals and the runner's exit code.
    Result(RunResult),
    /// Someone interrupted the current turn.
    Interrupt(ControlEcho),
    /// Someone asked the session to stop.
    StopRequested(ControlEcho),
    /// Someone switched the session's model: the agent's next request uses it.
    ModelChanged(ModelChange),
    /// The agent asks a person and waits for the answer (`AskUserQuestion`).
    Ask(Ask),
    /// A person answered an [`Ask`].
    Answer(Answer),
    /// The state of the session's MCP servers changed, as the agent's `claude` reports it.
    McpStatus(McpStatus),
    /// The session's workflow as its runner found it (a run whose workflow differs from the
    /// last one reported).
    Workflow(crate::workflow::WorkflowState),
    /// Someone switched the session's workflow: its agent restarts in it, the conversation
    /// kept.
    WorkflowChanged(WorkflowChange),
    /// What the run changed in a repository whose work goes to a branch, committed at its
    /// end: measured before any push, and the only record of the work while it is held
    /// (an attempt of "run N" until a person keeps it).
    Changes(RepoChanges),
    /// Work was pushed to a branch.
    GitPush(GitPush),
    /// A pull (merge) request was opened.
    PullRequest(PullRequest),
}

/// Largest text of one field of an event; what is longer is cut, with a note saying how
/// much (four fields of this size still fit a runner frame).
pub const MAX_EVENT_TEXT: usize = 768 * 1024;

/// Largest JSON of one event (a runner frame holds [`super::MAX_RUNNER_FRAME`]).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// `text` cut to at most `max` bytes (on a character boundary), with a note of what was cut.
pub fn truncated(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let cut = text.floor_char_boundary(max);
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("\n… [{dropped} more bytes not shown]"));
}

impl SessionEvent {
    /// Whether runners produce this kind of event. The others are the platform's own (a
    /// person's message, a phase change, a stop or an interrupt), never accepted from a
    /// runner.
    pub fn from_runner(&self) -> bool {
        !matches!(
            self,
            SessionEvent::UserMessage(_)
                | SessionEvent::Phase(_)
                | SessionEvent::Interrupt(_)
                | SessionEvent::StopRequested(_)
                | SessionEvent::ModelChanged(_)
                | SessionEvent::WorkflowChanged(_)
                | SessionEvent::Answer(_)
        )
    }

    /// The event cut to fit a runner frame whatever it holds: its JSON at most
    /// [`MAX_EVENT_BYTES`]. Text fields are cut to [`MAX_EVENT_TEXT`] bytes with a note of
    /// what was cut (a tool's input too large is replaced by a note), then shorter while
    /// escaping still makes the JSON too long; an event that cannot fit even so (a huge
    /// name or URL) becomes an error event saying so. An event the server cannot take would
    /// otherwise be re-sent forever, and every event after it lost.
    pub fn bounded(self) -> SessionEvent {
        let kind = self.kind();
        let mut max = MAX_EVENT_TEXT;
        let mut event = self;
        loop {
            event = event.texts_cut_to(max);
            let size = serde_json::to_vec(&event).map_or(usize::MAX, |v| v.len());
            if size <= MAX_EVENT_BYTES {
                return event;
            }
            if max < 1024 {
                return SessionEvent::Error(ErrorEvent {
                    message: format!("a {kind} event of {size} bytes was too large to keep"),
                    code: Some("event_too_large".into()),
                });
            }
            max /= 4;
        }
    }

    fn texts_cut_to(mut self, max: usize) -> SessionEvent {
        match &mut self {
            SessionEvent::UserMessage(m) => truncated(&mut m.text, max),
            SessionEvent::AgentMessage(m) => truncated(&mut m.text, max),
            SessionEvent::AgentDelta(m) => truncated(&mut m.text, max),
            SessionEvent::Thinking(m) => truncated(&mut m.text, max),
            SessionEvent::ToolUse(t) => {
                let size = t.input.to_string().len();
                if size > max {
                    t.input = serde_json::Value::String(format!(
                        "[the tool's input ({size} bytes) is too large to show]"
                    ));
                }
            }
            SessionEvent::ToolResult(r) => truncated(&mut r.content, max),
            SessionEvent::Log(l) => truncated(&mut l.message, max),
            SessionEvent::Error(e) => truncated(&mut e.message, max),
            SessionEvent::TurnResult(t) => {
                if let Some(text) = &mut t.text {
                    truncated(text, max)
                }
            }
            SessionEvent::Result(r) => {
                if let Some(text) = &mut r.text {
                    truncated(text, max)
                }
            }
            SessionEvent::Changes(c) => {
                if c.diff.len() > max {
                    truncated(&mut c.diff, max);
                    c.truncated = true;
                }
            }
            SessionEvent::Phase(_)
            | SessionEvent::AgentStarted(_)
            | SessionEvent::Interrupt(_)
            | SessionEvent::StopRequested(_)
            | SessionEvent::ModelChanged(_)
            | SessionEvent::Ask(_)
            | SessionEvent::Answer(_)
            | SessionEvent::McpStatus(_)
            | SessionEvent::Workflow(_)
            | SessionEvent::WorkflowChanged(_)
            | SessionEvent::GitPush(_)
            | SessionEvent::PullRequest(_) => {}
        }
        self
    }

    /// The user messages still waiting for their turn's result after this event, when
    /// `open` were before it: a user message opens a turn, a turn's result closes one, and
    /// a run that stops or fails closes them all.
    pub fn open_turns(&self, open: u32) -> u32 {
        match self {
            SessionEvent::UserMessage(_) => open.saturating_add(1),
            SessionEvent::TurnResult(_) => open.saturating_sub(1),
            SessionEvent::Phase(p)
                if matches!(
                    p.phase,
                    crate::session::Phase::Stopped | crate::session::Phase::Failed
                ) =>
            {
                0
            }
            _ => open,
        }
    }

    /// The `type` tag of the event, as on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEvent::UserMessage(_) => "user_message",
            SessionEvent::AgentMessage(_) => "agent_message",
            SessionEvent::AgentDelta(_) => "agent_delta",
            SessionEvent::Thinking(_) => "thinking",
            SessionEvent::ToolUse(_) => "tool_use",
            SessionEvent::ToolResult(_) => "tool_result",
            SessionEvent::Log(_) => "log",
            SessionEvent::Phase(_) => "phase",
            SessionEvent::Error(_) => "error",
            SessionEvent::AgentStarted(_) => "agent_started",
            SessionEvent::TurnResult(_) => "turn_result",
            SessionEvent::Result(_) => "result",
            SessionEvent::Interrupt(_) => "interrupt",
            SessionEvent::StopRequested(_) => "stop_requested",
            SessionEvent::ModelChanged(_) => "model_changed",
            SessionEvent::Ask(_) => "ask",
            SessionEvent::Answer(_) => "answer",
            SessionEvent::McpStatus(_) => "mcp_status",
            SessionEvent::Workflow(_) => "workflow",
            SessionEvent::WorkflowChanged(_) => "workflow_changed",
            SessionEvent::Changes(_) => "changes",
            SessionEvent::GitPush(_) => "git_push",
            SessionEvent::PullRequest(_) => "pull_request",
        }
    }
}

/// A message from a person to the agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct UserMessage {
    /// The text as typed.
    pub text: String,
    /// Who sent it (display name or user id).
    pub sender: String,
}

/// A complete block of agent text (Markdown).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentMessage {
    /// Id of the model reply this block belongs to; blocks of one reply share it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The text.
    pub text: String,
    /// Set when the text comes from a sub-agent: the id of the tool call that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tool_use_id: Option<String>,
}

/// A fragment of agent text; the complete [`AgentMessage`] follows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentDelta {
    /// Id of the model reply being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The new text.
    pub text: String,
}

/// The agent's reasoning.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Thinking {
    /// Id of the model reply this block belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The reasoning text.
    pub text: String,
}

/// A tool call by the agent.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ToolUse {
    /// Tool call id; the matching [`ToolResult`] carries it.
    pub id: String,
    /// Tool name (`Write`, `Bash`, `mcp__server__tool` ...).
    pub name: String,
    /// The tool's input as the model produced it.
    pub input: serde_json::Value,
    /// Set inside a sub-agent: the id of the tool call that started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_tool_use_id: Option<String>,
}

/// The result of a tool call.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ToolResult {
    /// Id of the [`ToolUse`] this answers.
    pub tool_use_id: String,
    /// The result as text (possibly truncated by the runner).
    pub content: String,
    /// The tool failed or was refused.
    #[serde(default)]
    pub is_error: bool,
}

/// Severity of a log line.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Diagnostic detail.
    Debug,
    /// Progress worth showing.
    Info,
    /// Something unexpected that did not stop the session.
    Warn,
    /// A failure.
    Error,
}

/// A line of the runner's or the platform's log.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    /// Severity.
    pub level: LogLevel,
    /// The line.
    pub message: String,
}

/// The session's phase changed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PhaseChange {
    /// The new phase.
    pub phase: Phase,
    /// Machine-readable reason (a condition reason such as `RunnerExit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable explanation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An error worth showing to the people watching.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    /// Human-readable explanation.
    pub message: String,
    /// Machine-readable kind (`api_error`, `clone_failed`, `claude_missing` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The agent's conversation started (or resumed).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStarted {
    /// Model in use.
    pub model: String,
    /// Claude Code's conversation id.
    pub claude_session_id: String,
    /// Working directory of the agent.
    pub cwd: String,
    /// Whether an earlier conversation was resumed.
    #[serde(default)]
    pub resumed: bool,
}

/// Token and cost figures of one turn or of a whole run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Input tokens, not counting the cache.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// Input tokens read from the prompt cache.
    #[serde(default)]
    pub cache_read_input_tokens: u64,
    /// Input tokens written to the prompt cache.
    #[serde(default)]
    pub cache_creation_input_tokens: u64,
    /// Cost in US dollars at list price.
    #[serde(default)]
    pub cost_usd: f64,
}

/// One turn of the agent ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TurnResult {
    /// The turn failed (API error, max turns, interrupted ...).
    pub is_error: bool,
    /// Claude Code's result subtype (`success`, `error_max_turns`, `error_during_execution`).
    pub subtype: String,
    /// Model calls in this turn.
    pub num_turns: u32,
    /// Wall time of the turn.
    pub duration_ms: u64,
    /// Tokens and cost of this turn.
    pub usage: Usage,
    /// The final text, or the error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The conversation's last entry at the end of this turn (Claude Code's message id):
    /// where a fork after this turn resumes. None when the turn added no message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_at: Option<String>,
}

/// The run ended; sent by the runner just before it exits.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RunResult {
    /// Exit code the runner ends with: 0 success, 1 agent or run error, 2 configuration.
    pub exit_code: i32,
    /// Whether the run as a whole failed.
    pub is_error: bool,
    /// Model calls over the run.
    pub num_turns: u32,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Tokens and cost over the run.
    pub usage: Usage,
    /// The last result text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Who asked for an interrupt or a stop.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ControlEcho {
    /// Display name or user id of the requester.
    pub sender: String,
}

/// The tool through which the agent asks a person questions.
pub const ASK_USER_QUESTION: &str = "AskUserQuestion";

/// The agent waits for a person: a question (`AskUserQuestion`, its `input` holds the
/// `questions`, each with its `options`), or, in a session that asks before acting, the
/// approval of a tool call (`tool` and its `input`: a command, an edit, a plan).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Ask {
    /// The request's id, unique in its run: the answer names it.
    pub id: String,
    /// The tool the agent calls (`AskUserQuestion`).
    pub tool: String,
    /// The tool's input as the agent gave it.
    pub input: serde_json::Value,
}

/// A person's answer to an [`Ask`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    /// The [`Ask`] answered.
    pub id: String,
    /// Display name or user id of who answered.
    pub sender: String,
    /// A question's answers: the question's text → the chosen label(s) (comma-separated
    /// when several) or the person's own words. Empty: declined.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub answers: std::collections::BTreeMap<String, String>,
    /// An approval: denied (the agent is told `message`). Default: allowed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deny: bool,
    /// Why it was denied, for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// An approval given for the rest of the session: the tool is not asked about again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

/// A switch of the session's model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelChange {
    /// The model from now on.
    pub model: String,
    /// Display name or user id of who switched it.
    pub sender: String,
}

/// A switch of the session's workflow.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowChange {
    /// The workflow from now on (none: the session leaves its workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<crate::session::ActiveWorkflow>,
    /// Display name or user id of who switched it.
    pub sender: String,
}

/// Most MCP servers one [`McpStatus`] lists.
pub const MAX_MCP_STATUS_SERVERS: usize = 50;
/// Most tools listed per MCP server.
pub const MAX_MCP_STATUS_TOOLS: usize = 200;

/// The session's MCP servers as the agent's `claude` reports them (at the start of each
/// turn; an event only when something changed).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpStatus {
    /// The servers, by name.
    pub servers: Vec<McpServerState>,
}

/// One MCP server's state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct McpServerState {
    /// The server's name.
    pub name: String,
    /// `connected`, `failed`, `needs-auth` or `pending` (as `claude` says).
    pub status: String,
    /// The tools it brought (their names as the agent calls them: `mcp__<server>__<tool>`).
    #[serde(default)]
    pub tools: Vec<String>,
}

/// What a run changed in one repository (see [`SessionEvent::Changes`]): its working
/// branch against the branch it started from, everything committed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RepoChanges {
    /// Repository directory name under `repos/`.
    pub repo: String,
    /// The working branch (`ambient/<session>`).
    pub branch: String,
    /// The branch it is compared with (the pull request's base).
    pub base: String,
    /// The commit the work is at.
    pub commit: String,
    /// Files changed.
    pub files: u32,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
    /// The diff (`git diff <base>...<branch>`), cut at [`MAX_CHANGES_DIFF`] bytes.
    pub diff: String,
    /// Whether the diff was cut.
    #[serde(default)]
    pub truncated: bool,
    /// Whether the work was held in the workspace rather than pushed (an attempt no one
    /// has kept yet).
    #[serde(default)]
    pub held: bool,
}

/// Largest diff a [`RepoChanges`] carries.
pub const MAX_CHANGES_DIFF: usize = 256 * 1024;

/// A branch was pushed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GitPush {
    /// Repository directory name under `repos/`.
    pub repo: String,
    /// Remote URL, without credentials.
    pub remote: String,
    /// Branch pushed.
    pub branch: String,
    /// Commit pushed.
    pub commit: String,
}

/// A pull request (or GitLab merge request) was opened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PullRequest {
    /// Repository directory name under `repos/`.
    pub repo: String,
    /// Web URL of the pull request.
    pub url: String,
    /// Its number (GitHub) or iid (GitLab).
    pub number: u64,
}
