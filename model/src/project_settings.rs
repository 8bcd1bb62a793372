//! The `ProjectSettings` custom resource: one per project (namespace), named `projectsettings`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::session::McpServers;

/// The only name a `ProjectSettings` object may have.
pub const PROJECT_SETTINGS_NAME: &str = "projectsettings";

/// Default inactivity timeout of sessions that neither they nor their project set: 30
/// minutes. An idle interactive session keeps its agent process warm (about 220 MB) and a
/// runner slot; past half an hour of silence that memory is worth more than the second a
/// resumed conversation takes to start. (The original keeps 24 hours: its idle session is a
/// pod that waits, not a warm agent.) The longest a single tool call of the agent can stay
/// silent is the CLI's 10-minute Bash limit, so a working agent is not stopped by it.
pub const DEFAULT_INACTIVITY_TIMEOUT_SECONDS: i64 = 1_800;

/// Settings shared by every session of a project.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "vteam.ambient-code",
    version = "v1alpha1",
    kind = "ProjectSettings",
    plural = "projectsettings",
    singular = "projectsettings",
    shortname = "ps",
    namespaced,
    derive = "PartialEq",
    status = "ProjectSettingsStatus",
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettingsSpec {
    /// Groups given a role in the project (becomes RoleBindings). Required; may be empty.
    #[serde(default)]
    pub group_access: Vec<GroupAccess>,
    /// Legacy name of the runner secret. Default: `ambient-runner-secrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner_secrets_name: Option<String>,
    /// Legacy list of the project's repositories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<ProjectRepository>,
    /// Default inactivity timeout of the project's sessions in seconds; 0 disables.
    /// Default: the platform's (1800, 30 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inactivity_timeout_seconds: Option<i64>,
    /// Project-level MCP servers, merged under each session's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_servers: Option<McpServers>,
}

/// A group and the role it has in the project.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupAccess {
    /// Group name as the identity provider reports it.
    pub group_name: String,
    /// Role given to the group.
    pub role: ProjectRole,
}

/// Role of a user or group in a project.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProjectRole {
    /// Everything, including sharing and deletion.
    Admin,
    /// Create and steer sessions.
    Edit,
    /// Read only.
    View,
}

impl From<crate::api::Role> for ProjectRole {
    fn from(role: crate::api::Role) -> Self {
        match role {
            crate::api::Role::View => ProjectRole::View,
            crate::api::Role::Edit => ProjectRole::Edit,
            crate::api::Role::Admin => ProjectRole::Admin,
        }
    }
}

/// A repository known to the project (legacy).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRepository {
    /// Clone URL.
    pub url: String,
    /// Branch. Default: `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Hosting provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<GitProvider>,
}

/// A git hosting provider.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum GitProvider {
    /// github.com or GitHub Enterprise.
    Github,
    /// gitlab.com or self-hosted GitLab.
    Gitlab,
}

/// What the operator did for the project.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProjectSettingsStatus {
    /// Number of group RoleBindings created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_bindings_created: Option<i64>,
    /// Whether the scheduled-session RBAC exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(rename = "scheduledSessionRBACReady")]
    pub scheduled_session_rbac_ready: Option<bool>,
    /// Whether the default LimitRange exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_range_ready: Option<bool>,
}
