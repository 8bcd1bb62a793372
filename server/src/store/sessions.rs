//! Sessions: the `AgenticSession` objects with their runner bookkeeping.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use model::annotations::{
    DESIRED_PHASE, DESIRED_RUNNING, START_REQUESTED_AT, STOP_REASON, STOP_REQUESTED_AT,
};
use model::api::SessionList;
use model::protocol::{SessionEvent, UserMessage};
use model::session::RunSummary;
use model::{AgenticSession, Phase};
use operator::lifecycle::Plan;
use operator::store::RunnerProcess;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use super::events::append_in_tx;
use super::projects::like_pattern;
use super::{Store, StoreError, now_ms};

/// A session with the bookkeeping the server and the driver need.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Internal id (keys the event log).
    pub id: i64,
    /// The session, `status.lastActivityTime` included.
    pub session: AgenticSession,
    /// Version, bumped on every write.
    pub resource_version: u64,
    /// Current runner generation.
    pub run_generation: u64,
    /// SHA-256 of the current runner token.
    pub token_hash: Option<Vec<u8>>,
    /// Process of the current generation.
    pub runner: Option<RunnerProcess>,
    /// Totals reported by the current generation.
    pub summary: Option<RunSummary>,
    /// Highest user-message seq handled by an agent.
    pub handled_through: u64,
    /// Highest event seq.
    pub last_seq: u64,
}

const COLUMNS: &str =
    "id, object, resource_version, l.last_activity, run_generation, runner_token_hash,
    runner_pid, runner_start_ticks, run_summary, l.handled_through, l.last_seq";
/// Sessions with their log counters.
const FROM: &str = "sessions JOIN session_log l ON l.session_id = sessions.id";

/// A row as read, before its object is decoded.
struct RawRow {
    id: i64,
    object: String,
    resource_version: i64,
    last_activity: Option<i64>,
    run_generation: i64,
    token_hash: Option<Vec<u8>>,
    pid: Option<i64>,
    ticks: Option<i64>,
    summary: Option<String>,
    handled_through: i64,
    last_seq: i64,
}

fn row_to_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        object: r.get(1)?,
        resource_version: r.get(2)?,
        last_activity: r.get(3)?,
        run_generation: r.get(4)?,
        token_hash: r.get(5)?,
        pid: r.get(6)?,
        ticks: r.get(7)?,
        summary: r.get(8)?,
        handled_through: r.get(9)?,
        last_seq: r.get(10)?,
    })
}

fn decode(raw: RawRow) -> Result<SessionRow, StoreError> {
    let mut session: AgenticSession = serde_json::from_str(&raw.object)?;
    session.metadata.resource_version = Some(raw.resource_version.to_string());
    if let Some(ts) = raw
        .last_activity
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
    {
        session
            .status
            .get_or_insert_with(Default::default)
            .last_activity_time = Some(Time(ts));
    }
    Ok(SessionRow {
        id: raw.id,
        session,
        resource_version: raw.resource_version as u64,
        run_generation: raw.run_generation as u64,
        token_hash: raw.token_hash,
        runner: raw.pid.zip(raw.ticks).map(|(p, t)| RunnerProcess {
            pid: p as u32,
            start_ticks: t as u64,
        }),
        summary: raw.summary.and_then(|s| serde_json::from_str(&s).ok()),
        handled_through: raw.handled_through as u64,
        last_seq: raw.last_seq as u64,
    })
}

pub(crate) fn select_row(
    c: &Connection,
    project: &str,
    name: &str,
) -> Result<Option<SessionRow>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM {FROM} WHERE project = ?1 AND name = ?2"
    ))?
    .query_row([project, name], row_to_session)
    .optional()?
    .map(decode)
    .transpose()
}

fn not_found(project: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!("session '{name}' in project '{project}'"))
}

/// Writes `session` back, bumping its resource version.
fn write_object(
    tx: &Transaction<'_>,
    id: i64,
    session: &AgenticSession,
) -> Result<u64, StoreError> {
    let mut stored = session.clone();
    // lastActivityTime lives in its own column (written on every event).
    if let Some(st) = stored.status.as_mut() {
        st.last_activity_time = None;
    }
    stored.metadata.resource_version = None;
    let phase = session.phase().as_str();
    let display = session.spec.display_name.clone().unwrap_or_default();
    let prompt = session.spec.initial_prompt.clone().unwrap_or_default();
    let rv: i64 = tx.query_row(
        "UPDATE sessions SET object = ?2, phase = ?3, display_name = ?4, initial_prompt = ?5,
             resource_version = resource_version + 1 WHERE id = ?1 RETURNING resource_version",
        params![id, serde_json::to_string(&stored)?, phase, display, prompt],
        |r| r.get(0),
    )?;
    Ok(rv as u64)
}

/// SHA-256 of a runner token: only this is stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

impl Store {
    /// Stores a new session and, if it has an initial prompt, the prompt as its first event.
    pub async fn create_session(
        &self,
        session: AgenticSession,
        sender: String,
    ) -> Result<SessionRow, StoreError> {
        let project = session.metadata.namespace.clone().unwrap_or_default();
        let name = session.metadata.name.clone().unwrap_or_default();
        let fanout = self.fanout().clone();
        let (p, n) = (project.clone(), name.clone());
        self.db()
            .write(move |tx, hooks| {
                let exists: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM projects WHERE name = ?1)", [&p], |r| r.get(0))?;
                if !exists {
                    return Err(StoreError::NotFound(format!("project '{p}'")));
                }
                let created = now_ms();
                let n_rows = tx.execute(
                    "INSERT INTO sessions (project, name, created_at, object) VALUES (?1, ?2, ?3, '{}')
                     ON CONFLICT (project, name) DO NOTHING",
                    params![p, n, created],
                )?;
                if n_rows == 0 {
                    return Err(StoreError::Conflict(format!("session '{n}' already exists in project '{p}'")));
                }
                let id = tx.last_insert_rowid();
                tx.execute("INSERT INTO session_log (session_id) VALUES (?1)", [id])?;
                write_object(tx, id, &session)?;
                if let Some(prompt) = session.spec.initial_prompt.clone().filter(|t| !t.trim().is_empty()) {
                    let event = SessionEvent::UserMessage(UserMessage { text: prompt, sender });
                    append_in_tx(tx, hooks, &fanout, id, created, &event)?;
                }
                Ok(())
            })
            .await?;
        self.session_row(&project, &name).await
    }

    /// A session with its bookkeeping.
    pub async fn session_row(&self, project: &str, name: &str) -> Result<SessionRow, StoreError> {
        let (p, n) = (project.to_owned(), name.to_owned());
        self.db()
            .read(move |c| select_row(c, &p, &n)?.ok_or_else(|| not_found(&p, &n)))
            .await
    }

    /// A session.
    pub async fn get_session(
        &self,
        project: &str,
        name: &str,
    ) -> Result<AgenticSession, StoreError> {
        Ok(self.session_row(project, name).await?.session)
    }

    /// A page of a project's sessions, newest first, optionally filtered by a search over
    /// name, display name and initial prompt.
    pub async fn list_sessions(
        &self,
        project: &str,
        search: Option<String>,
        offset: u64,
        limit: u64,
    ) -> Result<SessionList, StoreError> {
        let project = project.to_owned();
        self.db()
            .read(move |c| {
                let search = search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
                // Three characters or more: the trigram index. Fewer: a scan (rare, and
                // the index cannot answer it).
                let (filter, term) = match search {
                    None => ("project = ?1 AND ?2 IS NULL", None),
                    Some(s) if s.chars().count() >= 3 => (
                        "project = ?1 AND id IN (SELECT rowid FROM sessions_search WHERE sessions_search MATCH ?2)",
                        Some(format!("\"{}\"", s.replace('"', "\"\""))),
                    ),
                    Some(s) => (
                        "project = ?1 AND (name LIKE ?2 ESCAPE '\\' OR display_name LIKE ?2 ESCAPE '\\'
                            OR initial_prompt LIKE ?2 ESCAPE '\\')",
                        like_pattern(Some(&s)),
                    ),
                };
                let total: i64 = c
                    .prepare_cached(&format!("SELECT COUNT(*) FROM {FROM} WHERE {filter}"))?
                    .query_row(params![project, term], |r| r.get(0))?;
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM {FROM} WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
                ))?;
                let items = stmt
                    .query_map(params![project, term, limit as i64, offset as i64], row_to_session)?
                    .map(|r| r.map_err(StoreError::from).and_then(decode).map(|row| row.session))
                    .collect::<Result<Vec<_>, _>>()?;
                let total = total as u64;
                Ok(SessionList { has_more: offset + (items.len() as u64) < total, items, total_count: total, offset, limit })
            })
            .await
    }

    /// Changes a session with `f` (spec, annotations ...) and appends the event it returns,
    /// atomically. `f` sees the current session and may refuse with an error.
    pub async fn update_session<F>(
        &self,
        project: &str,
        name: &str,
        f: F,
    ) -> Result<SessionRow, StoreError>
    where
        F: FnOnce(&mut AgenticSession) -> Result<Option<SessionEvent>, StoreError> + Send + 'static,
    {
        let (p, n) = (project.to_owned(), name.to_owned());
        let fanout = self.fanout().clone();
        self.db()
            .write(move |tx, hooks| {
                let row = select_row(tx, &p, &n)?.ok_or_else(|| not_found(&p, &n))?;
                let mut session = row.session.clone();
                let event = f(&mut session)?;
                if session.spec != row.session.spec {
                    session.metadata.generation =
                        Some(session.metadata.generation.unwrap_or(1) + 1);
                }
                write_object(tx, row.id, &session)?;
                if let Some(event) = event {
                    append_in_tx(tx, hooks, &fanout, row.id, now_ms(), &event)?;
                }
                Ok(())
            })
            .await?;
        self.session_row(project, name).await
    }

    /// Deletes a session and its events.
    pub async fn delete_session(&self, project: &str, name: &str) -> Result<i64, StoreError> {
        let (p, n) = (project.to_owned(), name.to_owned());
        let fanout = self.fanout().clone();
        self.db()
            .write(move |tx, hooks| {
                let id: i64 = tx
                    .query_row(
                        "SELECT id FROM sessions WHERE project = ?1 AND name = ?2",
                        [&p, &n],
                        |r| r.get(0),
                    )
                    .optional()?
                    .ok_or_else(|| not_found(&p, &n))?;
                tx.execute("DELETE FROM events WHERE session_id = ?1", [id])?;
                tx.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
                hooks.push(move || fanout.close(id));
                Ok(id)
            })
            .await
    }

    /// Sessions the driver must look at after a start: not terminal, or with a desired phase.
    pub async fn unfinished_sessions(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.db()
            .read(|c| {
                let mut stmt = c.prepare(
                    "SELECT project, name FROM sessions WHERE phase NOT IN ('Stopped', 'Completed', 'Failed')
                     OR json_extract(object, '$.metadata.annotations.\"ambient-code.io/desired-phase\"') IS NOT NULL",
                )?;
                let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
    }

    /// Applies a lifecycle plan if the session is still at `resource_version`: status, the
    /// taken request's annotations, and the phase event, in one transaction. A session that
    /// completes with user messages nobody handled (sent while its runner was finishing) is
    /// continued at once.
    pub async fn save_plan(
        &self,
        project: &str,
        name: &str,
        resource_version: u64,
        plan: Plan,
    ) -> Result<(), StoreError> {
        let (p, n) = (project.to_owned(), name.to_owned());
        let fanout = self.fanout().clone();
        self.db()
            .write(move |tx, hooks| {
                let row = select_row(tx, &p, &n)?.ok_or_else(|| not_found(&p, &n))?;
                if row.resource_version != resource_version {
                    return Err(StoreError::Conflict("session changed".into()));
                }
                let mut session = row.session;
                if let Some(status) = plan.status {
                    session.status = Some(status);
                }
                if plan.clear_desired_phase
                    && let Some(a) = session.metadata.annotations.as_mut()
                {
                    for key in [DESIRED_PHASE, STOP_REASON, START_REQUESTED_AT, STOP_REQUESTED_AT] {
                        a.remove(key);
                    }
                }
                if session.phase() == Phase::Completed {
                    let pending: bool = tx.query_row(
                        "SELECT EXISTS (SELECT 1 FROM events WHERE session_id = ?1 AND seq > ?2 AND kind = 'user_message')",
                        params![row.id, row.handled_through as i64],
                        |r| r.get(0),
                    )?;
                    if pending {
                        session
                            .metadata
                            .annotations
                            .get_or_insert_with(Default::default)
                            .insert(DESIRED_PHASE.to_owned(), DESIRED_RUNNING.to_owned());
                    }
                }
                write_object(tx, row.id, &session)?;
                if let Some(change) = plan.event {
                    append_in_tx(tx, hooks, &fanout, row.id, now_ms(), &SessionEvent::Phase(change))?;
                }
                Ok(())
            })
            .await
    }

    /// Starts a new runner generation with a fresh token. Resuming needs a conversation to
    /// resume: a session whose agent never started runs fresh, its initial prompt included.
    /// Returns (generation, token, handled_through, resume).
    pub async fn begin_run(
        &self,
        project: &str,
        name: &str,
        resume: bool,
    ) -> Result<(u64, String, u64, bool), StoreError> {
        let (p, n) = (project.to_owned(), name.to_owned());
        let token = new_token();
        let hash = token_hash(&token);
        self.db()
            .write(move |tx, _| {
                let row = select_row(tx, &p, &n)?.ok_or_else(|| not_found(&p, &n))?;
                let has_conversation = row.session.status.as_ref().is_some_and(|s| s.sdk_session_id.is_some());
                let resume = resume && has_conversation;
                // A fresh run gets the initial prompt from its environment: the prompt's event
                // (the first user message) counts as handled.
                let handled = if resume {
                    row.handled_through
                } else {
                    tx.query_row(
                        "SELECT COALESCE(MIN(seq), 0) FROM events WHERE session_id = ?1 AND kind = 'user_message'",
                        [row.id],
                        |r| r.get::<_, i64>(0),
                    )? as u64
                };
                let generation = row.run_generation + 1;
                tx.execute(
                    "UPDATE sessions SET run_generation = ?2, runner_token_hash = ?3, runner_pid = NULL,
                         runner_start_ticks = NULL, run_summary = NULL
                     WHERE id = ?1",
                    params![row.id, generation as i64, hash],
                )?;
                tx.execute(
                    "UPDATE session_log SET runner_acked = 0, handled_through = MAX(handled_through, ?2)
                     WHERE session_id = ?1",
                    params![row.id, handled as i64],
                )?;
                Ok((generation, token, handled, resume))
            })
            .await
    }

    /// Records the process of `generation`'s runner.
    pub async fn record_runner(
        &self,
        project: &str,
        name: &str,
        generation: u64,
        process: RunnerProcess,
    ) -> Result<(), StoreError> {
        let (p, n) = (project.to_owned(), name.to_owned());
        self.db()
            .write(move |tx, _| {
                tx.execute(
                    "UPDATE sessions SET runner_pid = ?4, runner_start_ticks = ?5
                     WHERE project = ?1 AND name = ?2 AND run_generation = ?3",
                    params![
                        p,
                        n,
                        generation as i64,
                        process.pid as i64,
                        process.start_ticks as i64
                    ],
                )?;
                Ok(())
            })
            .await
    }

    /// Whether `token` is the current runner token of any session.
    pub async fn is_runner_token(&self, token: &str) -> Result<bool, StoreError> {
        let hash = token_hash(token);
        self.db()
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT EXISTS (SELECT 1 FROM sessions WHERE runner_token_hash = ?1)",
                    [hash],
                    |r| r.get(0),
                )?)
            })
            .await
    }
}

fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("art_{}", hex::encode(bytes))
}
