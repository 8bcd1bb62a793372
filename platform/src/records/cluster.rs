//! [`Records`](super::Records) on the Kubernetes API (Kubernetes mode): a project is a
//! namespace labelled `ambient-code.io/managed=true` (its display name and description in
//! the OpenShift annotations the original uses), its settings the `ProjectSettings` named
//! `projectsettings`, its credentials the `ambient-runner-secrets` Secret, a session an
//! `AgenticSession` resource. A session made with `kubectl apply` is a session like any
//! other. The operator writes the status; the server writes only what it alone knows.
//!
//! A caller who is a Kubernetes identity ([`crate::auth::Access::Cluster`]) reads its
//! sessions and settings with a client of its own token, sees only the projects the cluster
//! lets it see, and is given the admin role in a project it creates; every write is made with
//! the server's ServiceAccount, after the services checked the caller's role
//! ([`crate::kube_identity`]).
//!
//! Layout: this file the client, the shared conversions and the [`Records`] seam; by
//! resource: [`projects`] (namespaces, settings, credentials), [`sharing`] (RoleBindings),
//! [`sessions`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use model::AgenticSession;
use model::ProjectSettings;
use model::api::{
    GrantRequest, Permission, PermissionSource, Project, ProjectList, Role, SessionList,
    SubjectType,
};
use model::project_settings::ProjectSettingsSpec;
use model::runner_env::Credentials;
use model::session::SessionKey;
use operator::cluster::build::RUNNER_SECRETS;
use operator::cluster::project::{
    GROUP_ACCESS_LABEL, MANAGED_LABEL, SETTINGS_NAME, binding_name, group_subject,
    project_cluster_role, project_role_binding,
};
use serde_json::json;

use super::{NewProject, Page, Records, RecordsError, Removed, Result, Run, SessionRecord};
use crate::auth::Caller;
use crate::kube_identity::KubeIdentity;

mod projects;
mod sessions;
mod sharing;

/// The annotation with a project's display name.
pub const DISPLAY_NAME: &str = "openshift.io/display-name";
/// The annotation with a project's description.
pub const DESCRIPTION: &str = "openshift.io/description";
/// The label of the RoleBindings the Sharing page makes (only those it changes or removes).
pub const PERMISSION_LABEL: &str = "ambient-code.io/permission";
/// The server's field manager.
const MANAGER: &str = "ambient-server";

/// Records in the cluster; cheap to clone.
#[derive(Clone)]
pub struct KubeRecords {
    client: Client,
    identity: Option<Arc<KubeIdentity>>,
}

impl KubeRecords {
    /// Records through `client` (the server's ServiceAccount, or a kubeconfig), for callers
    /// of the server's own (the owner, access keys).
    pub fn new(client: Client) -> Self {
        KubeRecords {
            client,
            identity: None,
        }
    }

    /// Records that also serve Kubernetes identities, as `identity` knows them.
    pub fn with_identity(client: Client, identity: Arc<KubeIdentity>) -> Self {
        KubeRecords {
            client,
            identity: Some(identity),
        }
    }

    /// The client reads for `caller` are made with: its own for a Kubernetes identity, the
    /// server's for anyone else.
    fn reader(&self, caller: &Caller) -> Result<Client> {
        match (caller.cluster_user(), &self.identity) {
            (Some(user), Some(identity)) => identity
                .reader(user)
                .map_err(|e| RecordsError::Backend(e.to_string())),
            (Some(_), None) => Err(RecordsError::Forbidden(
                "Kubernetes identities are not accepted here".into(),
            )),
            _ => Ok(self.client.clone()),
        }
    }

    /// Keeps of `projects` those `caller` may see (all, unless a Kubernetes identity).
    async fn visible(&self, caller: &Caller, projects: Vec<Project>) -> Result<Vec<Project>> {
        let (Some(user), Some(identity)) = (caller.cluster_user(), &self.identity) else {
            return Ok(projects);
        };
        // Ten reviews at a time (each asks the cluster a few questions, once per cache time).
        let mut roles = Vec::with_capacity(projects.len());
        for chunk in projects.chunks(10) {
            let mut asked = Vec::with_capacity(chunk.len());
            for p in chunk {
                asked.push(identity.role_in(user, &p.name));
            }
            roles.extend(futures::future::join_all(asked).await);
        }
        let mut out = Vec::new();
        for (p, role) in projects.into_iter().zip(roles) {
            if role
                .map_err(|e| RecordsError::Backend(e.to_string()))?
                .is_some()
            {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn sessions(&self, project: &str) -> Api<AgenticSession> {
        Api::namespaced(self.client.clone(), project)
    }

    fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.client.clone())
    }

    /// The project's namespace, if it is one (managed).
    async fn namespace(&self, name: &str) -> Result<Namespace> {
        match self
            .namespaces()
            .get_opt(name)
            .await
            .map_err(RecordsError::from)?
        {
            Some(ns) if is_project(&ns) && ns.metadata.deletion_timestamp.is_none() => Ok(ns),
            _ => Err(RecordsError::NotFound(format!("project '{name}'"))),
        }
    }

    async fn session_count(&self, project: &str) -> Result<u64> {
        let list = self
            .sessions(project)
            .list_metadata(&ListParams::default())
            .await
            .map_err(RecordsError::from)?;
        Ok(list.items.len() as u64)
    }

    async fn project(&self, ns: &Namespace) -> Result<Project> {
        let mut p = project_of(ns);
        p.session_count = self.session_count(&p.name).await?;
        Ok(p)
    }

    async fn patch_status(&self, key: &SessionKey, patch: serde_json::Value) -> Result<()> {
        self.sessions(&key.project)
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| session_error(e, key))?;
        Ok(())
    }
}

fn is_project(ns: &Namespace) -> bool {
    ns.labels().get(MANAGED_LABEL).map(String::as_str) == Some("true")
}

fn project_of(ns: &Namespace) -> Project {
    let annotation = |k: &str| ns.annotations().get(k).cloned().unwrap_or_default();
    let name = ns.name_any();
    let display = annotation(DISPLAY_NAME);
    Project {
        display_name: if display.is_empty() {
            name.clone()
        } else {
            display
        },
        description: annotation(DESCRIPTION),
        creation_timestamp: ns
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default(),
        name,
        session_count: 0,
        user_role: None,
    }
}

/// [`RecordsError`]'s mapping, naming the session.
fn session_error(e: kube::Error, key: &SessionKey) -> RecordsError {
    match e {
        kube::Error::Api(s) if s.is_not_found() => RecordsError::NotFound(format!(
            "session '{}' in project '{}'",
            key.name, key.project
        )),
        kube::Error::Api(s) if s.is_already_exists() => RecordsError::Conflict(format!(
            "session '{}' already exists in project '{}'",
            key.name, key.project
        )),
        kube::Error::Api(s) if s.code == 409 => {
            RecordsError::Conflict(format!("session '{}' changed since it was read", key.name))
        }
        other => other.into(),
    }
}

fn page_of<T>(mut items: Vec<T>, page: &Page) -> (Vec<T>, u64, bool) {
    let total = items.len() as u64;
    let start = usize::try_from(page.offset.min(total)).unwrap_or(usize::MAX);
    let items: Vec<T> = items
        .drain(start..)
        .take(usize::try_from(page.limit).unwrap_or(usize::MAX))
        .collect();
    let more = page.offset.saturating_add(items.len() as u64) < total;
    (items, total, more)
}

fn search_term(page: &Page) -> Option<String> {
    page.search
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

#[async_trait::async_trait]
impl Records for KubeRecords {
    async fn create_project(&self, caller: &Caller, project: NewProject) -> Result<Project> {
        projects::create_project(self, caller, project).await
    }

    async fn permissions(&self, caller: &Caller, project: &str) -> Result<Vec<Permission>> {
        sharing::permissions(self, caller, project).await
    }

    async fn grant(
        &self,
        caller: &Caller,
        project: &str,
        grant: &GrantRequest,
    ) -> Result<Permission> {
        sharing::grant(self, caller, project, grant).await
    }

    async fn revoke(
        &self,
        caller: &Caller,
        project: &str,
        subject_type: SubjectType,
        subject_name: &str,
    ) -> Result<()> {
        sharing::revoke(self, caller, project, subject_type, subject_name).await
    }

    async fn get_project(&self, _: &Caller, name: &str) -> Result<Project> {
        projects::get_project(self, name).await
    }

    async fn list_projects(&self, caller: &Caller, page: &Page) -> Result<ProjectList> {
        projects::list_projects(self, caller, page).await
    }

    async fn update_project(
        &self,
        _: &Caller,
        name: &str,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Project> {
        projects::update_project(self, name, display_name, description).await
    }

    async fn delete_project(&self, _: &Caller, name: &str) -> Result<Vec<Removed>> {
        projects::delete_project(self, name).await
    }

    async fn project_settings(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<ProjectSettingsSpec> {
        projects::project_settings(self, caller, project).await
    }

    async fn set_project_settings(
        &self,
        _: &Caller,
        project: &str,
        settings: ProjectSettingsSpec,
    ) -> Result<()> {
        projects::set_project_settings(self, project, settings).await
    }

    async fn credentials(&self, _: &Caller, project: &str) -> Result<Credentials> {
        projects::credentials(self, project).await
    }

    async fn update_credentials(
        &self,
        _: &Caller,
        project: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        projects::update_credentials(self, project, changes).await
    }

    async fn create_session(&self, _: &Caller, session: AgenticSession) -> Result<SessionRecord> {
        sessions::create_session(self, session).await
    }

    async fn get_session(&self, caller: &Caller, key: &SessionKey) -> Result<SessionRecord> {
        sessions::get_session(self, caller, key).await
    }

    async fn phase_counts(&self) -> Result<Vec<(String, String, u64)>> {
        // The server's own client (the follower watches every session with it too); the
        // project of a session is its namespace.
        let all: Api<AgenticSession> = Api::all(self.client.clone());
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for s in all.list(&ListParams::default()).await? {
            let project = s.namespace().unwrap_or_default();
            *counts
                .entry((project, s.phase().as_str().to_owned()))
                .or_default() += 1;
        }
        Ok(counts.into_iter().map(|((p, ph), n)| (p, ph, n)).collect())
    }

    async fn list_sessions(
        &self,
        caller: &Caller,
        project: &str,
        page: &Page,
    ) -> Result<SessionList> {
        sessions::list_sessions(self, caller, project, page).await
    }

    async fn replace_session(&self, _: &Caller, session: AgenticSession) -> Result<SessionRecord> {
        sessions::replace_session(self, session).await
    }

    async fn delete_session(&self, _: &Caller, key: &SessionKey) -> Result<Removed> {
        sessions::delete_session(self, key).await
    }

    async fn set_sdk_session_id(
        &self,
        _: &Caller,
        key: &SessionKey,
        sdk_session_id: &str,
    ) -> Result<()> {
        sessions::set_sdk_session_id(self, key, sdk_session_id).await
    }
}
