//! Sessions: the `AgenticSession` objects as JSON, with the columns that list, search and
//! find them, and the bookkeeping of their current run.

use model::AgenticSession;
use model::annotations::REQUEST_ANNOTATIONS;
use model::api::SessionList;
use model::session::AgenticSessionStatus;
use model::session::SessionKey;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::super::{Page, Removed, Run, SessionRecord};
use super::projects::{like_pattern, require_project};
use crate::db::{Db, StoreError, now_ms};

const COLUMNS: &str = "id, uid, object, resource_version, run_generation, runner_token_hash";

/// A row as read, before its object is decoded.
struct RawRow {
    id: i64,
    uid: Option<String>,
    object: String,
    resource_version: i64,
    run_generation: i64,
    token_hash: Option<Vec<u8>>,
}

fn raw_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok(RawRow {
        id: r.get(0)?,
        uid: r.get(1)?,
        object: r.get(2)?,
        resource_version: r.get(3)?,
        run_generation: r.get(4)?,
        token_hash: r.get(5)?,
    })
}

/// A decoded row: the record and its row id.
struct Row {
    id: i64,
    record: SessionRecord,
}

fn decode(raw: RawRow) -> Result<Row, StoreError> {
    let mut session: AgenticSession = serde_json::from_str(&raw.object)?;
    session.metadata.resource_version = Some(raw.resource_version.to_string());
    if raw.uid.is_some() {
        session.metadata.uid = raw.uid;
    }
    Ok(Row {
        id: raw.id,
        record: SessionRecord {
            session,
            run: Run {
                generation: raw.run_generation as u64,
                token_hash: raw.token_hash,
            },
        },
    })
}

fn select(c: &Connection, key: &SessionKey) -> Result<Option<Row>, StoreError> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE project = ?1 AND name = ?2"
    ))?
    .query_row([&key.project, &key.name], raw_row)
    .optional()?
    .map(decode)
    .transpose()
}

fn select_existing(c: &Connection, key: &SessionKey) -> Result<Row, StoreError> {
    select(c, key)?.ok_or_else(|| not_found(key))
}

fn not_found(key: &SessionKey) -> StoreError {
    StoreError::NotFound(format!(
        "session '{}' in project '{}'",
        key.name, key.project
    ))
}

/// The resource version a write names, as stored.
fn version(resource_version: Option<&str>) -> Result<i64, StoreError> {
    resource_version
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Conflict("the session has no valid resourceVersion".into()))
}

/// Writes `session` into row `id`, bumping its resource version.
fn write_object(tx: &Transaction<'_>, id: i64, session: &AgenticSession) -> Result<(), StoreError> {
    let mut stored = session.clone();
    stored.metadata.resource_version = None;
    let phase = session.phase().as_str();
    let display = session.spec.display_name.clone().unwrap_or_default();
    let prompt = session.spec.initial_prompt.clone().unwrap_or_default();
    tx.execute(
        "UPDATE sessions SET object = ?2, phase = ?3, display_name = ?4, initial_prompt = ?5,
             resource_version = resource_version + 1 WHERE id = ?1",
        params![id, serde_json::to_string(&stored)?, phase, display, prompt],
    )?;
    Ok(())
}

/// Reads a session in `tx`, checks its version, lets `f` change it, writes it back.
fn modify(
    tx: &Transaction<'_>,
    key: &SessionKey,
    expected: Option<i64>,
    f: impl FnOnce(&mut AgenticSession),
) -> Result<(), StoreError> {
    let row = select_existing(tx, key)?;
    let current = version(row.record.session.metadata.resource_version.as_deref())?;
    if expected.is_some_and(|v| v != current) {
        return Err(StoreError::Conflict(format!(
            "session '{}' changed since it was read",
            key.name
        )));
    }
    let mut session = row.record.session;
    f(&mut session);
    write_object(tx, row.id, &session)
}

/// Stores a new session.
pub(super) async fn create(
    db: &Db,
    mut session: AgenticSession,
) -> Result<SessionRecord, StoreError> {
    let key = SessionKey::of(&session);
    let uid = session
        .metadata
        .uid
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string())
        .clone();
    let k = key.clone();
    db.write(move |tx, _| {
        require_project(tx, &k.project)?;
        let n = tx.execute(
            "INSERT INTO sessions (project, name, uid, created_at, object) VALUES (?1, ?2, ?3, ?4, '{}')
             ON CONFLICT (project, name) DO NOTHING",
            params![k.project, k.name, uid, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "session '{}' already exists in project '{}'",
                k.name, k.project
            )));
        }
        write_object(tx, tx.last_insert_rowid(), &session)
    })
    .await?;
    get(db, &key).await
}

/// A session.
pub(super) async fn get(db: &Db, key: &SessionKey) -> Result<SessionRecord, StoreError> {
    let key = key.clone();
    db.read(move |c| Ok(select_existing(c, &key)?.record)).await
}

/// How many sessions each project has in each phase.
pub(super) async fn phase_counts(db: &Db) -> Result<Vec<(String, String, u64)>, StoreError> {
    db.read(|c| {
        let mut stmt = c.prepare_cached(
            "SELECT project, phase, COUNT(*) FROM sessions GROUP BY project, phase",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    })
    .await
}

/// A page of a project's sessions, newest first, optionally filtered by a search over name,
/// display name and initial prompt.
pub(super) async fn list(db: &Db, project: &str, page: Page) -> Result<SessionList, StoreError> {
    let project = project.to_owned();
    let Page {
        search,
        offset,
        limit,
    } = page;
    db.read(move |c| {
        let search = search.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        // Three characters or more: the trigram index. Fewer: a scan (rare, and the index
        // cannot answer it).
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
            .prepare_cached(&format!("SELECT COUNT(*) FROM sessions WHERE {filter}"))?
            .query_row(params![project, term], |r| r.get(0))?;
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE {filter} ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4"
        ))?;
        let items = stmt
            .query_map(params![project, term, limit as i64, offset as i64], raw_row)?
            .map(|r| r.map_err(StoreError::from).and_then(decode).map(|row| row.record.session))
            .collect::<Result<Vec<_>, _>>()?;
        let total = total as u64;
        Ok(SessionList {
            has_more: offset + (items.len() as u64) < total,
            items,
            total_count: total,
            offset,
            limit,
        })
    })
    .await
}

/// Writes a session's metadata and spec back if it is still at its resource version.
pub(super) async fn replace(db: &Db, session: AgenticSession) -> Result<SessionRecord, StoreError> {
    let key = SessionKey::of(&session);
    let expected = version(session.metadata.resource_version.as_deref())?;
    let k = key.clone();
    db.write(move |tx, _| {
        modify(tx, &k, Some(expected), |stored| {
            let spec_changed = stored.spec != session.spec;
            let generation = stored.metadata.generation.unwrap_or(1);
            let status = stored.status.take();
            *stored = session;
            stored.status = status;
            stored.metadata.generation = Some(generation + i64::from(spec_changed));
        })
    })
    .await?;
    get(db, &key).await
}

/// Deletes a session.
pub(super) async fn delete(db: &Db, key: &SessionKey) -> Result<Removed, StoreError> {
    let key = key.clone();
    db.write(move |tx, _| {
        let uid: String = tx
            .query_row(
                "DELETE FROM sessions WHERE project = ?1 AND name = ?2 RETURNING uid",
                [&key.project, &key.name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| not_found(&key))?;
        Ok(Removed {
            name: key.name.clone(),
            uid,
        })
    })
    .await
}

/// Sessions the driver must look at after a start: not finished, or with a desired phase.
pub(super) async fn unfinished(db: &Db) -> Result<Vec<SessionKey>, StoreError> {
    db.read(|c| {
        let mut stmt = c.prepare(
            "SELECT project, name FROM sessions WHERE phase NOT IN ('Stopped', 'Completed', 'Failed')
             OR json_extract(object, '$.metadata.annotations.\"ambient-code.io/desired-phase\"') IS NOT NULL",
        )?;
        let rows = stmt
            .query_map([], |r| Ok(SessionKey::new(r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    })
    .await
}

/// Writes a status and removes the request annotations, if the session is still at
/// `resource_version`.
pub(super) async fn save_status(
    db: &Db,
    key: &SessionKey,
    resource_version: &str,
    status: Option<AgenticSessionStatus>,
    clear_requests: bool,
) -> Result<(), StoreError> {
    let key = key.clone();
    let expected = version(Some(resource_version))?;
    db.write(move |tx, _| {
        modify(tx, &key, Some(expected), |session| {
            if let Some(mut status) = status {
                // The event log keeps the last activity (it moves with every event).
                status.last_activity_time = None;
                session.status = Some(status);
            }
            if clear_requests && let Some(a) = session.metadata.annotations.as_mut() {
                for k in REQUEST_ANNOTATIONS {
                    a.remove(k);
                }
            }
        })
    })
    .await
}

/// Records a new run.
pub(super) async fn set_run(db: &Db, key: &SessionKey, run: Run) -> Result<(), StoreError> {
    let key = key.clone();
    db.write(move |tx, _| {
        let n = tx.execute(
            "UPDATE sessions SET run_generation = ?3, runner_token_hash = ?4,
                 resource_version = resource_version + 1
             WHERE project = ?1 AND name = ?2",
            params![key.project, key.name, run.generation as i64, run.token_hash],
        )?;
        if n == 0 {
            return Err(not_found(&key));
        }
        Ok(())
    })
    .await
}

/// Records the hash of the session's files-runner token in its status.
pub(super) async fn set_files_token_hash(
    db: &Db,
    key: &SessionKey,
    hash: String,
) -> Result<(), StoreError> {
    let key = key.clone();
    db.write(move |tx, _| {
        modify(tx, &key, None, |session| {
            session
                .status
                .get_or_insert_with(Default::default)
                .files_token_hash = Some(hash);
        })
    })
    .await
}

/// Records the agent's conversation id in the session's status.
pub(super) async fn set_sdk_session_id(
    db: &Db,
    key: &SessionKey,
    id: &str,
) -> Result<(), StoreError> {
    let (key, id) = (key.clone(), id.to_owned());
    db.write(move |tx, _| {
        modify(tx, &key, None, |session| {
            session
                .status
                .get_or_insert_with(Default::default)
                .sdk_session_id = Some(id);
        })
    })
    .await
}
