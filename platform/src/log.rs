//! Session event logs: every event of a session with its sequence number, persisted before
//! anyone sees it, and the counters the server keeps per log (the current run's generation,
//! the runner events it acknowledged, the user messages the agent handled, the last
//! activity, the run's totals). Logs live in the server's own database in both modes, keyed
//! by the session's uid, so a session created again under an old name starts a new log.
//!
//! The log knows nothing of viewers: after each commit it hands what was committed to its
//! [`CommitListener`] (the hub), on the writer thread, in commit order.

use std::collections::HashMap;
use std::sync::Arc;

use model::protocol::{RunnerEvent, SessionEvent, StoredEvent, UserMessage, encode_event};
use model::session::RunSummary;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::db::{Db, StoreError, now_ms};

/// Where a session stood after one of its turns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnPoint {
    /// Claude's conversation (none: no run of the session reported one).
    pub conversation: Option<String>,
    /// Its last entry then (none: the turn added no message, or was recorded before
    /// turns said).
    pub resume_at: Option<String>,
    /// The start of the turn's answer (or of its error).
    pub answer: String,
    /// Whether the turn failed.
    pub is_error: bool,
}

/// Characters of a turn's answer a [`TurnPoint`] keeps.
pub const TURN_ANSWER_CHARS: usize = 200;

/// A log, as numbered in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId(i64);

#[cfg(test)]
impl LogId {
    /// A log id for tests of what keys by logs.
    pub(crate) fn test(n: i64) -> LogId {
        LogId(n)
    }
}

/// An event as committed: its JSON is sent to viewers without being encoded again.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Sequence number.
    pub seq: u64,
    /// Time in ms since the epoch.
    pub ts: i64,
    /// The event's JSON.
    pub body: String,
}

impl EventRow {
    /// Decodes the event.
    pub fn decode(&self) -> Result<StoredEvent, StoreError> {
        Ok(StoredEvent {
            seq: self.seq,
            ts: self.ts,
            event: serde_json::from_str(&self.body)?,
        })
    }
}

/// Told of every commit of every log, in commit order.
pub trait CommitListener: Send + Sync + 'static {
    /// Events were committed to `log` (in sequence order).
    fn committed(&self, log: LogId, events: Vec<EventRow>);
    /// `log` was deleted.
    fn deleted(&self, log: LogId);
}

/// What the server knows of a log and of the session's current run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Highest sequence number.
    pub last_seq: u64,
    /// The run whose runner may append.
    pub generation: u64,
    /// Highest runner sequence persisted for that run.
    pub runner_acked: u64,
    /// Highest user-message sequence an agent has been given.
    pub handled_through: u64,
    /// Time of the last event (ms since the epoch).
    pub last_activity: Option<i64>,
    /// Totals of the run's final result, once it reported one.
    pub summary: Option<RunSummary>,
    /// Whether user messages wait after `handled_through`.
    pub unhandled_messages: bool,
    /// User messages without their turn's result yet (see
    /// [`SessionEvent::open_turns`]).
    pub open_turns: u32,
}

/// What happened to a batch of runner events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Highest runner sequence now persisted for the run.
    pub acked_rseq: u64,
    /// How many events were new (the rest were re-sends).
    pub new: usize,
    /// The agent's conversation id, when one of the new events reported it.
    pub conversation: Option<String>,
}

/// The event logs; cheap to clone.
#[derive(Clone)]
pub struct EventLog {
    db: Db,
    listener: Arc<dyn CommitListener>,
}

/// The id of the log of `uid`, created if it does not exist.
fn open_in(tx: &Transaction<'_>, uid: &str) -> Result<LogId, StoreError> {
    let id: i64 = tx
        .prepare_cached(
            "INSERT INTO logs (uid) VALUES (?1) ON CONFLICT (uid) DO UPDATE SET uid = uid RETURNING id",
        )?
        .query_row([uid], |r| r.get(0))?;
    Ok(LogId(id))
}

fn insert(
    tx: &Transaction<'_>,
    log: LogId,
    seq: u64,
    ts: i64,
    kind: &str,
    body: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events (log_id, seq, ts, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![log.0, seq as i64, ts, kind, body])?;
    Ok(())
}

fn unhandled(c: &Connection, log: LogId, after: u64) -> Result<bool, StoreError> {
    Ok(c.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM events WHERE log_id = ?1 AND seq > ?2 AND kind = 'user_message')",
    )?
    .query_row(params![log.0, after as i64], |r| r.get(0))?)
}

impl EventLog {
    /// The logs in `db`; every commit is told to `listener`.
    pub fn new(db: Db, listener: Arc<dyn CommitListener>) -> Self {
        EventLog { db, listener }
    }

    /// The log of the session with `uid`, created when it has none yet.
    pub async fn open(&self, uid: &str) -> Result<LogId, StoreError> {
        let uid = uid.to_owned();
        self.db.write(move |tx, _| open_in(tx, &uid)).await
    }

    /// The log of `uid`, if it has one.
    pub async fn find(&self, uid: &str) -> Result<Option<LogId>, StoreError> {
        let uid = uid.to_owned();
        self.db
            .read(move |c| {
                Ok(c.prepare_cached("SELECT id FROM logs WHERE uid = ?1")?
                    .query_row([&uid], |r| r.get(0))
                    .optional()?
                    .map(LogId))
            })
            .await
    }

    /// The phase of the last phase event in `log`, if it has one.
    pub async fn last_phase(&self, log: LogId) -> Result<Option<model::Phase>, StoreError> {
        let body: Option<String> = self
            .db
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT body FROM events WHERE log_id = ?1 AND kind = 'phase' ORDER BY seq DESC LIMIT 1",
                )?
                .query_row([log.0], |r| r.get(0))
                .optional()?)
            })
            .await?;
        Ok(
            match body.map(|b| serde_json::from_str::<SessionEvent>(&b)) {
                Some(Ok(SessionEvent::Phase(p))) => Some(p.phase),
                _ => None,
            },
        )
    }

    /// The last MCP server state reported in `log`, if any.
    pub async fn last_mcp_status(
        &self,
        log: LogId,
    ) -> Result<Option<model::protocol::McpStatus>, StoreError> {
        Ok(match self.last_of_kind(log, "mcp_status").await? {
            Some(SessionEvent::McpStatus(m)) => Some(m),
            _ => None,
        })
    }

    /// The last workflow reported in `log`, if any.
    pub async fn last_workflow(
        &self,
        log: LogId,
    ) -> Result<Option<model::workflow::WorkflowState>, StoreError> {
        Ok(match self.last_of_kind(log, "workflow").await? {
            Some(SessionEvent::Workflow(w)) => Some(w),
            _ => None,
        })
    }

    /// What `log`'s runs reported of their work: the last [`RepoChanges`] of each repository
    /// and the URLs of the pull requests opened, each in the order first seen.
    ///
    /// [`RepoChanges`]: model::protocol::RepoChanges
    pub async fn work(
        &self,
        log: LogId,
    ) -> Result<(Vec<model::protocol::RepoChanges>, Vec<String>), StoreError> {
        // Bounded: a session has few repositories, and each run reports each once.
        let bodies: Vec<String> = self
            .db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT body FROM events WHERE log_id = ?1 AND kind IN ('changes', 'pull_request')
                     ORDER BY seq DESC LIMIT 256",
                )?;
                let rows = stmt
                    .query_map([log.0], |r| r.get(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let mut changes: Vec<model::protocol::RepoChanges> = Vec::new();
        let mut pulls: Vec<String> = Vec::new();
        for body in bodies.iter().rev() {
            match serde_json::from_str(body) {
                Ok(SessionEvent::Changes(c)) => match changes.iter_mut().find(|k| k.repo == c.repo)
                {
                    Some(known) => *known = c,
                    None => changes.push(c),
                },
                Ok(SessionEvent::PullRequest(p)) if !pulls.contains(&p.url) => pulls.push(p.url),
                _ => {}
            }
        }
        Ok((changes, pulls))
    }

    /// Each finished turn of `log`, in order: the conversation it was in (as the run's
    /// agent last reported it) and the entry a fork after it resumes at.
    pub async fn turns(&self, log: LogId) -> Result<Vec<TurnPoint>, StoreError> {
        type Row = (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<bool>,
        );
        // Only the fields it needs, the answer's start only (a turn's text may be long),
        // through the partial index of these two kinds (its condition written as is).
        let rows: Vec<Row> = self
            .db
            .read(move |c| {
                let mut q = c.prepare_cached(&format!(
                    "SELECT kind, json_extract(body, '$.claudeSessionId'), json_extract(body, '$.resumeAt'),
                            substr(json_extract(body, '$.text'), 1, {TURN_ANSWER_CHARS}), json_extract(body, '$.isError')
                     FROM events WHERE log_id = ?1 AND kind IN ('agent_started', 'turn_result') ORDER BY seq"
                ))?;
                let rows = q.query_map([log.0], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                Ok(rows.collect::<Result<Vec<Row>, _>>()?)
            })
            .await?;
        let mut conversation = None;
        let mut turns = Vec::new();
        for (kind, id, resume_at, answer, is_error) in rows {
            if kind == "agent_started" {
                conversation = id;
                continue;
            }
            turns.push(TurnPoint {
                conversation: conversation.clone(),
                resume_at,
                answer: answer.unwrap_or_default(),
                is_error: is_error.unwrap_or(false),
            });
        }
        Ok(turns)
    }

    /// The last event of `kind` in `log` (a kind with its own partial index: `mcp_status`,
    /// `workflow`). The kind is written into the statement, not bound: SQLite uses a
    /// partial index only for a condition it can read when it plans.
    async fn last_of_kind(
        &self,
        log: LogId,
        kind: &'static str,
    ) -> Result<Option<SessionEvent>, StoreError> {
        let body: Option<String> = self
            .db
            .read(move |c| {
                Ok(c.prepare_cached(&format!(
                    "SELECT body FROM events WHERE log_id = ?1 AND kind = '{kind}' ORDER BY seq DESC LIMIT 1"
                ))?
                .query_row([log.0], |r| r.get(0))
                .optional()?)
            })
            .await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Deletes the log of `uid` with its events; its viewers are told.
    pub async fn delete(&self, uid: &str) -> Result<(), StoreError> {
        let uid = uid.to_owned();
        let listener = self.listener.clone();
        self.db
            .write(move |tx, hooks| {
                let id: Option<i64> = tx
                    .query_row(
                        "DELETE FROM logs WHERE uid = ?1 RETURNING id",
                        [&uid],
                        |r| r.get(0),
                    )
                    .optional()?;
                if let Some(id) = id {
                    tx.execute("DELETE FROM events WHERE log_id = ?1", [id])?;
                    hooks.push(move || listener.deleted(LogId(id)));
                }
                Ok(())
            })
            .await
    }

    /// Appends an event produced by the platform (not a runner). Returns its `seq`.
    pub async fn append(&self, log: LogId, event: SessionEvent) -> Result<u64, StoreError> {
        let listener = self.listener.clone();
        self.db
            .write(move |tx, hooks| {
                let (last, open): (i64, u32) = tx
                    .prepare_cached("SELECT last_seq, open_turns FROM logs WHERE id = ?1")?
                    .query_row([log.0], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound("the session's event log".into()))?;
                let seq = last as u64 + 1;
                let ts = now_ms();
                let body = encode_event(&event);
                insert(tx, log, seq, ts, event.kind(), &body)?;
                tx.prepare_cached(
                    "UPDATE logs SET last_seq = ?2, last_activity = ?3, open_turns = ?4 WHERE id = ?1",
                )?
                .execute(params![log.0, seq as i64, ts, event.open_turns(open)])?;
                hooks.push(move || listener.committed(log, vec![EventRow { seq, ts, body }]));
                Ok(seq)
            })
            .await
    }

    /// Appends a runner's events of `generation`, dropping those already persisted (a
    /// re-send after reconnecting). `on_commit` runs after the commit, after the listener,
    /// with the highest persisted `rseq`: the runner's acknowledgement.
    pub async fn append_runner_events(
        &self,
        log: LogId,
        generation: u64,
        events: Vec<RunnerEvent>,
        on_commit: impl FnOnce(u64) + Send + 'static,
    ) -> Result<Appended, StoreError> {
        let listener = self.listener.clone();
        self.db
            .write(move |tx, hooks| {
                let (current, acked, mut last, mut open): (i64, i64, i64, u32) = tx
                    .prepare_cached("SELECT generation, runner_acked, last_seq, open_turns FROM logs WHERE id = ?1")?
                    .query_row([log.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound("session".into()))?;
                if current as u64 != generation {
                    return Err(StoreError::Conflict(format!(
                        "runner generation {generation} is not the session's current generation {current}"
                    )));
                }
                let mut acked = acked as u64;
                let mut rows = Vec::new();
                let mut activity = None;
                let mut summary = None;
                let mut conversation = None;
                // The server's clock, not the runner's: a runner cannot date its events.
                let ts = now_ms();
                for RunnerEvent { rseq, event, .. } in events {
                    if rseq <= acked {
                        continue;
                    }
                    acked = rseq;
                    last += 1;
                    let seq = last as u64;
                    let body = encode_event(&event);
                    insert(tx, log, seq, ts, event.kind(), &body)?;
                    rows.push(EventRow { seq, ts, body });
                    activity = Some(ts);
                    open = event.open_turns(open);
                    match event {
                        SessionEvent::Result(r) => summary = Some(RunSummary {
                            exit_code: Some(r.exit_code),
                            turns: r.num_turns,
                            input_tokens: r.usage.input_tokens
                                + r.usage.cache_read_input_tokens
                                + r.usage.cache_creation_input_tokens,
                            output_tokens: r.usage.output_tokens,
                            cost_usd: r.usage.cost_usd,
                        }),
                        SessionEvent::AgentStarted(a) => conversation = Some(a.claude_session_id),
                        _ => {}
                    }
                }
                let new = rows.len();
                tx.prepare_cached(
                    "UPDATE logs SET last_seq = ?2, runner_acked = ?3, last_activity = COALESCE(?4, last_activity),
                         run_summary = COALESCE(?5, run_summary), open_turns = ?6
                     WHERE id = ?1",
                )?
                .execute(params![
                    log.0,
                    last,
                    acked as i64,
                    activity,
                    summary.as_ref().map(serde_json::to_string).transpose()?,
                    open
                ])?;
                hooks.push(move || {
                    if !rows.is_empty() {
                        listener.committed(log, rows);
                    }
                    on_commit(acked);
                });
                Ok(Appended { acked_rseq: acked, new, conversation })
            })
            .await
    }

    /// Events after `after`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        log: LogId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, ts, body FROM events WHERE log_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![log.0, after as i64, limit as i64], |r| {
                        Ok(EventRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, body: r.get(2)? })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// The last `limit` events before `before`, oldest first (the latest of a log, with
    /// `before` past its end).
    pub async fn events_before(
        &self,
        log: LogId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        let before = before.min(i64::MAX as u64) as i64;
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, ts, body FROM events WHERE log_id = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3",
                )?;
                let mut rows = stmt
                    .query_map(params![log.0, before, limit as i64], |r| {
                        Ok(EventRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, body: r.get(2)? })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.reverse();
                Ok(rows)
            })
            .await
    }

    /// User messages after `after` (those no agent has handled yet), oldest first.
    pub async fn pending_messages(
        &self,
        log: LogId,
        after: u64,
    ) -> Result<Vec<(u64, UserMessage)>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, body FROM events WHERE log_id = ?1 AND seq > ?2 AND kind = 'user_message' ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map(params![log.0, after as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))?
                    .collect::<Result<Vec<_>, _>>()?;
                rows.into_iter()
                    .map(|(seq, body)| match serde_json::from_str(&body)? {
                        SessionEvent::UserMessage(m) => Ok((seq, m)),
                        _ => Err(StoreError::Corrupt(format!("event {seq} is not a user message"))),
                    })
                    .collect()
            })
            .await
    }

    /// The log's counters.
    pub async fn counters(&self, log: LogId) -> Result<Counters, StoreError> {
        self.db
            .read(move |c| {
                let (last_seq, generation, runner_acked, handled_through, last_activity, summary, open_turns): (
                    i64,
                    i64,
                    i64,
                    i64,
                    Option<i64>,
                    Option<String>,
                    u32,
                ) = c
                    .prepare_cached(
                        "SELECT last_seq, generation, runner_acked, handled_through, last_activity, run_summary, open_turns
                         FROM logs WHERE id = ?1",
                    )?
                    .query_row([log.0], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)))
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound("the session's event log".into()))?;
                Ok(Counters {
                    last_seq: last_seq as u64,
                    generation: generation as u64,
                    runner_acked: runner_acked as u64,
                    handled_through: handled_through as u64,
                    last_activity,
                    summary: summary.and_then(|s| serde_json::from_str(&s).ok()),
                    unhandled_messages: unhandled(c, log, handled_through as u64)?,
                    open_turns,
                })
            })
            .await
    }

    /// The last activity of each of `uids` that has a log (ms since the epoch).
    pub async fn last_activity(
        &self,
        uids: Vec<String>,
    ) -> Result<HashMap<String, i64>, StoreError> {
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT last_activity FROM logs WHERE uid = ?1 AND last_activity IS NOT NULL",
                )?;
                let mut out = HashMap::with_capacity(uids.len());
                for uid in uids {
                    if let Some(ts) = stmt.query_row([&uid], |r| r.get(0)).optional()? {
                        out.insert(uid, ts);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Starts run `generation`: its runner's events are accepted from now on, acknowledged
    /// from zero. A fresh run gets the initial prompt from its environment, so the prompt's
    /// event (the first user message) counts as handled; a resumed one goes on from where the
    /// agent got. Returns the highest user message the new runner must consider handled. A
    /// run already begun is left as it is.
    pub async fn begin_run(
        &self,
        log: LogId,
        generation: u64,
        resume: bool,
    ) -> Result<u64, StoreError> {
        self.db
            .write(move |tx, _| {
                let handled: i64 = if resume {
                    tx.query_row("SELECT handled_through FROM logs WHERE id = ?1", [log.0], |r| r.get(0))?
                } else {
                    tx.query_row(
                        "SELECT COALESCE(MIN(seq), 0) FROM events WHERE log_id = ?1 AND kind = 'user_message'",
                        [log.0],
                        |r| r.get(0),
                    )?
                };
                // Once per run: a second call (the server and its follower both saw the new
                // run) must not reset what the run's runner already delivered.
                let n = tx.execute(
                    "UPDATE logs SET generation = ?2, runner_acked = 0, run_summary = NULL,
                         handled_through = MAX(handled_through, ?3)
                     WHERE id = ?1 AND generation < ?2",
                    params![log.0, generation as i64, handled],
                )?;
                if n == 0 {
                    let current: Option<i64> = tx
                        .query_row("SELECT handled_through FROM logs WHERE id = ?1", [log.0], |r| r.get(0))
                        .optional()?;
                    return current
                        .map(|h| h as u64)
                        .ok_or_else(|| StoreError::NotFound("the session's event log".into()));
                }
                Ok(handled as u64)
            })
            .await
    }

    /// Records how far the agent of run `generation` got through the user messages, as its
    /// runner says, but never past the last message there is (a runner cannot make later
    /// messages count as handled). Returns the value taken.
    pub async fn set_handled_through(
        &self,
        log: LogId,
        generation: u64,
        handled: u64,
    ) -> Result<u64, StoreError> {
        let handled = handled.min(i64::MAX as u64) as i64;
        self.db
            .write(move |tx, _| {
                let last: i64 = tx
                    .prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) FROM events WHERE log_id = ?1 AND kind = 'user_message'",
                    )?
                    .query_row([log.0], |r| r.get(0))?;
                let taken = handled.min(last);
                tx.execute(
                    "UPDATE logs SET handled_through = MAX(handled_through, ?3) WHERE id = ?1 AND generation = ?2",
                    params![log.0, generation as i64, taken],
                )?;
                // What the log knows was handled counts too: a runner that got its first
                // message from its environment may report less (a pod's runner says 0).
                let stored: Option<i64> = tx
                    .query_row(
                        "SELECT handled_through FROM logs WHERE id = ?1 AND generation = ?2",
                        params![log.0, generation as i64],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(stored.unwrap_or(taken).max(taken) as u64)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use model::protocol::{LogLevel, LogLine};

    use super::*;

    /// Records what the log tells its listener.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(LogId, Option<u64>)>>);

    impl CommitListener for Recorder {
        fn committed(&self, log: LogId, events: Vec<EventRow>) {
            let mut seen = self.0.lock().unwrap();
            seen.extend(events.iter().map(|e| (log, Some(e.seq))));
        }
        fn deleted(&self, log: LogId) {
            self.0.lock().unwrap().push((log, None));
        }
    }

    fn line(text: &str) -> SessionEvent {
        SessionEvent::Log(LogLine {
            level: LogLevel::Info,
            message: text.into(),
        })
    }

    fn prompt(text: &str) -> SessionEvent {
        SessionEvent::UserMessage(UserMessage {
            text: text.into(),
            sender: "ada".into(),
        })
    }

    fn runner_event(rseq: u64) -> RunnerEvent {
        RunnerEvent {
            rseq,
            ts: 5,
            event: line(&format!("r{rseq}")),
        }
    }

    #[tokio::test]
    async fn each_turn_is_known_with_its_conversation_and_where_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(
            Db::open_in(dir.path()).unwrap(),
            Arc::new(Recorder::default()),
        );
        let a = log.open("uid-a").await.unwrap();
        let started = |id: &str| {
            SessionEvent::AgentStarted(model::protocol::AgentStarted {
                model: "m".into(),
                claude_session_id: id.into(),
                cwd: "/w".into(),
                resumed: false,
            })
        };
        let turn = |at: Option<&str>, text: &str| {
            SessionEvent::TurnResult(model::protocol::TurnResult {
                is_error: at.is_none(),
                subtype: "success".into(),
                num_turns: 1,
                duration_ms: 1,
                usage: Default::default(),
                text: Some(text.into()),
                resume_at: at.map(str::to_owned),
            })
        };
        let long = "x".repeat(300);
        for e in [
            prompt("one"),
            started("c-1"),
            turn(Some("m-1"), "first"),
            line("between"),
            started("c-2"),
            turn(None, &long),
            turn(Some("m-3"), "third"),
        ] {
            log.append(a, e).await.unwrap();
        }
        let turns = log.turns(a).await.unwrap();
        let got: Vec<_> = turns
            .iter()
            .map(|t| {
                (
                    t.conversation.as_deref(),
                    t.resume_at.as_deref(),
                    t.is_error,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (Some("c-1"), Some("m-1"), false),
                (Some("c-2"), None, true),
                (Some("c-2"), Some("m-3"), false)
            ]
        );
        assert_eq!(turns[1].answer.chars().count(), TURN_ANSWER_CHARS);
        assert_eq!(turns[2].answer, "third");
    }

    #[tokio::test]
    async fn a_run_begins_once_and_what_the_log_handled_counts() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::new(
            Db::open_in(dir.path()).unwrap(),
            Arc::new(Recorder::default()),
        );
        let a = log.open("uid-a").await.unwrap();
        log.append(a, prompt("do it")).await.unwrap();
        assert_eq!(log.begin_run(a, 1, false).await.unwrap(), 1);
        log.append_runner_events(a, 1, vec![runner_event(1), runner_event(2)], |_| {})
            .await
            .unwrap();
        // Begun again (the server and its follower both saw the run): nothing is reset.
        assert_eq!(log.begin_run(a, 1, false).await.unwrap(), 1);
        assert_eq!(log.counters(a).await.unwrap().runner_acked, 2);
        // A runner that got the prompt from its environment says 0: the prompt stays handled.
        assert_eq!(log.set_handled_through(a, 1, 0).await.unwrap(), 1);
        assert!(log.pending_messages(a, 1).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn commits_reach_the_listener_in_order_and_runs_are_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Arc::new(Recorder::default());
        let log = EventLog::new(Db::open_in(dir.path()).unwrap(), recorder.clone());
        let a = log.open("uid-a").await.unwrap();
        assert_eq!(log.open("uid-a").await.unwrap(), a, "one log per uid");
        assert_eq!(log.append(a, prompt("do it")).await.unwrap(), 1);
        assert_eq!(log.begin_run(a, 1, false).await.unwrap(), 1);
        let appended = log
            .append_runner_events(a, 1, vec![runner_event(1), runner_event(2)], |_| {})
            .await
            .unwrap();
        assert_eq!((appended.acked_rseq, appended.new), (2, 2));
        // A re-send is dropped; another run's runner is refused.
        let again = log
            .append_runner_events(a, 1, vec![runner_event(2), runner_event(3)], |_| {})
            .await
            .unwrap();
        assert_eq!((again.acked_rseq, again.new), (3, 1));
        assert!(matches!(
            log.append_runner_events(a, 2, vec![runner_event(4)], |_| {})
                .await,
            Err(StoreError::Conflict(_))
        ));
        // A message no agent has handled yet.
        log.append(a, prompt("and tests")).await.unwrap();
        let c = log.counters(a).await.unwrap();
        assert_eq!((c.last_seq, c.runner_acked, c.handled_through), (5, 3, 1));
        assert!(c.unhandled_messages);
        // A runner cannot claim messages that do not exist yet.
        assert_eq!(log.set_handled_through(a, 1, u64::MAX).await.unwrap(), 5);
        assert!(!log.counters(a).await.unwrap().unhandled_messages);
        assert_eq!(log.counters(a).await.unwrap().handled_through, 5);

        log.delete("uid-a").await.unwrap();
        assert_eq!(log.find("uid-a").await.unwrap(), None);
        let seen = recorder.0.lock().unwrap().clone();
        let seqs: Vec<_> = seen.iter().filter_map(|(_, s)| *s).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        assert_eq!(seen.last(), Some(&(a, None)));
        // The same uid later is a new, empty log.
        let b = log.open("uid-a").await.unwrap();
        assert_ne!(a, b);
        assert_eq!(log.counters(b).await.unwrap().last_seq, 0);
    }
}
