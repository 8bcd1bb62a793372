//! A project's access keys in Kubernetes mode, as the original has them: a key is a
//! ServiceAccount `ambient-key-<id>` in the project's namespace, bound to the key's project
//! role, and its value a token of that ServiceAccount (a TokenRequest, a year at most: the
//! cluster's tokens always expire). The key is made with the identity of the admin who asks
//! for it, so the server mints no tokens and the cluster's own checks apply (an admin can
//! only give a role it has). Revoking a key deletes its ServiceAccount: the cluster refuses
//! its tokens from then on, and the server forgets what it knew of them. The last use is an
//! annotation the server writes when it reviews the key's token (at most once per cache
//! period).

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{RoleBinding, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use operator::cluster::project::project_role_binding;
use serde_json::json;

use crate::auth::Role;
use crate::db::now_ms;
use crate::error::ApiError;
use crate::identity::KeyInfo;

/// The label of a key's ServiceAccount and RoleBinding.
pub const KEY_LABEL: &str = "ambient-code.io/access-key";
const PREFIX: &str = "ambient-key-";
const NAME: &str = "ambient-code.io/key-name";
const CREATED_BY: &str = "ambient-code.io/key-created-by";
const ROLE: &str = "ambient-code.io/key-role";
const EXPIRES: &str = "ambient-code.io/key-expires-ms";
const LAST_USED: &str = "ambient-code.io/key-last-used-ms";

/// The ids of these keys: above those of the server's own keys (row numbers), below 2^53
/// (exact in JavaScript).
pub const FIRST_ID: i64 = 1 << 40;
const LAST_ID: i64 = 1 << 53;

/// Whether `id` names a key of the cluster (not one of the server's own).
pub fn is_cluster_key(id: i64) -> bool {
    (FIRST_ID..LAST_ID).contains(&id)
}

fn account(id: i64) -> String {
    format!("{PREFIX}{id}")
}

/// The user name the cluster gives a key's tokens.
pub fn user_of(project: &str, id: i64) -> String {
    format!("system:serviceaccount:{project}:{}", account(id))
}

/// The project and id of a key, from the user name its token has.
pub fn key_of_user(user: &str) -> Option<(String, i64)> {
    let (ns, name) = user
        .strip_prefix("system:serviceaccount:")?
        .split_once(':')?;
    let id: i64 = name.strip_prefix(PREFIX)?.parse().ok()?;
    is_cluster_key(id).then(|| (ns.to_owned(), id))
}

fn refused(what: &str, e: kube::Error) -> ApiError {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => ApiError::Forbidden(format!(
            "the cluster does not let you {what}: {}",
            s.message
        )),
        kube::Error::Api(s) if s.is_not_found() => ApiError::NotFound(s.message),
        other => crate::kube_identity::unavailable(what, other),
    }
}

/// Makes a key of `project` with `client` (the admin's own identity): its value, shown once,
/// and what is listed of it.
pub async fn create(
    client: &Client,
    project: &str,
    name: &str,
    role: Role,
    lifetime_secs: i64,
    created_by: &str,
) -> Result<(String, KeyInfo), ApiError> {
    let id = rand::random_range(FIRST_ID..LAST_ID);
    let sa_name = account(id);
    let now = now_ms();
    let expires_ms = now.saturating_add(lifetime_secs.saturating_mul(1000));
    let labels = BTreeMap::from([(KEY_LABEL.to_owned(), "true".to_owned())]);
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), project);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(sa_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([
                (NAME.to_owned(), name.to_owned()),
                (CREATED_BY.to_owned(), created_by.to_owned()),
                (ROLE.to_owned(), role.to_string()),
                (EXPIRES.to_owned(), expires_ms.to_string()),
            ])),
            ..Default::default()
        },
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    let made = accounts
        .create(&PostParams::default(), &sa)
        .await
        .map_err(|e| refused("make access keys in this project", e))?;
    let mut binding = project_role_binding(
        &sa_name,
        role.into(),
        Subject {
            kind: "ServiceAccount".into(),
            name: sa_name.clone(),
            namespace: Some(project.to_owned()),
            api_group: None,
        },
    );
    binding.metadata.labels = Some(labels);
    // Goes with the ServiceAccount.
    binding.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ServiceAccount".into(),
        name: sa_name.clone(),
        uid: made.uid().unwrap_or_default(),
        ..Default::default()
    }]);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            expiration_seconds: Some(lifetime_secs),
            bound_object_ref: None,
        },
        ..Default::default()
    };
    let token = async {
        Api::<RoleBinding>::namespaced(client.clone(), project)
            .create(&PostParams::default(), &binding)
            .await
            .map_err(|e| refused("give the key its role", e))?;
        let made = accounts
            .create_token_request(&sa_name, &PostParams::default(), &request)
            .await
            .map_err(|e| refused("make the key's token", e))?;
        made.status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Internal)
    }
    .await;
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            // No half-made key stays behind.
            let _ = accounts.delete(&sa_name, &DeleteParams::background()).await;
            return Err(e);
        }
    };
    let info = KeyInfo {
        id,
        name: name.to_owned(),
        prefix: sa_name,
        created_ms: now,
        last_used_ms: None,
        scope: Some((project.to_owned(), role)),
        expires_ms: Some(expires_ms),
        created_by: Some(created_by.to_owned()),
    };
    Ok((token, info))
}

fn info_of(sa: &ServiceAccount, project: &str) -> Option<KeyInfo> {
    let id: i64 = sa.name_any().strip_prefix(PREFIX)?.parse().ok()?;
    let a = sa.annotations();
    let ms = |k: &str| a.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(KeyInfo {
        id,
        name: a.get(NAME).cloned().unwrap_or_default(),
        prefix: sa.name_any(),
        created_ms: sa
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.as_millisecond())
            .unwrap_or_default(),
        last_used_ms: ms(LAST_USED),
        scope: Some((project.to_owned(), a.get(ROLE)?.parse().ok()?)),
        expires_ms: ms(EXPIRES),
        created_by: a.get(CREATED_BY).cloned(),
    })
}

/// The keys of `project`, read with `client`.
pub async fn list(client: &Client, project: &str) -> Result<Vec<KeyInfo>, ApiError> {
    let accounts = Api::<ServiceAccount>::namespaced(client.clone(), project)
        .list(&ListParams::default().labels(&format!("{KEY_LABEL}=true")))
        .await
        .map_err(|e| refused("list the project's access keys", e))?;
    Ok(accounts
        .items
        .iter()
        .filter(|sa| sa.metadata.deletion_timestamp.is_none())
        .filter_map(|sa| info_of(sa, project))
        .collect())
}

/// Revokes a key of `project` with `client`: its ServiceAccount (and binding) go.
pub async fn revoke(client: &Client, project: &str, id: i64) -> Result<(), ApiError> {
    Api::<ServiceAccount>::namespaced(client.clone(), project)
        .delete(&account(id), &DeleteParams::background())
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) if s.is_not_found() => {
                ApiError::NotFound(format!("access key {id}"))
            }
            e => refused("revoke the key", e),
        })?;
    Ok(())
}

/// Whether the key `id` of `project` still exists (asked with the server's client).
pub async fn exists(server: &Client, project: &str, id: i64) -> Result<bool, ApiError> {
    let sa = Api::<ServiceAccount>::namespaced(server.clone(), project)
        .get_opt(&account(id))
        .await
        .map_err(|e| refused("look up an access key", e))?;
    Ok(sa.is_some_and(|sa| sa.metadata.deletion_timestamp.is_none()))
}

/// Records that a key was used now (best effort, with the server's client).
pub async fn touch(server: Client, project: String, id: i64) {
    let patch = json!({"metadata": {"annotations": {LAST_USED: now_ms().to_string()}}});
    if let Err(e) = Api::<ServiceAccount>::namespaced(server, &project)
        .patch(&account(id), &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::debug!(error = %e, project, id, "recording an access key's use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_users_are_recognised_and_nothing_else() {
        let id = FIRST_ID + 7;
        assert_eq!(key_of_user(&user_of("demo", id)), Some(("demo".into(), id)));
        for other in [
            "alice",
            "system:serviceaccount:demo:ambient-runner",
            "system:serviceaccount:demo:ambient-key-12",
            "system:serviceaccount:demo:ambient-key-x",
        ] {
            assert_eq!(key_of_user(other), None, "{other}");
        }
        assert!(!is_cluster_key(5) && is_cluster_key(FIRST_ID));
    }
}
