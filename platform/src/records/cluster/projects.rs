//! Projects in the cluster: managed namespaces, their `ProjectSettings` and the
//! `ambient-runner-secrets` Secret.

use super::*;

pub(super) async fn create_project(
    r: &KubeRecords,
    caller: &Caller,
    project: NewProject,
) -> Result<Project> {
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
    let created = match r.namespaces().create(&PostParams::default(), &ns).await {
        Ok(ns) => ns,
        Err(kube::Error::Api(s)) if s.is_already_exists() => {
            return Err(RecordsError::Conflict(format!(
                "project '{}' already exists",
                project.name
            )));
        }
        Err(e) => return Err(RecordsError::from(e)),
    };
    if let (Some(user), Some(identity)) = (caller.cluster_user(), &r.identity)
        && let Err(e) = identity.bind_creator(user, &project.name).await
    {
        // A project nobody may reach is no project: take it back.
        let _ = r
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

pub(super) async fn get_project(r: &KubeRecords, name: &str) -> Result<Project> {
    let ns = r.namespace(name).await?;
    r.project(&ns).await
}

pub(super) async fn list_projects(
    r: &KubeRecords,
    caller: &Caller,
    page: &Page,
) -> Result<ProjectList> {
    let list = r
        .namespaces()
        .list(&ListParams::default().labels(&format!("{MANAGED_LABEL}=true")))
        .await
        .map_err(RecordsError::from)?;
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
    let mut all = r.visible(caller, all).await?;
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let (mut items, total, has_more) = page_of(all, page);
    for p in &mut items {
        p.session_count = r.session_count(&p.name).await?;
    }
    Ok(ProjectList {
        items,
        total_count: total,
        offset: page.offset,
        limit: page.limit,
        has_more,
    })
}

pub(super) async fn update_project(
    r: &KubeRecords,
    name: &str,
    display_name: Option<String>,
    description: Option<String>,
) -> Result<Project> {
    r.namespace(name).await?;
    let mut annotations = serde_json::Map::new();
    if let Some(d) = display_name {
        annotations.insert(DISPLAY_NAME.into(), json!(d));
    }
    if let Some(d) = description {
        annotations.insert(DESCRIPTION.into(), json!(d));
    }
    let patch = json!({"metadata": {"annotations": annotations}});
    let ns = r
        .namespaces()
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(RecordsError::from)?;
    r.project(&ns).await
}

pub(super) async fn delete_project(r: &KubeRecords, name: &str) -> Result<Vec<Removed>> {
    r.namespace(name).await?;
    let sessions = r
        .sessions(name)
        .list_metadata(&ListParams::default())
        .await
        .map_err(RecordsError::from)?;
    let removed = sessions
        .items
        .iter()
        .map(|s| Removed {
            name: s.name_any(),
            uid: s.uid().unwrap_or_default(),
        })
        .collect();
    // The namespace takes its sessions, their Jobs, Secrets and claims with it.
    r.namespaces()
        .delete(name, &DeleteParams::background())
        .await
        .map_err(RecordsError::from)?;
    Ok(removed)
}

pub(super) async fn project_settings(
    r: &KubeRecords,
    caller: &Caller,
    project: &str,
) -> Result<ProjectSettingsSpec> {
    let api: Api<ProjectSettings> = Api::namespaced(r.reader(caller)?, project);
    match api
        .get_opt(SETTINGS_NAME)
        .await
        .map_err(RecordsError::from)?
    {
        Some(s) => Ok(s.spec),
        // Not made yet (the operator makes it): the defaults, if the project exists.
        None => {
            r.namespace(project).await?;
            Ok(ProjectSettingsSpec::default())
        }
    }
}

pub(super) async fn set_project_settings(
    r: &KubeRecords,
    project: &str,
    settings: ProjectSettingsSpec,
) -> Result<()> {
    r.namespace(project).await?;
    let api: Api<ProjectSettings> = Api::namespaced(r.client.clone(), project);
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
    .map_err(RecordsError::from)?;
    Ok(())
}

pub(super) async fn credentials(r: &KubeRecords, project: &str) -> Result<Credentials> {
    let api: Api<Secret> = Api::namespaced(r.client.clone(), project);
    let mut creds = Credentials::default();
    match api
        .get_opt(RUNNER_SECRETS)
        .await
        .map_err(RecordsError::from)?
    {
        Some(secret) => {
            for (k, v) in secret.data.unwrap_or_default() {
                if let Ok(v) = String::from_utf8(v.0) {
                    // Keys the platform does not know stay in the Secret, unused.
                    let _ = creds.set(&k, Some(v));
                }
            }
        }
        None => {
            r.namespace(project).await?;
        }
    }
    Ok(creds)
}

pub(super) async fn update_credentials(
    r: &KubeRecords,
    project: &str,
    changes: &[(String, Option<String>)],
) -> Result<()> {
    r.namespace(project).await?;
    let api: Api<Secret> = Api::namespaced(r.client.clone(), project);
    if api
        .get_opt(RUNNER_SECRETS)
        .await
        .map_err(RecordsError::from)?
        .is_none()
    {
        let mut secret = Secret::default();
        secret.metadata.name = Some(RUNNER_SECRETS.into());
        secret.type_ = Some("Opaque".into());
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_already_exists() => {}
            Err(e) => return Err(RecordsError::from(e)),
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
    .map_err(RecordsError::from)?;
    Ok(())
}
