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
        match self.namespaces().get_opt(name).await.map_err(backend)? {
            Some(ns) if is_project(&ns) && ns.metadata.deletion_timestamp.is_none() => Ok(ns),
            _ => Err(RecordsError::NotFound(format!("project '{name}'"))),
        }
    }

    async fn session_count(&self, project: &str) -> Result<u64> {
        let list = self
            .sessions(project)
            .list_metadata(&ListParams::default())
            .await
            .map_err(backend)?;
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

fn backend(e: kube::Error) -> RecordsError {
    match e {
        kube::Error::Api(s) if s.is_not_found() => RecordsError::NotFound(s.message),
        kube::Error::Api(s) if s.is_forbidden() => RecordsError::Forbidden(s.message),
        kube::Error::Api(s) if s.code == 409 => RecordsError::Conflict(s.message),
        other => common_error(other),
    }
}

/// What is left once not-found, forbidden and conflicts are told: the caller's token no
/// longer accepted (it reads with its own), a request the API server finds invalid, or a
/// failure.
fn common_error(e: kube::Error) -> RecordsError {
    match e {
        kube::Error::Api(s) if s.code == 401 => RecordsError::Unauthorized(
            "the cluster no longer accepts your token: sign in again".into(),
        ),
        kube::Error::Api(s) if s.code == 422 => RecordsError::Invalid(s.message),
        other => RecordsError::Backend(other.to_string()),
    }
}

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
        kube::Error::Api(s) if s.is_forbidden() => RecordsError::Forbidden(s.message),
        other => common_error(other),
    }
}

/// The current run, as the operator recorded it in the status.
fn run_of(session: &AgenticSession) -> Run {
    let st = session.status.as_ref();
    Run {
        generation: st
            .and_then(|s| s.run_generation)
            .and_then(|g| u64::try_from(g).ok())
            .unwrap_or(0),
        token_hash: st
            .and_then(|s| s.runner_token_hash.as_deref())
            .and_then(|h| hex::decode(h).ok()),
    }
}

fn record(session: AgenticSession) -> SessionRecord {
    SessionRecord {
        run: run_of(&session),
        session,
    }
}

/// Case-insensitive substring search over name, display name and prompt.
fn matches(session: &AgenticSession, term: &str) -> bool {
    let term = term.to_lowercase();
    let name = session.name_any();
    [
        Some(name.as_str()),
        session.spec.display_name.as_deref(),
        session.spec.initial_prompt.as_deref(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.to_lowercase().contains(&term))
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

/// The project role a ClusterRole gives, if it is one of the project roles.
fn project_role(cluster_role: &str) -> Option<Role> {
    Role::ALL
        .into_iter()
        .find(|r| project_cluster_role((*r).into()) == cluster_role)
}

/// The user or group a binding's subject is (a ServiceAccount is the user the cluster
/// calls it).
fn subject_id(s: &Subject, project: &str) -> Option<(SubjectType, String)> {
    match s.kind.as_str() {
        "User" => Some((SubjectType::User, s.name.clone())),
        "Group" => Some((SubjectType::Group, s.name.clone())),
        "ServiceAccount" => Some((
            SubjectType::User,
            format!(
                "system:serviceaccount:{}:{}",
                s.namespace.as_deref().unwrap_or(project),
                s.name
            ),
        )),
        _ => None,
    }
}

/// Every permission a project's RoleBindings give.
fn permissions_of(bindings: &[RoleBinding], project: &str) -> Vec<Permission> {
    let mut out = Vec::new();
    for b in bindings {
        if b.role_ref.kind != "ClusterRole" {
            continue;
        }
        let Some(role) = project_role(&b.role_ref.name) else {
            continue;
        };
        let labels = b.labels();
        let source = if labels.get(PERMISSION_LABEL).is_some_and(|v| v == "true") {
            PermissionSource::Sharing
        } else if labels.contains_key(GROUP_ACCESS_LABEL) {
            PermissionSource::GroupAccess
        } else {
            PermissionSource::Binding
        };
        for s in b.subjects.iter().flatten() {
            if let Some((subject_type, subject_name)) = subject_id(s, project) {
                out.push(Permission {
                    subject_type,
                    subject_name,
                    role,
                    source,
                    binding: b.name_any(),
                });
            }
        }
    }
    out.sort_by(|a, b| {
        (a.subject_type, &a.subject_name, a.role).cmp(&(b.subject_type, &b.subject_name, b.role))
    });
    out
}

#[async_trait::async_trait]
impl Records for KubeRecords {
    async fn create_project(&self, caller: &Caller, project: NewProject) -> Result<Project> {
        let mut ns = Namespace::default();
        ns.metadata.name = Some(project.name.clone());
        ns.metadata.labels = Some(BTreeMap::from([
            (MANAGED_LABEL.to_owned(), "true".to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "ambient-code".to_owned(),
            ),
        ]));
        ns.metadata.annotations = Some(BTreeMap::from([
            (DISPLAY_NAME.to_owned(), project.display_name),
            (DESCRIPTION.to_owned(), project.description),
        ]));
        let created = match self.namespaces().create(&PostParams::default(), &ns).await {
            Ok(ns) => ns,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                return Err(RecordsError::Conflict(format!(
                    "project '{}' already exists",
                    project.name
                )));
            }
            Err(e) => return Err(backend(e)),
        };
        if let (Some(user), Some(identity)) = (caller.cluster_user(), &self.identity)
            && let Err(e) = identity.bind_creator(user, &project.name).await
        {
            // A project nobody may reach is no project: take it back.
            let _ = self
                .namespaces()
                .delete(&project.name, &DeleteParams::background())
                .await;
            return Err(RecordsError::Backend(format!(
                "giving the creator of '{}' its admin role: {e}",
                project.name
            )));
        }
        Ok(project_of(&created))
    }

    async fn permissions(&self, caller: &Caller, project: &str) -> Result<Vec<Permission>> {
        self.namespace(project).await?;
        let bindings = Api::<RoleBinding>::namespaced(self.reader(caller)?, project)
            .list(&ListParams::default())
            .await
            .map_err(backend)?;
        Ok(permissions_of(&bindings.items, project))
    }

    async fn grant(
        &self,
        caller: &Caller,
        project: &str,
        grant: &GrantRequest,
    ) -> Result<Permission> {
        self.namespace(project).await?;
        // Made with the caller's own identity: the cluster's own escalation check applies
        // (nobody gives a role they do not have).
        let api: Api<RoleBinding> = Api::namespaced(self.reader(caller)?, project);
        let subject = match grant.subject_type {
            SubjectType::User => crate::kube_identity::subject_of(&grant.subject_name),
            SubjectType::Group => group_subject(&grant.subject_name),
        };
        let name = binding_name(
            &format!("ambient-permission-{}-{}", grant.role, grant.subject_type),
            &grant.subject_name,
        );
        let mut binding = project_role_binding(&name, grant.role.into(), subject);
        binding.metadata.labels = Some(BTreeMap::from([
            (PERMISSION_LABEL.to_owned(), "true".to_owned()),
            (
                "app.kubernetes.io/managed-by".to_owned(),
                "ambient-code".to_owned(),
            ),
        ]));
        match api.create(&PostParams::default(), &binding).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                // Given before: it must be this very role for this very subject.
                let there = api.get(&name).await.map_err(backend)?;
                if there.role_ref != binding.role_ref || there.subjects != binding.subjects {
                    return Err(RecordsError::Conflict(format!(
                        "the RoleBinding {name} exists and gives something else; remove it first"
                    )));
                }
            }
            Err(e) => return Err(backend(e)),
        }
        // The role given before (another binding of the Sharing page) goes.
        let shared = api
            .list(&ListParams::default().labels(&format!("{PERMISSION_LABEL}=true")))
            .await
            .map_err(backend)?;
        let wanted = (grant.subject_type, grant.subject_name.clone());
        for old in permissions_of(&shared.items, project) {
            if (old.subject_type, old.subject_name.clone()) == wanted && old.binding != name {
                match api.delete(&old.binding, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.is_not_found() => {}
                    Err(e) => return Err(backend(e)),
                }
            }
        }
        Ok(Permission {
            subject_type: grant.subject_type,
            subject_name: grant.subject_name.clone(),
            role: grant.role,
            source: PermissionSource::Sharing,
            binding: name,
        })
    }

    async fn revoke(
        &self,
        caller: &Caller,
        project: &str,
        subject_type: SubjectType,
        subject_name: &str,
    ) -> Result<()> {
        self.namespace(project).await?;
        let api: Api<RoleBinding> = Api::namespaced(self.reader(caller)?, project);
        let all = api.list(&ListParams::default()).await.map_err(backend)?;
        let theirs: Vec<Permission> = permissions_of(&all.items, project)
            .into_iter()
            .filter(|p| p.subject_type == subject_type && p.subject_name == subject_name)
            .collect();
        let (shared, other): (Vec<_>, Vec<_>) = theirs
            .into_iter()
            .partition(|p| p.source == PermissionSource::Sharing);
        if shared.is_empty() {
            return Err(match other.first() {
                Some(p) => RecordsError::Conflict(format!(
                    "the {subject_type} {subject_name} has its role from the RoleBinding {} ({}); change it there",
                    p.binding,
                    if p.source == PermissionSource::GroupAccess {
                        "the project's groupAccess setting"
                    } else {
                        "made outside the Sharing page"
                    }
                )),
                None => RecordsError::NotFound(format!(
                    "a role of the {subject_type} {subject_name} in project '{project}'"
                )),
            });
        }
        for p in shared {
            match api.delete(&p.binding, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(backend(e)),
            }
        }
        Ok(())
    }

    async fn get_project(&self, _: &Caller, name: &str) -> Result<Project> {
        let ns = self.namespace(name).await?;
        self.project(&ns).await
    }

    async fn list_projects(&self, caller: &Caller, page: &Page) -> Result<ProjectList> {
        let list = self
            .namespaces()
            .list(&ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
            .await
            .map_err(backend)?;
        let term = search_term(page).map(|t| t.to_lowercase());
        let all: Vec<Project> = list
            .items
            .iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_none())
            .map(project_of)
            .filter(|p| {
                term.as_ref().is_none_or(|t| {
                    p.name.to_lowercase().contains(t) || p.display_name.to_lowercase().contains(t)
                })
            })
            .collect();
        let mut all = self.visible(caller, all).await?;
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let (mut items, total, has_more) = page_of(all, page);
        for p in &mut items {
            p.session_count = self.session_count(&p.name).await?;
        }
        Ok(ProjectList {
            items,
            total_count: total,
            offset: page.offset,
            limit: page.limit,
            has_more,
        })
    }

    async fn update_project(
        &self,
        _: &Caller,
        name: &str,
        display_name: Option<String>,
        description: Option<String>,
    ) -> Result<Project> {
        self.namespace(name).await?;
        let mut annotations = serde_json::Map::new();
        if let Some(d) = display_name {
            annotations.insert(DISPLAY_NAME.into(), json!(d));
        }
        if let Some(d) = description {
            annotations.insert(DESCRIPTION.into(), json!(d));
        }
        let patch = json!({"metadata": {"annotations": annotations}});
        let ns = self
            .namespaces()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(backend)?;
        self.project(&ns).await
    }

    async fn delete_project(&self, _: &Caller, name: &str) -> Result<Vec<Removed>> {
        self.namespace(name).await?;
        let sessions = self
            .sessions(name)
            .list_metadata(&ListParams::default())
            .await
            .map_err(backend)?;
        let removed = sessions
            .items
            .iter()
            .map(|s| Removed {
                name: s.name_any(),
                uid: s.uid().unwrap_or_default(),
            })
            .collect();
        // The namespace takes its sessions, their Jobs, Secrets and claims with it.
        self.namespaces()
            .delete(name, &DeleteParams::background())
            .await
            .map_err(backend)?;
        Ok(removed)
    }

    async fn project_settings(
        &self,
        caller: &Caller,
        project: &str,
    ) -> Result<ProjectSettingsSpec> {
        let api: Api<ProjectSettings> = Api::namespaced(self.reader(caller)?, project);
        match api.get_opt(SETTINGS_NAME).await.map_err(backend)? {
            Some(s) => Ok(s.spec),
            // Not made yet (the operator makes it): the defaults, if the project exists.
            None => {
                self.namespace(project).await?;
                Ok(ProjectSettingsSpec::default())
            }
        }
    }

    async fn set_project_settings(
        &self,
        _: &Caller,
        project: &str,
        settings: ProjectSettingsSpec,
    ) -> Result<()> {
        self.namespace(project).await?;
        let api: Api<ProjectSettings> = Api::namespaced(self.client.clone(), project);
        let patch = json!({
            "apiVersion": "vteam.ambient-code/v1alpha1",
            "kind": "ProjectSettings",
            "metadata": {"name": SETTINGS_NAME},
            "spec": settings,
        });
        api.patch(
            SETTINGS_NAME,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn credentials(&self, _: &Caller, project: &str) -> Result<Credentials> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), project);
        let mut creds = Credentials::default();
        match api.get_opt(RUNNER_SECRETS).await.map_err(backend)? {
            Some(secret) => {
                for (k, v) in secret.data.unwrap_or_default() {
                    if let Ok(v) = String::from_utf8(v.0) {
                        // Keys the platform does not know stay in the Secret, unused.
                        let _ = creds.set(&k, Some(v));
                    }
                }
            }
            None => {
                self.namespace(project).await?;
            }
        }
        Ok(creds)
    }

    async fn update_credentials(
        &self,
        _: &Caller,
        project: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<()> {
        self.namespace(project).await?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), project);
        if api
            .get_opt(RUNNER_SECRETS)
            .await
            .map_err(backend)?
            .is_none()
        {
            let mut secret = Secret::default();
            secret.metadata.name = Some(RUNNER_SECRETS.into());
            secret.type_ = Some("Opaque".into());
            match api.create(&PostParams::default(), &secret).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_already_exists() => {}
                Err(e) => return Err(backend(e)),
            }
        }
        // One patch: every change lands, or none.
        let mut set = serde_json::Map::new();
        let mut unset = serde_json::Map::new();
        for (k, v) in changes {
            match v {
                Some(v) => set.insert(k.clone(), json!(v)),
                None => unset.insert(k.clone(), serde_json::Value::Null),
            };
        }
        let patch = json!({"stringData": set, "data": unset});
        api.patch(
            RUNNER_SECRETS,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn create_session(
        &self,
        _: &Caller,
        mut session: AgenticSession,
    ) -> Result<SessionRecord> {
        let key = SessionKey::of(&session);
        self.namespace(&key.project).await?;
        // Identity and version are the API server's to give.
        session.metadata.uid = None;
        session.metadata.resource_version = None;
        session.metadata.creation_timestamp = None;
        let created = self
            .sessions(&key.project)
            .create(&PostParams::default(), &session)
            .await
            .map_err(|e| session_error(e, &key))?;
        Ok(record(created))
    }

    async fn get_session(&self, caller: &Caller, key: &SessionKey) -> Result<SessionRecord> {
        let s = Api::<AgenticSession>::namespaced(self.reader(caller)?, &key.project)
            .get(&key.name)
            .await
            .map_err(|e| session_error(e, key))?;
        Ok(record(s))
    }

    async fn list_sessions(
        &self,
        caller: &Caller,
        project: &str,
        page: &Page,
    ) -> Result<SessionList> {
        self.namespace(project).await?;
        let list = Api::<AgenticSession>::namespaced(self.reader(caller)?, project)
            .list(&ListParams::default())
            .await
            .map_err(backend)?;
        let term = search_term(page);
        let mut all: Vec<AgenticSession> = list
            .items
            .into_iter()
            .filter(|s| term.as_deref().is_none_or(|t| matches(s, t)))
            .collect();
        // Newest first; the name orders sessions made in the same second.
        all.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
                .then_with(|| b.name_any().cmp(&a.name_any()))
        });
        let (items, total, has_more) = page_of(all, page);
        Ok(SessionList {
            items,
            total_count: total,
            offset: page.offset,
            limit: page.limit,
            has_more,
        })
    }

    async fn replace_session(&self, _: &Caller, session: AgenticSession) -> Result<SessionRecord> {
        let key = SessionKey::of(&session);
        let replaced = self
            .sessions(&key.project)
            .replace(&key.name, &PostParams::default(), &session)
            .await
            .map_err(|e| session_error(e, &key))?;
        Ok(record(replaced))
    }

    async fn delete_session(&self, _: &Caller, key: &SessionKey) -> Result<Removed> {
        let api = self.sessions(&key.project);
        let s = api
            .get(&key.name)
            .await
            .map_err(|e| session_error(e, key))?;
        api.delete(&key.name, &DeleteParams::background())
            .await
            .map_err(|e| session_error(e, key))?;
        Ok(Removed {
            name: key.name.clone(),
            uid: s.uid().unwrap_or_default(),
        })
    }

    async fn set_sdk_session_id(
        &self,
        _: &Caller,
        key: &SessionKey,
        sdk_session_id: &str,
    ) -> Result<()> {
        self.patch_status(key, json!({"status": {"sdkSessionId": sdk_session_id}}))
            .await
    }
}
