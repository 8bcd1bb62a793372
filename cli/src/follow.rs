//! `ambient logs`: a session's events, printed as they come. Without `-f` the log as it is
//! (the export); with `-f` the viewer WebSocket from a cursor, exactly as the page follows it:
//! every event once, in order; after a drop (a restarting server, a network blip) it
//! connects again with backoff from the last event it printed; a cursor past the log (the
//! session was made again) starts over. It ends when the session is in a final phase
//! (Completed: exit 0; Failed or Stopped: exit 9) and goes no further, or is deleted. A
//! session asked to go on (a message after its final phase, as `send` and `continue` leave
//! in the log, or a start requested but not yet begun) is followed into its next run.

use std::time::Duration;

use model::Phase;
use model::protocol::{ServerToBrowser, SessionEvent, StoredEvent, close};
use ws_client::{Closed, Connection, ReadError};

use crate::client::{Client, Error};
use crate::output::{self, Format};

/// Read buffer of the viewer socket.
const READ_BUFFER: usize = 64 * 1024;
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How far `logs` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The log as it is now.
    Now,
    /// Following, until the session ends.
    Ended,
    /// Following, until the agent has answered every message it was sent (or the session
    /// ends): what a script waits for after `send`.
    Answered,
}

/// The events of a session after `after`, as far as `until` says.
pub async fn logs(
    client: &Client,
    project: &str,
    session: &str,
    after: u64,
    until: Until,
    format: Format,
) -> Result<(), Error> {
    let base = format!("/api/projects/{project}/agentic-sessions/{session}");
    if until == Until::Now {
        let export: Export = client.get(&format!("{base}/export")).await?;
        for e in export.events.iter().filter(|e| e.seq > after) {
            print_event(e, format)?;
        }
        return Ok(());
    }
    let mut cursor = after;
    let mut progress = Progress {
        until_answered: until == Until::Answered,
        ..Progress::default()
    };
    let mut backoff = Duration::from_millis(250);
    loop {
        let url = client.ws_url(&format!("{base}/ws?after={cursor}"));
        let ended = match Connection::open(&url, Some(client.key()), READ_BUFFER).await {
            Ok(mut conn) => {
                let ended = follow_one(
                    &mut conn,
                    (client, &base),
                    &mut cursor,
                    &mut progress,
                    &mut backoff,
                    format,
                )
                .await;
                conn.close(1000, "done").await;
                ended?
            }
            Err(Closed::Dropped(why)) => {
                refused_upgrade(&why).map_or(Ok(Ended::Dropped(why)), Err)?
            }
            Err(Closed::Code(code, reason)) => Ended::Closed(code, reason),
        };
        match ended {
            Ended::Answered | Ended::Final(Phase::Completed) => return Ok(()),
            Ended::Final(p) => return Err(Error::SessionEnded(p.to_string())),
            Ended::Closed(code, reason) => match code {
                close::NOT_FOUND | close::GONE => {
                    return Err(Error::Api {
                        status: 404,
                        kind: "not_found".into(),
                        message: format!("session {session}: {reason}"),
                    });
                }
                close::UNAUTHORIZED | close::FORBIDDEN => {
                    return Err(Error::Api {
                        status: if code == close::UNAUTHORIZED {
                            401
                        } else {
                            403
                        },
                        kind: "refused".into(),
                        message: reason,
                    });
                }
                close::CURSOR_AHEAD => {
                    eprintln!(
                        "ambient: the session's log was replaced; following it from the start"
                    );
                    cursor = 0;
                    progress = Progress {
                        until_answered: progress.until_answered,
                        ..Progress::default()
                    };
                    continue;
                }
                _ => eprintln!("ambient: the connection closed ({reason}); connecting again"),
            },
            Ended::Dropped(why) => eprintln!("ambient: {why}; connecting again"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// How one connection ended.
enum Ended {
    /// The session is in this final phase, and every event of it was printed.
    Final(Phase),
    /// The agent answered every message it was sent (`--turn`).
    Answered,
    /// The server closed the socket with this code.
    Closed(u16, String),
    /// It dropped, or could not be opened.
    Dropped(String),
}

/// A refusal of the upgrade itself (`HTTP error: 403 Forbidden`): not worth retrying.
fn refused_upgrade(why: &str) -> Option<Error> {
    let status: u16 = why
        .strip_prefix("HTTP error: ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    matches!(status, 400 | 401 | 403 | 404).then(|| Error::Api {
        status,
        kind: "refused".into(),
        message: format!("the server refused to stream the session: {why}"),
    })
}

/// Where the session stands, from the events printed so far.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    /// The last phase the log recorded.
    phase: Option<Phase>,
    /// A user message came after that phase (the session goes on).
    message_after: bool,
    /// Stop once the agent has answered (`--turn`).
    until_answered: bool,
    /// Messages printed whose turn has not ended.
    open_turns: u32,
    /// A turn ended with no other open: the agent has answered.
    answered: bool,
}

impl Progress {
    fn saw(&mut self, event: &SessionEvent) {
        self.open_turns = event.open_turns(self.open_turns);
        self.answered = matches!(event, SessionEvent::TurnResult(_)) && self.open_turns == 0;
        match event {
            SessionEvent::Phase(p) => {
                self.phase = Some(p.phase);
                self.message_after = false;
            }
            SessionEvent::UserMessage(_) => self.message_after = true,
            _ => {}
        }
    }

    /// Where following stops, if the events printed say so.
    fn done(&self) -> Option<Ended> {
        if self.until_answered && self.answered {
            return Some(Ended::Answered);
        }
        self.ended().map(Ended::Final)
    }

    /// The final phase the session is in, if the log says it goes no further.
    fn ended(&self) -> Option<Phase> {
        self.phase
            .filter(|p| p.is_terminal() && !self.message_after)
    }
}

/// The session's final phase, when it is in one and no start was asked for that has not
/// begun yet (the log shows a start only once its run does).
async fn settled(client: &Client, path: &str) -> Result<Option<Phase>, Error> {
    let session: model::AgenticSession = client.get(path).await?;
    let restarting = session.annotation(model::annotations::DESIRED_PHASE)
        == Some(model::annotations::DESIRED_RUNNING);
    Ok(Some(session.phase()).filter(|p| p.is_terminal() && !restarting))
}

async fn follow_one(
    conn: &mut Connection,
    (client, path): (&Client, &str),
    cursor: &mut u64,
    progress: &mut Progress,
    backoff: &mut Duration,
    format: Format,
) -> Result<Ended, Error> {
    let mut live = false;
    loop {
        let frame = match conn.next::<ServerToBrowser>().await {
            Ok(ws_client::Incoming::Frame(f)) => f,
            Ok(ws_client::Incoming::Beat) => {
                if conn
                    .write_frame(&model::protocol::BrowserToServer::Ping)
                    .await
                    .is_err()
                {
                    return Ok(Ended::Dropped("the connection dropped".into()));
                }
                continue;
            }
            Err(ReadError::Closed(Closed::Code(code, reason))) => {
                return Ok(Ended::Closed(code, reason));
            }
            Err(ReadError::Closed(Closed::Dropped(why))) => return Ok(Ended::Dropped(why)),
            Err(ReadError::Undecodable(e)) => {
                return Err(Error::Local(format!(
                    "the server sent what this client cannot read: {e:?}"
                )));
            }
        };
        match frame {
            ServerToBrowser::Event(e) => {
                // A replay after a reconnect may overlap what was printed.
                if e.seq <= *cursor {
                    continue;
                }
                *cursor = e.seq;
                *backoff = Duration::from_millis(250);
                progress.saw(&e.event);
                print_event(&e, format)?;
                if let (true, Some(done)) = (live, progress.done()) {
                    return Ok(done);
                }
            }
            ServerToBrowser::Live(_) => {
                live = true;
                if let Some(Ended::Answered) = progress.done() {
                    return Ok(Ended::Answered);
                }
                // Over by the log (or, following from a cursor past its last phase, by the
                // session itself), and not about to start again.
                let unknown = progress.phase.is_none() && !progress.message_after;
                if (progress.ended().is_some() || unknown)
                    && let Some(p) = settled(client, path).await?
                {
                    return Ok(Ended::Final(p));
                }
            }
            ServerToBrowser::Error(r) => eprintln!("ambient: refused: {} ({})", r.message, r.error),
            ServerToBrowser::Pong => {}
        }
    }
}

/// The part of an export `logs` reads.
#[derive(serde::Deserialize)]
struct Export {
    events: Vec<StoredEvent>,
}

/// Prints one event: a line for people (`-o table`), or the event whole.
pub fn print_event(e: &StoredEvent, format: Format) -> Result<(), Error> {
    let text = match format {
        Format::Json => output::json(e)? + "\n",
        Format::Yaml => format!("---\n{}", output::yaml(e)?),
        Format::Table => match describe(&e.event) {
            Some(line) => format!("{:<6} {}  {line}\n", e.seq, output::time(e.ts)),
            None => return Ok(()),
        },
    };
    output::write(&text)
}

/// The event in a line or a few, for people; `None` for what only a page needs (the deltas
/// a whole message follows).
fn describe(event: &SessionEvent) -> Option<String> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
            .collect::<String>()
            .replace('\n', "\n                             ")
    };
    let short = |s: &str, n: usize| -> String {
        let lines: Vec<&str> = s.lines().collect();
        let mut out = lines.iter().take(n).copied().collect::<Vec<_>>().join("\n");
        if lines.len() > n {
            out.push_str(&format!("\n… ({} more lines)", lines.len() - n));
        }
        clean(&out)
    };
    Some(match event {
        SessionEvent::UserMessage(m) => format!("{}: {}", clean(&m.sender), clean(&m.text)),
        SessionEvent::AgentMessage(m) => format!("agent: {}", clean(&m.text)),
        SessionEvent::AgentDelta(_) => return None,
        SessionEvent::Thinking(t) => format!("thinking: {}", short(&t.text, 5)),
        SessionEvent::ToolUse(t) => format!(
            "tool {}: {}",
            clean(&t.name),
            short(&t.input.to_string(), 3)
        ),
        SessionEvent::ToolResult(r) => format!(
            "{}: {}",
            if r.is_error {
                "tool error"
            } else {
                "tool result"
            },
            short(&r.content, 10)
        ),
        SessionEvent::Log(l) => format!("log {:?}: {}", l.level, clean(&l.message)).to_lowercase(),
        SessionEvent::Phase(p) => match &p.message {
            Some(m) => format!("phase {}: {}", p.phase, short(m, 5)),
            None => format!("phase {}", p.phase),
        },
        SessionEvent::Error(e) => format!("error: {}", clean(&e.message)),
        SessionEvent::AgentStarted(a) => format!(
            "agent started ({}{})",
            clean(&a.model),
            if a.resumed { ", resumed" } else { "" }
        ),
        SessionEvent::TurnResult(t) => format!(
            "turn {} after {} turns, {} ms, ${:.4}",
            if t.is_error { "failed" } else { "done" },
            t.num_turns,
            t.duration_ms,
            t.usage.cost_usd
        ),
        SessionEvent::Result(r) => {
            format!("run finished: exit {}, {} turns", r.exit_code, r.num_turns)
        }
        SessionEvent::Interrupt(c) => format!("interrupted by {}", clean(&c.sender)),
        SessionEvent::StopRequested(c) => format!("stop asked by {}", clean(&c.sender)),
        SessionEvent::Ask(a) => {
            let questions: Vec<String> = a.input["questions"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|q| clean(q["question"].as_str().unwrap_or_default()))
                .collect();
            format!("ask {}: {}", clean(&a.id), questions.join(" / "))
        }
        SessionEvent::Answer(a) if a.answers.is_empty() => {
            format!("{} declined ask {}", clean(&a.sender), clean(&a.id))
        }
        SessionEvent::Answer(a) => {
            let said: Vec<String> = a.answers.values().map(|v| clean(v)).collect();
            format!(
                "{} answered {}: {}",
                clean(&a.sender),
                clean(&a.id),
                said.join("; ")
            )
        }
        SessionEvent::ModelChanged(m) => {
            format!("model {} chosen by {}", clean(&m.model), clean(&m.sender))
        }
        SessionEvent::Changes(c) => format!(
            "{}: {} files changed, +{} -{} on {}{}",
            clean(&c.repo),
            c.files,
            c.insertions,
            c.deletions,
            clean(&c.branch),
            if c.held { " (held until kept)" } else { "" }
        ),
        SessionEvent::GitPush(g) => format!(
            "pushed {} of {} ({})",
            clean(&g.branch),
            clean(&g.repo),
            clean(&g.commit)
        ),
        SessionEvent::PullRequest(p) => format!("pull request {}", clean(&p.url)),
        SessionEvent::McpStatus(m) => {
            let servers: Vec<String> = m
                .servers
                .iter()
                .map(|s| {
                    format!(
                        "{} {} ({} tools)",
                        clean(&s.name),
                        clean(&s.status),
                        s.tools.len()
                    )
                })
                .collect();
            format!("mcp: {}", servers.join(", "))
        }
        SessionEvent::Workflow(w) => {
            let commands: Vec<String> = w
                .commands
                .iter()
                .map(|c| format!("/{}", clean(&c.name)))
                .collect();
            let mut line = format!("workflow {}", clean(&w.name));
            if !commands.is_empty() {
                line.push_str(&format!(": {}", commands.join(" ")));
            }
            if w.started {
                line.push_str(" (started)");
            }
            if let Some(p) = &w.problem {
                line.push_str(&format!(" [{}]", clean(p)));
            }
            line
        }
        SessionEvent::WorkflowChanged(c) => match &c.workflow {
            Some(wf) => format!(
                "workflow {}{} chosen by {}",
                clean(&wf.git_url),
                wf.path
                    .as_deref()
                    .map(|p| format!(" ({})", clean(p)))
                    .unwrap_or_default(),
                clean(&c.sender)
            ),
            None => format!("workflow left by {}", clean(&c.sender)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_after_the_final_phase_means_the_session_goes_on() {
        use model::protocol::{PhaseChange, UserMessage};
        let phase = |p| {
            SessionEvent::Phase(PhaseChange {
                phase: p,
                reason: None,
                message: None,
            })
        };
        let mut p = Progress::default();
        assert_eq!(p.ended(), None);
        p.saw(&phase(Phase::Running));
        assert_eq!(p.ended(), None);
        p.saw(&phase(Phase::Completed));
        assert_eq!(p.ended(), Some(Phase::Completed));
        p.saw(&SessionEvent::UserMessage(UserMessage {
            text: "go on".into(),
            sender: "me".into(),
        }));
        assert_eq!(p.ended(), None, "sent or continued: the next run follows");
        p.saw(&phase(Phase::Creating));
        p.saw(&phase(Phase::Failed));
        assert_eq!(p.ended(), Some(Phase::Failed));
    }

    #[test]
    fn a_refused_upgrade_is_not_retried_and_a_drop_is() {
        assert_eq!(
            refused_upgrade("HTTP error: 403 Forbidden").map(|e| e.exit_code()),
            Some(4)
        );
        assert_eq!(
            refused_upgrade("HTTP error: 401 Unauthorized").map(|e| e.exit_code()),
            Some(3)
        );
        assert!(refused_upgrade("HTTP error: 502 Bad Gateway").is_none());
        assert!(refused_upgrade("Connection refused (os error 111)").is_none());
    }
}
