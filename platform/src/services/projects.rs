//! Projects.

use model::api::{CreateProjectRequest, Project, ProjectList, UpdateProjectRequest};
use model::session::SessionKey;
use model::validate::{self, Invalid};

use super::Services;
use super::sessions::page;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::records::NewProject;

/// Prefixes of names kept for the platform and the cluster.
use model::validate::RESERVED_PROJECT_PREFIXES as RESERVED_PREFIXES;

use model::validate::MAX_DESCRIPTION;

fn description(d: Option<&String>) -> Result<(), Invalid> {
    if d.is_some_and(|d| d.len() > MAX_DESCRIPTION) {
        return Err(Invalid::new(
            "description",
            format!("must be at most {MAX_DESCRIPTION} bytes"),
        ));
    }
    Ok(())
}

impl Services {
    /// Creates a project.
    pub async fn create_project(
        &self,
        caller: &Caller,
        req: CreateProjectRequest,
    ) -> Result<Project, ApiError> {
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
        let display_name = req
            .display_name
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| req.name.clone());
        validate::display_name("displayName", &display_name)?;
        description(req.description.as_ref())?;
        let project = NewProject {
            name: req.name,
            display_name,
            description: req.description.unwrap_or_default(),
        };
        Ok(self.records.create_project(caller, project).await?)
    }

    /// A page of projects by name.
    pub async fn list_projects(
        &self,
        caller: &Caller,
        search: Option<String>,
        offset: Option<u64>,
        limit: Option<u64>,
    ) -> Result<ProjectList, ApiError> {
        let page = page(search, offset, limit)?;
        Ok(self.records.list_projects(caller, &page).await?)
    }

    /// A project.
    pub async fn get_project(&self, caller: &Caller, name: &str) -> Result<Project, ApiError> {
        Ok(self.records.get_project(caller, name).await?)
    }

    /// Changes a project's display name or description.
    pub async fn update_project(
        &self,
        caller: &Caller,
        name: &str,
        req: UpdateProjectRequest,
    ) -> Result<Project, ApiError> {
        if let Some(d) = &req.display_name {
            if d.trim().is_empty() {
                return Err(Invalid::new("displayName", "must not be empty").into());
            }
            validate::display_name("displayName", d)?;
        }
        description(req.description.as_ref())?;
        Ok(self
            .records
            .update_project(
                caller,
                name,
                req.display_name.map(|d| d.trim().to_owned()),
                req.description,
            )
            .await?)
    }

    /// Deletes a project: its sessions are stopped and removed with their logs and
    /// workspaces.
    pub async fn delete_project(&self, caller: &Caller, name: &str) -> Result<(), ApiError> {
        for removed in self.records.delete_project(caller, name).await? {
            self.forget(SessionKey::new(name, removed.name), &removed.uid)
                .await?;
        }
        Ok(())
    }
}
