//! `ambient logs`: a session's events, printed as they come. Without `-f` the log as it is
//! (the export); with `-f` the viewer WebSocket from a cursor, exactly as the page follows it:
//! every event once, in order; after a drop (a restarting server, a network blip) it
//! connects again with backoff from the last event it printed; a cursor past the log (the
//! session was made again) starts over. It ends when the session is in a final phase
//! (Completed: exit 0; Failed or Stopped: exit 9), or is deleted.

use std::time::Duration;

use model::Phase;
use model::protocol::{ServerToBrowser, SessionEvent, StoredEvent, close};
use runner::connection::{Closed, Connection, ReadError};

use crate::client::{Client, Error};
use crate::output::{self, Format};

/// Read buffer of the viewer socket.
const READ_BUFFER: usize = 64 * 1024;
/// Longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The events of a session after `after`; with `follow`, until it ends.
pub async fn logs(
    client: &Client,
    project: &str,
    session: &str,
    after: u64,
    follow: bool,
    format: Format,
) -> Result<(), Error> {
    let base = format!("/api/projects/{project}/agentic-sessions/{session}");
    if !follow {
        let export: Export = client.get(&format!("{base}/export")).await?;
        for e in export.events.iter().filter(|e| e.seq > after) {
            print_event(e, format)?;
        }
        return Ok(());
    }
    let mut cursor = after;
    let mut phase: Option<Phase> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let url = client.ws_url(&format!("{base}/ws?after={cursor}"));
        let ended = match Connection::open(&url, Some(client.key()), READ_BUFFER).await {
            Ok(mut conn) => {
                let ended =
                    follow_one(&mut conn, &mut cursor, &mut phase, &mut backoff, format).await;
                conn.close(1000, "done").await;
                ended?
            }
            Err(Closed::Dropped(why)) => {
                refused_upgrade(&why).map_or(Ok(Ended::Dropped(why)), Err)?
            }
            Err(Closed::Code(code, reason)) => Ended::Closed(code, reason),
        };
        match ended {
            Ended::Final(Phase::Completed) => return Ok(()),
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
                    phase = None;
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

async fn follow_one(
    conn: &mut Connection,
    cursor: &mut u64,
    phase: &mut Option<Phase>,
    backoff: &mut Duration,
    format: Format,
) -> Result<Ended, Error> {
    let mut live = false;
    loop {
        let frame = match conn.next::<ServerToBrowser>().await {
            Ok(runner::connection::Incoming::Frame(f)) => f,
            Ok(runner::connection::Incoming::Beat) => {
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
                if let SessionEvent::Phase(p) = &e.event {
                    *phase = Some(p.phase);
                }
                print_event(&e, format)?;
                if live && phase.is_some_and(Phase::is_terminal) {
                    return Ok(Ended::Final(phase.unwrap_or(Phase::Completed)));
                }
            }
            ServerToBrowser::Live(_) => {
                live = true;
                if let Some(p) = phase.filter(|p| p.is_terminal()) {
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
        SessionEvent::GitPush(g) => format!(
            "pushed {} of {} ({})",
            clean(&g.branch),
            clean(&g.repo),
            clean(&g.commit)
        ),
        SessionEvent::PullRequest(p) => format!("pull request {}", clean(&p.url)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
