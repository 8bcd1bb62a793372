//! The project controller: a managed namespace gets what its sessions need (settings, the
//! runners' ServiceAccount, the credentials Secret, the NetworkPolicy, its groups' bindings).

use super::*;

pub(super) fn project_error_policy(ns: Arc<Namespace>, error: &Error, _: Arc<Ctx>) -> Action {
    tracing::warn!(project = %ns.name_any(), error = %error, "project reconcile failed");
    Action::requeue(Duration::from_secs(5))
}

/// A project holds its settings, the runners' ServiceAccount, the credentials Secret (made
/// empty; never overwritten), the runners' NetworkPolicy (kept as built) and a RoleBinding
/// per group of its settings' `groupAccess` (kept as listed, but none for the cluster's own
/// `system:` groups; re-run when the settings change).
pub(super) async fn reconcile_project(ns: Arc<Namespace>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = ns.name_any();
    if ns.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let client = ctx.client.clone();
    create_if_missing(
        &Api::<ProjectSettings>::namespaced(client.clone(), &name),
        &project::default_settings(&name),
    )
    .await?;
    create_if_missing(
        &Api::<ServiceAccount>::namespaced(client.clone(), &name),
        &project::runner_service_account(&name, &ctx.config.runner_service_account),
    )
    .await?;
    create_if_missing(
        &Api::<Secret>::namespaced(client.clone(), &name),
        &project::runner_secrets(&name),
    )
    .await?;
    let policy = project::runner_network_policy(&name, &ctx.config.server_namespace);
    Api::<NetworkPolicy>::namespaced(client.clone(), &name)
        .patch(
            project::NETWORK_POLICY,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&policy),
        )
        .await?;
    // The groups of `groupAccess` get their RoleBindings; those of groups no longer listed
    // go (only the ones made here: a RoleBinding made by hand stays).
    let settings_api = Api::<ProjectSettings>::namespaced(client.clone(), &name);
    let settings = settings_api.get_opt(SETTINGS_NAME).await?;
    let access = settings
        .as_ref()
        .map(|s| s.spec.group_access.clone())
        .unwrap_or_default();
    for a in access
        .iter()
        .filter(|a| model::validate::is_system_subject(&a.group_name))
    {
        tracing::warn!(
            project = %name,
            group = %a.group_name,
            "groupAccess names one of the cluster's own groups: it gets no RoleBinding"
        );
    }
    let desired = project::group_bindings(&name, &access);
    let bindings = Api::<RoleBinding>::namespaced(client.clone(), &name);
    for b in &desired {
        bindings
            .patch(
                b.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(b),
            )
            .await?;
    }
    let made = bindings
        .list(&ListParams::default().labels(&format!("{}=true", project::GROUP_ACCESS_LABEL)))
        .await?;
    for b in made.items {
        if !desired.iter().any(|d| d.metadata.name == b.metadata.name) {
            delete(&bindings, &b.name_any(), &DeleteParams::default()).await?;
        }
    }
    let count = desired.len() as i64;
    if settings.is_some_and(|s| s.status.and_then(|st| st.group_bindings_created) != Some(count)) {
        settings_api
            .patch_status(
                SETTINGS_NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"groupBindingsCreated": count}})),
            )
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(600)))
}
