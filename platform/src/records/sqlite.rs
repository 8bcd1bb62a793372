//! [`Records`](super::Records) in the embedded SQLite database (local mode): projects with
//! their settings and credentials, and sessions as JSON objects beside the columns that list
//! and search them.
//!
//! Layout: [`projects`] (projects, settings, credentials), [`sessions`].

mod projects;
mod sessions;

use model::AgenticSession;
use model::api::{Project, ProjectList, SessionList};
use model::project_settings::ProjectSettingsSpec;
use model::runner_env::Credentials;
use model::session::AgenticSessionStatus;
use model::session::SessionKey;

use super::{NewProject, Page, Records, Removed, Result, Run, SessionRecord};
use crate::auth::Caller;
use crate::db::Db;

/// Records in SQLite; cheap to clone.
#[derive(Clone)]
pub struct SqliteRecords {
    db: Db,
}

impl SqliteRecords {
    /// Records in `db` (which the event log may share).
    pub fn new(db: Db) -> Self {
        SqliteRecords { db }
    }

    // The local driver's bookkeeping (`crate::local`): in Kubernetes mode the operator keeps
    // it in the cluster, so it is no part of [`Records`].

    /// Sessions the local driver must look at after a start: not finished, or with a request.
    pub async fn unfinished_sessions(&self) -> Result<Vec<SessionKey>> {
        Ok(sessions::unfinished(&self.db).await?)
    }

    /// Writes a session's status (what the lifecycle decided), and removes the request
    /// annotations (`clear_requests`: every one of `REQUEST_ANNOTATIONS`), if it is still
    /// at `resource_version`.
    pub async fn save_status(
        &self,
        key: &SessionKey,
        resource_version: &str,
        status: Option<AgenticSessionStatus>,
        clear_requests: bool,
    ) -> Result<()> {
        Ok(sessions::save_status(&self.db, key, resource_version, status, clear_requests).await?)
    }

    /// Records a new run of a session.
    pub async fn set_run(&self, key: &SessionKey, run: Run) -> Result<()> {
        Ok(sessions::set_run(&self.db, key, run).await?)
    }

    /// Records the hash (hex) of a session's files-runner token.
    pub async fn set_files_token_hash(&self, key: &SessionKey, hash: String) -> Result<()> {
        Ok(sessions::set_files_token_hash(&self.db, key, hash).await?)
    }
}

/// Local mode has one user, who may do everything: the caller decides nothing here yet.
#[async_trait::async_trait]
impl Records for SqliteRecords {
    async fn create_project(&self, _: &Caller, project: NewProject) -> Result<Project> {
        Ok(projects::create(&self.db, project).await?)
    }

    async fn get_project(&self, _: &Caller, name: &str) -> Result<Project> {
        Ok(projects::get(&self.db, name).await?)
    }

    async fn list_projects(&self, _: &Caller, page: &Page) -> Result<ProjectList> {
        Ok(projects::list(&self.db, page.clone()).await?)
    }

    async fn update_project(
        &self,
        _: &Caller,
        name: &str,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Project> {
        Ok(projects::update(&self.db, name, display_name, description).await?)
    }

    async fn delete_project(&self, _: &Caller, name: &str) -> Result<Vec<Removed>> {
        Ok(projects::delete(&self.db, name).await?)
    }

    async fn project_settings(&self, _: &Caller, project: &str) -> Result<ProjectSettingsSpec> {
        Ok(projects::settings(&self.db, project).await?)
    }

    async fn set_project_settings(
        &self,
        _: &Caller,
        project: &str,
        settings: ProjectSettingsSpec,
    ) -> Result<()> {
        Ok(projects::set_settings(&self.db, project, settings).await?)
    }

    async fn credentials(&self, _: &Caller, project: &str) -> Result<Credentials> {
        Ok(projects::credentials(&self.db, project).await?)
    }

    async fn update_credentials(
        &self,
        _: &Caller,
        project: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        Ok(projects::update_credentials(&self.db, project, changes.to_vec()).await?)
    }

    async fn create_session(&self, _: &Caller, session: AgenticSession) -> Result<SessionRecord> {
        Ok(sessions::create(&self.db, session).await?)
    }

    async fn get_session(&self, _: &Caller, key: &SessionKey) -> Result<SessionRecord> {
        Ok(sessions::get(&self.db, key).await?)
    }

    async fn phase_counts(&self) -> Result<Vec<(String, String, u64)>> {
        Ok(sessions::phase_counts(&self.db).await?)
    }

    async fn list_sessions(&self, _: &Caller, project: &str, page: &Page) -> Result<SessionList> {
        Ok(sessions::list(&self.db, project, page.clone()).await?)
    }

    async fn replace_session(&self, _: &Caller, session: AgenticSession) -> Result<SessionRecord> {
        Ok(sessions::replace(&self.db, session).await?)
    }

    async fn delete_session(&self, _: &Caller, key: &SessionKey) -> Result<Removed> {
        Ok(sessions::delete(&self.db, key).await?)
    }

    async fn set_sdk_session_id(
        &self,
        _: &Caller,
        key: &SessionKey,
        sdk_session_id: &str,
    ) -> Result<()> {
        Ok(sessions::set_sdk_session_id(&self.db, key, sdk_session_id).await?)
    }
}
