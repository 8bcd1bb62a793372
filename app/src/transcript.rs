//! The transcript a viewer shows: events folded into display entries. Pure, so it is the
//! same on the server (first paint) and in the browser (live), and testable natively.

use model::Phase;
use model::protocol::{
    Answer, Ask, ErrorEvent, GitPush, LogLine, McpStatus, PullRequest, RunResult, SessionEvent,
    StoredEvent, ToolResult, TurnResult,
};

/// One row of the transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Sequence of the event that created the row (stable key).
    pub seq: u64,
    /// Time of that event (ms since the epoch).
    pub ts: i64,
    /// Bumped whenever the row changes after creation, so views re-render it.
    pub version: u32,
    /// What the row shows.
    pub kind: EntryKind,
}

/// What a row shows.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// A person's message.
    User {
        /// The text.
        text: String,
        /// Who sent it.
        sender: String,
    },
    /// Agent text; `streaming` while deltas are still arriving.
    Agent {
        /// The text so far.
        text: String,
        /// Deltas are still arriving.
        streaming: bool,
        /// Model reply id, to match the final block to its deltas.
        message_id: Option<String>,
    },
    /// The agent's reasoning.
    Thinking {
        /// The text.
        text: String,
    },
    /// A tool call and, once known, its result.
    Tool {
        /// Tool call id.
        id: String,
        /// Tool name.
        name: String,
        /// Input as JSON.
        input: serde_json::Value,
        /// The result, when it arrived.
        result: Option<ToolResult>,
    },
    /// A log line.
    Log(LogLine),
    /// An error.
    Error(ErrorEvent),
    /// A phase change.
    Phase {
        /// New phase.
        phase: Phase,
        /// Explanation.
        message: Option<String>,
    },
    /// The end of one agent turn.
    Turn(TurnResult),
    /// The end of the run.
    Result(RunResult),
    /// An interrupt or stop request.
    Control {
        /// `interrupt` or `stop`.
        what: String,
        /// Who asked.
        sender: String,
    },
    /// The agent's question, and its answer once given.
    Ask {
        /// The question.
        ask: Ask,
        /// Its answer.
        answer: Option<Answer>,
    },
    /// A pushed branch.
    Push(GitPush),
    /// An opened pull request.
    PullRequest(PullRequest),
}

/// What a tool call the agent asks to make would do, in a few words: its command, its
/// file, its plan, or its input.
pub fn ask_summary(ask: &Ask) -> String {
    let input = &ask.input;
    input["command"]
        .as_str()
        .or_else(|| input["plan"].as_str())
        .or_else(|| input["file_path"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| input.to_string())
}

/// What a run changed in a repository, as a line of the transcript.
fn changes_line(c: &model::protocol::RepoChanges) -> LogLine {
    let held = if c.held {
        " (held: pushed only if this attempt is kept)"
    } else {
        ""
    };
    LogLine {
        level: model::protocol::LogLevel::Info,
        message: format!(
            "{}: {} file{} changed, +{} −{} on {}{held}",
            c.repo,
            c.files,
            if c.files == 1 { "" } else { "s" },
            c.insertions,
            c.deletions,
            c.branch
        ),
    }
}

/// The transcript's line for a run's workflow (`None`: nothing worth a line).
fn workflow_line(w: &model::workflow::WorkflowState) -> Option<LogLine> {
    use model::protocol::LogLevel;
    let mut message = format!("Workflow \"{}\"", w.name);
    if !w.commands.is_empty() {
        message.push_str(&format!(
            ": {} command{}",
            w.commands.len(),
            if w.commands.len() == 1 { "" } else { "s" }
        ));
    }
    if w.started {
        message.push_str("; started with its startup prompt");
    }
    let level = match &w.problem {
        Some(p) => {
            message.push_str(&format!(" ({p})"));
            LogLevel::Warn
        }
        None => LogLevel::Info,
    };
    Some(LogLine { level, message })
}

/// The name shown for a tool whose call is not in the transcript.
const UNKNOWN_TOOL: &str = "tool";

/// The transcript of a session as far as it is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Transcript {
    /// Rows, oldest first.
    pub entries: Vec<Entry>,
    /// Highest event sequence applied: the cursor to resume from.
    pub last_seq: u64,
    /// Lowest event sequence applied (0 before any): a page showing the latest events only
    /// loads those before it on demand ([`Transcript::prepend`]).
    pub first_seq: u64,
    /// Latest phase seen in the log.
    pub phase: Option<Phase>,
    /// When the current (or last) run started, from its `Creating` phase event.
    pub run_started_ms: Option<i64>,
    /// When the last run ended, from its terminal phase event.
    pub run_ended_ms: Option<i64>,
    /// User messages still waiting for their turn's result (each gets exactly one).
    pub outstanding_turns: u32,
    /// The MCP servers' state as last reported (shown beside the transcript, not in it).
    pub mcp: Option<McpStatus>,
    /// The workflow as its runner last found it (none since a switch, until the next run
    /// reports the new one): its slash commands feed the composer.
    pub workflow: Option<model::workflow::WorkflowState>,
    /// The workflow the transcript last gave a line to (its repository, branch, folder):
    /// the runs that report it again add none. Kept apart from `workflow`, which a page
    /// may fill from a read later than its events (the line would be lost to that race).
    workflow_line_for: Option<(String, String, String)>,
}

impl Transcript {
    /// A transcript of these events.
    pub fn from_events(events: impl IntoIterator<Item = StoredEvent>) -> Self {
        let mut t = Transcript::default();
        for e in events {
            t.apply(e);
        }
        t
    }

    /// Applies the next event. Events at or before the cursor are ignored (a replay after a
    /// reconnect may overlap); returns whether the transcript changed.
    pub fn apply(&mut self, ev: StoredEvent) -> bool {
        if ev.seq <= self.last_seq {
            return false;
        }
        self.last_seq = ev.seq;
        if self.first_seq == 0 {
            self.first_seq = ev.seq;
        }
        self.outstanding_turns = ev.event.open_turns(self.outstanding_turns);
        let StoredEvent { seq, ts, event } = ev;
        let kind = match event {
            SessionEvent::UserMessage(m) => EntryKind::User {
                text: m.text,
                sender: m.sender,
            },
            SessionEvent::AgentDelta(d) => {
                if let Some(e) = self.streaming_agent(d.message_id.as_deref()) {
                    if let EntryKind::Agent { text, .. } = &mut e.kind {
                        text.push_str(&d.text);
                    }
                    e.version += 1;
                    return true;
                }
                EntryKind::Agent {
                    text: d.text,
                    streaming: true,
                    message_id: d.message_id,
                }
            }
            SessionEvent::AgentMessage(m) => {
                // The complete block replaces the deltas that announced it.
                if let Some(e) = self.streaming_agent(m.message_id.as_deref()) {
                    e.kind = EntryKind::Agent {
                        text: m.text,
                        streaming: false,
                        message_id: m.message_id,
                    };
                    e.version += 1;
                    return true;
                }
                EntryKind::Agent {
                    text: m.text,
                    streaming: false,
                    message_id: m.message_id,
                }
            }
            SessionEvent::Thinking(t) => EntryKind::Thinking { text: t.text },
            SessionEvent::ToolUse(t) => EntryKind::Tool {
                id: t.id,
                name: t.name,
                input: t.input,
                result: None,
            },
            SessionEvent::ToolResult(r) => {
                let target = self.entries.iter_mut().rev().find(
                    |e| matches!(&e.kind, EntryKind::Tool { id, .. } if *id == r.tool_use_id),
                );
                if let Some(e) = target {
                    if let EntryKind::Tool { result, .. } = &mut e.kind {
                        *result = Some(r);
                    }
                    e.version += 1;
                    return true;
                }
                // A result whose call is unknown (or not loaded yet) still shows.
                EntryKind::Tool {
                    id: r.tool_use_id.clone(),
                    name: UNKNOWN_TOOL.into(),
                    input: serde_json::Value::Null,
                    result: Some(r),
                }
            }
            SessionEvent::Log(l) => EntryKind::Log(l),
            SessionEvent::Error(e) => EntryKind::Error(e),
            SessionEvent::Phase(p) => {
                self.phase = Some(p.phase);
                match p.phase {
                    Phase::Creating => {
                        self.run_started_ms = Some(ts);
                        self.run_ended_ms = None;
                    }
                    // A stopped or failed run owes nothing more: its turns ended with it.
                    Phase::Stopped | Phase::Failed => self.run_ended_ms = Some(ts),
                    Phase::Completed => self.run_ended_ms = Some(ts),
                    _ => {}
                }
                self.finish_streaming();
                EntryKind::Phase {
                    phase: p.phase,
                    message: p.message,
                }
            }
            SessionEvent::AgentStarted(_) => return true,
            SessionEvent::McpStatus(m) => {
                self.mcp = Some(m);
                return true;
            }
            SessionEvent::TurnResult(t) => {
                self.finish_streaming();
                EntryKind::Turn(t)
            }
            SessionEvent::Result(r) => EntryKind::Result(r),
            SessionEvent::Interrupt(c) => EntryKind::Control {
                what: "interrupt".into(),
                sender: c.sender,
            },
            SessionEvent::StopRequested(c) => EntryKind::Control {
                what: "stop".into(),
                sender: c.sender,
            },
            SessionEvent::ModelChanged(m) => EntryKind::Control {
                what: format!("switch the model to {}", m.model),
                sender: m.sender,
            },
            SessionEvent::WorkflowChanged(w) => {
                self.workflow = None;
                self.workflow_line_for = None;
                EntryKind::Control {
                    what: match w.workflow {
                        Some(wf) => format!(
                            "switch the workflow to {}{}",
                            wf.git_url,
                            wf.path.map(|p| format!(" ({p})")).unwrap_or_default()
                        ),
                        None => "leave the workflow".into(),
                    },
                    sender: w.sender,
                }
            }
            SessionEvent::Workflow(w) => {
                let at = (w.git_url.clone(), w.branch.clone(), w.path.clone());
                // Each run reports its workflow; the transcript says so when it changed or
                // when the run sent its startup prompt.
                let worth = w.started || self.workflow_line_for.as_ref() != Some(&at);
                let line = workflow_line(&w).filter(|_| worth);
                self.workflow = Some(w);
                self.workflow_line_for = Some(at);
                match line {
                    Some(l) => EntryKind::Log(l),
                    None => return true,
                }
            }
            SessionEvent::Ask(ask) => EntryKind::Ask { ask, answer: None },
            SessionEvent::Answer(answer) => {
                // Shown on its question (when that is loaded).
                let question =
                    self.entries.iter_mut().rev().find(
                        |e| matches!(&e.kind, EntryKind::Ask { ask, .. } if ask.id == answer.id),
                    );
                if let Some(e) = question
                    && let EntryKind::Ask { answer: slot, .. } = &mut e.kind
                {
                    *slot = Some(answer);
                    e.version += 1;
                }
                return true;
            }
            SessionEvent::Changes(c) => EntryKind::Log(changes_line(&c)),
            SessionEvent::GitPush(p) => EntryKind::Push(p),
            SessionEvent::PullRequest(p) => EntryKind::PullRequest(p),
        };
        self.entries.push(Entry {
            seq,
            ts,
            version: 0,
            kind,
        });
        true
    }

    /// Puts the events before this transcript's first in front of it (a page that showed
    /// only the latest events, scrolled up). A tool call before the boundary and its result
    /// after it become one entry; a message streamed across it keeps its complete form.
    pub fn prepend(&mut self, earlier: impl IntoIterator<Item = StoredEvent>) {
        let first = self.first_seq;
        let earlier: Vec<StoredEvent> = earlier
            .into_iter()
            .filter(|e| first == 0 || e.seq < first)
            .collect();
        if earlier.is_empty() {
            return;
        }
        if first == 0 {
            *self = Transcript::from_events(earlier);
            return;
        }
        let mut before = Transcript::from_events(earlier);
        let mut later = std::mem::take(&mut self.entries);
        later.retain_mut(|e| match &e.kind {
            EntryKind::Tool {
                id,
                name,
                input: serde_json::Value::Null,
                result: Some(r),
            } if name == UNKNOWN_TOOL => {
                let call = before.entries.iter_mut().rev().find(
                    |b| matches!(&b.kind, EntryKind::Tool { id: called, result: None, .. } if called == id),
                );
                match call {
                    Some(call) => {
                        if let EntryKind::Tool { result, .. } = &mut call.kind {
                            *result = Some(r.clone());
                        }
                        call.version += 1;
                        false
                    }
                    None => true,
                }
            }
            EntryKind::Agent {
                message_id: Some(id),
                ..
            } => {
                // It is the row its first delta started.
                let streamed = |b: &Entry| {
                    matches!(&b.kind, EntryKind::Agent { message_id: Some(other), streaming: true, .. } if other == id)
                };
                if let Some(start) = before.entries.iter().find(|b| streamed(b)).map(|b| b.seq) {
                    before.entries.retain(|b| !streamed(b));
                    e.seq = start;
                }
                true
            }
            _ => true,
        });
        before.entries.extend(later);
        self.entries = before.entries;
        self.first_seq = before.first_seq;
        self.run_started_ms = self.run_started_ms.or(before.run_started_ms);
        self.run_ended_ms = self.run_ended_ms.or(before.run_ended_ms);
        self.phase = self.phase.or(before.phase);
    }

    /// The questions of the current run's agent that no one has answered, oldest first
    /// (a run that ended took its questions with it).
    pub fn open_asks(&self) -> Vec<Ask> {
        let mut open = Vec::new();
        for e in &self.entries {
            match &e.kind {
                EntryKind::Phase {
                    phase: Phase::Creating,
                    ..
                } => open.clear(),
                EntryKind::Ask { ask, answer: None } => open.push(ask.clone()),
                _ => {}
            }
        }
        open
    }

    /// Whether the agent is in the middle of a turn.
    pub fn agent_busy(&self) -> bool {
        self.outstanding_turns > 0
    }

    fn streaming_agent(&mut self, message_id: Option<&str>) -> Option<&mut Entry> {
        self.entries.iter_mut().rev().take(8).find(|e| {
            matches!(&e.kind, EntryKind::Agent { streaming: true, message_id: id, .. } if id.as_deref() == message_id)
        })
    }

    fn finish_streaming(&mut self) {
        for e in self.entries.iter_mut().rev().take(8) {
            if let EntryKind::Agent { streaming, .. } = &mut e.kind
                && *streaming
            {
                *streaming = false;
                e.version += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use model::protocol::{AgentDelta, AgentMessage, PhaseChange, ToolUse, UserMessage};

    use super::*;

    fn ev(seq: u64, event: SessionEvent) -> StoredEvent {
        StoredEvent {
            seq,
            ts: seq as i64,
            event,
        }
    }

    #[test]
    fn tool_results_attach_to_their_call_and_replays_are_ignored() {
        let mut t = Transcript::default();
        t.apply(ev(
            1,
            SessionEvent::UserMessage(UserMessage {
                text: "hi".into(),
                sender: "ada".into(),
            }),
        ));
        t.apply(ev(
            2,
            SessionEvent::ToolUse(ToolUse {
                id: "t1".into(),
                name: "Write".into(),
                input: serde_json::json!({}),
                parent_tool_use_id: None,
            }),
        ));
        assert!(t.apply(ev(
            3,
            SessionEvent::ToolResult(ToolResult {
                tool_use_id: "t1".into(),
                content: "ok".into(),
                is_error: false
            })
        )));
        assert_eq!(t.entries.len(), 2);
        assert!(
            matches!(&t.entries[1].kind, EntryKind::Tool { result: Some(r), .. } if r.content == "ok")
        );
        assert_eq!(t.entries[1].version, 1);
        // The same events again (a reconnect replay) change nothing.
        let before = t.clone();
        assert!(!t.apply(ev(
            2,
            SessionEvent::Log(LogLine {
                level: model::protocol::LogLevel::Info,
                message: "dup".into()
            })
        )));
        assert_eq!(t, before);
        assert_eq!(t.last_seq, 3);
    }

    /// A page that opened with the latest events and loaded the earlier ones shows what a
    /// page that loaded everything shows, wherever the window began (a tool call and its
    /// result on either side, a message streamed across the boundary).
    #[test]
    fn prepending_earlier_events_gives_the_whole_transcript() {
        let user = |t: &str| {
            SessionEvent::UserMessage(UserMessage {
                text: t.into(),
                sender: "ada".into(),
            })
        };
        let delta = |t: &str| {
            SessionEvent::AgentDelta(AgentDelta {
                message_id: Some("m1".into()),
                text: t.into(),
            })
        };
        let events: Vec<StoredEvent> = [
            user("first"),
            SessionEvent::ToolUse(ToolUse {
                id: "t1".into(),
                name: "Bash".into(),
                input: serde_json::json!({"command": "ls"}),
                parent_tool_use_id: None,
            }),
            SessionEvent::ToolResult(ToolResult {
                tool_use_id: "t1".into(),
                content: "a b".into(),
                is_error: false,
            }),
            delta("Hel"),
            delta("lo"),
            SessionEvent::AgentMessage(AgentMessage {
                message_id: Some("m1".into()),
                text: "Hello".into(),
                parent_tool_use_id: None,
            }),
            user("second"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, e)| ev(i as u64 + 1, e))
        .collect();
        let whole = Transcript::from_events(events.clone());
        let view = |t: &Transcript| -> Vec<(u64, EntryKind)> {
            t.entries.iter().map(|e| (e.seq, e.kind.clone())).collect()
        };
        for split in 1..events.len() {
            let mut t = Transcript::from_events(events[split..].to_vec());
            assert_eq!(t.first_seq, split as u64 + 1);
            t.prepend(events[..split].to_vec());
            assert_eq!(view(&t), view(&whole), "split at {split}");
            assert_eq!((t.first_seq, t.last_seq), (1, events.len() as u64));
        }
    }

    #[test]
    fn each_workflow_gets_a_line_even_when_the_page_knew_it_before_its_event() {
        let state = |path: &str, started| model::workflow::WorkflowState {
            git_url: "https://example.com/w.git".into(),
            branch: "main".into(),
            path: path.into(),
            name: path.into(),
            started,
            ..Default::default()
        };
        let logs = |t: &Transcript| -> Vec<String> {
            t.entries
                .iter()
                .filter_map(|e| match &e.kind {
                    EntryKind::Log(l) => Some(l.message.clone()),
                    _ => None,
                })
                .collect()
        };
        // The page read the workflow after its events: the event that reports it arrives
        // live and still gets its line.
        let hi = SessionEvent::UserMessage(UserMessage {
            text: "hi".into(),
            sender: "u".into(),
        });
        let mut t = Transcript::from_events(vec![ev(1, hi)]);
        t.workflow = Some(state("a", true));
        t.apply(ev(2, SessionEvent::Workflow(state("a", true))));
        assert_eq!(
            logs(&t),
            ["Workflow \"a\"; started with its startup prompt"]
        );
        // A later run in the same workflow adds none; a switch, and the next one, do.
        t.apply(ev(3, SessionEvent::Workflow(state("a", false))));
        assert_eq!(logs(&t).len(), 1);
        t.apply(ev(
            4,
            SessionEvent::WorkflowChanged(model::protocol::WorkflowChange {
                workflow: None,
                sender: "u".into(),
            }),
        ));
        assert!(t.workflow.is_none());
        t.apply(ev(5, SessionEvent::Workflow(state("b", false))));
        assert_eq!(logs(&t).len(), 2);
        assert_eq!(t.workflow.as_ref().map(|w| w.path.as_str()), Some("b"));
    }

    #[test]
    fn deltas_stream_into_one_row_replaced_by_the_final_text() {
        let mut t = Transcript::default();
        let delta = |s, text: &str| {
            ev(
                s,
                SessionEvent::AgentDelta(AgentDelta {
                    message_id: Some("m".into()),
                    text: text.into(),
                }),
            )
        };
        t.apply(delta(1, "Hel"));
        t.apply(delta(2, "lo"));
        assert!(
            matches!(&t.entries[0].kind, EntryKind::Agent { text, streaming: true, .. } if text == "Hello")
        );
        t.apply(ev(
            3,
            SessionEvent::AgentMessage(AgentMessage {
                message_id: Some("m".into()),
                text: "Hello!".into(),
                parent_tool_use_id: None,
            }),
        ));
        assert_eq!(t.entries.len(), 1);
        assert!(
            matches!(&t.entries[0].kind, EntryKind::Agent { text, streaming: false, .. } if text == "Hello!")
        );
    }

    #[test]
    fn busy_while_a_message_waits_for_its_turn() {
        let user = |s| {
            ev(
                s,
                SessionEvent::UserMessage(UserMessage {
                    text: "x".into(),
                    sender: "a".into(),
                }),
            )
        };
        let turn = |s| {
            ev(
                s,
                SessionEvent::TurnResult(model::protocol::TurnResult {
                    is_error: false,
                    subtype: "success".into(),
                    num_turns: 1,
                    duration_ms: 1,
                    usage: Default::default(),
                    text: None,
                    resume_at: None,
                }),
            )
        };
        let phase = |s, p| {
            ev(
                s,
                SessionEvent::Phase(PhaseChange {
                    phase: p,
                    reason: None,
                    message: None,
                }),
            )
        };
        let mut t = Transcript::default();
        t.apply(user(1));
        t.apply(phase(2, Phase::Creating));
        assert!(t.agent_busy());
        assert_eq!(t.run_started_ms, Some(2));
        t.apply(user(3));
        t.apply(turn(4));
        assert!(t.agent_busy(), "the second message's turn runs");
        t.apply(turn(5));
        assert!(!t.agent_busy());
        t.apply(user(6));
        t.apply(phase(7, Phase::Stopped));
        assert!(!t.agent_busy(), "a stop ends the turn");
        assert_eq!(t.run_ended_ms, Some(7));
    }

    #[test]
    fn phase_is_tracked() {
        let t = Transcript::from_events([ev(
            1,
            SessionEvent::Phase(PhaseChange {
                phase: Phase::Completed,
                reason: None,
                message: None,
            }),
        )]);
        assert_eq!(t.phase, Some(Phase::Completed));
    }
}
