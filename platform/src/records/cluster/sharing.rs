//! Sharing a project: the RoleBindings of the project roles, read as permissions and made
//! or removed for the Sharing page.

use super::*;

pub(super) async fn permissions(
    r: &KubeRecords,
    caller: &Caller,
    project: &str,
) -> Result<Vec<Permission>> {
    r.namespace(project).await?;
    let bindings = Api::<RoleBinding>::namespaced(r.reader(caller)?, project)
        .list(&ListParams::default())
        .await
        .map_err(RecordsError::from)?;
    Ok(permissions_of(&bindings.items, project))
}

pub(super) async fn grant(
    r: &KubeRecords,
    caller: &Caller,
    project: &str,
    grant: &GrantRequest,
) -> Result<Permission> {
    r.namespace(project).await?;
    // Made with the caller's own identity: the cluster's own escalation check applies
    // (nobody gives a role they do not have).
    let api: Api<RoleBinding> = Api::namespaced(r.reader(caller)?, project);
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
            let there = api.get(&name).await.map_err(RecordsError::from)?;
            if there.role_ref != binding.role_ref || there.subjects != binding.subjects {
                return Err(RecordsError::Conflict(format!(
                    "the RoleBinding {name} exists and gives something else; remove it first"
                )));
            }
        }
        Err(e) => return Err(RecordsError::from(e)),
    }
    // The role given before (another binding of the Sharing page) goes.
    let shared = api
        .list(&ListParams::default().labels(&format!("{PERMISSION_LABEL}=true")))
        .await
        .map_err(RecordsError::from)?;
    let wanted = (grant.subject_type, grant.subject_name.clone());
    for old in permissions_of(&shared.items, project) {
        if (old.subject_type, old.subject_name.clone()) == wanted && old.binding != name {
            match api.delete(&old.binding, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.is_not_found() => {}
                Err(e) => return Err(RecordsError::from(e)),
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

pub(super) async fn revoke(
    r: &KubeRecords,
    caller: &Caller,
    project: &str,
    subject_type: SubjectType,
    subject_name: &str,
) -> Result<()> {
    r.namespace(project).await?;
    let api: Api<RoleBinding> = Api::namespaced(r.reader(caller)?, project);
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(RecordsError::from)?;
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
            Err(e) => return Err(RecordsError::from(e)),
        }
    }
    Ok(())
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
