//! What every project (a namespace labelled `ambient-code.io/managed=true`) holds for its
//! sessions: pure builders of its ProjectSettings, the runners' ServiceAccount, the empty
//! credentials Secret, the runners' NetworkPolicy and the RoleBindings of its `groupAccess`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use model::project_settings::{GroupAccess, ProjectRole};
use model::validate;
use model::{ProjectSettings, ProjectSettingsSpec};

use super::build::RUNNER_SECRETS;

pub use model::annotations::MANAGED_LABEL;
/// The one ProjectSettings of a project.
pub const SETTINGS_NAME: &str = "projectsettings";
/// The runners' NetworkPolicy.
pub const NETWORK_POLICY: &str = "ambient-runner-egress";

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/part-of".into(), "ambient-code".into()),
            (
                "app.kubernetes.io/managed-by".into(),
                "ambient-operator".into(),
            ),
        ])),
        ..ObjectMeta::default()
    }
}

/// The project's settings as first made (nobody else given access, the default timeout).
pub fn default_settings(namespace: &str) -> ProjectSettings {
    ProjectSettings {
        metadata: meta(namespace, SETTINGS_NAME),
        spec: ProjectSettingsSpec::default(),
        status: None,
    }
}

/// The ServiceAccount runner pods run as (its token is never mounted).
pub fn runner_service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(namespace, name),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The project's credentials Secret, empty until someone sets a key.
pub fn runner_secrets(namespace: &str) -> Secret {
    Secret {
        metadata: meta(namespace, RUNNER_SECRETS),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// Runner pods take no connection, and reach only the server, DNS and the world outside the
/// cluster's private ranges (not the cloud's metadata service, not other pods).
pub fn runner_network_policy(namespace: &str, server_namespace: &str) -> NetworkPolicy {
    let runners = LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".into(),
            "ambient-runner".into(),
        )])),
        ..LabelSelector::default()
    };
    let namespace_named = |name: &str| LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".into(),
            name.to_owned(),
        )])),
        ..LabelSelector::default()
    };
    let port = |protocol: &str, n: i32| NetworkPolicyPort {
        protocol: Some(protocol.into()),
        port: Some(IntOrString::Int(n)),
        ..NetworkPolicyPort::default()
    };
    let server = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named(server_namespace)),
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".into(),
                    "ambient-server".into(),
                )])),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: None,
    };
    let dns = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(namespace_named("kube-system")),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
    };
    let outside = NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".into(),
                except: Some(
                    [
                        "10.0.0.0/8",
                        "172.16.0.0/12",
                        "192.168.0.0/16",
                        "100.64.0.0/10",
                        "169.254.0.0/16",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: None,
    };
    NetworkPolicy {
        metadata: meta(namespace, NETWORK_POLICY),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(runners),
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: Some(vec![]),
            egress: Some(vec![server, dns, outside]),
        }),
    }
}

/// The label of the RoleBindings made from a project's `groupAccess`: only those are pruned
/// (a RoleBinding someone made by hand stays).
pub const GROUP_ACCESS_LABEL: &str = "ambient-code.io/group-access";

/// The ClusterRole a project role binds to (`deploy/base/project-roles.yaml`).
pub fn project_cluster_role(role: ProjectRole) -> &'static str {
    match role {
        ProjectRole::Admin => "ambient-project-admin",
        ProjectRole::Edit => "ambient-project-edit",
        ProjectRole::View => "ambient-project-view",
    }
}

/// A binding's name for `group` and the ClusterRole: readable, a valid object name whatever
/// the group's name (`Auditors@Corp`), and distinct for groups that read the same once
/// cleaned (a hash of the exact name ends it).
fn group_binding_name(group: &str, cluster_role: &str) -> String {
    let role = cluster_role.trim_start_matches("ambient-project-");
    binding_name(&format!("ambient-group-{role}"), group)
}

/// `<prefix>-<subject made DNS-safe>-<hash>`: a valid object name whatever the subject's
/// name, and distinct for names that read the same once cleaned (`a.b`, `a-b`).
pub fn binding_name(prefix: &str, subject: &str) -> String {
    use sha2::Digest;
    let mut slug: String = subject
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    slug.truncate(40);
    let slug = slug.trim_matches('-');
    let hash = hex::encode(&sha2::Sha256::digest(subject.as_bytes())[..4]);
    if slug.is_empty() {
        format!("{prefix}-{hash}")
    } else {
        format!("{prefix}-{slug}-{hash}")
    }
}

/// Whether a `groupAccess` entry gets a RoleBinding: a named group, and none of the
/// cluster's own (`system:authenticated` would give the role to every identity of the
/// cluster). The server never writes those, but a ProjectSettings applied with kubectl may
/// name one.
pub fn grantable(access: &GroupAccess) -> bool {
    !access.group_name.trim().is_empty() && !validate::is_system_subject(&access.group_name)
}

/// The RoleBindings a project's `groupAccess` asks for: one per [`grantable`] group and role,
/// binding the group to the role's ClusterRole in the project's namespace.
pub fn group_bindings(namespace: &str, access: &[GroupAccess]) -> Vec<RoleBinding> {
    let mut out: Vec<RoleBinding> = Vec::new();
    for a in access {
        if !grantable(a) {
            continue;
        }
        let cluster_role = project_cluster_role(a.role);
        let name = group_binding_name(&a.group_name, cluster_role);
        if out
            .iter()
            .any(|b| b.metadata.name.as_deref() == Some(name.as_str()))
        {
            continue;
        }
        let mut metadata = meta(namespace, &name);
        metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(GROUP_ACCESS_LABEL.into(), "true".into());
        out.push(RoleBinding {
            metadata,
            ..project_role_binding(&name, a.role, group_subject(&a.group_name))
        });
    }
    out
}

/// A RoleBinding `name` of one subject to a project role's ClusterRole (callers add labels
/// and owners).
pub fn project_role_binding(name: &str, role: ProjectRole, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: project_cluster_role(role).into(),
        },
        subjects: Some(vec![subject]),
    }
}

/// The RBAC subject of a group.
pub fn group_subject(name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: "Group".into(),
        name: name.to_owned(),
        namespace: None,
    }
}

/// The project roles as `deploy/base/project-roles.yaml` installs them.
pub const PROJECT_ROLES_YAML: &str = include_str!("../../../deploy/base/project-roles.yaml");

/// Applies the project roles (`ambient-project-view/edit/admin`) with server-side apply as
/// `manager` (for test clusters and a first install without kustomize).
pub async fn apply_project_roles(client: &kube::Client, manager: &str) -> Result<(), String> {
    use k8s_openapi::api::rbac::v1::ClusterRole;
    use kube::ResourceExt;
    use kube::api::{Api, Patch, PatchParams};
    let roles: Api<ClusterRole> = Api::all(client.clone());
    for doc in serde_yaml::Deserializer::from_str(PROJECT_ROLES_YAML) {
        let role = <ClusterRole as serde::Deserialize>::deserialize(doc)
            .map_err(|e| format!("deploy/base/project-roles.yaml: {e}"))?;
        roles
            .patch(
                &role.name_any(),
                &PatchParams::apply(manager).force(),
                &Patch::Apply(&role),
            )
            .await
            .map_err(|e| format!("the API server refused the role {}: {e}", role.name_any()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runners_take_no_connection_and_reach_only_the_server_dns_and_outside() {
        let p = runner_network_policy("team-a", "ambient-code");
        let spec = p.spec.unwrap();
        assert_eq!(spec.ingress, Some(vec![]));
        assert_eq!(
            spec.policy_types.unwrap(),
            ["Ingress".to_owned(), "Egress".to_owned()]
        );
        let egress = spec.egress.unwrap();
        assert_eq!(egress.len(), 3);
        let outside = egress[2].to.as_ref().unwrap()[0].ip_block.as_ref().unwrap();
        assert!(
            outside
                .except
                .as_ref()
                .unwrap()
                .contains(&"169.254.0.0/16".to_owned())
        );
        let server = &egress[0].to.as_ref().unwrap()[0];
        assert_eq!(
            server
                .namespace_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["kubernetes.io/metadata.name"],
            "ambient-code"
        );
    }

    #[test]
    fn the_runner_account_mounts_no_token() {
        assert_eq!(
            runner_service_account("team-a", "ambient-runner").automount_service_account_token,
            Some(false)
        );
        assert_eq!(
            runner_secrets("team-a").metadata.name.as_deref(),
            Some(RUNNER_SECRETS)
        );
        assert_eq!(
            default_settings("team-a").metadata.name.as_deref(),
            Some(SETTINGS_NAME)
        );
    }

    #[test]
    fn group_access_becomes_one_binding_per_group_and_role() {
        use model::project_settings::{GroupAccess, ProjectRole};
        let access = [
            GroupAccess {
                group_name: "team-x".into(),
                role: ProjectRole::Edit,
            },
            GroupAccess {
                group_name: "Auditors@Corp".into(),
                role: ProjectRole::View,
            },
            GroupAccess {
                group_name: "auditors-corp".into(),
                role: ProjectRole::View,
            },
            GroupAccess {
                group_name: "team-x".into(),
                role: ProjectRole::Edit,
            },
            GroupAccess {
                group_name: " ".into(),
                role: ProjectRole::Admin,
            },
        ];
        let b = group_bindings("team-a", &access);
        assert_eq!(b.len(), 3, "duplicates and blank names give nothing more");
        let names: Vec<&str> = b
            .iter()
            .map(|b| b.metadata.name.as_deref().unwrap())
            .collect();
        assert!(
            names[0].starts_with("ambient-group-edit-team-x-"),
            "{names:?}"
        );
        assert!(
            names[1].starts_with("ambient-group-view-auditors-corp-"),
            "{names:?}"
        );
        assert_ne!(names[1], names[2], "groups that clean up alike stay apart");
        assert!(names.iter().all(|n| {
            n.len() <= 63
                && n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        }));
        assert_eq!(b[0].role_ref.name, "ambient-project-edit");
        let subject = &b[1].subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str()),
            ("Group", "Auditors@Corp")
        );
        assert_eq!(
            b[0].metadata.labels.as_ref().unwrap()[GROUP_ACCESS_LABEL],
            "true"
        );
    }

    #[test]
    fn the_clusters_own_groups_get_no_binding() {
        use model::project_settings::{GroupAccess, ProjectRole};
        let access: Vec<GroupAccess> = [
            "system:authenticated",
            "system:masters",
            " system:serviceaccounts",
            "system:serviceaccounts:team-a",
            "team-x",
        ]
        .into_iter()
        .map(|group| GroupAccess {
            group_name: group.into(),
            role: ProjectRole::Admin,
        })
        .collect();
        let b = group_bindings("team-a", &access);
        let subjects: Vec<&str> = b
            .iter()
            .flat_map(|b| b.subjects.iter().flatten())
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(subjects, ["team-x"]);
        assert!(!grantable(&access[0]) && grantable(&access[4]));
    }
}
