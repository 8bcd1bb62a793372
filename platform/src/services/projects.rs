//! Projects.

use model::api::{CreateProjectRequest, Project, ProjectAccess, ProjectList, UpdateProjectRequest};
use model::session::SessionKey;
use model::validate::{self, Invalid};

use super::Services;
use super::sessions::page;
use crate::auth::{Caller, Role};
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
        if !self.may_create_projects(caller).await? {
            return Err(ApiError::Forbidden(match caller.cluster_user() {
                Some(_) => "the cluster does not let you create projects (an administrator binds you to the ClusterRole ambient-project-creator)".into(),
                None => "only the installation's owner can create projects".into(),
            }));
        }
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
        let mut created = self.records.create_project(caller, project).await?;
        // Keys of an earlier project of this name (its namespace deleted with kubectl, which
        // the server does not see) do not open the new one.
        self.identities.revoke_project_keys(&created.name).await?;
        created.user_role = self.role_in(caller, &created.name).await?;
        Ok(created)
    }

    /// Whether the caller may make projects: the owner; in Kubernetes mode, whoever the
    /// cluster lets (it is given the admin role in what it makes).
    pub async fn may_create_projects(&self, caller: &Caller) -> Result<bool, ApiError> {
        self.people.may_make_projects(caller).await
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
        // A project's key sees its project, if the search matches it, and nothing else.
        if let Some(only) = caller.only_project() {
            let project = self.records.get_project(caller, only).await?;
            let wanted = page
                .search
                .as_deref()
                .map(str::trim)
                .unwrap_or_default()
                .to_lowercase();
            let matches = [&project.name, &project.display_name]
                .iter()
                .any(|n| n.to_lowercase().contains(&wanted));
            let items: Vec<Project> = if matches && page.offset == 0 {
                vec![Project {
                    user_role: caller.role_in(only),
                    ..project
                }]
            } else {
                Vec::new()
            };
            return Ok(ProjectList {
                total_count: u64::from(matches),
                items,
                offset: page.offset,
                limit: page.limit,
                has_more: false,
            });
        }
        let mut list = self.records.list_projects(caller, &page).await?;
        for p in &mut list.items {
            p.user_role = self.role_in(caller, &p.name).await?;
        }
        Ok(list)
    }

    /// What the caller may do in `project`.
    pub async fn project_access(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<ProjectAccess, ApiError> {
        validate::dns1123_label("project", project)?;
        let role = self.role_in(caller, project).await?;
        if role.is_some() {
            // A project that does not exist is 404 to whoever could see it.
            self.records.get_project(caller, project).await?;
        }
        Ok(ProjectAccess {
            project: project.to_owned(),
            allowed: role.is_some(),
            user_role: role,
            owner: caller.is_owner(),
            reason: role
                .is_none()
                .then(|| format!("you have no access to project {project}")),
        })
    }

    /// A project.
    pub async fn get_project(&self, caller: &Caller, name: &str) -> Result<Project, ApiError> {
        self.require(caller, name, Role::View).await?;
        let project = self.records.get_project(caller, name).await?;
        Ok(Project {
            user_role: self.role_in(caller, name).await?,
            ..project
        })
    }

    /// Changes a project's display name or description.
    pub async fn update_project(
        &self,
        caller: &Caller,
        name: &str,
        req: UpdateProjectRequest,
    ) -> Result<Project, ApiError> {
        self.require(caller, name, Role::Admin).await?;
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
        self.require(caller, name, Role::Admin).await?;
        for removed in self.records.delete_project(caller, name).await? {
            self.forget(SessionKey::new(name, removed.name), &removed.uid)
                .await?;
        }
        // Its keys go with it: a project made again by the same name is not theirs.
        self.identities.revoke_project_keys(name).await?;
        Ok(())
    }
}
