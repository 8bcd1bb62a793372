//! Projects, their settings and their credentials.

use model::api::{Project, ProjectList};
use model::project_settings::ProjectSettingsSpec;
use model::runner_env::Credentials;
use rusqlite::{OptionalExtension, params};

use super::super::{NewProject, Page, Removed};
use crate::db::{Db, StoreError, now_ms};

fn rfc3339(ms: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn row_to_project(row: &rusqlite::Row<'_>) -> rusqlite::Result<Project> {
    Ok(Project {
        name: row.get(0)?,
        display_name: row.get(1)?,
        description: row.get(2)?,
        creation_timestamp: rfc3339(row.get(3)?),
        session_count: row.get::<_, i64>(4)? as u64,
        user_role: None,
    })
}

const SELECT: &str = "SELECT p.name, p.display_name, p.description, p.created_at,
        (SELECT COUNT(*) FROM sessions s WHERE s.project = p.name) FROM projects p";

/// Creates a project; [`StoreError::Conflict`] if the name is taken.
pub(super) async fn create(db: &Db, project: NewProject) -> Result<Project, StoreError> {
    db.write(move |tx, _| {
        let NewProject {
            name,
            display_name,
            description,
        } = project;
        let created = now_ms();
        let n = tx.execute(
            "INSERT INTO projects (name, display_name, description, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO NOTHING",
            params![name, display_name, description, created],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("project '{name}' already exists")));
        }
        Ok(Project {
            name,
            display_name,
            description,
            creation_timestamp: rfc3339(created),
            session_count: 0,
            user_role: None,
        })
    })
    .await
}

/// A project by name.
pub(super) async fn get(db: &Db, name: &str) -> Result<Project, StoreError> {
    let name = name.to_owned();
    db.read(move |c| {
        c.query_row(
            &format!("{SELECT} WHERE p.name = ?1"),
            [&name],
            row_to_project,
        )
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("project '{name}'")))
    })
    .await
}

/// A page of projects by name, optionally filtered by a search over name and display name.
pub(super) async fn list(db: &Db, page: Page) -> Result<ProjectList, StoreError> {
    let Page {
        search,
        offset,
        limit,
    } = page;
    db
            .read(move |c| {
                let pattern = like_pattern(search.as_deref());
                let total: i64 = c.query_row(
                    "SELECT COUNT(*) FROM projects WHERE ?1 IS NULL OR name LIKE ?1 ESCAPE '\\' OR display_name LIKE ?1 ESCAPE '\\'",
                    [&pattern],
                    |r| r.get(0),
                )?;
                let mut stmt = c.prepare(&format!(
                    "{SELECT} WHERE ?1 IS NULL OR p.name LIKE ?1 ESCAPE '\\' OR p.display_name LIKE ?1 ESCAPE '\\'
                     ORDER BY p.name LIMIT ?2 OFFSET ?3"
                ))?;
                let items = stmt
                    .query_map(params![pattern, limit as i64, offset as i64], row_to_project)?
                    .collect::<Result<Vec<_>, _>>()?;
                let total = total as u64;
                Ok(ProjectList { has_more: offset + (items.len() as u64) < total, items, total_count: total, offset, limit })
            })
            .await
}

/// Updates a project's display name and description.
pub(super) async fn update(
    db: &Db,
    name: &str,
    display_name: Option<String>,
    description: Option<String>,
) -> Result<Project, StoreError> {
    let n = name.to_owned();
    db
            .write(move |tx, _| {
                let changed = tx.execute(
                    "UPDATE projects SET display_name = COALESCE(?2, display_name), description = COALESCE(?3, description)
                     WHERE name = ?1",
                    params![n, display_name, description],
                )?;
                if changed == 0 {
                    return Err(StoreError::NotFound(format!("project '{n}'")));
                }
                Ok(())
            })
            .await?;
    get(db, name).await
}

/// Deletes a project with its sessions and credentials; returns the sessions.
pub(super) async fn delete(db: &Db, name: &str) -> Result<Vec<Removed>, StoreError> {
    let name = name.to_owned();
    db.write(move |tx, _| {
        let removed = tx
            .prepare("SELECT name, uid FROM sessions WHERE project = ?1")?
            .query_map([&name], |r| {
                Ok(Removed {
                    name: r.get(0)?,
                    uid: r.get(1)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if tx.execute("DELETE FROM projects WHERE name = ?1", [&name])? == 0 {
            return Err(StoreError::NotFound(format!("project '{name}'")));
        }
        Ok(removed)
    })
    .await
}

/// The project's settings (inactivity default, MCP servers ...).
pub(super) async fn settings(db: &Db, name: &str) -> Result<ProjectSettingsSpec, StoreError> {
    let name = name.to_owned();
    db.read(move |c| {
        let json: String = c
            .query_row(
                "SELECT settings FROM projects WHERE name = ?1",
                [&name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("project '{name}'")))?;
        Ok(serde_json::from_str(&json)?)
    })
    .await
}

/// Replaces the project's settings.
pub(super) async fn set_settings(
    db: &Db,
    name: &str,
    settings: ProjectSettingsSpec,
) -> Result<(), StoreError> {
    let name = name.to_owned();
    let json = serde_json::to_string(&settings)?;
    db.write(move |tx, _| {
        if tx.execute(
            "UPDATE projects SET settings = ?2 WHERE name = ?1",
            params![name, json],
        )? == 0
        {
            return Err(StoreError::NotFound(format!("project '{name}'")));
        }
        Ok(())
    })
    .await
}

/// Sets (`Some`) or removes (`None`) credentials of a project, atomically.
pub(super) async fn update_credentials(
    db: &Db,
    project: &str,
    changes: Vec<(String, Option<String>)>,
) -> Result<(), StoreError> {
    let project = project.to_owned();
    db.write(move |tx, _| {
        require_project(tx, &project)?;
        for (key, value) in changes {
            match value {
                Some(v) => tx.execute(
                    "INSERT INTO secrets (project, key, value) VALUES (?1, ?2, ?3)
                             ON CONFLICT (project, key) DO UPDATE SET value = excluded.value",
                    params![project, key, v],
                )?,
                None => tx.execute(
                    "DELETE FROM secrets WHERE project = ?1 AND key = ?2",
                    params![project, key],
                )?,
            };
        }
        Ok(())
    })
    .await
}

/// The project's credentials.
pub(super) async fn credentials(db: &Db, project: &str) -> Result<Credentials, StoreError> {
    let project = project.to_owned();
    db.read(move |c| {
        require_project(c, &project)?;
        let mut out = Credentials::default();
        let mut stmt = c.prepare("SELECT key, value FROM secrets WHERE project = ?1")?;
        for row in stmt.query_map([&project], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))? {
            let (key, value) = row?;
            out.set(&key, Some(value))
                .map_err(|k| StoreError::Corrupt(format!("unknown credential {k}")))?;
        }
        Ok(out)
    })
    .await
}

/// [`StoreError::NotFound`] unless the project exists.
pub(super) fn require_project(c: &rusqlite::Connection, name: &str) -> Result<(), StoreError> {
    let exists: bool = c.query_row(
        "SELECT EXISTS (SELECT 1 FROM projects WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )?;
    if !exists {
        return Err(StoreError::NotFound(format!("project '{name}'")));
    }
    Ok(())
}

/// A LIKE pattern matching `search` anywhere, with LIKE's wildcards escaped.
pub(crate) fn like_pattern(search: Option<&str>) -> Option<String> {
    let s = search.map(str::trim).filter(|s| !s.is_empty())?;
    let escaped = s
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    Some(format!("%{escaped}%"))
}
