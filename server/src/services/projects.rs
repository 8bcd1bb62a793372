//! Projects.

use model::api::{CreateProjectRequest, Project, ProjectList, UpdateProjectRequest};
use model::validate::{self, Invalid};
use operator::SessionKey;

use super::Services;
use super::sessions::{DEFAULT_PAGE, MAX_PAGE};
use crate::error::ApiError;

/// Prefixes of names kept for the platform and the cluster.
const RESERVED_PREFIXES: &[&str] = &["kube-", "openshift-", "ambient-code"];

impl Services {
    /// Creates a project.
    pub async fn create_project(&self, req: CreateProjectRequest) -> Result<Project, ApiError> {
        validate::dns1123_label("name", &req.name)?;
        if RESERVED_PREFIXES.iter().any(|p| req.name.starts_with(p)) {
            return Err(Invalid::new(
                "name",
                format!(
                    "names starting with {} are reserved",
                    RESERVED_PREFIXES.join(", ")
                ),
            )
            .into());
        }
        let display = req
            .display_name
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| req.name.clone());
        validate::display_name("displayName", &display)?;
        let description = req.description.unwrap_or_default();
        if description.len() > 2000 {
            return Err(Invalid::new("description", "must be at most 2000 bytes").into());
        }
        Ok(self
            .store
            .create_project(&req.name, &display, &description)
            .await?)
    }

    /// A page of projects by name.
    pub async fn list_projects(
        &self,
        search: Option<String>,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> Result<ProjectList, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(Invalid::new("limit", format!("must be between 1 and {MAX_PAGE}")).into());
        }
        Ok(self
            .store
            .list_projects(search, offset.unwrap_or(0), limit)
            .await?)
    }

    /// A project.
    pub async fn get_project(&self, name: &str) -> Result<Project, ApiError> {
        Ok(self.store.get_project(name).await?)
    }

    /// Changes a project's display name or description.
    pub async fn update_project(
        &self,
        name: &str,
        req: UpdateProjectRequest,
    ) -> Result<Project, ApiError> {
        if let Some(d) = &req.display_name {
            if d.trim().is_empty() {
                return Err(Invalid::new("displayName", "must not be empty").into());
            }
            validate::display_name("displayName", d)?;
        }
        if req.description.as_ref().is_some_and(|d| d.len() > 2000) {
            return Err(Invalid::new("description", "must be at most 2000 bytes").into());
        }
        Ok(self
            .store
            .update_project(
                name,
                req.display_name.map(|d| d.trim().to_owned()),
                req.description,
            )
            .await?)
    }

    /// Deletes a project: its sessions are stopped and removed with their workspaces.
    pub async fn delete_project(&self, name: &str) -> Result<(), ApiError> {
        for session in self.store.delete_project(name).await? {
            let workspace = self.store.workspace(name, &session);
            self.driver
                .delete(SessionKey::new(name, session), workspace);
        }
        Ok(())
    }

    /// Deletes a session: its runner and every process it started are killed and its
    /// workspace removed.
    pub async fn delete_session(&self, project: &str, name: &str) -> Result<(), ApiError> {
        self.store.delete_session(project, name).await?;
        self.driver.delete(
            SessionKey::new(project, name),
            self.store.workspace(project, name),
        );
        Ok(())
    }
}
