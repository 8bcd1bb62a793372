//! Session event logs: append with the next sequence number, then broadcast after commit.

use model::protocol::{
    RunnerEvent, SessionEvent, StoredEvent, UserMessage, encode_event, encode_event_frame,
};
use model::session::RunSummary;
use rusqlite::{OptionalExtension, Transaction, params};

use super::{AfterCommit, Store, StoreError, now_ms};
use crate::hub::{Fanout, Frame};

/// A persisted event as stored: its JSON is sent to viewers without re-encoding.
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
    /// The viewer frame carrying this event.
    pub fn frame(&self) -> Frame {
        Frame::new(self.seq, encode_event_frame(self.seq, self.ts, &self.body))
    }

    /// Decodes the event.
    pub fn decode(&self) -> Result<StoredEvent, StoreError> {
        Ok(StoredEvent {
            seq: self.seq,
            ts: self.ts,
            event: serde_json::from_str(&self.body)?,
        })
    }
}

/// Appends one event in `tx` and schedules its broadcast after commit. Returns its `seq`.
pub(crate) fn append_in_tx(
    tx: &Transaction<'_>,
    hooks: &mut AfterCommit,
    fanout: &Fanout,
    session_id: i64,
    ts: i64,
    event: &SessionEvent,
) -> Result<u64, StoreError> {
    let last: i64 = tx
        .prepare_cached("SELECT last_seq FROM session_log WHERE session_id = ?1")?
        .query_row([session_id], |r| r.get(0))?;
    let seq = last as u64 + 1;
    let body = encode_event(event);
    insert(tx, session_id, seq, ts, event.kind(), &body)?;
    tx.prepare_cached(
        "UPDATE session_log SET last_seq = ?2, last_activity = ?3 WHERE session_id = ?1",
    )?
    .execute(params![session_id, seq as i64, ts])?;
    let frame = Frame::new(seq, encode_event_frame(seq, ts, &body));
    let fanout = fanout.clone();
    hooks.push(move || fanout.publish(session_id, [frame]));
    Ok(seq)
}

fn insert(
    tx: &Transaction<'_>,
    session_id: i64,
    seq: u64,
    ts: i64,
    kind: &str,
    body: &str,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO events (session_id, seq, ts, kind, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![session_id, seq as i64, ts, kind, body])?;
    Ok(())
}

/// What happened to a batch of runner events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// Highest runner sequence now persisted for the generation.
    pub acked_rseq: u64,
    /// How many events were new (the rest were re-sends).
    pub new: usize,
}

impl Store {
    /// Appends an event produced by the platform (not a runner).
    pub async fn append_event(
        &self,
        session_id: i64,
        event: SessionEvent,
    ) -> Result<u64, StoreError> {
        let fanout = self.fanout().clone();
        self.db()
            .write(move |tx, hooks| append_in_tx(tx, hooks, &fanout, session_id, now_ms(), &event))
            .await
    }

    /// Appends a runner's events of `generation`, dropping those already persisted (a
    /// re-send after reconnecting). `on_commit` runs after the commit, after the broadcast,
    /// with the highest persisted `rseq`: the runner's acknowledgement.
    pub async fn append_runner_events(
        &self,
        session_id: i64,
        generation: u64,
        events: Vec<RunnerEvent>,
        on_commit: impl FnOnce(u64) + Send + 'static,
    ) -> Result<Appended, StoreError> {
        let fanout = self.fanout().clone();
        self.db()
            .write(move |tx, hooks| {
                let (current, acked, mut last): (i64, i64, i64) = tx
                    .prepare_cached(
                        "SELECT s.run_generation, l.runner_acked, l.last_seq
                         FROM sessions s JOIN session_log l ON l.session_id = s.id WHERE s.id = ?1",
                    )?
                    .query_row([session_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?
                    .ok_or_else(|| StoreError::NotFound("session".into()))?;
                if current as u64 != generation {
                    return Err(StoreError::Conflict(format!(
                        "runner generation {generation} is not the session's current generation {current}"
                    )));
                }
                let mut acked = acked as u64;
                let mut frames = Vec::new();
                let mut activity = None;
                for RunnerEvent { rseq, ts, event } in events {
                    if rseq <= acked {
                        continue;
                    }
                    acked = rseq;
                    last += 1;
                    let seq = last as u64;
                    let body = encode_event(&event);
                    insert(tx, session_id, seq, ts, event.kind(), &body)?;
                    frames.push(Frame::new(seq, encode_event_frame(seq, ts, &body)));
                    activity = Some(ts);
                    remember(tx, session_id, &event)?;
                }
                let new = frames.len();
                tx.prepare_cached(
                    "UPDATE session_log SET last_seq = ?2, runner_acked = ?3, last_activity = COALESCE(?4, last_activity)
                     WHERE session_id = ?1",
                )?
                .execute(params![session_id, last, acked as i64, activity])?;
                let fanout = fanout.clone();
                hooks.push(move || {
                    fanout.publish(session_id, frames);
                    on_commit(acked);
                });
                Ok(Appended { acked_rseq: acked, new })
            })
            .await
    }

    /// Events after `after`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        session_id: i64,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EventRow>, StoreError> {
        self.db()
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, ts, body FROM events WHERE session_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![session_id, after as i64, limit as i64], |r| {
                        Ok(EventRow { seq: r.get::<_, i64>(0)? as u64, ts: r.get(1)?, body: r.get(2)? })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// User messages after `after` (those no agent has handled yet), oldest first.
    pub async fn pending_messages(
        &self,
        session_id: i64,
        after: u64,
    ) -> Result<Vec<(u64, UserMessage)>, StoreError> {
        self.db()
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, body FROM events WHERE session_id = ?1 AND seq > ?2 AND kind = 'user_message' ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map(params![session_id, after as i64], |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?)))?
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

    /// Highest runner sequence persisted for the session's current generation.
    pub async fn runner_acked(&self, session_id: i64) -> Result<u64, StoreError> {
        self.db()
            .read(move |c| {
                let acked: i64 = c.query_row(
                    "SELECT runner_acked FROM session_log WHERE session_id = ?1",
                    [session_id],
                    |r| r.get(0),
                )?;
                Ok(acked as u64)
            })
            .await
    }

    /// Records how far the agent got through the user messages.
    pub async fn set_handled_through(
        &self,
        session_id: i64,
        generation: u64,
        handled: u64,
    ) -> Result<(), StoreError> {
        self.db()
            .write(move |tx, _| {
                tx.execute(
                    "UPDATE session_log SET handled_through = MAX(handled_through, ?3)
                     WHERE session_id = ?1 AND (SELECT run_generation FROM sessions WHERE id = ?1) = ?2",
                    params![session_id, generation as i64, handled as i64],
                )?;
                Ok(())
            })
            .await
    }
}

/// Keeps what later decisions need from certain runner events.
fn remember(tx: &Transaction<'_>, session_id: i64, event: &SessionEvent) -> Result<(), StoreError> {
    match event {
        SessionEvent::Result(r) => {
            let summary = RunSummary {
                exit_code: Some(r.exit_code),
                turns: r.num_turns,
                input_tokens: r.usage.input_tokens
                    + r.usage.cache_read_input_tokens
                    + r.usage.cache_creation_input_tokens,
                output_tokens: r.usage.output_tokens,
                cost_usd: r.usage.cost_usd,
            };
            tx.execute(
                "UPDATE sessions SET run_summary = ?2 WHERE id = ?1",
                params![session_id, serde_json::to_string(&summary)?],
            )?;
        }
        SessionEvent::AgentStarted(a) => {
            // The conversation id lets a continued session resume it.
            tx.execute(
                "UPDATE sessions SET object = json_set(object, '$.status.sdkSessionId', ?2) WHERE id = ?1",
                params![session_id, a.claude_session_id],
            )?;
        }
        _ => {}
    }
    Ok(())
}
